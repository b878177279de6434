"""The operations docs name only metrics ratemw exports, and the dashboard shows them all.

``docs/grafana/ratemw-dashboard.json`` and ``docs/prometheus/ratemw-alerts.yml`` are
loaded and every ``ratemw_*`` name in their PromQL is checked against what a registry
really exposes (its ``# TYPE`` lines); so is the metric table of ``docs/operations.md``.
Label names and the values of ``verdict``, ``mode`` and ``result`` in selectors are
checked against exported samples too, so a renamed label breaks this test, not a
dashboard in production.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ratemw.control.cli import add_commands as add_control_commands
from ratemw.metrics import RatemwCollector, register
from ratemw.ops.cli import add_commands as add_ops_commands
from ratemw.ops.stats import (
    DECISION_BUCKETS,
    STORE_BUCKETS,
    VERDICTS,
    HistogramData,
    MetricsSnapshot,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
DASHBOARD = DOCS / "grafana" / "ratemw-dashboard.json"
ALERTS = DOCS / "prometheus" / "ratemw-alerts.yml"
OPERATIONS = DOCS / "operations.md"
CONTROL_PLANE = DOCS / "control-plane.md"

NAME = re.compile(r"\bratemw_[a-z0-9_]*[a-z0-9]")
# ``metric{...}``: the metric and its matchers (label values never hold a brace)
SELECTOR = re.compile(r"\b(ratemw_[a-z0-9_]+)\s*\{([^{}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
#: labels whose values the docs' queries spell out, and the values ratemw uses
KNOWN_VALUES = {
    "verdict": {verdict for verdict, _, _ in VERDICTS},
    "mode": {mode for _, mode, _ in VERDICTS},
    "result": {"ok", "error"},
}

LABELS = ("login", "/login", "free")
FULL = MetricsSnapshot(
    decisions={(*LABELS, verdict, mode): 1 for verdict, mode, _ in VERDICTS},
    near_limit={LABELS: 1},
    decision_seconds=HistogramData(DECISION_BUCKETS, (1,) * (len(DECISION_BUCKETS) + 1), 1.0),
    store_errors=1,
    store_latency=HistogramData(STORE_BUCKETS, (1,) * (len(STORE_BUCKETS) + 1), 1.0),
    lease_calls=1,
    breaker_state={("*",): 0},
    inflight={("login",): 1},
    config_reloads={("ok",): 1, ("error",): 1},
    keys={("login",): 1},
    spike_alerts={("login",): 1},
    bans={("login",): 1},
    banned=1,
    brownout_factor=0.5,
)


def exposition(snapshot: MetricsSnapshot) -> str:
    registry = CollectorRegistry()
    register(lambda: snapshot, registry)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Exposed family name -> type, from the ``# TYPE`` lines of a real scrape."""
    types = {}
    for line in exposition(MetricsSnapshot()).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
    return types


@pytest.fixture(scope="module")
def exported_labels(exported: dict[str, str]) -> dict[str, set[str]]:
    """Exposed family name -> label names of its samples (``le`` for histograms)."""
    labels: dict[str, set[str]] = {name: set() for name in exported}
    for family in text_string_to_metric_families(exposition(FULL)):
        name = family.name + ("_total" if family.type == "counter" else "")
        for sample in family.samples:
            labels[name] |= set(sample.labels)
    return labels


def histograms(exported: dict[str, str]) -> set[str]:
    return {name for name, kind in exported.items() if kind == "histogram"}


