from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("jwt")
pytest.importorskip("cryptography")

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import ratemw.identity.jwt as rjwt
from ratemw.errors import RatemwError
from ratemw.identity.jwt import JWTVerifier
from ratemw.identity.jwt_keys import JWTConfigError
from ratemw.request import RequestInfo
from ratemw.rules.model import JWTConfig
from ratemw.testing import ManualClock

SECRET = "s3cret-for-tests-0123456789abcdef-0123456789"
OTHER = "another-secret-0123456789abcdef-0123456789ab"
ENV = "RATEMW_TEST_JWT_SECRET"

CLAIMS = {"sub": "alice", "tenant": "acme", "plan": "pro"}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def key_file(tmp_path: Path, public_pem: bytes) -> Path:
    path = tmp_path / "jwt.pub.pem"
    path.write_bytes(public_pem)
    return path


@pytest.fixture
def hs(monkeypatch: pytest.MonkeyPatch) -> JWTVerifier:
    monkeypatch.setenv(ENV, SECRET)
    return JWTVerifier(JWTConfig(algorithms=("HS256",), secret_env=ENV))


def hs_token(claims: dict[str, Any] | None = None, secret: str = SECRET, **header: Any) -> str:
    return pyjwt.encode(claims if claims is not None else CLAIMS, secret, "HS256", header or None)


def request(token: str | None = None, **known: Any) -> RequestInfo:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return RequestInfo(headers=headers, **known)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{_b64(sig)}"


def assert_unverified(out: RequestInfo, before: RequestInfo) -> None:
    assert out == before
    assert out.claims is None
    assert out.tier == before.tier


# -- valid tokens -----------------------------------------------------------


def test_hs256_fills_user_tenant_tier_and_claims(hs: JWTVerifier) -> None:
    out = hs.enrich(request(hs_token()))
    assert (out.user, out.tenant, out.tier) == ("alice", "acme", "pro")
    assert out.claims is not None and dict(out.claims) == CLAIMS
    with pytest.raises(TypeError):
        out.claims["plan"] = "enterprise"  # type: ignore[index]


def test_rs256_with_public_key_file(rsa_key: rsa.RSAPrivateKey, key_file: Path) -> None:
    verifier = JWTVerifier(JWTConfig(algorithms=("RS256",), public_key_file=str(key_file)))
    token = pyjwt.encode(CLAIMS, rsa_key, "RS256")
    out = verifier.enrich(request(token))
    assert (out.user, out.tenant, out.tier) == ("alice", "acme", "pro")
    assert verifier.verify(token) == CLAIMS


def test_public_key_file_is_read_once(rsa_key: rsa.RSAPrivateKey, key_file: Path) -> None:
    verifier = JWTVerifier(JWTConfig(algorithms=("RS256",), public_key_file=str(key_file)))
    key_file.unlink()
    assert verifier.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) == CLAIMS


def test_secret_and_key_overrides(rsa_key: rsa.RSAPrivateKey, public_pem: bytes) -> None:
    hs = JWTVerifier(JWTConfig(algorithms=("HS256",)), secret=SECRET.encode())
    assert hs.verify(hs_token()) == CLAIMS
    rs = JWTVerifier(JWTConfig(algorithms=("RS256",)), key=public_pem)
    assert rs.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) == CLAIMS
    rs_obj = JWTVerifier(JWTConfig(algorithms=("RS256",)), key=rsa_key.public_key())
    assert rs_obj.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) == CLAIMS


def test_adapter_values_win(hs: JWTVerifier) -> None:
    out = hs.enrich(request(hs_token(), user="bob", tier="free"))
    assert (out.user, out.tenant, out.tier) == ("bob", "acme", "free")
    assert out.claims is not None


def test_custom_claim_names_and_odd_claim_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, SECRET)
    config = JWTConfig(secret_env=ENV, user_claim="uid", tenant_claim="org", tier_claim="tier")
    verifier = JWTVerifier(config)
    out = verifier.enrich(request(hs_token({"uid": "u1", "org": 42, "tier": ["pro"]})))
    assert (out.user, out.tenant, out.tier) == ("u1", "42", None)
    out = verifier.enrich(request(hs_token({"uid": "", "org": {"a": 1}, "tier": True})))
    assert (out.user, out.tenant, out.tier) == (None, None, None)
    assert out.claims is not None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_is_case_insensitive(hs: JWTVerifier, scheme: str) -> None:
    info = RequestInfo(headers={"authorization": f"{scheme}   {hs_token()} "})
    assert hs.enrich(info).tier == "pro"


