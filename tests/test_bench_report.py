"""The benchmark report's rendering (benchmarks/report*.py) on a small fixed input.

No measurement runs here: the figures are made up, so the markdown can be checked to the
digit and the plots checked to be written (matplotlib's Agg backend, files only).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The report's modules, imported from benchmarks/ as the scripts import each other."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield type(
        "Bench",
        (),
        {
            name: importlib.import_module(name)
            for name in ("report", "report_render", "report_markdown")
        },
    )


def fixed_data() -> dict[str, Any]:
    versions = {
        "ratemw": "0.1.0",
        "limits": "5.8.0",
        "pyrate-limiter": "4.5.1",
        "throttled-py": "3.5.0",
        "redis-server": "7.2.4",
    }
    return {
        "machine": {
            "cpu": "Test CPU 9000",
            "cores": 2,
            "python": "3.11.7",
            "system": "Linux 6.1",
            "date": "2026-12-02 16:00 UTC",
            "versions": versions,
        },
        "seconds": 123.0,
        "decide": {
            "calls": 1000,
            "rounds": 2,
            "results": {
                "hot key, admitted": {
                    "dict bucket (floor)": 300.0,
                    "ratemw decide()": 900.0,
                    "limits fixed window": 4500.0,
                },
                "hot key, rejected": {
                    "dict bucket (floor)": 250.0,
                    "ratemw decide()": 750.0,
                    "limits fixed window": 5000.0,
                },
            },
        },
        "frameworks": {
            "calls": 100,
            "rounds": 2,
            "warmup": 0.5,
            "results": {
                "flask": {
                    "baseline": 40_000.0,
                    "hand-written": 44_000.0,
                    "ratemw memory": 50_000.0,
                    "ratemw redis": 51_000.0,
                    "peer memory": 120_000.0,
                    "peer redis": 300_000.0,
                },
            },
        },
        "global": {
            "seconds": 2.0,
            "rate": 1000.0,
            "results": {
                "ratemw": {
                    "1": {"round_trips": 8.5, "commands": 10.0},
                    "8": {"round_trips": 50.0, "commands": 60.0},
                },
                "limits fixed window": {
                    "1": {"round_trips": 1000.5, "commands": 1000.5},
                    "8": {"round_trips": 1005.0, "commands": 1005.0},
                },
            },
        },
        "outage": {
            "offered": 900,
            "admitted": [0.01 * i for i in range(300)],
            "down_from": 1.0,
            "down_to": 2.0,
            "end": 3.0,
            "rate": 100.0,
            "burst": 200,
            "strand": 0.2,
            "lease_seconds": 1.0,
            "processes": 4,
        },
        "memory": {
            "keys": [1000, 100_000],
            "results": {"floor": [0.1, 17.0], "ratemw": [0.1, 16.5], "fixed": [0.2, 33.0]},
        },
    }


def test_markdown_has_every_table_figure_and_plot_link(bench: Any) -> None:
    text = bench.report_markdown.markdown(fixed_data())
    assert "2 cores, Test CPU 9000" in text
    assert "`make bench-report`" in text
    assert "throttled-py 3.5.0" in text and "redis-server 7.2.4" in text
    # decide(): 900 ns against a 300 ns floor, limits at 5 x ratemw
    assert "| hot key, admitted | ratemw decide() | 900 | 3.00 | 1.00 |" in text
    assert "| hot key, rejected | limits fixed window | 5,000 | 20.00 | 6.67 |" in text
    # frameworks: added µs over the baseline, and over the hand-written floor
    assert "| flask | ratemw memory | 50.0 | +10.0 | 2.5 |" in text
    assert "| flask | Flask-Limiter redis | 300.0 | +260.0 | 65.0 |" in text
    assert "| 8 | 50.0 (60.0) | 1,005.0 (1,005.0) |" in text
    assert "| 100,000 | 17.0 | 16.5 | 33.0 |" in text
    # outage: 100 admitted per second; during the 1 s pause the bound is
    # f·B + R·T_L + P·max(1, B/P) + R·D = 40 + 100 + 200 + 100
    assert "| before | 0-1.0 | 101 | 340 |" in text
    assert "| Redis paused | 1.0-2.0 | 100 | 440 |" in text
    assert "| after | 2.0-3.0 | 99 | 340 |" in text
    assert "was within the bound" in text
    for part in ("decide", "frameworks", "round-trips", "outage", "memory"):
        assert f"(img/bench-{part}.png)" in text


def test_outage_over_the_bound_is_reported(bench: Any) -> None:
    data = fixed_data()
    data["outage"]["admitted"] = [0.001 * i for i in range(1000)]  # 1,000 in the first second
    text = bench.report_markdown.markdown(data)
    assert "OVER the bound by 660" in text  # 1,000 - (200 + 100·0.999 + 40), rounded


def test_outage_bound_follows_the_documented_terms(bench: Any) -> None:
    o = fixed_data()["outage"]
    bound = bench.report_render.outage_bound
    assert bound(o, 0.0) == pytest.approx(240)  # B + f·B
    assert bound(o, 1.0) == pytest.approx(340)  # + R·1 s
    # during: f·B + R·T_L + P·max(1, B/P) + R·D = 40 + 100 + 200 + 100·0.5
    assert bound(o, 1.5) == pytest.approx(340 + 390)
    assert bound(o, 3.0) == pytest.approx(340 + 440 + 240 + 100)


def test_section_between_markers_is_replaced_and_the_rest_kept(bench: Any) -> None:
    render = bench.report_render
    doc = "# Benchmarks\n\nmethodology\n\n<!-- report:start -->\nold\n<!-- report:end -->\n\ntail\n"
    new = render.replace_section(doc, "## Report\nnew")
    assert new == doc.replace("old", "## Report\nnew")
    assert render.replace_section(new, "## Report\nnew") == new
    quoted = "prose quoting `<!-- report:start -->` and `<!-- report:end -->`\n"
    assert render.replace_section(quoted + doc, "x") == quoted + doc.replace("old", "x")
    appended = render.replace_section("# Benchmarks\n", "fresh")
    assert appended == "# Benchmarks\n\n<!-- report:start -->\nfresh\n<!-- report:end -->\n"
    with pytest.raises(ValueError, match="report:end"):
        render.replace_section("<!-- report:start -->\nno end", "x")


def test_write_renders_the_plots_and_the_section(bench: Any, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written part\n", encoding="utf-8")
    img = tmp_path / "img"
    written = bench.report.write(fixed_data(), doc, img)
    names = sorted(p.name for p in written)
    assert names == [
        f"bench-{n}.png" for n in ("decide", "frameworks", "memory", "outage", "round-trips")
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG), path
        assert len(data) > 10_000, path  # a real figure, not an empty canvas
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written part\n\n<!-- report:start -->\n## Report")
    assert text.rstrip().endswith("<!-- report:end -->")


def test_parts_absent_from_the_data_are_left_out(bench: Any, tmp_path: Path) -> None:
    data = copy.deepcopy(fixed_data())
    for part in ("frameworks", "global", "outage", "memory"):
        del data[part]
    written = bench.report_render.write_plots(data, tmp_path)
    assert [p.name for p in written] == ["bench-decide.png"]
    text = bench.report_markdown.markdown(data)
    assert "bench-decide.png" in text and "bench-outage.png" not in text
