"""The what-if preview on a version's page: what the page shows of the stored preview,
the "Run the preview" action (the REST API's ``previewVersion``) and its plot, served
as an SVG file of our own origin (an ``<img>``: the page's CSP allows nothing else)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratemw.control.errors import NotFound, ServiceError
from ratemw.control.http import _path_id
from ratemw.control.ui.answers import Answer
from ratemw.control.ui.web import Console, Ctx, Form, Redirect

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["preview_context", "preview_plot", "run_preview"]

SVG = "image/svg+xml; charset=utf-8"


def preview_context(console: Console, version_id: int, enforced: int | None) -> dict[str, Any]:
    """The version page's ``preview`` section: the latest stored preview (None before
    any), whether a recording is configured, and whether the preview is current."""
    svc = console.service
    stored = svc.stored_preview(version_id)
    rows = []
    if stored is not None and stored.ok:
        # Flipped rows first, most flips first; then what matched and did not change.
        rows = sorted(
            stored.report.get("rules", []),
            key=lambda r: (-(r["allowed_to_rejected"] + r["rejected_to_allowed"]),
                           r["rule"], r["tier"] or ""),
        )  # fmt: skip
    return {
        "preview": stored,
        "preview_rows": rows,
        "traffic": svc.traffic is not None,
        "preview_stale": stored is not None and stored.baseline != enforced,
    }


def run_preview(console: Console, ctx: Ctx, form: Form) -> Redirect:
    """Replay the recording against the version (or find the stored preview)."""
    vid = _path_id("id", ctx.params["id"])
    console.service.preview(ctx.principal, vid)
    return Redirect(f"/ui/versions/{vid}#preview", "previewed")


async def preview_plot(console: Console, request: Request) -> Response:
    """The latest preview's plot of a version, for a signed-in viewer."""
    from starlette.concurrency import run_in_threadpool

    ctx = console.context(request)

    def find() -> Answer:
        if ctx is None:
            return console.render(None, console.error(401, "Sign in to see the plot."))
        try:
            vid = _path_id("id", str(request.path_params.get("id", "")))
            stored = console.service.stored_preview(vid)
            if stored is None or not stored.plot:
                raise NotFound(f"version {vid} has no preview plot")
        except ServiceError as exc:  # not an id (422), or nothing to show (404)
            return console.render(ctx, console.error(exc.status, str(exc)))
        return Answer(200, stored.plot.encode("utf-8"), SVG)

    return (await run_in_threadpool(find)).response()
