"""Prometheus export of ratemw's counters (``pip install 'ratemw[prometheus]'``): the
names a user imports; the export lives in :mod:`ratemw.ops.prometheus`."""

from __future__ import annotations

from ratemw.ops.prometheus import (
    RatemwCollector,
    asgi_app,
    multiprocess_enabled,
    register,
    render,
    wsgi_app,
)
from ratemw.ops.prometheus_mp import MultiprocessExporter

__all__ = [
    "MultiprocessExporter",
    "RatemwCollector",
    "asgi_app",
    "multiprocess_enabled",
    "register",
    "render",
    "wsgi_app",
]
