"""ratemw for Flask: ``ratemw = RateMW(app)`` or ``RateMW().init_app(app)``.

Configuration is ``RATEMW_*`` in ``app.config`` (see :data:`CONFIG_KEYS`);
``@ratemw.limit`` and ``@ratemw.exempt`` mark views; ``flask ratemw check`` and
``flask ratemw explain`` run the ``ratemw`` commands. Guide: ``docs/quickstart-flask.md``.
"""

from __future__ import annotations

from ratemw_flask.extension import CONFIG_KEYS, RateMW, RateMWState
from ratemw_flask.metrics import metrics_view

__all__ = ["CONFIG_KEYS", "RateMW", "RateMWState", "metrics_view"]
