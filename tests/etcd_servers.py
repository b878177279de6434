"""Real etcd servers for the test run (a pytest plugin: ``pytest_plugins``).

``etcd`` is Debian's ``etcd-server`` (``/usr/bin/etcd``, else the one on PATH), started
on free loopback client and peer ports with its data in a temporary directory.
No fakes, nothing skipped: without the binary the fixtures fail with a clear message.
The helpers speak etcd's v3 JSON gateway (httpx); auth is set up with ``etcdctl``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import HOST, free_port, launch, stop

START_DEADLINE = 30.0
_ATTEMPTS = 3  # a free port can be taken between the probe and etcd's bind


def etcd_binary() -> str:
    found = "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else shutil.which("etcd")
    if not found:
        pytest.fail("no etcd binary: install Debian's etcd-server (.ci/run does)", pytrace=False)
    return found


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@dataclass(frozen=True)
class EtcdTls:
    """A CA, the server's certificate for 127.0.0.1, and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path) -> EtcdTls:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(name: str, issuer: Any, signer: Any, ca: bool, usage: Any) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            ip = x509.IPAddress(ipaddress.ip_address(HOST))
            builder = builder.add_extension(x509.SubjectAlternativeName([ip]), critical=False)
        return builder.sign(signer or key, hashes.SHA256()), key

    def write(stem: str, cert: Any, key: Any) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_cert, ca_key = issue("ratemw test CA", None, None, True, [])
    # etcd's gateway dials its own gRPC server with the server certificate: client use too.
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server = issue(HOST, ca_cert.subject, ca_key, False, both)
    client = issue("ratemw", ca_cert.subject, ca_key, False, both[1:])
    ca, _ = write("ca", ca_cert, ca_key)
    server_cert, server_key = write("server", *server)
    client_cert, client_key = write("client", *client)
    return EtcdTls(ca, server_cert, server_key, client_cert, client_key)


class EtcdServer:
    """One single-member etcd on loopback; ``start``/``stop``/``kill``/``restart`` keep
    its ports and data directory, so a restart is the same cluster coming back."""

    def __init__(
        self, directory: Path, *, tls: EtcdTls | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.tls = tls
        self.extra = extra
        self.port = 0
        self.peer_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.root_password: str | None = None
        self.starts = 0

    # -- lifetime -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The ``etcd://`` (``etcds://``) URL of the server, without a key."""
        return f"{'etcds' if self.tls else 'etcd'}://{HOST}:{self.port}"

    def start(self) -> EtcdServer:
        fresh = self.port == 0
        for attempt in range(_ATTEMPTS if fresh else 1):
            if fresh:
                self.port, self.peer_port = free_port(), free_port()
            if self._launch():
                return self
            if attempt + 1 < _ATTEMPTS and fresh and "address already in use" in self.log():
                continue
            break
        pytest.fail(f"etcd did not start on {self.endpoint}:\n{self.log()[-3000:]}", pytrace=False)

    def _launch(self) -> bool:
        peer = f"http://{HOST}:{self.peer_port}"
        command = [
            etcd_binary(), "--name", "ratemw", "--data-dir", str(self.directory / "data"),
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"ratemw={peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr", *self.extra,
        ]  # fmt: skip
        if self.tls is not None:
            command += [
                "--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca),
            ]  # fmt: skip
        # etcd reads ETCD_* variables as flags, etcdctl ETCDCTL_*: none may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.starts += 1
        self.process = launch(command, env, self.directory / "etcd.log", self.directory)
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(Exception), self.client(auth=False) as client:
                if client.get("/health", timeout=2.0).json().get("health") == "true":
                    return True
            time.sleep(0.05)
        self.stop()
        return False

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def token_expired(self, token: str) -> bool:
        """Whether etcd has logged dropping the simple ``token`` (it idled out). Asking
        etcd instead would use the token, and each use keeps it alive."""
        return any(
            "deleted a simple token" in line and f'"token":"{token}"' in line
            for line in self.log().splitlines()
        )

    def stop(self) -> None:
        """SIGTERM, wait (bounded), reap: a clean shutdown."""
        if self.process is not None:
            stop(self.process)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash. The data directory keeps what was committed."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(15)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- the keyspace -----------------------------------------------------------------

    def client(self, *, auth: bool = True) -> Any:
        import httpx

        verify: ssl.SSLContext | bool = True
        if self.tls is not None:
            verify = ssl.create_default_context(cafile=str(self.tls.ca))
            verify.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        headers = {}
        if auth and self.root_password is not None:
            headers["Authorization"] = self.authenticate("root", self.root_password)
        return httpx.Client(
            base_url=self.endpoint, verify=verify, headers=headers, timeout=10.0, trust_env=False
        )

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.client() as client:
            response = client.post(path, json=body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    def authenticate(self, name: str, password: str) -> str:
        with self.client(auth=False) as client:
            response = client.post(
                "/v3/auth/authenticate", json={"name": name, "password": password}
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def put(self, key: bytes | str, value: bytes) -> int:
        """Write ``value``; returns the new revision."""
        answer = self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(answer["header"]["revision"])

    def get(self, key: bytes | str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def delete(self, key: bytes | str) -> int:
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": _b64(b"\0")})["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact (physically) up to ``revision`` (default: the current one)."""
        revision = self.revision() if revision is None else revision
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def wipe(self) -> None:
        """Delete every key (``\\0`` to ``\\0``: the whole keyspace)."""
        self.call("/v3/kv/deleterange", {"key": _b64(b"\0"), "range_end": _b64(b"\0")})

    def enable_auth(self, root_password: str, user: str, password: str, prefix: str) -> None:
        """A ``root`` user, ``user`` with read-write on keys under ``prefix``, auth on."""
        steps = [
            ["user", "add", f"root:{root_password}"],
            ["user", "grant-role", "root", "root"],
            ["role", "add", "rules"],
            ["role", "grant-permission", "rules", "--prefix=true", "readwrite", prefix],
            ["user", "add", f"{user}:{password}"],
            ["user", "grant-role", user, "rules"],
            ["auth", "enable"],
        ]
        etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for step in steps:
            done = subprocess.run(
                [etcdctl, f"--endpoints={self.endpoint}", *step],
                env=env, capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, (step[:2], done.stderr.decode(errors="replace"))
        self.root_password = root_password


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One etcd for the whole run; tests that stop or reconfigure etcd use
    ``etcd_fault_server``."""
    with tempfile.TemporaryDirectory(prefix="ratemw-etcd-") as tmp:
        server = EtcdServer(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> EtcdServer:
    """The session server, running and with an empty keyspace."""
    if not etcd_server.running:
        etcd_server.start()
    etcd_server.wipe()
    return etcd_server


@pytest.fixture
def etcd_fault_server() -> Iterator[EtcdServer]:
    """An etcd of the test's own, free to stop, kill, restart or put under auth."""
    with tempfile.TemporaryDirectory(prefix="ratemw-etcd-fault-") as tmp:
        server = EtcdServer(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()
