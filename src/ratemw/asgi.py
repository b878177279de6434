"""``RateLimitMiddleware`` for any ASGI 3 application (pure ASGI, no framework).

Rejected requests are answered here and never reach the application. Allowed
requests get the rate-limit headers added to ``http.response.start``; their
concurrency slots are held until the response is complete (ASGI HTTP spec:
the last ``http.response.body``, the last ``http.response.trailers`` when
trailers were announced, or ``http.response.pathsend``), the client
disconnects, or the application returns or raises, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ratemw.decision import Decision, encode_headers
from ratemw.errors import log_decide_failure
from ratemw.request import RequestInfo, _scope_info, from_asgi_scope
from ratemw.wsgi import _check_callables

if TYPE_CHECKING:
    from ratemw.limiter import AsyncLimiter
    from ratemw.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RateLimitMiddleware", "send_problem"]

#: ``await on_reject(scope, receive, send, decision)``: answers a rejected request.
RejectHandler = Callable[["Scope", "Receive", "Send", "Decision"], Awaitable[None]]

# Body messages after which nothing more is sent, unless more_body or trailers follow.
_BODY = frozenset({"http.response.body", "http.response.zerocopysend"})


async def send_problem(scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
    """The default ``on_reject``: ``decision.response()`` (problem+json, ``Retry-After``)."""
    status, headers, body = decision.response()
    await send(
        {"type": "http.response.start", "status": status, "headers": encode_headers(headers)}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RateLimitMiddleware:
    """Rate-limit an ASGI application.

    ``limiter`` decides; ``request_info(scope)`` builds the
    :class:`~ratemw.RequestInfo` (default: :func:`ratemw.request.from_asgi_scope`);
    ``on_reject(scope, receive, send, decision)`` answers a rejection (default:
    :func:`send_problem`). Scopes other than ``http`` (websocket, lifespan) pass
    through untouched. If deciding raises, the error is logged and the request
    goes through: a limiter failure never becomes a 500.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: AsyncLimiter,
        request_info: Callable[[Scope], RequestInfo] | None = None,
        on_reject: RejectHandler | None = None,
    ) -> None:
        # Configuration only: everything about one request lives in __call__'s locals.
        _check_callables(limiter, request_info, on_reject)
        self.app = app
        self.limiter = limiter
        self.request_info = request_info or from_asgi_scope
        self.on_reject = on_reject or send_problem
        # A Decision without a coroutine when the fast path has it (AsyncLimiter.decide_nowait).
        self._decide: Callable[[RequestInfo], Decision | Awaitable[Decision]] = getattr(
            limiter, "decide_nowait", limiter.decide
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision: Decision | None = None
        # Functions stored on the instance, read first: calling them as
        # `self.f(...)` would look them up as methods, slowly, on every request.
        decide, request_info = self._decide, self.request_info
        if request_info is from_asgi_scope:  # its one-argument twin, as in ratemw.wsgi
            request_info = _scope_info
        try:
            decided = decide(request_info(scope))
            decision = decided if isinstance(decided, Decision) else await decided
            # Rendered now: remaining and reset are read here.
            extra = decision.encoded_headers()
        except Exception as exc:
            if decision is not None:
                decision.release()
            log_decide_failure(exc)
            await self.app(scope, receive, send)
            return
        # status and _outcome read directly: the properties cost a call each, per request.
        if decision.status >= 300:
            await self.on_reject(scope, receive, send, decision)
            return
        if not decision._outcome.slots:  # nothing to give back: only add the headers
            if not extra:
                await self.app(scope, receive, send)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return

        release = decision.release  # idempotent: the first caller gives the slots back
        trailers = False

        async def send_and_release(message: Message) -> None:
            nonlocal trailers
            kind = message["type"]
            if kind == "http.response.start":
                trailers = bool(message.get("trailers", False))
                if extra:
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                await send(message)
                return
            if kind in _BODY:
                final = not message.get("more_body", False) and not trailers
            elif kind == "http.response.trailers":
                final = not message.get("more_trailers", False)
            else:
                final = kind == "http.response.pathsend"
            await send(message)
            if final:
                release()

        async def receive_and_release() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                release()
            return message

        try:
            await self.app(scope, receive_and_release, send_and_release)
        finally:
            release()
