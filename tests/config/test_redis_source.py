from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis

from ratemw import ConfigError, Limiter
from ratemw.config import LiveRules, RedisSource, live_limiter, load, publish, source_for
from tests.config import DEADLINE, admitted, rules_yaml

pytestmark = pytest.mark.redis

KEY = "ratemw:rules"
_peers = (f"203.0.113.{n}" for n in itertools.count(1))


def version_of(document: bytes) -> str:
    version = load(document, "doc", quiet=True).version
    assert version is not None
    return version


def spec(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"key": KEY, **params}.items())
    return f"{url}/0?{query}"


def start(url: str, **params: str) -> tuple[Limiter, LiveRules]:
    client = redis.Redis.from_url(url)
    client.set(KEY, rules_yaml("2/minute"))
    client.close()
    return live_limiter(spec(url, **params))


def test_url_forms(redis_url: str) -> None:
    source = source_for(spec(redis_url, channel="rules-news", check_interval="250ms"))
    assert isinstance(source, RedisSource)
    assert (source.key, source.channel, source.check_interval_seconds) == (
        KEY,
        "rules-news",
        0.25,
    )
    assert source.origin == f"{redis_url}/0?key={KEY}"
    source.close()
    default = source_for(spec(redis_url))
    assert isinstance(default, RedisSource) and default.channel == f"{KEY}:changed"
    default.close()
    secret = source_for("redis://:hunter2@127.0.0.1:1/0?key=k")
    assert "hunter2" not in secret.origin
    secret.close()
    with pytest.raises(ValueError, match=r"\?key="):
        source_for(f"{redis_url}/0")


def test_missing_key_fails_at_start(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="missing file or key"):
        live_limiter(spec(redis_url))


def test_a_publication_reaches_the_limiter_through_pubsub(redis_url: str) -> None:
    # A check interval of an hour: only the message can bring the change in time.
    limiter, live = start(redis_url, check_interval="1h")
    with live, limiter:
        assert admitted(limiter, 5, peer=next(_peers)) == 2
        version = publish(rules_yaml("4/minute"), "new.yaml", spec(redis_url))
        assert live.wait_for_version(version, DEADLINE)
        assert admitted(limiter, 5, peer=next(_peers)) == 4


def test_a_missed_message_is_caught_up_by_the_version_check(redis_url: str) -> None:
    limiter, live = start(redis_url, check_interval="100ms")
    with live, limiter:
        client = redis.Redis.from_url(redis_url)
        client.set(KEY, rules_yaml("5/minute"))  # no PUBLISH: as if the message were lost
        client.close()
        assert live.wait_for_version(version_of(rules_yaml("5/minute")), DEADLINE)


def test_custom_channel(redis_url: str) -> None:
    limiter, live = start(redis_url, channel="news", check_interval="1h")
    with live, limiter:
        version = publish(rules_yaml("3/minute"), "x.yaml", spec(redis_url, channel="news"))
        assert live.wait_for_version(version, DEADLINE)


def test_raw_malformed_document_is_refused_and_the_old_rules_stay(redis_url: str) -> None:
    limiter, live = start(redis_url, check_interval="1h")
    with live, limiter:
        client = redis.Redis.from_url(redis_url)
        client.set(KEY, b"version: 1\nrules:\n  - name: api\n    limit: 1/minute\n")
        client.publish(f"{KEY}:changed", "whatever")
        assert live.wait_for(lambda r: r.reloads_failed == 1, DEADLINE)
        assert "missing required key 'match'" in (live.last_error or "")
        assert admitted(limiter, 5, peer=next(_peers)) == 2
        with pytest.raises(ConfigError):
            publish(b"version: 2\n", "bad.yaml", spec(redis_url))
        stored = client.get(KEY)
        assert isinstance(stored, bytes) and b"match" not in stored  # nothing written
        client.set(KEY, b"\xff\xfe not utf-8")
        client.publish(f"{KEY}:changed", "x")
        assert live.wait_for(lambda r: r.reloads_failed == 2, DEADLINE)
        version = publish(rules_yaml("3/minute"), "good.yaml", spec(redis_url))
        assert live.wait_for_version(version, DEADLINE)
        client.close()


def test_an_oversized_document_is_refused_unread_and_the_old_rules_stay(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATEMW_RULES_MAX_BYTES", "4096")
    limiter, live = start(redis_url, check_interval="1h")
    with live, limiter:
        client = redis.Redis.from_url(redis_url)
        huge = rules_yaml("3/minute") + b"\n#" + b"x" * 2_000_000
        client.set(KEY, huge)
        source = source_for(spec(redis_url))
        read = source.read()
        source.close()
        assert read is not None and len(read.data) == 4097  # never the 2 MB
        client.publish(f"{KEY}:changed", "x")
        assert live.wait_for(lambda r: r.reloads_failed == 1, DEADLINE)
        assert "too large" in (live.last_error or "")
        assert admitted(limiter, 5, peer=next(_peers)) == 2
        client.close()


def test_survives_a_redis_restart(redis_fault_server: Any) -> None:
    url = redis_fault_server.url
    limiter, live = start(url, check_interval="1h")
    with live, limiter:
        redis_fault_server.restart()  # empty: the key is gone, the subscription broken
        version = publish(rules_yaml("6/minute"), "after.yaml", spec(url))
        # The message may be sent before the watcher resubscribes; the read after
        # resubscribing catches it up.
        assert live.wait_for_version(version, DEADLINE)
        assert admitted(limiter, 8, peer=next(_peers)) == 6
