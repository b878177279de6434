"""``ratemw replay``: exit 0 with a report, 1 refused or unusable input, 2 usage."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ratemw.cli import main
from tests.replay.helpers import client, record, rules


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, limit in (("base", "8/hour"), ("cand", "4/hour"), ("other", "9/hour")):
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(rules(limit)))
    out["rec"] = tmp_path / "rec.jsonl"
    record(out["rec"], rules("8/hour"), [(1.0, client(n % 3)) for n in range(30)])
    return out


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["replay", *argv], out=out)
    return code, out.getvalue()


def test_a_report_exits_0_as_text_json_and_plot(files: dict[str, Path], tmp_path: Path) -> None:
    common = ["--rules", str(files["cand"]), "--traffic", str(files["rec"]),
              "--baseline", str(files["base"])]  # fmt: skip
    code, text = run(*common)
    assert code == 0 and "self-check: ok" in text and "api: 12 allowed->rejected" in text
    plot = tmp_path / "out.svg"
    code, text = run(*common, "--json", "--plot", str(plot))
    report = json.loads(text)
    assert code == 0 and report["schema"] == "ratemw-replay-report/1"
    assert report["flips"]["allowed_to_rejected"] == 12  # 3 clients: 8 -> 4 admitted each
    svg = ET.parse(plot).getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 4


def test_refusals_and_unusable_inputs_exit_1(files: dict[str, Path], tmp_path: Path) -> None:
    rec, cand = str(files["rec"]), str(files["cand"])
    code, text = run("--rules", cand, "--traffic", rec, "--baseline", str(files["other"]))
    assert code == 1 and "refused: the baseline" in text
    code, text = run("--rules", cand, "--traffic", rec)
    assert code == 1 and "no --baseline" in text
    missing = str(tmp_path / "nope.jsonl")
    code, text = run("--rules", cand, "--traffic", missing, "--baseline", str(files["base"]))
    assert code == 1 and "no recording file found" in text
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"x" * 200_000 + b"\n{not json\n")
    code, text = run("--rules", cand, "--traffic", str(junk), "--baseline", str(files["base"]))
    assert code == 1 and "not a ratemw recording" in text
    bad_rules = tmp_path / "bad.yaml"
    bad_rules.write_text("rules: [{name: x, limit: lots}]\n")
    code, text = run("--rules", str(bad_rules), "--traffic", rec, "--baseline", cand)
    assert code == 1 and "candidate rules" in text and "invalid" in text


def test_damaged_lines_are_counted_not_trusted(files: dict[str, Path]) -> None:
    rec = files["rec"]
    with rec.open("a") as f:
        f.write('{"t": "soon", "s": 200}\n' + "z" * 70_000 + "\n" + '{"gap": "x"}\n')
        base = '{"t":5,"w":%s,"m":"GET","p":"/","h":"","id":{},"s":200,"tier":"%s"}\n'
        f.write(base % ("1e300", "free") + base % ("5", "\\u001b[31mred"))
    code, text = run("--rules", str(files["cand"]), "--traffic", str(rec),
                     "--baseline", str(files["base"]), "--json")  # fmt: skip
    report = json.loads(text)
    assert report["recording"]["bad_lines"] == 4
    assert code == 1 and "recording gaps" in report["self_check"]["reasons"][0]


@pytest.mark.parametrize(
    "argv",
    [
        ["--traffic", "x.jsonl"],
        ["--rules", "r.yaml"],
        ["--rules", "r.yaml", "--traffic", "x", "--tolerance", "2"],
        ["--rules", "r.yaml", "--traffic", "x", "--tolerance", "nan"],
        ["--rules", "r.yaml", "--traffic", "x", "--max-arrivals", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", *argv], out=io.StringIO())
    assert exc.value.code == 2
