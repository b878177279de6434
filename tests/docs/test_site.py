"""The documentation site as built by mkdocs.yml: generated reference pages that match
the code, and pages that load nothing from another origin (checked in the HTML and in
headless Chromium, where every request off the site's own origin is recorded and
aborted). ``make docs`` builds the same site with ``--strict`` in CI."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.docs.examples import DOCS, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
BUILD_TIMEOUT = 240.0
DEADLINE_MS = 30_000
_EXTERNAL_ASSET = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(?:src|href|data|srcset)\s*=\s*[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)
_CSS_IMPORT = re.compile(r"(?:@import|url\()\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)


@dataclass(frozen=True)
class Site:
    root: Path
    log: str  # what mkdocs said


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Site:
    # Not strict here, so that one broken link fails one test, not all of them.
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(mkdocs), "build", "--no-strict", "--site-dir", str(out), "--config-file",
         str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "index.html").is_file()
    return Site(out, done.stderr)


@pytest.fixture(scope="module")
def site(built: Site) -> Path:
    return built.root


def test_build_is_strict_clean(built: Site) -> None:
    """What `make docs` (--strict) would refuse: broken links, anchors, nav entries."""
    problems = [ln for ln in built.log.splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert problems == []


def _text(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


def test_cli_reference_lists_every_command(site: Path) -> None:
    from ratemw.cli import _parser

    html = _text(site, "reference/cli")
    sub = next(a for a in _parser()._actions if a.choices and isinstance(a.choices, dict))
    assert sub.choices
    for name in sub.choices:
        assert f"<code>ratemw {name}</code>" in html, name
    assert "usage: ratemw explain" in html


def test_rest_reference_is_the_served_document(site: Path) -> None:
    from ratemw.control.app import openapi_document

    document = openapi_document()
    served = json.loads((site / "reference" / "openapi.json").read_text(encoding="utf-8"))
    assert served == json.loads(json.dumps(document))
    html = _text(site, "reference/rest-api")
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert f'id="op-{op["operationId"].lower()}"' in html, (method, path)
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name.lower()}"' in html, name


def test_metrics_reference_names_every_family(site: Path) -> None:
    from ratemw.ops import prometheus

    html = _text(site, "reference/metrics")
    names = [c[0] + "_total" for c in prometheus._COUNTERS]
    names += [g[0] for g in prometheus._GAUGES] + [h[0] for h in prometheus._HISTOGRAMS]
    assert len(names) >= 10
    for name in names:
        assert f"<code>{name}</code>" in html, name


def test_settings_reference_names_every_adapter_setting() -> None:
    from ratemw_django.conf import DEFAULTS
    from ratemw_flask import CONFIG_KEYS

    text = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    for key in DEFAULTS:
        assert f'"{key}"' in text, f"Django RATEMW[{key!r}]"
    for key in CONFIG_KEYS:
        assert f"RATEMW_{key}" in text, f"Flask RATEMW_{key}"


def test_api_reference_renders_the_public_modules(site: Path) -> None:
    html = _text(site, "reference/api")
    anchors = ["ratemw.Limiter", "ratemw.wsgi", "ratemw.asgi", "ratemw.testing", "ratemw.metrics"]
    for anchor in [*anchors, "ratemw_flask", "ratemw_django", "ratemw_starlette"]:
        assert f'id="{anchor}"' in html, anchor


def test_no_page_loads_an_asset_from_another_origin(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    offenders = [
        f"{page.relative_to(site)}: {match.group(0)[:120]}"
        for page in pages
        for match in _EXTERNAL_ASSET.finditer(page.read_text(encoding="utf-8"))
    ]
    offenders += [
        f"{css.relative_to(site)}: {m.group(0)}"
        for css in site.rglob("*.css")
        for m in _CSS_IMPORT.finditer(css.read_text(encoding="utf-8"))
    ]
    assert offenders == []


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_browser_requests_stay_on_the_site(served: str) -> None:
    from playwright.sync_api import Route, sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    origin = urlsplit(served).netloc
    local: list[str] = []
    foreign: list[str] = []

    def judge(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == origin or url.startswith(("data:", "blob:")):
            local.append(url)
            route.continue_()
        else:  # recorded, and never sent
            foreign.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(DEADLINE_MS)
            page.route("**/*", judge)
            for path in ("/", "/reference/api/", "/reference/rest-api/", "/migrate/slowapi/",
                         "/quickstart-flask/", "/benchmarks/"):  # fmt: skip
                page.goto(served + path, wait_until="networkidle")
            # The search box loads its index and worker on first use.
            page.keyboard.press("/")
            page.keyboard.type("lease")
            page.wait_for_selector(".md-search-result__item", timeout=DEADLINE_MS)
            page.wait_for_load_state("networkidle")
        finally:
            browser.close()
    assert any(url.endswith("search_index.json") for url in local), local
    assert foreign == []
