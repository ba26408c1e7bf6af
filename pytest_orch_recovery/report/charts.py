"""Inline SVG charts for the HTML report: success-criteria rates with their Wilson interval,
failures by reason, and the recovery-time distribution. Pure functions from figures to markup;
no script, no external resource. Every mark carries a ``<title>`` for hover and the chart an
``aria-label``; the numbers are also printed as text, so nothing depends on hovering.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from pytest_orch_recovery.report.metrics import CriterionResult, ReasonRow
from pytest_orch_recovery.report.stats import wilson_interval

# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
COLOURS = {
    "ok": "#009e73",  # succeeded / pass
    "fail": "#d55e00",  # failed attempt / fail
    "open": "#8a8a8a",  # no exit recorded / insufficient samples
    "wait": "#e69f00",  # backoff before the next attempt
    "fault": "#cc79a7",  # fault injected
    "operator": "#0072b2",  # operator action
    "ink": "#1f2328",
    "muted": "#59636e",
    "grid": "#d8dee4",
}

_TICK_STEPS = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def tick_step(span: float, most: int = 8) -> float:
    """The smallest round step (seconds) that draws at most ``most`` intervals over ``span``.

    >>> tick_step(60), tick_step(400), tick_step(5000), tick_step(0.5)
    (10, 60, 900, 0.1)
    """
    for step in _TICK_STEPS:
        if span / step <= most:
            return step
    return _TICK_STEPS[-1] * math.ceil(span / (_TICK_STEPS[-1] * most))


def time_label(seconds: float, step: float) -> str:
    """A tick label in the unit its step is counted in.

    >>> time_label(30, 10), time_label(120, 60), time_label(5400, 1800), time_label(0, 10)
    ('30 s', '2 min', '90 min', '0')
    >>> time_label(5400, 3600)
    '1.5 h'
    >>> time_label(172800, 86400), time_label(0.5, 0.1)
    ('2 d', '0.5 s')
    """
    if seconds == 0:
        return "0"
    for size, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")):
        if step >= size:
            return f"{seconds / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + " s"


def duration_text(seconds: float | None) -> str:
    """A duration as a person reads it: ``2.8 s``, ``1 min 5 s``, ``2 h 10 min``.

    >>> duration_text(2.77), duration_text(65), duration_text(7800), duration_text(None)
    ('2.8 s', '1 min 5 s', '2 h 10 min', 'n/a')
    """
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")


def _svg(width: int, height: int, label: str, body: str, cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{esc(text)}</text>'


# --------------------------------------------------------------------------- criteria

_RATE_TITLES = {
    "recovery_rate": "Recovery rate",
    "first_try_simple": "First try, simple tasks",
    "first_try_complex": "First try, complex tasks",
}
_VERDICT_COLOUR = {
    "pass": COLOURS["ok"],
    "fail": COLOURS["fail"],
    "insufficient samples": COLOURS["open"],
}


_MATH = {">": ">", ">=": "\u2265", "<=": "\u2264"}


def _percent(rate: float) -> str:
    """``95.5%``, ``100%``.

    >>> _percent(0.955), _percent(1.0), _percent(0.9)
    ('95.5%', '100%', '90%')
    """
    return f"{100 * rate:.1f}".removesuffix(".0") + "%"


def criteria_chart(results: Sequence[CriterionResult]) -> str:
    """One row per rate criterion on a 0-100% scale: the observed rate (dot), its Wilson 95%
    interval (bar), the threshold (dashed line), coloured by verdict."""
    rates = [r for r in results if r.is_rate]
    # Wide enough for the longest name beside the longest verdict ("First try, complex
    # tasks" and "INSUFFICIENT SAMPLES"): the browser test measures that they never meet.
    width, left, right, row = 400, 10, 388, 58
    top = 24
    height = top + row * len(rates) + 8
    scale = right - left
    parts = []
    for pct in (0, 25, 50, 75, 100):
        x = left + scale * pct / 100
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 8}"/>'
        )
        anchor = {0: "start", 100: "end"}.get(pct, "middle")
        parts.append(_text(x, top - 10, f"{pct}%", anchor=anchor, cls="tick"))
    for i, r in enumerate(rates):
        y = top + i * row
        colour = _VERDICT_COLOUR[r.verdict]
        name = _RATE_TITLES.get(r.name, r.name)
        parts.append(_text(left, y + 14, name, cls="label"))
        verdict = r.verdict.upper()
        parts.append(
            _text(right, y + 14, verdict, anchor="end", cls="verdict").replace(
                "<text ", f'<text fill="{colour}" ', 1
            )
        )
        cy = y + 30
        parts.append(
            f'<rect class="track" x="{left}" y="{cy - 5}" width="{scale}" height="10" rx="5"/>'
        )
        n = r.n or 0
        low, high = wilson_interval(r.successes or 0, n)
        tx = left + scale * r.threshold
        title = r.describe()
        if r.observed is not None:
            x1, x2 = left + scale * low, left + scale * high
            ox = left + scale * r.observed
            parts.append(
                f'<g class="rate"><title>{esc(title)}</title>'
                f'<rect x="{x1:.1f}" y="{cy - 5}" width="{max(x2 - x1, 2):.1f}" height="10" '
                f'rx="5" fill="{colour}" fill-opacity=".35"/>'
                f'<circle cx="{ox:.1f}" cy="{cy}" r="6" fill="{colour}" stroke="#fff" '
                f'stroke-width="1.5"/></g>'
            )
            caption = (
                f"{_percent(r.observed)} ({r.successes}/{n}), CI {low:.0%} to "
                f"{high:.0%}, needs {_MATH[r.comparison]} {_percent(r.threshold)}"
            )
        else:
            caption = f"no samples yet, needs {_MATH[r.comparison]} {_percent(r.threshold)}"
        parts.append(
            f'<line class="threshold" x1="{tx:.1f}" y1="{cy - 10}" x2="{tx:.1f}" '
            f'y2="{cy + 10}"><title>threshold {esc(r.comparison)} '
            f"{r.threshold:.0%}</title></line>"
        )
        parts.append(_text(left, cy + 22, caption, cls="caption"))
    label = "; ".join(r.describe() for r in rates)
    return _svg(width, height, label or "no rate criteria", "".join(parts))


# --------------------------------------------------------------------------- reasons


def reasons_chart(rows: Sequence[ReasonRow]) -> str:
    """Failed attempts by attributed reason, most first (reasons never seen left out)."""
    seen = sorted((r for r in rows if r.count), key=lambda r: (-r.count, str(r.reason)))
    if not seen:
        return '<p class="empty">No failed attempts.</p>'
    width, left, right, row = 340, 100, 262, 24
    height = row * len(seen) + 8
    most = max(r.count for r in seen)
    parts = []
    for i, r in enumerate(seen):
        y = 4 + i * row
        w = (right - left) * r.count / most
        agents = ", ".join(r.common_agents)
        title = f"{r.reason}: {r.count} failed attempt(s), {r.percentage:.0f}% of all" + (
            f"; most often {agents}" if agents else ""
        )
        parts.append(
            f"<g><title>{esc(title)}</title>"
            + _text(left - 8, y + 15, str(r.reason), anchor="end", cls="label")
            + f'<rect x="{left}" y="{y + 3}" width="{max(w, 2):.1f}" height="16" rx="3" '
            f'fill="{COLOURS["fail"]}"/>'
            + _text(left + w + 6, y + 15, f"{r.count} ({r.percentage:.0f}%)", cls="value")
            + "</g>"
        )
    label = "Failed attempts by reason: " + ", ".join(f"{r.reason} {r.count}" for r in seen)
    return _svg(width, height, label, "".join(parts))


# --------------------------------------------------------------------------- recovery times


def _count_step(most: int) -> int:
    """A round step for a count axis up to ``most``: at most five gridlines.

    >>> _count_step(3), _count_step(8), _count_step(219), _count_step(40)
    (1, 2, 50, 10)
    """
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500):
        if most / step <= 5:
            return step
    return int(10 ** len(str(most // 5)))


def recovery_time_chart(times: Sequence[float], p50: float | None, p95: float | None) -> str:
    """A histogram of recovery times on a time axis with units, with p50 and p95 marked.
    Outliers beyond twice the p95 share one last bar, so a long tail cannot squash the rest."""
    if not times:
        return '<p class="empty">No recovered tasks yet.</p>'
    longest = max(times)
    cut = longest if p95 is None or longest <= 2 * p95 else 2 * p95
    step = tick_step(cut if cut > 0 else 1.0, most=10)
    bins = max(1, math.ceil(cut / step + 1e-9))
    if cut >= bins * step:
        bins += 1
    tail = sum(1 for t in times if t >= bins * step)
    counts = [0] * (bins + (1 if tail else 0))
    for t in times:
        counts[min(int(t // step), len(counts) - 1)] += 1
    width, left, right, top, bottom = 340, 30, 326, 40, 176
    height = bottom + 34
    most = max(counts)
    bw = (right - left) / len(counts)
    parts = []
    for k in range(0, most + 1, _count_step(most)):
        y = bottom - (bottom - top) * k / most
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        parts.append(_text(left - 6, y + 4, str(k), anchor="end", cls="tick"))
    for i, c in enumerate(counts):
        if not c:
            continue
        h = (bottom - top) * c / most
        x = left + i * bw
        title = (
            f"{c} task(s) recovered in {time_label(i * step, step)} to "
            f"{time_label((i + 1) * step, step)}"
            if i < bins
            else f"{c} task(s) took {time_label(bins * step, step)} or longer (the longest "
            f"{duration_text(longest)})"
        )
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{bottom - h:.1f}" width="{bw - 2:.1f}" '
            f'height="{h:.1f}" fill="{COLOURS["ok"]}"><title>{esc(title)}</title>'
            "</rect>"
        )
    for i in range(bins + (0 if tail else 1)):
        x = left + i * bw
        if bins > 6 and i % 2:
            continue
        parts.append(_text(x, bottom + 16, time_label(i * step, step), anchor="middle", cls="tick"))
    if tail:
        parts.append(
            _text(left + (bins + 0.5) * bw, bottom + 16, "more", anchor="middle", cls="tick")
        )
    parts.append(f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>')
    for row, (name, value) in enumerate((("p50", p50), ("p95", p95))):
        if value is None:
            continue
        x = left + bw * min(value / step, bins + 0.5)
        anchor, dx = ("end", -4) if x > (left + right) / 2 else ("start", 4)
        y = 12 + 14 * row
        parts.append(
            f'<g class="pct"><title>{name} {esc(duration_text(value))}</title>'
            f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x:.1f}" y2="{bottom}"/>'
            + _text(x + dx, y, f"{name} {duration_text(value)}", anchor=anchor, cls="value")
            + "</g>"
        )
    parts.append(
        _text(
            (left + right) / 2,
            height - 2,
            "tasks by time from first failure to success",
            anchor="middle",
            cls="caption",
        )
    )
    label = (
        f"Recovery times of {len(times)} tasks: p50 {duration_text(p50)}, p95 {duration_text(p95)}"
    )
    return _svg(width, height, label, "".join(parts))
