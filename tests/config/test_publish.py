from __future__ import annotations

import io
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import redis

from ratemw import ConfigError
from ratemw.cli import main
from ratemw.config import load, publish
from ratemw.config.publish import redact
from ratemw.config.sources import SourceUnavailable
from ratemw.config.spec import source_for
from tests.config import rules_yaml
from tests.etcd_servers import EtcdServer


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_file_target_directory_gets_ratelimits_dot_ext(tmp_path: Path) -> None:
    version = publish(rules_yaml("3/minute"), "src.yaml", f"file://{tmp_path}")
    target = tmp_path / "ratelimits.yaml"
    assert target.read_bytes() == rules_yaml("3/minute")
    assert version == load(rules_yaml("3/minute"), "x.yaml", quiet=True).version
    assert stat.S_IMODE(target.stat().st_mode) & 0o044  # readable by the workers
    publish(b'{"version": 1}', "src.json", f"file://{tmp_path}")
    assert (tmp_path / "ratelimits.json").read_bytes() == b'{"version": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratelimits.json", "ratelimits.yaml"]


def test_file_target_named_file_is_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "limits.yaml"
    target.write_bytes(rules_yaml("1/minute"))
    os.chmod(target, 0o640)
    inode = target.stat().st_ino
    publish(rules_yaml("2/minute"), "new.yaml", f"file://{target}")
    assert target.read_bytes() == rules_yaml("2/minute")
    assert target.stat().st_ino != inode  # a new file renamed over the old
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    with pytest.raises(ConfigError, match=r"cannot go to a \.yaml file"):
        publish(b'{"version": 1}', "new.json", f"file://{target}")


def test_invalid_document_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        publish(rules_yaml("0/minute"), "bad.yaml", f"file://{tmp_path}")
    assert caught.value.errors[0].line == 5
    assert list(tmp_path.iterdir()) == []


def test_unknown_target() -> None:
    with pytest.raises(ValueError, match="file://, consul://, etcd:// or redis://"):
        publish(rules_yaml(), "x.yaml", "s3://bucket/key")


def test_redact() -> None:
    assert redact("consul://h:8500/k?token=abc&dc=x") == "consul://h:8500/k?token=***&dc=x"
    assert redact("redis://:pw@h:6379/0?key=k") == "redis://:***@h:6379/0?key=k"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "target",
    [
        "redis://:Secret-pw-1@127.0.0.1:{port}/0?key=ratemw:rules",
        "redis://user:Secret-pw-1@127.0.0.1:{port}/0?key=k&password=Secret-pw-1",
        "consul://127.0.0.1:{port}/ratemw/rules?token=Secret-pw-1",
        "redis://:Secret-pw-1@127.0.0.1:{port}/0",  # no ?key=: refused before connecting
        "consul://127.0.0.1:{port}/?token=Secret-pw-1",  # no key
        "etcd://app:Secret-pw-1@127.0.0.1:{port}/ratemw/rules",
        "etcds://127.0.0.1:{port}/ratemw/rules?token=Secret-pw-1&insecure=1",
        "etcd://app:Secret-pw-1@127.0.0.1:{port}/",  # no key
    ],
)
def test_failures_never_name_a_credential(target: str) -> None:
    url = target.format(port=_closed_port())
    with pytest.raises((SourceUnavailable, ValueError)) as caught:
        publish(rules_yaml(), "x.yaml", url, timeout_seconds=2.0)
    assert "Secret-pw-1" not in str(caught.value)
    with pytest.raises((SourceUnavailable, ValueError)) as caught:
        source = source_for(url)
        try:
            source.read()
        finally:
            source.close()
    assert "Secret-pw-1" not in str(caught.value)


@pytest.mark.redis
def test_redis_target_sets_the_key_and_publishes_the_version(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ratemw:rules:changed")
    version = publish(rules_yaml(), "x.yaml", f"{redis_url}/0?key=ratemw:rules")
    assert client.get("ratemw:rules") == rules_yaml()
    deadline = time.monotonic() + 10
    message = None
    while message is None and time.monotonic() < deadline:  # the first answer: subscribed
        message = pubsub.get_message(timeout=1)
    assert message is not None and message["data"] == version.encode()
    pubsub.close()
    client.close()


def test_cli_publish_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(rules_yaml("0/minute"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out = run("publish", str(bad), "--to", f"file://{out_dir}")
    assert code == 1
    assert f"{bad}:5:" in out and "refused" in out
    assert list(out_dir.iterdir()) == []


def test_cli_publish_to_several_targets(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(rules_yaml())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    code, out = run("publish", str(good), "--to", f"file://{a}", "--to", f"file://{b}")
    assert code == 0, out
    assert out.count("published ") == 2
    assert (a / "ratelimits.yaml").exists() and (b / "ratelimits.yaml").exists()
    code, out = run("publish", str(good), "--to", "ftp://nowhere")
    assert code == 1 and "failed: ftp://nowhere" in out
    code, out = run("publish", str(tmp_path / "missing.yaml"), "--to", f"file://{a}")
    assert code == 1 and "cannot read file" in out


@pytest.mark.etcd
def test_etcd_target_through_the_cli_and_the_function(tmp_path: Path, etcd: EtcdServer) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(rules_yaml("5/minute"))
    target = f"{etcd.url}/ratemw/rules"
    code, out = run("publish", str(good), "--to", target)
    assert code == 0, out
    version = load(rules_yaml("5/minute"), "x.yaml", quiet=True).version
    assert out.strip() == f"published {str(version)[:12]} to {target}"
    assert etcd.get("ratemw/rules") == rules_yaml("5/minute")
    toml = b'version = 1\n[[rules]]\nname = "api"\nmatch = {path = "/api"}\nlimit = "9/minute"\n'
    version = publish(toml, "new.toml", target)  # stored as JSON, which any reader sniffs
    stored = etcd.get("ratemw/rules")
    assert stored is not None and stored.startswith(b"{")
    assert load(stored, "stored", quiet=True).version == version
    with pytest.raises(ConfigError):
        publish(rules_yaml("0/minute"), "bad.yaml", target)
    assert etcd.get("ratemw/rules") == stored  # nothing written
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(rules_yaml("0/minute"))
    code, out = run("publish", str(bad), "--to", target)
    assert code == 1 and "refused" in out and etcd.get("ratemw/rules") == stored


def test_control_names_etcd_among_publish_targets() -> None:
    code, out = run("control", "--publish", "s3://bucket/key?token=Secret-pw-1")
    assert code == 2 and "etcd://" in out and "Secret-pw-1" not in out