def test_no_token_returns_the_same_request(hs: JWTVerifier) -> None:
    info = request(user="bob", tier="basic")
    assert hs.enrich(info) is info
    basic = RequestInfo(headers={"authorization": "Basic YWxpY2U6cHc="})
    assert hs.enrich(basic) is basic


# -- refused tokens ---------------------------------------------------------


def test_alg_none_refused(hs: JWTVerifier) -> None:
    unsigned = pyjwt.encode({**CLAIMS}, "", algorithm="none")
    assert unsigned.endswith(".")
    before = request(unsigned)
    assert_unverified(hs.enrich(before), before)
    # An alg:none header with a non-empty "signature" still goes nowhere.
    fake = forged({"alg": "none", "typ": "JWT"}, CLAIMS, SECRET.encode())
    before = request(fake)
    assert_unverified(hs.enrich(before), before)


def test_none_cannot_be_configured() -> None:
    with pytest.raises(JWTConfigError, match="not allowed"):
        JWTVerifier(JWTConfig(algorithms=("none",)), secret=SECRET)


def test_other_secret_refused(hs: JWTVerifier) -> None:
    before = request(hs_token(secret=OTHER), user="bob")
    out = hs.enrich(before)
    assert_unverified(out, before)
    assert out.user == "bob"


def test_forged_tier_never_set_and_adapter_tier_kept(hs: JWTVerifier) -> None:
    forged_token = hs_token({"sub": "mallory", "plan": "enterprise"}, secret=OTHER)
    assert hs.enrich(request(forged_token)).tier is None
    assert hs.enrich(request(forged_token, tier="free")).tier == "free"


def test_algorithm_confusion_refused(rsa_key: rsa.RSAPrivateKey, public_pem: bytes) -> None:
    verifier = JWTVerifier(JWTConfig(algorithms=("RS256",)), key=public_pem)
    # HS256 "signed" with the RSA public key PEM as the HMAC secret.
    token = forged({"alg": "HS256", "typ": "JWT"}, CLAIMS, public_pem)
    before = request(token)
    assert_unverified(verifier.enrich(before), before)
    # Also with both families configured: the HS256 token is checked with the secret only.
    both = JWTVerifier(JWTConfig(algorithms=("RS256", "HS256")), secret=SECRET, key=public_pem)
    assert both.verify(token) is None
    assert both.verify(hs_token()) == CLAIMS
    assert both.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) == CLAIMS


def test_rs256_token_refused_when_only_hs256_configured(
    hs: JWTVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert hs.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) is None


def test_hs512_refused_when_only_hs256_configured(hs: JWTVerifier) -> None:
    token = pyjwt.encode(CLAIMS, SECRET + SECRET, "HS512")
    assert hs.verify(token) is None


def test_expired_with_manual_clock(clock: ManualClock) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    now = int(clock.time())
    token = hs_token({**CLAIMS, "exp": now + 60})
    assert verifier.enrich(request(token)).tier == "pro"
    clock.advance(60)
    before = request(token)
    assert_unverified(verifier.enrich(before), before)


def test_expired_with_wall_clock(hs: JWTVerifier) -> None:
    token = hs_token({**CLAIMS, "exp": 1_000_000})
    assert hs.verify(token) is None


def test_leeway(clock: ManualClock) -> None:
    verifier = JWTVerifier(JWTConfig(leeway_seconds=30), clock=clock, secret=SECRET)
    now = int(clock.time())
    assert verifier.verify(hs_token({**CLAIMS, "exp": now - 10})) == {**CLAIMS, "exp": now - 10}
    assert verifier.verify(hs_token({**CLAIMS, "exp": now - 31})) is None
    assert verifier.verify(hs_token({**CLAIMS, "nbf": now + 10})) is not None
    assert verifier.verify(hs_token({**CLAIMS, "nbf": now + 31})) is None


def test_not_yet_valid_then_valid(clock: ManualClock) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    now = int(clock.time())
    token = hs_token({**CLAIMS, "nbf": now + 100})
    before = request(token)
    assert_unverified(verifier.enrich(before), before)
    assert verifier.verify(hs_token({**CLAIMS, "iat": now + 100})) is None
    clock.advance(100)
    assert verifier.enrich(request(token)).tier == "pro"


def test_not_yet_valid_token_is_not_cached_as_invalid(clock: ManualClock) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    token = hs_token({**CLAIMS, "nbf": int(clock.time()) + 1})
    assert verifier.verify(token) is None
    clock.advance(1)  # well inside INVALID_CACHE_SECONDS
    assert verifier.verify(token) is not None


