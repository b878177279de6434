"""No credential of a publish target, the operations Redis or a rules source leaves the
control service: not in a response (any endpoint, any role), the audit log, the database
(the SQLite file, or every PostgreSQL row), the service's own output, nor the CLI's.

The service runs as a real ``ratemw control`` process. Its Redis target is a real
``redis-server`` that demands the password; its Consul target is a port where nothing
listens, so that every rollout fails there after the Redis target was written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratemw.cli import main
from ratemw.redact import redact, scrub, secrets_of
from ratemw.store.server import RedisServer
from tests.control import ALICE, BOB, CAROL, RULES_V1, RULES_V2, VICTOR, database_text
from tests.control.serving import ControlProcess
from tests.processes import free_port

PASSWORD = "Pw-9f3kq81zz"
TOKEN = "Tk-c0n5u1-7q2x"
SECRETS = (PASSWORD, TOKEN)
GETS = (
    "/v1/status", "/v1/deployments", "/v1/versions", "/v1/versions/1", "/v1/versions/2",
    "/v1/audit?limit=1000", "/v1/audit/verify", "/v1/diff?from=1&to=2", "/v1/whoami",
    "/v1/brownout", "/v1/bans", "/v1/top", "/openapi.json", "/healthz",
)  # fmt: skip


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:2000]}"


@pytest.fixture
def guarded_redis(redis_fault_server: RedisServer) -> Iterator[str]:
    """A redis-server of this test's own that demands PASSWORD; its URL with it."""
    with redis_fault_server.client() as client:
        client.config_set("requirepass", PASSWORD)
    yield f"redis://:{PASSWORD}@127.0.0.1:{redis_fault_server.port}/0"


def read_everything(control: ControlProcess) -> None:
    for token in (VICTOR, ALICE, BOB, CAROL, None):
        for path in GETS:
            control.call("GET", path, token)


def test_credentials_never_leave_the_control_service(
    tmp_path: Path, guarded_redis: str, db_url: str, dialect: str
) -> None:
    redis_target = f"{guarded_redis}?key=ratemw:rules"
    consul_target = f"consul://127.0.0.1:{free_port()}/ratemw/rules?token={TOKEN}"
    ops = ("--ops-redis", guarded_redis)
    # PostgreSQL trusts loopback, so the password is never asked for: it must not show.
    db = db_url.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)
    assert dialect == "sqlite" or PASSWORD in db

    # 1: the Redis target is written, the Consul target fails: 502, audited as failed.
    first = ControlProcess(tmp_path, db, "--publish", redis_target, "--publish", consul_target,
                           *ops)  # fmt: skip
    try:
        for document in (RULES_V1, RULES_V2):
            r = first.call("POST", "/v1/versions", ALICE, json={"document": document.decode()})
            assert r.status_code == 201, r.text
        assert first.call("POST", "/v1/versions/1/approvals", BOB).status_code == 200
        assert first.call("POST", "/v1/versions/2/approvals", BOB).status_code == 200
        failed = first.call("POST", "/v1/versions/1/rollout", CAROL, json={"stage": "enforce"})
        assert failed.status_code == 502, failed.text
        body = failed.json()
        assert body["target"] == redact(consul_target) and "?token=***" in body["target"]
        assert list(body["published"]) == [redact(redis_target)]
        r = first.call("PUT", "/v1/brownout", CAROL, json={"factor": 0.5, "seconds": 60})
        assert r.status_code == 200, r.text
        status = first.call("GET", "/v1/status", VICTOR).json()
        assert status["targets"] == [redact(redis_target), redact(consul_target)]
        assert status["targets"][0].startswith("redis://:***@127.0.0.1:")
        read_everything(first)
    finally:
        first_log = first.close()

    # 2: the same database, the Redis target alone: the rollout goes through.
    second = ControlProcess(tmp_path, db, "--publish", redis_target, *ops)
    try:
        r = second.call("POST", "/v1/versions/1/rollout", CAROL, json={"stage": "enforce"})
        assert r.status_code == 200, r.text
        assert list(r.json()["deployment"]["published"]) == [redact(redis_target)]
        r = second.call("POST", "/v1/versions/2/rollout", CAROL, json={"stage": "shadow"})
        assert r.status_code == 200, r.text
        read_everything(second)
        entries = second.call("GET", "/v1/audit?limit=1000", VICTOR).json()["entries"]
        assert {"failed", "ok"} <= {e["outcome"] for e in entries}
        assert second.call("GET", "/v1/audit/verify", VICTOR).json()["ok"] is True
    finally:
        second_log = second.close()

    assert "publishing to" in "\n".join(first.seen)  # the 502 named the target...
    assert_clean("\n".join(first.seen + second.seen), "a response")  # ...masked
    assert "ratemw control on http://" in first_log
    assert "redis://:***@127.0.0.1:" in first_log and "?token=***" in first_log
    assert_clean(first_log + second_log, "the service's output")
    assert_clean(database_text(db_url), "the database")


