from __future__ import annotations

from django.urls import path

from tests.integrations.django import views

urlpatterns = [
    path("login", views.login),
    path("search/<str:q>", views.search),
    path("stream", views.stream),
    path("astream", views.astream),
    path("boom", views.boom),
    path("decorated", views.decorated),
    path("named", views.named, name="named-view"),
    path("free", views.free),
]
