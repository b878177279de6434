"""Helpers for tests that run real servers in child processes: a free loopback port, and
stopping a server's whole process group within a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"
STOP_DEADLINE = 15.0


def launch(
    command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (so :func:`stop` reaches its workers), with
    stdout and stderr in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def exited(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait (bounded) for ``process`` to exit, leaving it unreaped so its group id stays its."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if found is not None:
            return True
        time.sleep(0.05)
    return False


def stop(process: subprocess.Popen[bytes], deadline: float = STOP_DEADLINE) -> None:
    """SIGTERM the process group, wait with a deadline, SIGKILL what is left, reap."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        exited(process, deadline)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # leftover workers; the leader is unreaped
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(deadline)