def family_of(name: str, exported: dict[str, str]) -> str:
    """``name`` as used in PromQL, without the suffix of a histogram's series."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and base in histograms(exported):
            return base
    return name


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def alerts() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_exprs() -> list[str]:
    return [rule["expr"] for group in alerts()["groups"] for rule in group["rules"]]


def used(exprs: list[str], exported: dict[str, str]) -> set[str]:
    return {family_of(name, exported) for expr in exprs for name in NAME.findall(expr)}


def table_rows() -> list[list[str]]:
    """Rows of the metric table in the "## Metrics" section of operations.md."""
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `ratemw_"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


# -- the names ratemw exports ----------------------------------------------------


def test_the_scrape_agrees_with_describe(exported: dict[str, str]) -> None:
    described = {family.name: family.type for family in RatemwCollector().describe()}
    exposed = {
        (name + "_total" if kind == "counter" else name): kind for name, kind in described.items()
    }
    assert exposed == exported
    assert len(exported) == 14


# -- the dashboard ---------------------------------------------------------------


def test_dashboard_is_importable() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    [source] = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS", "datasource", "prometheus",
    )  # fmt: skip
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables.keys() >= {"rule", "tier"}
    assert variables["rule"]["query"]["query"] == "label_values(ratemw_decisions_total, rule)"
    assert "ratemw_decisions_total" in variables["tier"]["query"]["query"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    kinds = {p["type"] for p in panels(board)}
    assert {"timeseries", "stat", "heatmap"} <= kinds
    for panel in panels(board):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_uses_only_exported_metrics(exported: dict[str, str]) -> None:
    names = used(dashboard_exprs(), exported)
    assert names, "no ratemw_ metric found in the dashboard"
    assert names <= exported.keys(), names - exported.keys()


def test_dashboard_shows_every_exported_metric(exported: dict[str, str]) -> None:
    missing = exported.keys() - used(dashboard_exprs(), exported)
    assert not missing, f"not on the dashboard: {sorted(missing)}"


# -- the alerts ------------------------------------------------------------------


def test_alerts_file_is_a_prometheus_rules_file() -> None:
    data = alerts()
    assert set(data) == {"groups"}
    names = []
    for group in data["groups"]:
        assert group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["expr"].strip()
            assert rule["labels"]["severity"] in ("info", "warning", "critical")
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))


def test_alerts_use_only_exported_metrics(exported: dict[str, str]) -> None:
    names = used(alert_exprs(), exported)
    assert names <= exported.keys(), names - exported.keys()
    # the alerts the docs promise
    assert {
        "ratemw_decisions_total", "ratemw_spike_alerts_total", "ratemw_store_errors_total",
        "ratemw_breaker_state", "ratemw_decision_seconds", "ratemw_config_reloads_total",
        "ratemw_brownout_factor", "ratemw_banned", "ratemw_near_limit_total",
    } <= names  # fmt: skip


# -- labels and label values in both -------------------------------------------


def test_selectors_use_exported_labels_and_values(
    exported: dict[str, str], exported_labels: dict[str, set[str]]
) -> None:
    selectors = [s for expr in dashboard_exprs() + alert_exprs() for s in SELECTOR.findall(expr)]
    assert selectors
    for name, matchers in selectors:
        family = family_of(name, exported)
        for label, op, value in MATCHER.findall(matchers):
            assert label in exported_labels[family], f"{name}: no label {label!r}"
            known = KNOWN_VALUES.get(label)
            if known is None or value.startswith("$"):
                continue
            values = set(value.split("|")) if op in ("=~", "!~") else {value}
            assert values <= known, f"{name}{{{label}{op}{value!r}}}: unknown {values - known}"


def test_aggregations_keep_exported_labels(exported_labels: dict[str, set[str]]) -> None:
    every = set().union(*exported_labels.values())
    for expr in dashboard_exprs() + alert_exprs():
        for keyword, group in re.findall(r"\b(by|without)\s*\(([^)]*)\)", expr):
            if keyword == "without":  # may name labels Prometheus adds (instance, job, ...)
                continue
            for label in filter(None, (part.strip() for part in group.split(","))):
                assert label in every, f"{expr}: no exported label {label!r}"


# -- docs/operations.md ----------------------------------------------------------


def test_the_metric_table_lists_exactly_what_is_exported(exported: dict[str, str]) -> None:
    documented = [re.fullmatch(r"`(ratemw_[a-z_]+)`", row[0]) for row in table_rows()]
    names = [m.group(1) for m in documented if m is not None]
    assert len(names) == len(documented) == len(set(names))
    assert set(names) == exported.keys()


def test_the_metric_table_gives_each_type_and_label(
    exported: dict[str, str], exported_labels: dict[str, set[str]]
) -> None:
    for name_cell, kind, labels, meaning in table_rows():
        name = name_cell.strip("`")
        assert kind == exported[name], name
        documented = set(re.findall(r"`([a-z_]+)`", labels)) if labels != "none" else set()
        assert documented == exported_labels[name] - {"le"}, name
        assert meaning


def test_operations_md_links_the_dashboard_and_the_alerts() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    assert "(grafana/ratemw-dashboard.json)" in text
    assert "(prometheus/ratemw-alerts.yml)" in text


# -- the commands the docs show --------------------------------------------------

FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-n)\b")


def commands(add: Any) -> dict[str, argparse.ArgumentParser]:
    """``"ban list"`` -> its parser, for every (sub)command ``add`` registers."""
    parser = argparse.ArgumentParser(prog="ratemw")
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, action: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            if nested:
                walk(f"{prefix}{name} ", nested[0])
            else:
                found[f"{prefix}{name}"] = sub

    sub = parser.add_subparsers()
    add(sub)
    walk("", sub)
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


def section(path: Path, heading: str) -> str:
    return path.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_operations_md_synopses_match_the_commands() -> None:
    parsers = commands(add_ops_commands)
    text = OPERATIONS.read_text(encoding="utf-8")
    shown = {}
    for line in text.splitlines():
        for name in sorted(parsers, key=len, reverse=True):
            if line.startswith(f"ratemw {name} ") and "--redis URL" in line:
                shown[name] = set(FLAG.findall(line))
                break
    assert shown.keys() == parsers.keys()
    for name, parser in parsers.items():
        assert shown[name] == flags(parser), name
    # --json only where the command prints something worth parsing
    assert {n for n, p in parsers.items() if "--json" in flags(p)} == {
        "top", "ban list", "brownout show",
    }  # fmt: skip


def test_control_plane_command_line_lists_every_control_option() -> None:
    text = section(CONTROL_PLANE, "## Command line")
    synopsis = text.split("```", 2)[1]
    table = [line for line in text.splitlines() if line.startswith("| `--")]
    for flag in flags(commands(add_control_commands)["control"]):
        assert flag in synopsis, flag
    for flag in ("--ops-redis", "--ops-app"):
        assert any(row.startswith(f"| `{flag}") for row in table), flag


def test_operations_md_links_the_control_plane_operations_api() -> None:
    anchor = "operations-brownout-bans-and-top-offenders"
    assert f"(control-plane.md#{anchor})" in OPERATIONS.read_text(encoding="utf-8")
    headings = [
        line.lstrip("#").strip()
        for line in CONTROL_PLANE.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]
    slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    assert anchor in slugs
