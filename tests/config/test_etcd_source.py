"""``etcd://`` rules against a real etcd (tests/etcd_servers.py): read, watch, restart,
compaction, auth, TLS, bounds, and a publication reaching four worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_module
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from ratemw import ConfigError, Limiter
from ratemw.config import LiveRules, live_limiter, load, publish, source_for
from ratemw.config.base import SourceDocument
from ratemw.config.sources import EtcdSource
from ratemw.config.spec import is_url
from tests.config import DEADLINE, admitted, rules_yaml
from tests.etcd_servers import EtcdServer, make_tls

pytestmark = pytest.mark.etcd

KEY = "ratemw/rules"
SECRET = "Secret-pw-1"
SPAWN = multiprocessing.get_context("spawn")
WORKERS = 4


def version_of(document: bytes) -> str:
    version = load(document, "doc", quiet=True).version
    assert version is not None
    return version


def start(url: str, **source_options: object) -> tuple[Limiter, LiveRules]:
    return live_limiter(url, source_options={"backoff_seconds": 0.05, **source_options})


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_url_forms() -> None:
    source = source_for("etcd://127.0.0.1:2399/ratemw/rules?format=json&check_interval=2s")
    assert isinstance(source, EtcdSource)
    assert (source.origin, source.key) == ("etcd://127.0.0.1:2399/ratemw/rules", b"ratemw/rules")
    assert (source.fmt, source.check_interval_seconds) == ("json", 2.0)
    source.close()
    rooted = EtcdSource.from_url("etcds://etcd.internal//ratemw/rules.yaml?insecure=1")
    assert rooted.key == b"/ratemw/rules.yaml" and rooted.fmt == "yaml"
    assert str(rooted._client.base_url) == "https://etcd.internal:2379"
    rooted.close()
    raw = EtcdSource.from_url(f"etcd://app:{SECRET}@[::1]/a%00%FFb")
    assert raw.key == b"a\x00\xffb" and raw.origin == "etcd://[::1]:2379/a%00%FFb"
    assert (raw._user, raw._password) == ("app", SECRET)
    raw.close()
    tokened = EtcdSource.from_url(f"etcd://h/k?token={SECRET}")
    assert tokened._auth() == {"Authorization": SECRET}
    tokened.close()
    assert is_url("etcd://h/k") and is_url("ETCDS://h/k")
    for bad, reason in [
        ("etcd://h/", "names the key"),
        ("etcd://h/k?tokn=x", "unknown option"),
        (f"etcd://{SECRET}@h/k", "user:password@"),
        (f"etcd://h/k?token={SECRET}%0A", "printable ASCII"),
        (f"etcd://h/k?token={SECRET}&check_interval=0s", "check_interval"),
    ]:
        with pytest.raises(ValueError, match=reason) as caught:
            source_for(bad)
        assert SECRET not in str(caught.value)


def test_read_then_watch_a_real_etcd(etcd: EtcdServer, caplog: pytest.LogCaptureFixture) -> None:
    etcd.put(KEY, rules_yaml("2/minute"))
    with pytest.raises(ConfigError, match="missing file or key"):
        start(f"{etcd.url}/ratemw/nothing")
    limiter, live = start(f"{etcd.url}/{KEY}")
    with live, limiter:
        assert admitted(limiter, 5, peer="198.51.100.1") == 2
        etcd.put(KEY, rules_yaml("4/minute"))
        assert live.wait_for_version(version_of(rules_yaml("4/minute")), DEADLINE)
        assert admitted(limiter, 5, peer="198.51.100.2") == 4
        etcd.delete(KEY)
        wait_until(lambda: "no such key" in caplog.text, "the deletion to be seen")
        assert admitted(limiter, 5, peer="198.51.100.3") == 4  # still in force
        etcd.put(KEY, rules_yaml("3/minute"))
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
        assert live.reloads_failed == 0


def test_any_bytes_as_the_key(etcd: EtcdServer) -> None:
    url = f"{etcd.url}//ratemw/%00%FF%20rules"
    version = publish(rules_yaml("6/minute"), "new.yaml", url)
    assert etcd.get(b"/ratemw/\x00\xff rules") == rules_yaml("6/minute")
    limiter, live = start(url)
    with live, limiter:
        assert live.version == version
        etcd.put(b"/ratemw/\x00\xff rules", rules_yaml("7/minute"))
        assert live.wait_for_version(version_of(rules_yaml("7/minute")), DEADLINE)


def test_a_bad_document_keeps_the_last_good(etcd: EtcdServer) -> None:
    etcd.put(KEY, rules_yaml("2/minute"))
    limiter, live = start(f"{etcd.url}/{KEY}")
    with live, limiter:
        etcd.put(KEY, rules_yaml("0/minute"))
        assert live.wait_for(lambda r: r.reloads_failed == 1, DEADLINE)
        assert f"{etcd.url}/{KEY}:5:" in (live.last_error or "")
        assert admitted(limiter, 5, peer="198.51.100.4") == 2
        good = b'{"version": 1, "rules": []}'  # JSON, recognised by its brace
        etcd.put(KEY, good)
        assert live.wait_for_version(version_of(good), DEADLINE)


def test_a_value_past_the_size_bound_is_read_cut_and_refused(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATEMW_RULES_MAX_BYTES", "2000")
    huge = rules_yaml("2/minute") + b"# " + b"x" * 200_000 + b"\n"
    etcd.put(KEY, huge)
    source = EtcdSource.from_url(f"{etcd.url}/{KEY}")
    doc = source.read()
    source.close()
    assert doc is not None and len(doc.data) == 2001 and huge.startswith(doc.data)
    etcd.put(KEY, rules_yaml("2/minute"))
    limiter, live = start(f"{etcd.url}/{KEY}")
    with live, limiter:
        etcd.put(KEY, huge)  # the watch message is cut short: the source reads again
        assert live.wait_for(lambda r: r.reloads_failed == 1, DEADLINE)
        assert "too large" in (live.last_error or "")
        etcd.put(KEY, rules_yaml("3/minute"))
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)


def test_the_watch_resumes_after_an_etcd_crash_and_restart(
    etcd_fault_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = etcd_fault_server
    server.put(KEY, rules_yaml("2/minute"))
    limiter, live = start(f"{server.url}/{KEY}")
    with live, limiter:
        server.put(KEY, rules_yaml("3/minute"))  # proves the watch is set
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
        server.kill()
        down = time.monotonic()
        wait_until(lambda: "retrying in" in caplog.text, "the loss to be noticed")
        assert admitted(limiter, 5, peer="198.51.100.5") == 3  # rules stay in force
        server.start()
        span = time.monotonic() - down
        retries = caplog.text.count("retrying in")
        # Backing off (50 ms doubling, jittered), not a hot loop.
        assert retries <= 4 + span / 0.025, (retries, span)
        server.put(KEY, rules_yaml("5/minute"))  # a change made after the restart
        assert live.wait_for_version(version_of(rules_yaml("5/minute")), DEADLINE)
        assert live.reloads_failed == 0


def test_an_adapter_takes_an_etcd_url_as_its_rules(etcd: EtcdServer) -> None:
    from flask import Flask

    from ratemw_flask import RateMW

    etcd.put(KEY, rules_yaml("2/minute"))
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = f"{etcd.url}/{KEY}"
    RateMW(app)

    @app.get("/api")
    def api() -> str:
        return "ok"

    client = app.test_client()
    state = app.extensions["ratemw"]
    assert state.live is not None
    with state.live, state.limiter:
        peer = {"REMOTE_ADDR": "198.51.100.20"}
        statuses = [client.get("/api", environ_base=peer).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        etcd.put(KEY, rules_yaml("5/minute"))
        assert state.live.wait_for_version(version_of(rules_yaml("5/minute")), DEADLINE)
        peer = {"REMOTE_ADDR": "198.51.100.21"}
        statuses = [client.get("/api", environ_base=peer).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]


class PausedBeforeWatch(EtcdSource):
    """The real source, held between its first read and its first watch.

    A watch etcd has already synced is never cancelled by a compaction; the revision a
    watch starts from can only be compacted away between the read and the watch (or
    while the source reconnects). Holding the source there makes that window certain.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0
        self.paused = threading.Event()
        self.release = threading.Event()

    def _range(self) -> tuple[int, SourceDocument | None]:
        self.reads += 1
        return super()._range()

    def _follow(self, start: int) -> Generator[Any, None, None]:
        if not self.paused.is_set():
            self.paused.set()
            self.release.wait(DEADLINE)
        return super()._follow(start)


