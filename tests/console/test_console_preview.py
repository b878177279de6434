"""The what-if preview on a version's page, in real Chromium: ``ratemw control --traffic``
with a recording made by a real limiter; a viewer runs the preview and reads the
headline, the flips table and the plot (an SVG file of the same origin, within the CSP);
a recording of other rules is refused with its reason; without ``--traffic`` the page
says how to record."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratemw.control.auth import token_digest
from ratemw.control.ui.render import CSP
from tests.console.conftest import DEADLINE, PEOPLE, ROOT, SCREENSHOTS, START_DEADLINE, wait_for
from tests.control.test_preview import BASE, CANDIDATE, make_recording
from tests.processes import HOST, free_port, launch, stop


@dataclass
class Control:
    url: str
    process: Any

    def api(self, method: str, path: str, role: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {PEOPLE[role][1]}"}
        r = httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        assert r.status_code < 300, r.text
        return r.json()


def _start(tmp: Path, name: str, *args: str) -> Control:
    tokens = {token_digest(tok): {"principal": who, "role": role}
              for role, (who, tok) in PEOPLE.items()}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEMW_")}
    env["RATEMW_CONTROL_TOKENS"] = json.dumps({"tokens": tokens})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    live = tmp / f"live-{name}"
    port = free_port()
    log = tmp / f"{name}.log"
    process = launch([
        sys.executable, "-m", "ratemw.cli", "control", "--db", f"sqlite:///{tmp / name}.db",
        "--publish", live.as_uri(), "--host", HOST, "--port", str(port), *args,
    ], env, log, tmp)  # fmt: skip
    url = f"http://{HOST}:{port}"

    def healthy() -> bool:
        assert process.poll() is None, f"control exited:\n{log.read_text(errors='replace')}"
        return httpx.get(url + "/healthz", timeout=2).status_code == 200

    wait_for(healthy, f"{url}/healthz", START_DEADLINE)
    control = Control(url, process)
    v1 = control.api("POST", "/v1/versions", "editor", json={"document": BASE.decode()})
    vid = v1["version"]["id"]
    control.api("POST", f"/v1/versions/{vid}/approvals", "approver", json={})
    control.api("POST", f"/v1/versions/{vid}/rollout", "admin", json={"stage": "enforce"})
    control.api("POST", "/v1/versions", "editor", json={"document": CANDIDATE.decode()})
    return control


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two control services, versions 1 (enforced) and 2 (the candidate) on each: one
    previewing ``traffic.jsonl``, one without a recording."""
    tmp = tmp_path_factory.mktemp("preview")
    traffic = tmp / "traffic.jsonl"
    make_recording(traffic, BASE)
    started: list[Control] = []
    try:
        started.append(_start(tmp, "with", "--traffic", str(traffic)))
        started.append(_start(tmp, "without"))
        yield {"with": started[0], "without": started[1], "traffic": traffic}
    finally:
        for control in started:
            stop(control.process)


def _signed_in(browser: Any, url: str, role: str) -> tuple[Any, Any, list[str], list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEADLINE * 1000)
    page = context.new_page()
    messages: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url + "/ui/signin")
    page.get_by_label("Token").fill(PEOPLE[role][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui/\?done=signed-in$"))
    return context, page, messages, requested


def test_a_viewer_runs_the_preview_and_reads_it(browser: Any, controls: dict[str, Any]) -> None:
    control: Control = controls["with"]
    context, page, messages, requested = _signed_in(browser, control.url, "viewer")
    try:
        page.goto(control.url + "/ui/versions/2")
        section = page.locator("#preview")
        assert "Not previewed yet." in section.inner_text()
        section.get_by_role("button", name="Run the preview").click()
        page.wait_for_url(re.compile(r".*/ui/versions/2\?done=previewed#preview$"))

        stored = control.api("GET", "/v1/versions/2/preview", "viewer")["preview"]
        assert stored["ok"] is True and stored["baseline"] == 1
        headline = section.locator("p.headline").inner_text()
        assert headline == stored["headline"]
        assert headline.startswith("this change would reject 10.0 % of search for free users")
        first = section.locator("tbody tr").first.locator("td").all_inner_texts()
        assert first == ["search", "free", "1600", "160 (10.0 %)", "0 (0.0 %)", "10"]
        assert "Never matched in the recording: export." in section.inner_text()

        plot = section.get_by_role("img")
        wait_for(lambda: plot.evaluate("i => i.complete && i.naturalWidth") == 800, "the plot")
        svg = context.request.get(control.url + f"/ui/versions/2/preview.svg?p={stored['id']}")
        assert svg.status == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.headers["content-security-policy"] == CSP
        assert svg.text().count("<polyline") == 4 and "<script" not in svg.text()
        if SCREENSHOTS:  # make screenshots
            (ROOT / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            section.screenshot(path=str(ROOT / SCREENSHOTS / "console-preview.png"))
        # Nothing came from another origin and nothing broke the CSP.
        assert all(u.startswith(control.url) for u in requested), requested
        assert not [m for m in messages if "Content Security Policy" in m], messages

        # Traffic recorded under other rules: the self-check refuses, and the page says why.
        traffic: Path = controls["traffic"]
        traffic.unlink()
        make_recording(traffic, CANDIDATE)
        section.get_by_role("button", name="Run the preview").click()
        page.wait_for_url(re.compile(r".*done=previewed#preview$"))
        text = section.inner_text()
        assert "Refused:" in text and "the baseline (version" in text
        assert section.locator("p.headline").count() == 0
        assert section.get_by_role("img").count() == 0
    finally:
        context.close()


def test_without_a_recording_the_page_says_how_to_record(
    browser: Any, controls: dict[str, Any]
) -> None:
    control: Control = controls["without"]
    context, page, _, _ = _signed_in(browser, control.url, "approver")
    try:
        page.goto(control.url + "/ui/versions/2")
        text = page.locator("#preview").inner_text()
        assert "No recording is configured" in text and "docs/replay.md" in text
        assert "ratemw control --traffic" in text
        assert page.get_by_role("button", name="Run the preview").count() == 0
    finally:
        context.close()