def test_cli_output_masks_credentials(tmp_path: Path, guarded_redis: str) -> None:
    rules = tmp_path / "ratelimits.yaml"
    rules.write_bytes(RULES_V1)
    closed = free_port()
    code, text = run(
        "publish", str(rules), "--to", f"{guarded_redis}?key=ratemw:rules",
        "--to", f"consul://127.0.0.1:{closed}/ratemw/rules?token={TOKEN}",
        "--to", f"redis://:{PASSWORD}@127.0.0.1:{closed}/0?key=k",
    )  # fmt: skip
    assert code == 1 and text.count("published ") == 1 and text.count("failed: ") == 2, text
    assert_clean(text, "ratemw publish")
    outputs = [
        run("diff", f"redis://:{PASSWORD}@127.0.0.1:{closed}/0", str(rules))[1],  # no ?key=
        run("diff", f"consul://u:{PASSWORD}@127.0.0.1:{closed}/?token={TOKEN}", str(rules))[1],
        run("diff", f"{guarded_redis}?key=absent", str(rules))[1],
        run("control", "--publish", f"ftp://u:{PASSWORD}@h/x?token={TOKEN}")[1],
        run("control", "--db", f"mysql://u:{PASSWORD}@h/db")[1],
        run("control", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--ops-redis",
            f"redis+sentinel://:{PASSWORD}@127.0.0.1:{closed}")[1],
        run("audit", "verify", "--db", f"postgresql://u:{PASSWORD}@127.0.0.1:{closed}/db")[1],
    ]  # fmt: skip
    for output in outputs:
        assert output.strip(), outputs
        assert_clean(output, "the CLI")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0?key=k", "redis://:***@h:6379/0?key=k"),
        ("redis://user:pw@h/0", "redis://user:***@h/0"),
        ("rediss://tokenonly@h/0", "rediss://***@h/0"),
        ("consul://h:8500/k?token=abc&dc=x", "consul://h:8500/k?token=***&dc=x"),
        ("redis://h/0?key=k&password=pw&ACCESS_TOKEN=t", "redis://h/0?key=k&password=***&ACCESS_TOKEN=***"),
        ("postgresql://u:p%40ss@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("file:///etc/ratemw", "file:///etc/ratemw"),
        ("sqlite:///ratemw-control.db", "sqlite:///ratemw-control.db"),
        ("http://[::1:bad/x?token=t", "***"),
    ],
)  # fmt: skip
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown or shown == "***"


def test_scrub_masks_the_secrets_of_urls_in_any_text() -> None:
    url = "redis://:p%40ss-word@h/0?token=tok-123"
    assert secrets_of(url) >= {"p%40ss-word", "p@ss-word", "tok-123"}
    text = f"failed at {url}: AUTH p@ss-word refused; token tok-123"
    assert scrub(text, [url]) == (
        "failed at redis://:***@h/0?token=***: AUTH *** refused; token ***"
    )
    assert "withheld" in scrub("AUTH ab refused", ["redis://:ab@h/0"])
    assert scrub("nothing here", ["redis://h/0"]) == "nothing here"
