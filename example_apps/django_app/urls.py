from __future__ import annotations

from django.urls import path

from example_apps.django_app import views
from ratemw_django import metrics_view

urlpatterns = [
    path("login", views.login, name="login"),
    path("search/<str:q>", views.search, name="search"),
    path("checkout", views.checkout, name="checkout"),
    path("api/reports/<int:report_id>", views.report, name="report"),
    path("health", views.health, name="health"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus
]
