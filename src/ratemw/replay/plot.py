"""The report's plot: admitted and rejected per time bucket, before and after, as a
small self-contained SVG (no plotting library)."""

from __future__ import annotations

import math
import time
from xml.sax.saxutils import escape

from ratemw.replay.engine import Run
from ratemw.replay.reader import Recording

__all__ = ["bucket_seconds", "series", "svg"]

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 800, 360, 60, 150, 30, 40
#: (label, colour, dashed) of the four lines, in drawing order
_LINES = (
    ("admitted before", "#1f77b4", True),
    ("admitted after", "#1f77b4", False),
    ("rejected before", "#d62728", True),
    ("rejected after", "#d62728", False),
)
_MAX_BUCKETS = 360


def bucket_seconds(span: float) -> int:
    """A bucket of whole minutes, so that the plot has at most 360 points."""
    return 60 * max(1, math.ceil(span / 60 / _MAX_BUCKETS))


def series(recording: Recording, before: Run, after: Run) -> tuple[float, int, list[list[int]]]:
    """(first bucket's wall time, bucket seconds, four count lists as in ``_LINES``)."""
    arrivals = recording.arrivals
    if not arrivals:
        return 0.0, 60, [[] for _ in _LINES]
    width = bucket_seconds(arrivals[-1].wall - arrivals[0].wall)
    start = arrivals[0].wall // width * width
    n = int((arrivals[-1].wall - start) // width) + 1
    lines = [[0] * n for _ in _LINES]
    for a, b, c in zip(arrivals, before.outcomes, after.outcomes, strict=True):
        if b is None or c is None:
            continue
        i = int((a.wall - start) // width)
        lines[0 if b.allowed else 2][i] += 1
        lines[1 if c.allowed else 3][i] += 1
    return start, width, lines


def _num(x: float) -> str:
    return f"{x:.1f}"


def svg(recording: Recording, before: Run, after: Run, title: str = "ratemw replay") -> str:
    """The plot as an SVG document."""
    start, width, lines = series(recording, before, after)
    n = max(len(lines[0]), 1)
    top = max((max(line, default=0) for line in lines), default=0) or 1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return _TOP + plot_h * (1 - v / top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_LEFT}" y="18" font-size="14">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" '
        f'y2="{_TOP + plot_h}" stroke="black"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="black"/>',
    ]
    for tick in range(5):
        value = round(top * tick / 4)
        out.append(
            f'<text x="{_LEFT - 6}" y="{_num(y(value) + 4)}" text-anchor="end">{value}</text>'
        )
    for i in sorted({0, (n - 1) // 2, n - 1}):
        label = time.strftime("%H:%M", time.gmtime(start + i * width))
        out.append(
            f'<text x="{_num(x(i))}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{label}</text>'
        )
    out.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" text-anchor="middle">'
        f"UTC, requests per {width // 60} min</text>"
    )
    for k, ((label, colour, dashed), counts) in enumerate(zip(_LINES, lines, strict=True)):
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        points = " ".join(f"{_num(x(i))},{_num(y(v))}" for i, v in enumerate(counts))
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}"/>'
        )
        ly = _TOP + 10 + 20 * k
        lx = _W - _RIGHT + 10
        out.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
