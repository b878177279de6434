from __future__ import annotations

import datetime
import ipaddress
import itertools
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratemw import ConfigError, Limiter
from ratemw.config import ConsulSource, LiveRules, live_limiter, load, publish, source_for
from tests.config import DEADLINE, admitted, rules_yaml
from tests.config.consul_server import ConsulServer, parse_go_duration

KEY = "ratemw/rules"
_peers = (f"198.51.100.{n}" for n in itertools.count(1))


def version_of(document: bytes) -> str:
    version = load(document, "doc", quiet=True).version
    assert version is not None
    return version


@pytest.fixture
def consul() -> Iterator[ConsulServer]:
    with ConsulServer() as server:
        server.put(KEY, rules_yaml("2/minute"))
        yield server


def start(url: str, **source_options: object) -> tuple[Limiter, LiveRules]:
    options = {"wait_seconds": 5.0, "backoff_seconds": 0.05, **source_options}
    return live_limiter(url, source_options=options)


def test_go_durations_of_the_double() -> None:
    assert parse_go_duration("30s") == 30 and parse_go_duration("1m30s") == 90
    assert parse_go_duration("250ms") == 0.25


def test_url_forms() -> None:
    source = source_for("consul://127.0.0.1:8501/a/b?token=t&wait=2s&dc=eu&format=json")
    assert isinstance(source, ConsulSource)
    assert source.origin == "consul://127.0.0.1:8501/a/b"
    assert (source.key, source.wait_seconds, source.fmt) == ("a/b", 2.0, "json")
    assert source._client.headers["X-Consul-Token"] == "t"
    source.close()
    tls = source_for("consuls://consul.internal/ratemw/rules.yaml?insecure=1")
    assert isinstance(tls, ConsulSource)
    assert str(tls._client.base_url) == "https://consul.internal:8500"
    assert tls.fmt == "yaml"
    tls.close()
    with pytest.raises(ValueError, match="names no key"):
        source_for("consul://127.0.0.1:8500/")


def test_initial_read_and_a_change_through_a_blocking_query(consul: ConsulServer) -> None:
    limiter, live = start(f"consul://{consul.address}/{KEY}")
    with live, limiter:
        assert admitted(limiter, 5, peer=next(_peers)) == 2
        # The watcher now holds a blocking query on the key's index, with a wait.
        index = consul.index
        assert consul.wait_for(lambda c: c.blocked >= 1, DEADLINE)
        blocking = [r for r in consul.requests if r.query.get("index")]
        assert blocking and blocking[-1].query == {"index": str(index), "wait": "5s"}
        consul.put(KEY, rules_yaml("4/minute"))
        assert live.wait_for_version(version_of(rules_yaml("4/minute")), DEADLINE)
        assert admitted(limiter, 5, peer=next(_peers)) == 4
        # No busy loop: one request per change, plus the one blocked again.
        assert consul.wait_for(lambda c: c.blocked >= 1, DEADLINE)
        assert len(consul.requests) <= 5


def test_missing_key_fails_at_start_deleted_key_keeps_rules(consul: ConsulServer) -> None:
    with pytest.raises(ConfigError, match="missing file or key"):
        start(f"consul://{consul.address}/ratemw/nothing")
    limiter, live = start(f"consul://{consul.address}/{KEY}")
    with live, limiter:
        consul.delete(KEY)
        assert consul.wait_for(
            lambda c: any(r.status == 404 for r in c.requests) and c.blocked >= 1, DEADLINE
        )
        assert admitted(limiter, 5, peer=next(_peers)) == 2  # still in force
        consul.put(KEY, rules_yaml("3/minute"))
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)


def test_5xx_backs_off_then_recovers(consul: ConsulServer) -> None:
    limiter, live = start(f"consul://{consul.address}/{KEY}")
    with live, limiter:
        assert consul.wait_for(lambda c: c.blocked >= 1, DEADLINE)
        consul.fail_with(500)  # the blocked query answers 500 too
        consul.put(KEY, rules_yaml("3/minute"))
        assert consul.wait_for(lambda c: sum(r.status == 500 for r in c.requests) >= 3, DEADLINE)
        assert live.version == version_of(rules_yaml("2/minute"))
        first = next(r.at for r in consul.requests if r.status == 500)
        consul.fail_with(None)
        assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
        failures = [r for r in consul.requests if r.status == 500]
        # Backing off (50 ms doubling, jittered): a few retries, not a hot loop.
        span = failures[-1].at - first
        assert len(failures) <= 4 + span / 0.025, (len(failures), span)
        assert live.reloads_failed == 0


