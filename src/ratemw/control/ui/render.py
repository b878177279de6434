"""HTML out: the Jinja2 templates, the static files, and the headers every answer has.

Templates autoescape everything; charts arrive as SVG text that :mod:`.charts` built
from numbers and escaped names. The static files (one stylesheet, one script, both
ours) are read once and served by name from a fixed list, with a content hash in their
URL so that browsers may cache them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratemw._deps import require

if TYPE_CHECKING:
    import jinja2

__all__ = ["CSP", "SECURITY_HEADERS", "STATIC_TYPES", "Static", "Templates", "age", "when"]

_HERE = Path(__file__).resolve().parent
#: Same origin only, no inline script or style, no framing, forms post only to us.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC_TYPES = {"console.css": "text/css; charset=utf-8",
                "console.js": "text/javascript; charset=utf-8"}  # fmt: skip


def when(iso: str) -> str:
    """An audit or version timestamp, to the second, in UTC."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:40]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(iso: str, now: datetime | None = None) -> str:
    """How long ago ``iso`` was: ``42 s``, ``5 min``, ``3 h``, ``12 d``."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return "?"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def left(seconds: float) -> str:
    """A countdown as text: ``1 h 02 min``, ``4 min 05 s``, ``9 s``."""
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def epoch(value: float) -> str:
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Static:
    """Our stylesheet and script, by name; ``url(name)`` carries the content hash."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        for name, media in STATIC_TYPES.items():
            body = (_HERE / "static" / name).read_bytes()
            self.files[name] = (body, media)
        self._urls = {
            name: f"/ui/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}"
            for name, (body, _) in self.files.items()
        }

    def url(self, name: str) -> str:
        return self._urls[name]


class Templates:
    """The Jinja2 environment of the console's pages (autoescaped, strict)."""

    def __init__(self, static: Static) -> None:
        require("jinja2", extra="control", purpose="the ratemw console")
        import jinja2

        self.env: jinja2.Environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=when, age=age, left=left, epoch=epoch)
        self.env.globals["static"] = static.url

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(name).render(context)
