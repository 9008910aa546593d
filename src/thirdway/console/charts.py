"""The agent page's chart of its trust tier over time: inline SVG drawn on the server (no
script, no front-end build), described for screen readers, with the same data as a table."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from markupsafe import Markup, escape

from thirdway.trust.text import iso

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 110, 20, 16, 36


def tier_chart(
    points: Sequence[tuple[int, int]], *, start: tuple[int, int], now: int, names: Sequence[str]
) -> Markup:
    """A step chart of the tier: ``start`` is (time, initial tier), ``points`` the (time, tier
    after) of each trust event in order, drawn up to ``now``."""
    series = [start, *points]
    first = series[0][0]
    last = max(now, series[-1][0])
    span = max(last - first, 1)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(t: int) -> float:
        return LEFT + (t - first) / span * plot_w

    def y(tier: int) -> float:
        return TOP + (4 - tier) / 4 * plot_h

    path = [f"M{x(series[0][0]):.1f},{y(series[0][1]):.1f}"]
    for (_, before), (when, after) in itertools.pairwise(series):
        path.append(f"H{x(when):.1f}")
        if after != before:
            path.append(f"V{y(after):.1f}")
    path.append(f"H{x(last):.1f}")
    grid = []
    for tier in range(5):
        label = escape(f"{tier} {names[tier]}" if tier < len(names) else str(tier))
        grid.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tier):.1f}" '
            f'y2="{y(tier):.1f}"/><text class="axis" x="{LEFT - 8}" y="{y(tier) + 4:.1f}" '
            f'text-anchor="end">{label}</text>'
        )
    dots = "".join(
        f'<circle class="event" cx="{x(t):.1f}" cy="{y(tier):.1f}" r="3"/>' for t, tier in points
    )
    axis = (
        f'<text class="axis" x="{LEFT}" y="{HEIGHT - 10}">{escape(iso(first))}</text>'
        f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 10}" text-anchor="end">'
        f"{escape(iso(last))}</text>"
    )
    current = series[-1][1]
    description = (
        f"Tier {series[0][1]} at {iso(first)}; {len(points)} trust events; tier {current} now."
    )
    return Markup(
        f'<svg class="tier-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="tier-chart-title tier-chart-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="tier-chart-title">Trust tier over time</title>'
        f'<desc id="tier-chart-desc">{escape(description)}</desc>'
        f"{''.join(grid)}{axis}"
        f'<path class="tier-line" d="{" ".join(path)}"/>{dots}</svg>'
    )
