"""Tiers from JWT claims through the limiter: only a verified token reaches a paid tier."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from ratemw import Limiter, RequestInfo
from ratemw.testing import ManualClock

SECRET = "s3cret-for-tests-that-is-long-enough-for-hs256"

RULES: dict[str, Any] = {
    "version": 1,
    "identity": {"jwt": {"algorithms": ["HS256"], "secret_env": "RATEMW_TEST_JWT"}},
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "search", "match": {"path": "/search"}, "identity": "user",
         "limit": {"free": "2/minute", "pro": "5/minute"}},
    ],
}  # fmt: skip


def token(claims: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def admitted(limiter: Limiter, bearer: str | None, peer: str) -> int:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    info = RequestInfo(path="/search", peer=peer, headers=headers)
    return sum(limiter.decide(info).allowed for _ in range(10))


@pytest.fixture
def limiter(monkeypatch: pytest.MonkeyPatch) -> Limiter:
    monkeypatch.setenv("RATEMW_TEST_JWT", SECRET)
    clock = ManualClock(start=1000.0, wall_offset=time.time() - 1000.0)
    return Limiter(RULES, clock=clock)


def test_a_verified_pro_token_gets_the_pro_limit(limiter: Limiter) -> None:
    assert admitted(limiter, token({"sub": "alice", "plan": "pro"}), "198.51.100.1") == 5


def test_forged_expired_and_unsigned_tokens_stay_in_the_free_tier(limiter: Limiter) -> None:
    forged = token({"sub": "mallory", "plan": "pro"}, secret="not-the-secret-but-long-enough-x")
    expired = token({"sub": "eve", "plan": "pro", "exp": int(time.time()) - 60})
    unsigned = token({"sub": "oscar", "plan": "pro"}, secret="", alg="none")
    # Unverified: no user either, so each falls back to its own client address.
    assert admitted(limiter, forged, "198.51.100.2") == 2
    assert admitted(limiter, expired, "198.51.100.3") == 2
    assert admitted(limiter, unsigned, "198.51.100.4") == 2
    assert admitted(limiter, None, "198.51.100.5") == 2


def test_missing_secret_disables_jwt_identities_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEMW_TEST_JWT", raising=False)
    limiter = Limiter(RULES, clock=ManualClock())
    assert admitted(limiter, token({"sub": "alice", "plan": "pro"}), "198.51.100.6") == 2
