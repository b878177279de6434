from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ratemw import AsyncLimiter, ConfigError, Limiter, RequestInfo
from ratemw.config import FileSource, LiveRules, live_async_limiter, live_limiter, load
from ratemw.config.loader import LOADS
from ratemw.rules.merge import merge_rules
from tests.config import DEADLINE, admitted, rules_yaml

_peers = (f"192.0.2.{n}" for n in itertools.count(1))
Live = tuple[Limiter, LiveRules, Path]


def fresh_admitted(limiter: Limiter, n: int = 6) -> int:
    return admitted(limiter, n, peer=next(_peers))


def replace(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def version_of(document: bytes, name: str = "ratelimits.yaml") -> str:
    version = load(document, name, quiet=True).version
    assert version is not None
    return version


@pytest.fixture(params=["auto", "poll"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def live(tmp_path: Path, mode: str) -> Iterator[tuple[Limiter, LiveRules, Path]]:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("2/minute"))
    # Polling alone must find every change too; watchdog mode polls only as a backstop.
    options = {"mode": mode, "poll_interval_seconds": 0.05 if mode == "poll" else 1.0}
    limiter, live = live_limiter(path, source_options=options)
    yield limiter, live, path
    live.close()
    limiter.close()


def test_starts_with_the_file_and_applies_an_edit_in_place(live: Live) -> None:
    limiter, rules, path = live
    assert fresh_admitted(limiter) == 2
    path.write_bytes(rules_yaml("4/minute"))
    assert rules.wait_for_version(version_of(rules_yaml("4/minute")), DEADLINE)
    assert fresh_admitted(limiter) == 4
    assert rules.reloads_ok == 1


def test_rename_over(live: Live) -> None:
    limiter, rules, path = live
    tmp = path.with_name(".ratelimits.yaml.swp")
    tmp.write_bytes(rules_yaml("3/minute"))
    os.replace(tmp, path)  # what vim, emacs and `publish` do
    assert rules.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
    assert fresh_admitted(limiter) == 3


def test_kubernetes_configmap_symlink_swap(tmp_path: Path, mode: str) -> None:
    # The kubelet's layout: name -> ..data/name, ..data -> ..<timestamp>/; an update
    # writes a new timestamped directory and renames a new ..data link over the old.
    mount = tmp_path / "config"
    first = mount / "..2024_01_01"
    first.mkdir(parents=True)
    (first / "ratelimits.yaml").write_bytes(rules_yaml("2/minute"))
    (mount / "..data").symlink_to(first.name)
    (mount / "ratelimits.yaml").symlink_to("..data/ratelimits.yaml")
    options = {"mode": mode, "poll_interval_seconds": 0.05 if mode == "poll" else 1.0}
    limiter, live = live_limiter(mount / "ratelimits.yaml", source_options=options)
    with live, limiter:
        second = mount / "..2024_01_02"
        second.mkdir()
        (second / "ratelimits.yaml").write_bytes(rules_yaml("5/minute"))
        (mount / "..data_tmp").symlink_to(second.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        assert live.wait_for_version(version_of(rules_yaml("5/minute")), DEADLINE)
        assert fresh_admitted(limiter) == 5


def test_truncated_write_keeps_the_old_rules_then_a_valid_write_applies(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    limiter, rules, path = live
    caplog.set_level(logging.ERROR, logger="ratemw.config")
    full = rules_yaml("4/minute")
    path.write_bytes(full[: full.index(b"limit")])  # a writer cut off mid-file: no limit
    # (On a loaded machine the watcher may also catch the file empty, between the
    # truncation and the write: refused too.)
    assert rules.wait_for(lambda r: "needs exactly one of" in (r.last_error or ""), DEADLINE)
    assert rules.version == version_of(rules_yaml("2/minute"))
    assert fresh_admitted(limiter) == 2  # the old rules, still enforced
    assert any(f"{path}:" in r.getMessage() for r in caplog.records), caplog.text
    path.write_bytes(full)
    assert rules.wait_for_version(version_of(full), DEADLINE)
    assert fresh_admitted(limiter) == 4
    assert rules.last_error is None


def test_invalid_write_is_logged_with_file_line_and_reason(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    limiter, rules, path = live
    caplog.set_level(logging.ERROR, logger="ratemw.config")
    before = LOADS.counts()["error"]
    path.write_bytes(rules_yaml("0/minute"))
    assert rules.wait_for(lambda r: "rate of zero" in (r.last_error or ""), DEADLINE)
    assert LOADS.counts()["error"] >= before + 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"ratemw: {path}:5:") and "rate of zero" in m for m in messages)
    assert any("the last good rules stay live" in m for m in messages)
    assert fresh_admitted(limiter) == 2


def test_syntax_error_and_deleted_file_keep_the_rules(live: Live) -> None:
    limiter, rules, path = live
    path.write_bytes(b"version: 1\nrules: [\n")
    assert rules.wait_for(lambda r: r.reloads_failed >= 1, DEADLINE)
    path.unlink()
    path.write_bytes(rules_yaml("7/minute"))  # deleted, then written again
    assert rules.wait_for_version(version_of(rules_yaml("7/minute")), DEADLINE)
    assert fresh_admitted(limiter, 8) == 7


def test_missing_or_invalid_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing file"):
        live_limiter(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(rules_yaml("0/minute"))
    with pytest.raises(ConfigError, match=r"bad.yaml:5:"):
        live_limiter(bad)


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.toml"
    toml = 'version = 1\n[[rules]]\nname = "api"\nmatch = {path = "/api"}\nlimit = "%s"\n'
    path.write_text(toml % "2/minute")
    limiter, live = live_limiter(path)
    with live, limiter:
        path.write_text(toml % "3/minute")
        new = version_of((toml % "3/minute").encode(), "x.toml")
        assert live.wait_for_version(new, DEADLINE)
        assert fresh_admitted(limiter) == 3


def test_watch_false_reads_once(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("2/minute"))
    limiter, live = live_limiter(path, watch=False)
    assert not live.running
    assert fresh_admitted(limiter) == 2
    live.close()


def test_transform_applies_to_every_version(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("2/minute"))
    extra = [{"name": "extra", "match": {"path": "/extra"}, "limit": "1/minute"}]
    limiter, live = live_limiter(path)
    with live, limiter:
        live.set_transform(lambda rs: merge_rules(rs, extra))
        assert {r.name for r in limiter.snapshot.ruleset.rules} == {"api", "extra"}
        replace(path, rules_yaml("3/minute"))
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
        assert {r.name for r in limiter.snapshot.ruleset.rules} == {"api", "extra"}
        # A version that clashes with the transform is refused like an invalid file.
        replace(path, rules_yaml("3/minute", name="extra"))
        assert live.wait_for(lambda r: r.reloads_failed >= 1, DEADLINE)
        assert {r.name for r in limiter.snapshot.ruleset.rules} == {"api", "extra"}


def test_close_stops_the_thread_and_an_abandoned_holder_stops_itself(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml())
    limiter, live = live_limiter(path)
    thread = live._thread
    assert thread is not None and thread.is_alive()
    live.close()
    assert not thread.is_alive()
    live.close()  # idempotent

    limiter, live = live_limiter(path)
    thread = live._thread
    assert thread is not None
    del live
    gc.collect()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    limiter.close()


def test_offer_directly_with_a_source_that_is_not_watched(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml())
    limiter = Limiter(path)
    source = FileSource(path)
    live = LiveRules(limiter, source, start=False)
    path.write_bytes(rules_yaml("9/minute"))
    doc = source.read()
    assert doc is not None and live.offer(doc)
    assert live.offer(doc)  # the same version again: nothing to do
    assert live.reloads_ok == 1
    limiter.close()


def test_async_limiter_swaps_on_its_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("2/minute"))

    async def main() -> None:
        limiter, live = live_async_limiter(path)
        assert isinstance(limiter, AsyncLimiter)
        seen: list[int | None] = []
        original = limiter.update_rules

        def spy(rules: Any) -> Any:
            seen.append(threading.get_ident())
            return original(rules)

        limiter.update_rules = spy  # type: ignore[method-assign]
        path.write_bytes(rules_yaml("3/minute"))
        assert await live.await_version(version_of(rules_yaml("3/minute")), DEADLINE)
        assert seen == [threading.get_ident()]  # applied on the loop's thread
        info = RequestInfo(path="/api", peer="192.0.2.200")
        assert [(await limiter.decide(info)).allowed for _ in range(4)].count(True) == 3
        live.close()
        await limiter.aclose()

    asyncio.run(main())


def test_flask_watches_its_rules_file_and_keeps_decorator_rules(tmp_path: Path) -> None:
    from flask import Flask

    from ratemw_flask import RateMW

    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("1/minute"))
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = str(path)
    ratemw = RateMW(app)

    @app.get("/api")
    def api() -> str:
        return "ok"

    @app.get("/decorated")
    @ratemw.limit("1/minute")
    def decorated() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/api").status_code for _ in range(3)] == [200, 429, 429]
    state = app.extensions["ratemw"]
    assert state.live is not None and state.live.running
    replace(path, rules_yaml("5/minute", path="/api2"))
    assert state.live.wait_for_version(version_of(rules_yaml("5/minute", path="/api2")), DEADLINE)
    assert {client.get("/api").status_code for _ in range(3)} == {200}  # no rule any more
    assert [client.get("/decorated").status_code for _ in range(2)] == [200, 429]
    state.live.close()
    state.limiter.close()
