from __future__ import annotations

from ratemw.rules.merge import merge_rules
from ratemw.rules.model import Rule, RuleSet
from ratemw.rules.parse import load_ruleset, parse_ruleset, ruleset_from_data

__all__ = ["Rule", "RuleSet", "load_ruleset", "merge_rules", "parse_ruleset", "ruleset_from_data"]
