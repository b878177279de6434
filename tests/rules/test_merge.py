from __future__ import annotations

import pytest

from ratemw.errors import ConfigError
from ratemw.rules.merge import merge_rules
from ratemw.rules.parse import ruleset_from_data

BASE = {
    "version": 1,
    "defaults": {"identity": "user", "headers": "legacy"},
    "tiers": ["free", "pro"],
    "rules": [{"name": "api", "match": {"path": "/api/**"}, "limit": "10/second"}],
}


def test_extra_rules_inherit_defaults_and_tiers() -> None:
    base = ruleset_from_data(BASE)
    merged = merge_rules(
        base,
        [
            {
                "name": "views.search",
                "match": {"route": "search"},
                "limit": {"free": "1/second", "pro": "5/second"},
            }
        ],
    )
    assert [r.name for r in merged.rules] == ["api", "views.search"]
    added = merged.rules[1]
    assert added.identity == ("user",) and added.headers == "legacy" and added.tiered
    assert merged.digest != base.digest
    assert merge_rules(base, []) is base


def test_extra_rules_are_validated_with_the_file() -> None:
    base = ruleset_from_data(BASE)
    with pytest.raises(ConfigError, match="duplicate"):
        merge_rules(base, [{"name": "api", "match": {"route": "x"}, "limit": "1/second"}])
    with pytest.raises(ConfigError, match="tier"):
        merge_rules(base, [{"name": "t", "match": {"route": "x"}, "limit": {"gold": "1/second"}}])
