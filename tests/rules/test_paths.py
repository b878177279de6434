from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw.rules.paths import PathPattern, parse_path


@pytest.mark.parametrize(
    ("text", "kind", "segments"),
    [
        ("/", "exact", ()),
        ("/login", "exact", ("login",)),
        ("/api/v1/", "exact", ("api", "v1")),  # empty segments mean nothing
        ("/api//v1", "exact", ("api", "v1")),
        ("/api/reports/{id}", "pattern", ("api", "reports", "*")),
        ("/api/*/items", "pattern", ("api", "*", "items")),
        ("/search/**", "pattern", ("search", "**")),
        ("/**", "pattern", ("**",)),
        ("/{a}/{b_2}", "pattern", ("*", "*")),
    ],
)
def test_parse(text: str, kind: str, segments: tuple[str, ...]) -> None:
    p = parse_path(text)
    assert (p.text, p.kind, p.segments, p.regex) == (text, kind, segments, None)


def test_parse_regex() -> None:
    p = parse_path(r"re:/v[0-9]+/.*")
    assert p.kind == "regex"
    assert p.regex is not None and p.regex.pattern == r"/v[0-9]+/.*"
    assert p.matches("/v2/x") and not p.matches("/x/v2/x")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("login", "must start with '/'"),
        ("", "must start with '/'"),
        ("re:/a(b", "invalid regular expression"),
        # RE2 refuses what only a backtracking engine can run.
        (r"re:^/(a)\1$", "invalid regular expression"),
        ("re:^/(?=a)a$", "invalid regular expression.*lookaround"),
        ("re:^/a++$", "invalid regular expression"),
        ("/a/**/b", "'\\*\\*' is only allowed as the last segment"),
        ("/file-{id}.txt", "a template must be a whole segment"),
        ("/a/{id", "unbalanced braces"),
        ("/a/id}", "unbalanced braces"),
        ("/a/{{id}}", "unbalanced braces"),
        ("/a/{}", "empty template name"),
        ("/a/{1x}", "invalid template name '1x'"),
        ("/a/{a}{b}", "a template must be a whole segment"),
        ("/files/*.txt", "'\\*' must be a whole segment"),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_path(text)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/login", "/login", True),
        ("/login", "/login/", True),  # trailing slash: docs/rules.md, "Paths"
        ("/login/", "/login", True),
        ("/login", "//login", True),
        ("/login", "/./login", True),
        ("/login", "/x/../login", True),
        ("/login", "/../login", True),
        ("/login", "/login\n", True),  # Starlette's "$" serves it
        ("/login", "/login\x00", True),
        ("/login", "/LOGIN", False),  # routers are case-sensitive
        ("/login", "/login;x=1", False),
        ("/files/**", "/files/../etc", True),  # served as is by a <path:p> route
        ("re:^/login$", "//login/", True),
        ("re:^/a/.*/$", "/a/b/", True),
        ("/login", "/logins", False),
        ("/", "/", True),
        ("/", "/a", False),
        ("/api/reports/{id}", "/api/reports/7", True),
        ("/api/reports/{id}", "/api/reports/", False),
        ("/api/reports/{id}", "/api/reports/7/x", False),
        ("/api/*/items", "/api/a/items", True),
        ("/search/**", "/search", True),
        ("/search/**", "/search/", True),
        ("/search/**", "/search/a/b/c", True),
        ("/search/**", "/searchx", False),
        ("/search/**", "/", False),
        ("/**", "/", True),
        ("/**", "/anything/at/all", True),
        ("/login", "login", True),  # Werkzeug routes it as "/login"
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert parse_path(pattern).matches(path) is expected


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("/api/**", "/api/**", True),
        ("/api/**", "/api", True),
        ("/api/**", "/api/reports/{id}", True),
        ("/api/**", "/api/v1/**", True),
        ("/api/v1/**", "/api/**", False),
        ("/api/*", "/api/x", True),
        ("/api/{id}", "/api/*", True),
        ("/api/x", "/api/{id}", False),
        ("/api/*", "/api/**", False),
        ("/api/*", "/api/", False),
        ("/**", "/", True),
        ("/**", "re:/x.*", False),
        ("re:/x.*", "/xyz", True),
        ("re:/x.*", "/yz", False),
        ("re:/x.*", "/x/**", False),
        ("re:/x.*", "re:/x.*", True),
        ("/a", "/b", False),
    ],
)
def test_covers(wide: str, narrow: str, expected: bool) -> None:
    assert parse_path(wide).covers(parse_path(narrow)) is expected


_segment = st.sampled_from(["a", "b", "c", "", "*", "{id}"])
_paths = st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4).map(lambda s: "/" + "/".join(s))


@st.composite
def _patterns(draw: st.DrawFn) -> PathPattern:
    segments = draw(st.lists(_segment, max_size=3))
    if draw(st.booleans()):
        segments.append("**")
    return parse_path("/" + "/".join(segments))


@given(wide=_patterns(), narrow=_patterns(), path=_paths)
def test_covers_is_sound(wide: PathPattern, narrow: PathPattern, path: str) -> None:
    # covers() may say False when unsure, but a True must never be wrong.
    if wide.covers(narrow) and narrow.matches(path):
        assert wide.matches(path)


@given(pattern=_patterns())
def test_covers_is_reflexive(pattern: PathPattern) -> None:
    assert pattern.covers(pattern)


def test_pathological_regex_runs_in_linear_time() -> None:
    # Python's re needs seconds (doubling per character) for this 42-byte path.
    pattern = parse_path("re:^/(a+)+$")
    started = time.perf_counter()
    for n in (40, 4_000, 40_000):
        assert not pattern.matches("/" + "a" * n + "!")
    assert time.perf_counter() - started < 1.0
