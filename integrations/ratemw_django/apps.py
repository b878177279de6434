"""The Django app of ratemw: add ``"ratemw_django"`` to ``INSTALLED_APPS`` for its checks."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["RatemwConfig"]


class RatemwConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    """Registers the ``ratemw`` system checks (ids ``ratemw.E001`` ... ``ratemw.W002``)."""

    name = "ratemw_django"
    label = "ratemw"
    verbose_name = "ratemw rate limiting"

    def ready(self) -> None:
        from ratemw_django.checks import register_checks

        register_checks()
