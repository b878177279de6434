"""The ```python blocks of the documentation pages, as the example test runs them.

A block is skipped when the line just before its fence is ``<!-- not-run: reason -->``.
Before it runs, the Redis URLs the docs use (``redis://localhost:6379/0``) become the
test server's; a block that still names any host but the loopback one is not run at
all, so an example can never send traffic off this machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```python\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
# Any URL with a host part; the host is judged after the Redis URLs are replaced.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s\"']*@)?(?P<hosts>[^/\s\"'?]+)")
_LOCAL_REDIS = re.compile(r"redis://(?:localhost|127\.0\.0\.1):6379(?:/\d+)?")
_LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its code, and why it is not run (if it is not)."""

    page: str  # relative to docs/
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def needs_redis(self) -> bool:
        return _LOCAL_REDIS.search(self.code) is not None or "REDIS_URL" in self.code

    def runnable(self, redis_url: str | None) -> str:
        """The code with the test server's Redis URL in place of the documented one."""
        if redis_url is None:
            return self.code
        return _LOCAL_REDIS.sub(redis_url, self.code)

    def foreign_hosts(self, code: str) -> list[str]:
        """Hosts other than the loopback that ``code`` names in a URL."""
        found = []
        for match in _URL.finditer(code):
            for host in match.group("hosts").split(","):
                name = re.sub(r":\d+$", "", host.strip())
                if name and name not in _LOOPBACK:
                    found.append(name)
        return found


def extract(text: str, page: str) -> list[Example]:
    """The top-level ```python blocks of one Markdown page, in order."""
    lines = text.splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i]):
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
            marker = _NOT_RUN.match(previous)
            examples.append(
                Example(page, start + 1, "\n".join(body) + "\n", marker and marker["reason"])
            )
        i += 1
    return examples


def all_examples(docs: Path = DOCS) -> list[Example]:
    """Every example of every page under ``docs`` (the build hooks excluded)."""
    found: list[Example] = []
    for path in sorted(docs.rglob("*.md")):
        page = path.relative_to(docs).as_posix()
        if not page.startswith("hooks/"):
            found += extract(path.read_text(encoding="utf-8"), page)
    return found
