"""Example applications limited by ``example_apps/ratelimits.yaml``, and the demo that runs them.

``python -m example_apps.run_demo`` (from the repository root) starts the Starlette app under
uvicorn and the Flask app under gunicorn, with several workers sharing one Redis, and drives
mixed traffic at both over loopback.
"""

from __future__ import annotations