def test_compaction_past_the_watched_revision_reads_again(
    etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratemw.config")
    etcd.put(KEY, rules_yaml("2/minute"))
    source = PausedBeforeWatch(f"127.0.0.1:{etcd.port}", KEY, backoff_seconds=0.05)
    limiter, live = live_limiter(source)
    with live, limiter:
        assert source.paused.wait(DEADLINE)
        reads = source.reads  # the start's read, then the watch's
        for n in (11, 12, 13):
            etcd.put(KEY, rules_yaml(f"{n}/minute"))
        etcd.compact()
        source.release.set()
        assert live.wait_for_version(version_of(rules_yaml("13/minute")), DEADLINE)
        assert "compacted; reading the key again" in caplog.text
        assert source.reads == reads + 1
        etcd.put(KEY, rules_yaml("14/minute"))  # and the new watch follows
        assert live.wait_for_version(version_of(rules_yaml("14/minute")), DEADLINE)


def test_user_and_password_or_token_on_an_etcd_with_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = EtcdServer(tmp_path, extra=("--auth-token-ttl", "1")).start()
    try:
        server.put(KEY, rules_yaml("2/minute"))
        server.enable_auth("Root-pw-9", "app", SECRET, "ratemw/")
        url = f"etcd://app:{SECRET}@127.0.0.1:{server.port}/{KEY}"
        with pytest.raises(ConfigError, match="user name is empty"):
            start(f"{server.url}/{KEY}")
        with pytest.raises(ConfigError, match="authentication failed") as caught:
            start(f"etcd://app:Wrong-pw-2@127.0.0.1:{server.port}/{KEY}")
        assert "Wrong-pw-2" not in str(caught.value)
        limiter, live = start(url)
        with live, limiter:
            version = publish(rules_yaml("3/minute"), "new.yaml", url)
            assert live.wait_for_version(version, DEADLINE)
            # Tokens idle out after a second here; the source authenticates again.
            stale = live.source._token  # type: ignore[attr-defined]
            wait_until(lambda: server.token_expired(stale), "the token to idle out")
            assert live.source.read() is not None
            assert live.source._token != stale  # type: ignore[attr-defined]
            version = publish(rules_yaml("4/minute"), "new.yaml", url)
            assert live.wait_for_version(version, DEADLINE)
        token = server.authenticate("app", SECRET)
        by_token = f"etcd://127.0.0.1:{server.port}/{KEY}?token={token}"
        limiter, live = start(by_token)
        live.close()
        limiter.close()
        assert live.version == version
        with pytest.raises(ConfigError, match="permission denied"):
            start(f"etcd://app:{SECRET}@127.0.0.1:{server.port}/elsewhere")
    finally:
        server.stop()
    assert SECRET not in caplog.text and "Root-pw-9" not in caplog.text
    assert token not in caplog.text and stale not in caplog.text


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    server = EtcdServer(tmp_path, tls=tls).start()
    try:
        server.put(KEY, rules_yaml("2/minute"))
        base = f"{server.url}/{KEY}"
        with pytest.raises(ConfigError, match="cannot read"):  # an unknown CA
            start(base)
        with pytest.raises(ConfigError, match="cannot read"):  # no client certificate
            start(f"{base}?ca={tls.ca}")
        url = f"{base}?ca={tls.ca}&cert={tls.client_cert}&cert_key={tls.client_key}"
        limiter, live = start(url)
        with live, limiter:
            version = publish(rules_yaml("3/minute"), "new.yaml", url)
            assert live.wait_for_version(version, DEADLINE)
    finally:
        server.stop()


# -- four worker processes ---------------------------------------------------------


def etcd_worker(index: int, url: str, reports: Any, stop: Any) -> None:
    try:
        limiter, live = live_limiter(url)
        seen = [live.version]
        reports.put(("ready", index, seen[0], time.time()))
        while not stop.is_set():
            if live.wait_for(lambda lv: lv.version != seen[0], 0.1):
                seen[0] = live.version
                reports.put(("version", index, seen[0], time.time()))
        reports.put(("done", index, live.reloads_failed, live.reloads_ok))
        live.close()
        limiter.close()
    except BaseException:  # the parent must hear about it rather than time out
        reports.put(("crash", index, traceback.format_exc(), 0.0))


def collect(reports: Any, kind: str, value: object) -> dict[int, tuple[Any, ...]]:
    """The ``kind`` report (with ``value``) of every worker, within a deadline."""
    deadline = time.monotonic() + 60.0  # spawning four interpreters on two cores
    found: dict[int, tuple[Any, ...]] = {}
    while len(found) < WORKERS:
        left = deadline - time.monotonic()
        assert left > 0, f"only {sorted(found)} reported {kind} {value!r}"
        try:
            report = reports.get(timeout=left)
        except queue_module.Empty:
            continue
        assert report[0] != "crash", f"worker {report[1]} crashed:\n{report[2]}"
        if report[0] == kind and (value is None or report[2] == value):
            found[report[1]] = report
    return found


def test_a_publication_reaches_four_watching_processes_within_two_seconds(
    etcd: EtcdServer, record_property: Any
) -> None:
    url = f"{etcd.url}/{KEY}"
    publish(rules_yaml("1000/minute"), "initial.yaml", url)
    reports, stop = SPAWN.Queue(), SPAWN.Event()
    procs = [SPAWN.Process(target=etcd_worker, args=(i, url, reports, stop)) for i in range(4)]
    for proc in procs:
        proc.start()
    try:
        collect(reports, "ready", None)
        # Every worker sees this one through its watch: all four are watching now.
        collect(reports, "version", publish(rules_yaml("900/minute"), "warm.yaml", url))
        latencies = []
        for per_minute in (500, 200, 60):
            published_at = time.time()
            version = publish(rules_yaml(f"{per_minute}/minute"), "new.yaml", url)
            seen = collect(reports, "version", version)
            latencies.append([seen[i][3] - published_at for i in range(WORKERS)])
        stop.set()
        done = collect(reports, "done", None)
    finally:
        stop.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    flat = [x for row in latencies for x in row]
    print(f"\netcd publication -> in force in {WORKERS} processes: median "
          f"{statistics.median(flat) * 1000:.1f} ms, max {max(flat) * 1000:.1f} ms")  # fmt: skip
    record_property("etcd_publication_latency_max_ms", round(max(flat) * 1000, 1))
    assert max(flat) < 2.0, latencies
    assert all(report[2] == 0 and report[3] == 4 for report in done.values()), done
