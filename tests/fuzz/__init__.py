"""Fuzz targets (hypothesis) for what hostile parties control: rules documents, request
paths, hosts and methods, and the headers the identity resolver reads.

``make test`` runs each with a modest number of examples; ``make fuzz`` runs them long
(``RATEMW_FUZZ_EXAMPLES``, default 20,000 there). docs/security.md says how.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("RATEMW_FUZZ_EXAMPLES", "150"))

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 1000,  # CI runs are reproducible; long runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
