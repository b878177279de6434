"""What the console's handlers take and return: the bounded form, the signed-in
request, and the answers (a page to render, a redirect, JSON), with the security headers
every response carries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ratemw.control.auth import Principal
from ratemw.control.errors import InvalidRequest
from ratemw.control.ui.render import SECURITY_HEADERS
from ratemw.control.ui.session import Session

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = ["NOTICES", "TITLES", "Answer", "Ctx", "Form", "Json", "Page", "Redirect", "cookie",
           "safe_next"]  # fmt: skip

_MAX_FIELDS = 400  # a rule form has ~20; the lists form a few
_MAX_QUERY_CHARS = 512
_NEXT = re.compile(r"/ui/[A-Za-z0-9/_.?=&%-]{0,300}")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of ours, else the overview."""
    if target and _NEXT.fullmatch(target) and "//" not in target:
        return target
    return "/ui/"


class Form:
    """A parsed ``application/x-www-form-urlencoded`` body, read within a cap."""

    def __init__(self, fields: Mapping[str, list[str]]) -> None:
        self.fields = fields

    @classmethod
    def parse(cls, body: bytes) -> Form:
        try:
            text = body.decode("utf-8")
            return cls(parse_qs(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS))
        except UnicodeDecodeError:
            raise InvalidRequest("the form is not UTF-8") from None
        except ValueError:
            raise InvalidRequest(f"the form has more than {_MAX_FIELDS} fields") from None

    def raw(self, name: str, default: str = "", max_chars: int = 1000) -> str:
        """The field as sent (a document keeps its spaces); InvalidRequest past the cap."""
        values = self.fields.get(name)
        value = values[0] if values else default
        if len(value) > max_chars:
            raise InvalidRequest(f"{name!r} is longer than {max_chars} characters")
        return value

    def text(self, name: str, default: str = "", max_chars: int = 1000) -> str:
        return self.raw(name, default, max_chars).strip()

    def all(self, name: str, max_items: int = 50) -> list[str]:
        values = [v.strip() for v in self.fields.get(name, []) if v.strip()]
        if len(values) > max_items or any(len(v) > 1000 for v in values):
            raise InvalidRequest(f"{name!r}: at most {max_items} values of 1000 characters")
        return values


@dataclass(frozen=True, slots=True)
class Ctx:
    """A signed-in request: who, their session's CSRF token, the query."""

    principal: Principal
    session: Session
    csrf: str
    path: str
    query: Mapping[str, str]
    params: Mapping[str, str]  # from the path

    def may(self, permission: str) -> bool:
        return self.principal.may(permission)

    def arg(self, name: str) -> str:
        return self.query.get(name, "")[:_MAX_QUERY_CHARS]


@dataclass(slots=True)
class Page:
    """A template to render with its context, and the status."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200


@dataclass(frozen=True, slots=True)
class Redirect:
    """303 See Other to a console path (post/redirect/get)."""

    to: str
    done: str = ""  # a notice code (``NOTICES``) the next page shows
    cookies: tuple[str, ...] = ()  # Set-Cookie values (:func:`cookie`)


@dataclass(frozen=True, slots=True)
class Json:
    """A JSON answer (the editor's live validation)."""

    data: Any
    status: int = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """A rendered answer, made into a response on the event loop."""

    status: int
    body: bytes
    media: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def response(self) -> Response:
        """With the console's security headers, never cached."""
        from starlette.responses import Response

        out = Response(self.body, self.status, media_type=self.media)
        for name, value in (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store")):
            out.headers[name] = value
        for name, value in self.headers:
            out.headers.append(name, value)
        return out


def cookie(name: str, value: str, max_age: int, *, secure: bool) -> str:
    """A console cookie: only for /ui, never readable by script, never sent cross-site."""
    flags = "; Secure" if secure else ""
    return f"{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"


TITLES = {401: "Sign in again", 403: "Not allowed", 404: "Not found", 409: "Conflict",
           413: "Too large", 422: "Not valid", 500: "Internal error", 502: "Upstream failed",
           503: "Unavailable"}  # fmt: skip
#: the notices a redirect may ask for: fixed texts, never the request's own words
NOTICES: Mapping[str, str] = {
    "signed-in": "Signed in.",
    "proposed": "Version proposed. An approver who is not you approves it next.",
    "approved": "Approval recorded.",
    "previewed": "Preview ready: the recording was replayed against this version.",
    "rolled-out": "Rolled out: the targets were published.",
    "rolled-back": "Rolled back: the previous enforced version was published.",
    "brownout-set": "Brownout set.",
    "brownout-cleared": "Brownout cleared.",
    "brownout-none": "There was no brownout to clear.",
    "banned": "Ban added: limiters apply it within an operations interval.",
    "unbanned": "Ban lifted.",
}
