"""SVG charts drawn from numbers: no script, no library, no inline style.

Series differ by shape as well as colour (a filled area against a dashed line, bars
with their label and value written out), and each chart carries a text title and
description, so no information rests on colour alone. Colours come from the
stylesheet through class names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

__all__ = ["bars", "timeline"]


@functools.lru_cache(maxsize=16)
def _xs(count: int, width: float, pad: float) -> tuple[str, ...]:
    step = width / max(1, count - 1)
    return tuple(f"{pad + i * step:.1f}" for i in range(count))


def _points(values: Sequence[int], width: float, height: float, top: int, pad: float) -> str:
    base, scale = pad + height, height / top
    ys = [f"{base - v * scale:.1f}" for v in values]
    return " ".join(map("{},{}".format, _xs(len(values), width, pad), ys))


def _clock(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime("%H:%M")


def timeline(
    label: str,
    allowed: Sequence[int],
    rejected: Sequence[int],
    first_minute: int,
    *,
    width: int = 240,
    height: int = 56,
) -> str:
    """Allowed (area) and rejected (dashed line) decisions per minute, oldest first."""
    pad = 2.0
    inner_w, inner_h = width - 2 * pad, height - 2 * pad - 12
    top = max(1, *allowed, *rejected) if allowed or rejected else 1
    total_a, total_r = sum(allowed), sum(rejected)
    name = escape(label)
    minutes = len(allowed)
    area = (
        f"{pad:.1f},{pad + inner_h:.1f} {_points(allowed, inner_w, inner_h, top, pad)} "
        f"{pad + inner_w:.1f},{pad + inner_h:.1f}"
    )
    start, end = _clock(first_minute), _clock(first_minute + max(0, minutes - 1))
    desc = (
        f"{name}: {total_a} allowed and {total_r} rejected from {start} to {end} UTC; "
        f"at most {top} a minute"
    )
    baseline = pad + inner_h
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{desc}" data-allowed="{total_a}" data-rejected="{total_r}">'
        f"<title>{desc}</title>"
        f'<line class="axis" x1="{pad}" y1="{baseline:.1f}" x2="{pad + inner_w:.1f}" '
        f'y2="{baseline:.1f}"/>'
        f'<polygon class="s-allowed" points="{area}"/>'
        f'<polyline class="s-rejected" points="{_points(rejected, inner_w, inner_h, top, pad)}"/>'
        f'<text class="tick" x="{pad}" y="{height - 2}">{start}</text>'
        f'<text class="tick" x="{pad + inner_w:.1f}" y="{height - 2}" text-anchor="end">'
        f"{end}</text>"
        "</svg>"
    )


def bars(label: str, rows: Sequence[tuple[str, int]], *, width: int = 480) -> str:
    """One labelled horizontal bar per row (``name``, ``value``), the value written out."""
    row_h, label_w, value_w = 22, 150, 70
    height = max(1, len(rows)) * row_h + 4
    top = max([1, *(v for _, v in rows)])
    span = width - label_w - value_w
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="bars-title">'
        f'<title id="bars-title">{escape(label)}: '
        + ", ".join(f"{escape(n)} {v}" for n, v in rows)
        + "</title>"
    ]
    for i, (name, value) in enumerate(rows):
        y = 2 + i * row_h
        length = span * value / top
        css = "bar-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        parts.append(
            f'<text class="bar-label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar {css}" x="{label_w}" y="{y + 3}" width="{length:.1f}" '
            f'height="{row_h - 6}" data-verdict="{escape(name)}" data-value="{value}"/>'
            f'<text class="bar-value" x="{label_w + length + 4:.1f}" y="{y + 15}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
