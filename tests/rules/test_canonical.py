"""Canonical paths and hosts (ratemw.rules.canonical) and the matching built on them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw.request import RequestInfo
from ratemw.rules.canonical import canonical_host, canonical_path, path_forms, squash_path
from ratemw.rules.compile import compile_rules
from ratemw.rules.matcher import PathIndex
from ratemw.rules.parse import ruleset_from_data
from ratemw.rules.paths import parse_path


@pytest.mark.parametrize(
    ("path", "squashed", "canonical"),
    [
        ("/", "/", "/"),
        ("", "/", "/"),
        ("/login", "/login", "/login"),
        ("//login//", "/login", "/login"),
        ("/./login/.", "/./login/.", "/login"),
        ("/a/b/../../login", "/a/b/../../login", "/login"),
        ("/../../login", "/../../login", "/login"),
        ("/login\n", "/login", "/login"),
        ("/login\r\n\t /", "/login", "/login"),
        ("/login\x00\x7f\x85", "/login", "/login"),
        ("/a/..\n/login", "/a/../login", "/login"),
        ("/\nlogin", "/\nlogin", "/\nlogin"),  # no router drops a leading newline
        ("/LOGIN;x=1", "/LOGIN;x=1", "/LOGIN;x=1"),
    ],
)
def test_forms(path: str, squashed: str, canonical: str) -> None:
    assert squash_path(path) == squashed
    assert canonical_path(path) == canonical
    assert path_forms(path)[0] == path
    assert set(path_forms(path)) == {path, squashed, canonical}


@given(st.text())
def test_canonical_is_idempotent_and_total(path: str) -> None:
    once = canonical_path(path)
    assert canonical_path(once) == once
    assert squash_path(squash_path(path)) == squash_path(path)
    assert once.startswith("/") and "//" not in once
    assert path_forms(path)[0] == path


# What some supported router or server still routes to the view at /login: every way of
# writing a segment boundary, a detour, and what a "$" or a lenient server drops.
_slashes = st.text(alphabet="/", min_size=1, max_size=3)
_detour = st.sampled_from(["", ".", "x/..", "./x/..", "a/b/../.."])
_tail = st.sampled_from(["", "/", "\n", "/\n", "//", "/.", "\r\n", "\t", "\x00"])


@st.composite
def _login_forms(draw: st.DrawFn) -> str:
    detour = draw(_detour)
    middle = draw(_slashes) + detour if detour else ""
    return draw(_slashes) + middle + draw(_slashes) + "login" + draw(_tail)


@given(_login_forms())
def test_every_routed_form_of_login_matches(path: str) -> None:
    assert parse_path("/login").matches(path), path
    assert parse_path("re:^/login$").matches(path), path
    index = PathIndex([(0, parse_path("/login")), (1, parse_path("/{name}"))])
    assert index.lookup(path) == (0, 1), path


@given(st.text())
def test_trie_agrees_with_reference_matcher(path: str) -> None:
    patterns = ["/login", "/a/*", "/a/**", "re:^/a/.*$", "/**"]
    expected = tuple(i for i, p in enumerate(patterns) if parse_path(p).matches(path))
    assert PathIndex((i, parse_path(p)) for i, p in enumerate(patterns)).lookup(path) == expected


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("api.example.com", "api.example.com"),
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("api.example.com.:8443", "api.example.com"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
        ("::1", "::1"),
        ("", ""),
    ],
)
def test_canonical_host(host: str, canonical: str) -> None:
    assert canonical_host(host) == canonical


def _names(rules: list[dict[str, object]], **request: object) -> list[str]:
    for r in rules:
        r.setdefault("limit", "1/second")
    snap = compile_rules(ruleset_from_data({"version": 1, "rules": rules}))
    return [r.name for r in snap.match(RequestInfo(**request))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host", ["api.example.com", "API.example.com.", "api.example.com.:80", "api.example.com:1"]
)
def test_host_rules_see_every_spelling(host: str) -> None:
    rules: list[dict[str, object]] = [
        {"name": "exact", "match": {"path": "/x", "host": "api.example.com"}},
        {"name": "dotted", "match": {"path": "/x", "host": "API.Example.com."}},
        {"name": "wild", "match": {"path": "/x", "host": "*.example.com"}},
        {"name": "other", "match": {"path": "/x", "host": "example.com"}},
    ]
    assert _names(rules, path="/x", host=host) == ["exact", "dotted", "wild"]


@pytest.mark.parametrize(("method", "applies"), [("GET", True), ("HEAD", True), ("POST", False)])
def test_get_implies_head(method: str, applies: bool) -> None:
    rules: list[dict[str, object]] = [{"name": "g", "match": {"path": "/x", "methods": ["GET"]}}]
    assert _names(rules, path="/x", method=method) == (["g"] if applies else [])


def test_head_alone_does_not_imply_get() -> None:
    rules: list[dict[str, object]] = [{"name": "h", "match": {"path": "/x", "methods": ["HEAD"]}}]
    assert _names(rules, path="/x", method="GET") == []


def test_explain_and_hot_path_agree_on_forms() -> None:
    snap = compile_rules(
        ruleset_from_data(
            {
                "version": 1,
                "rules": [{"name": "l", "match": {"path": "/login"}, "limit": "1/second"}],
            }
        )
    )
    info = RequestInfo(method="POST", path="//login\n")
    assert [r.name for r in snap.match(info)] == ["l"]
    assert [reason for _, reason in snap.explain(info)] == [None]
    assert snap.candidates("//login\n")[2] is not None  # still the one-lookup fast path