def test_not_yet_valid_with_wall_clock(hs: JWTVerifier) -> None:
    assert hs.verify(hs_token({**CLAIMS, "nbf": 4_000_000_000})) is None


def test_bad_time_claims_refused(clock: ManualClock) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    for bad in ({"exp": "soon"}, {"nbf": [1]}, {"exp": 1e400}, {"iat": "x"}):
        assert verifier.verify(hs_token({**CLAIMS, **bad})) is None


def test_audience_and_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, SECRET)
    verifier = JWTVerifier(JWTConfig(secret_env=ENV, audience="api", issuer="https://idp"))
    good = {**CLAIMS, "aud": "api", "iss": "https://idp"}
    assert verifier.verify(hs_token(good)) == good
    assert verifier.verify(hs_token({**good, "aud": ["web", "api"]})) is not None
    assert verifier.verify(hs_token({**good, "aud": "web"})) is None
    assert verifier.verify(hs_token({**good, "iss": "https://evil"})) is None
    assert verifier.verify(hs_token(CLAIMS)) is None  # both missing
    assert verifier.verify(hs_token({**CLAIMS, "aud": "api"})) is None  # issuer missing


def test_token_with_audience_refused_when_none_configured(hs: JWTVerifier) -> None:
    assert hs.verify(hs_token({**CLAIMS, "aud": "someone-else"})) is None


GARBAGE = [
    "",
    "Bearer",
    "Bearer ",
    "Bearer a.b",
    "Bearer a.b.c",
    "Bearer ...",
    "Bearer !!.??.**",
    "Bearer eyJ.eyJ.sig extra",
    "Bearer " + "A" * 65536,
    "Bearer " + ".".join(["A" * 30000] * 3),
    "Bearer " + "a" * 64 * 1024 + ".b.c",
    "Bearer tökén.ünïcode.✓",
    "Bearer \x00\x01.\x02.\x03",
    "Bearer \udcff.\udcfe.x",
    "Bearer eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON
    "Bearer bm90IGpzb24.e30.c2ln",  # header is not JSON
    "Bearer W10.e30.c2ln",  # header is a JSON list
    "Bearer e30.e30.c2ln",  # header without alg
    "Bearer a.b.c, Bearer d.e.f",  # repeated header joined by the adapter
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_headers_do_not_raise(hs: JWTVerifier, value: str) -> None:
    before = RequestInfo(headers={"authorization": value}, user="u")
    assert_unverified(hs.enrich(before), before)


def test_huge_valid_token_refused(hs: JWTVerifier) -> None:
    token = hs_token({**CLAIMS, "pad": "x" * 10_000})
    assert len(token) > rjwt.MAX_TOKEN_LENGTH
    assert hs.verify(token) is None


@given(st.text(max_size=300))
def test_any_header_text_never_raises_or_sets_a_tier(value: str) -> None:
    verifier = JWTVerifier(JWTConfig(), secret=SECRET)
    for header in (value, f"Bearer {value}"):
        before = RequestInfo(headers={"authorization": header})
        out = verifier.enrich(before)
        assert out.tier is None and out.claims is None


# -- cache ------------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pyjwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(pyjwt, "decode", counting)
    return calls


def test_cache_hit_skips_pyjwt(hs: JWTVerifier, decode_calls: list[str]) -> None:
    token = hs_token()
    first = hs.enrich(request(token))
    second = hs.enrich(request(token, user="bob"))
    assert len(decode_calls) == 1
    assert first.tier == second.tier == "pro"
    assert second.user == "bob"


def test_invalid_tokens_cached_briefly(clock: ManualClock, decode_calls: list[str]) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    bad = hs_token(secret=OTHER)
    assert verifier.verify(bad) is None
    assert verifier.verify(bad) is None
    assert len(decode_calls) == 1
    clock.advance(rjwt.INVALID_CACHE_SECONDS)
    assert verifier.verify(bad) is None
    assert len(decode_calls) == 2


def test_cache_entry_not_used_after_exp(clock: ManualClock, decode_calls: list[str]) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    token = hs_token({**CLAIMS, "exp": int(clock.time()) + 10})
    assert verifier.enrich(request(token)).tier == "pro"
    clock.advance(9)
    assert verifier.enrich(request(token)).tier == "pro"
    assert len(decode_calls) == 1
    clock.advance(1)
    assert verifier.enrich(request(token)).tier is None
    assert len(decode_calls) == 2


def test_cache_without_exp_expires_too(clock: ManualClock, decode_calls: list[str]) -> None:
    verifier = JWTVerifier(JWTConfig(), clock=clock, secret=SECRET)
    token = hs_token()
    verifier.verify(token)
    clock.advance(rjwt.MAX_CACHE_SECONDS)
    assert verifier.verify(token) == CLAIMS
    assert len(decode_calls) == 2


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch, hs: JWTVerifier) -> None:
    monkeypatch.setattr(rjwt, "CACHE_SIZE", 5)
    monkeypatch.setattr(rjwt, "INVALID_CACHE_SIZE", 3)
    for i in range(23):
        assert hs.verify(hs_token({"sub": f"user{i}"})) is not None
        assert hs.verify(hs_token({"sub": f"user{i}"}, secret=OTHER)) is None
        assert len(hs._cache) <= 5
        assert len(hs._invalid) <= 3


