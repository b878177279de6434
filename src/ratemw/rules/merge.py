"""Add rules declared in code (view decorators) to a rule set from a file."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ratemw.errors import ConfigError
from ratemw.rules.model import Defaults, RuleSet
from ratemw.rules.parse import ruleset_from_data
from ratemw.rules.validate import validate

__all__ = ["merge_rules"]


def _defaults_data(defaults: Defaults) -> dict[str, Any]:
    lease: dict[str, Any] = {"sync_interval": defaults.lease.sync_interval}
    lease["size"] = "auto" if defaults.lease.size is None else defaults.lease.size
    return {
        "identity": list(defaults.identity),
        "algorithm": defaults.algorithm,
        "on_store_error": defaults.on_store_error,
        "lease": lease,
        "headers": defaults.headers,
        "mode": defaults.mode,
        "action": defaults.action,
        "on_missing_identity": defaults.on_missing_identity,
        "on_identity_error": defaults.on_identity_error,
    }


def merge_rules(
    ruleset: RuleSet, extra: Sequence[Mapping[str, Any]], source: str = "<decorators>"
) -> RuleSet:
    """``ruleset`` plus ``extra`` rules (written as in a rules file), validated together.

    The extra rules inherit the file's ``defaults`` and may use its tiers and JWT
    claims. Raises :class:`ConfigError` with every problem (a name used twice, a
    conflict with a file rule, ...).
    """
    if not extra:
        return ruleset
    data: dict[str, Any] = {
        "version": 1,
        "tiers": list(ruleset.tiers),
        "defaults": _defaults_data(ruleset.defaults),
        "rules": [dict(rule) for rule in extra],
    }
    jwt = ruleset.identity.jwt
    if jwt is not None:
        data["identity"] = {
            "jwt": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(jwt).items()
                if v is not None and k != "leeway_seconds"
            }
        }
    added = ruleset_from_data(data, source)
    digest = hashlib.sha256(f"{ruleset.digest}+{added.digest}".encode()).hexdigest()
    merged = dataclasses.replace(ruleset, rules=ruleset.rules + added.rules, digest=digest)
    errors = [p for p in validate(merged) if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return merged