def test_index_going_backwards_resets_to_zero(consul: ConsulServer) -> None:
    # A long wait: a client that did not reset would sit out the whole wait.
    for n in range(10):  # a history: the key's index is well above 1
        consul.put(KEY, rules_yaml(f"{n + 10}/minute"))
    consul.put(KEY, rules_yaml("2/minute"))
    limiter, live = start(f"consul://{consul.address}/{KEY}", wait_seconds=60.0)
    with live, limiter:
        assert consul.wait_for(lambda c: c.blocked >= 1, DEADLINE)
        high = consul.index
        consul.reset_index(to=1)  # a snapshot restore: indexes go back
        consul.put(KEY, rules_yaml("6/minute"))  # index 2 < high
        assert consul.index < high
        assert live.wait_for_version(version_of(rules_yaml("6/minute")), DEADLINE)
        after = [r for r in consul.requests if r.at >= consul.requests[0].at]
        assert any("index" not in r.query for r in after[1:]), "no reset to index 0"


def test_invalid_value_is_refused_and_the_old_rules_stay(consul: ConsulServer) -> None:
    limiter, live = start(f"consul://{consul.address}/{KEY}")
    with live, limiter:
        consul.put(KEY, rules_yaml("0/minute"))
        assert live.wait_for(lambda r: r.reloads_failed == 1, DEADLINE)
        assert f"consul://{consul.address}/{KEY}:5:" in (live.last_error or "")
        assert admitted(limiter, 5, peer=next(_peers)) == 2
        consul.put(KEY, b'{"version": 1, "rules": []}')  # JSON, recognised by its brace
        assert live.wait_for_version(version_of(b'{"version": 1, "rules": []}'), DEADLINE)


def test_acl_token_from_url_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with ConsulServer(token="s3cret") as consul:
        consul.put(KEY, rules_yaml("2/minute"))
        with pytest.raises(ConfigError, match="HTTP 403"):
            start(f"consul://{consul.address}/{KEY}")
        limiter, live = start(f"consul://{consul.address}/{KEY}?token=s3cret")
        with live, limiter:
            consul.put(KEY, rules_yaml("3/minute"))
            assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", "s3cret")
        limiter, live = start(f"consul://{consul.address}/{KEY}")
        live.close()
        limiter.close()
        assert all(r.token == "s3cret" for r in consul.requests if r.status != 403)


def test_publish_puts_the_key_and_toml_is_stored_as_json(consul: ConsulServer) -> None:
    limiter, live = start(f"consul://{consul.address}/{KEY}")
    with live, limiter:
        version = publish(rules_yaml("8/minute"), "new.yaml", f"consul://{consul.address}/{KEY}")
        assert consul.get(KEY) == rules_yaml("8/minute")
        assert live.wait_for_version(version, DEADLINE)
        toml = b'version = 1\n[[rules]]\nname = "api"\nmatch = {path = "/api"}\n'
        toml += b'limit = "9/minute"\n'
        version = publish(toml, "new.toml", f"consul://{consul.address}/{KEY}")
        stored = consul.get(KEY)
        assert stored is not None and stored.startswith(b"{")
        assert live.wait_for_version(version, DEADLINE)
        assert admitted(limiter, 10, peer=next(_peers)) == 9
        with pytest.raises(ConfigError):
            publish(rules_yaml("0/minute"), "bad.yaml", f"consul://{consul.address}/{KEY}")
        assert consul.get(KEY) == stored  # nothing written


def _tls_files(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_with_a_ca_bundle(tmp_path: Path) -> None:
    cert, key = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with ConsulServer(tls=context) as consul:
        consul.put(KEY, rules_yaml("2/minute"))
        with pytest.raises(ConfigError, match="cannot read"):  # unknown CA
            start(f"consuls://{consul.address}/{KEY}")
        limiter, live = start(f"consuls://{consul.address}/{KEY}?ca={cert}")
        with live, limiter:
            consul.put(KEY, rules_yaml("3/minute"))
            assert live.wait_for_version(version_of(rules_yaml("3/minute")), DEADLINE)