def test_raw_token_is_not_kept(hs: JWTVerifier) -> None:
    token = hs_token()
    bad = hs_token(secret=OTHER)
    hs.verify(token)
    hs.verify(bad)
    for key in [*hs._cache, *hs._invalid]:
        assert len(key) == 16
    dump = repr(vars(hs)) if hasattr(hs, "__dict__") else ""
    for raw in (token, bad):
        for part in raw.split("."):
            assert part not in dump


# -- configuration errors ---------------------------------------------------


def test_missing_secret_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEMW_NO_SUCH_SECRET", raising=False)
    with pytest.raises(JWTConfigError, match="RATEMW_NO_SUCH_SECRET") as info:
        JWTVerifier(JWTConfig(secret_env="RATEMW_NO_SUCH_SECRET"))
    assert isinstance(info.value, RatemwError)
    monkeypatch.setenv("RATEMW_NO_SUCH_SECRET", "")
    with pytest.raises(JWTConfigError, match="RATEMW_NO_SUCH_SECRET"):
        JWTVerifier(JWTConfig(secret_env="RATEMW_NO_SUCH_SECRET"))


def test_no_secret_configured() -> None:
    with pytest.raises(JWTConfigError, match="secret_env"):
        JWTVerifier(JWTConfig())


def test_unreadable_key_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(JWTConfigError, match=r"missing\.pem"):
        JWTVerifier(JWTConfig(algorithms=("RS256",), public_key_file=str(missing)))
    with pytest.raises(JWTConfigError, match="public_key_file"):
        JWTVerifier(JWTConfig(algorithms=("RS256",)))


def test_bad_key_content_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(JWTConfigError, match=r"garbage\.pem") as info:
        JWTVerifier(JWTConfig(algorithms=("RS256",), public_key_file=str(path)))
    assert "not a key" not in str(info.value)


def test_pem_as_hmac_secret_refused(public_pem: bytes) -> None:
    with pytest.raises(JWTConfigError, match="HS256"):
        JWTVerifier(JWTConfig(algorithms=("HS256",)), secret=public_pem)


def test_unknown_algorithm_and_mismatched_key(public_pem: bytes) -> None:
    with pytest.raises(JWTConfigError, match="XX999"):
        JWTVerifier(JWTConfig(algorithms=("XX999",)), secret=SECRET)
    with pytest.raises(JWTConfigError, match="ES256"):
        JWTVerifier(JWTConfig(algorithms=("RS256", "ES256")), key=public_pem)
    with pytest.raises(JWTConfigError, match="empty"):
        JWTVerifier(JWTConfig(algorithms=()), secret=SECRET)


def test_short_secret_warns_at_construction() -> None:
    with pytest.warns(pyjwt.InsecureKeyLengthWarning, match="passed to JWTVerifier"):
        JWTVerifier(JWTConfig(), secret="short")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JWTVerifier(JWTConfig(), secret=SECRET)


def test_private_key_file_verifies_with_its_public_half(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "private.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    verifier = JWTVerifier(JWTConfig(algorithms=("RS256",), public_key_file=str(path)))
    assert verifier.verify(pyjwt.encode(CLAIMS, rsa_key, "RS256")) == CLAIMS


# -- import hygiene ---------------------------------------------------------


def test_module_import_does_not_load_pyjwt() -> None:
    code = (
        "import sys, ratemw.identity.jwt; "
        "print('jwt' in sys.modules, 'cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_digest_helper_is_not_the_identity_digest(hs: JWTVerifier) -> None:
    # The cache key is keyed per verifier: the same token digests differently elsewhere.
    token = hs_token()
    other = JWTVerifier(JWTConfig(), secret=SECRET)
    hs.verify(token)
    other.verify(token)
    assert set(hs._cache).isdisjoint(other._cache)
    assert hashlib.blake2b(token.encode(), digest_size=16).digest() not in hs._cache
