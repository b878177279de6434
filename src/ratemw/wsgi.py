"""``RateLimitMiddleware`` for any WSGI application (PEP 3333).

The mirror of :mod:`ratemw.asgi`: decide, answer a rejection through
``start_response`` without calling the application, otherwise add the
rate-limit headers to the application's response and hold the request's
concurrency slots until the server closes the response body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from ratemw.errors import log_decide_failure
from ratemw.request import RequestInfo, _environ_info, from_wsgi_environ

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ratemw.decision import Decision
    from ratemw.limiter import Limiter

__all__ = ["RateLimitMiddleware"]

logger = logging.getLogger("ratemw")

#: ``on_reject(environ, start_response, decision)``: answers a rejected request.
RejectHandler = Callable[["WSGIEnvironment", "StartResponse", "Decision"], Iterable[bytes]]


def _status_line(status: int) -> str:
    """``429`` -> ``"429 Too Many Requests"``, as ``start_response`` wants it."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def _check_callables(limiter: object, request_info: object, on_reject: object) -> None:
    """Arguments that cannot work fail when the middleware is built, not per request."""
    if not callable(getattr(limiter, "decide", None)):
        raise TypeError("ratemw: limiter= must be a ratemw Limiter")
    for name, value in (("request_info", request_info), ("on_reject", on_reject)):
        if value is not None and not callable(value):
            raise TypeError(f"ratemw: {name}= must be a callable")


class RateLimitMiddleware:
    """Rate-limit a WSGI application.

    ``limiter`` decides; ``request_info(environ)`` builds the
    :class:`~ratemw.RequestInfo` (default: :func:`ratemw.request.from_wsgi_environ`);
    ``on_reject(environ, start_response, decision)`` answers a rejection
    (default: ``decision.response()``, a problem+json body with ``Retry-After``).
    If deciding raises, the error is logged and the request goes through.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        limiter: Limiter,
        request_info: Callable[[WSGIEnvironment], RequestInfo] | None = None,
        on_reject: RejectHandler | None = None,
    ) -> None:
        _check_callables(limiter, request_info, on_reject)
        self.app = app
        self.limiter = limiter
        self.request_info = request_info or from_wsgi_environ
        self.on_reject = on_reject

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        decision: Decision | None = None
        # The builder read first: `self.request_info(environ)` would look a function
        # stored on the instance up as a method, slowly, on every request. The default's
        # one-argument twin: CPython looks keyword-only defaults up on every call.
        request_info = self.request_info
        if request_info is from_wsgi_environ:
            request_info = _environ_info
        try:
            decision = self.limiter.decide(request_info(environ))
            # Rendered now: remaining and reset are read here (`headers`, as a method call).
            extra = decision._header_pairs()
        except Exception as exc:
            if decision is not None:
                decision.release()
            log_decide_failure(exc)
            return self.app(environ, start_response)
        # status and _outcome read directly: the properties cost a call each, per request.
        if decision.status >= 300:
            if self.on_reject is not None:
                return self.on_reject(environ, start_response, decision)
            status, headers, problem = decision.response()
            start_response(_status_line(status), headers)
            return [problem]

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, *extra], exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            decision.release()
            raise
        if not decision._outcome.slots:
            # Nothing to give back: return the body untouched (keeps wsgi.file_wrapper).
            return body
        return _ReleasingBody(body, decision.release)


class _ReleasingBody:
    """Forward a response body; release when the server calls ``close()`` (PEP 3333).

    ``close()`` comes after the last chunk was sent, or after the client went
    away; an exception while iterating releases at once. ``release`` runs once.
    """

    __slots__ = ("_body", "_iterator", "_release")

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._body)
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException:
            self._done()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
