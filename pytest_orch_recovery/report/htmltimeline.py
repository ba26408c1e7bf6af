"""The report's timeline section: one panel per group of tasks (a chaos campaign's scenario),
each an SVG with a time axis in round units and one lane per task, and under it a ``<details>``
element per task with every attempt's exit, reason, evidence, partial work and what followed.

An attempt's bar is a link to its entry in the details (a click opens them, no script); its
``<title>`` shows the same facts on hover. Fault marks, known only to a chaos campaign, carry
``class="fault"``; everything else comes from the journal's events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pytest_orch_recovery.report.charts import COLOURS, duration_text, esc, tick_step, time_label
from pytest_orch_recovery.report.timeline import (
    GROUP_SEPARATOR,
    AttemptSpan,
    TaskLane,
    grouped,
)

MAX_TIMELINE_TASKS = 120  # lanes drawn; the rest are counted as omitted

# Geometry in SVG user units; the SVG scales to its column, never below its CSS min-width.
_W, _PLOT_X0, _PLOT_X1 = 960, 206, 944
_AXIS_H, _LANE_H = 40, 48


def stamp(time: float) -> str:
    """A journal time as UTC wall-clock text.

    >>> stamp(1753261200.0)
    '2025-07-23 09:00:00 UTC'
    """
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


FaultNotes = Mapping[tuple[str, int], Sequence[str]]


def _fault_notes(
    campaign: Mapping[str, Any] | None,
) -> tuple[dict[tuple[str, int], list[str]], dict[str, list[str]]]:
    """The ledger's hits: per (task id as the events name it, attempt), and per group for
    faults that hit the whole run (a coordinator crash)."""
    by_attempt: dict[tuple[str, int], list[str]] = {}
    by_group: dict[str, list[str]] = {}
    for entry in (campaign or {}).get("ledger", ()):
        trig = entry.get("trigger") or {}
        trigger = (
            f"after {trig['path']} is written"
            if trig.get("path")
            else f"at {trig.get('event')} #{trig.get('n')}"
        )
        head = f"fault {entry.get('id')} ({entry.get('kind')}, {trigger})"
        scenario = str(entry.get("scenario", ""))
        for hit in entry.get("hits", ()):
            note = f"{head}: {str(hit.get('status', '')).replace('_', ' ')}"
            if hit.get("detail"):
                note += f", {hit['detail']}"
            task, attempt = str(hit.get("task")), int(hit.get("attempt") or 0)
            if task == "*" or attempt < 1:
                by_group.setdefault(scenario, []).append(note)
            else:
                key = (f"{scenario}{GROUP_SEPARATOR}{task}" if scenario else task, attempt)
                by_attempt.setdefault(key, []).append(note)
    return by_attempt, by_group


def _attempt_label(span: AttemptSpan) -> str:
    if span.succeeded:
        return f"#{span.number} succeeded" + (f", PR #{span.pr}" if span.pr is not None else "")
    if span.reason is None:
        return f"#{span.number} " + ("running" if span.end is None else "exited")
    then = "".join(f" → {f.strategy}" for f in span.followups)
    return f"#{span.number} {span.reason}{then}"


def _attempt_title(lane: TaskLane, span: AttemptSpan, t0: float) -> str:
    end = "running" if span.end is None else f"+{duration_text(span.end - t0)}"
    lines = [
        f"{lane.name} attempt {span.number} ({span.launched_as or 'first attempt'}): "
        f"+{duration_text(span.start - t0)} to {end}",
        f"exit: {span.exit_text}",
    ]
    if span.reason is not None:
        lines.append(f"reason: {span.reason} ({(span.confidence or 0):.0%})")
        if span.evidence:
            lines.append(f"evidence: {span.evidence}")
        lines.append("partial work: " + (", ".join(span.partial) or "none"))
    for f in span.followups:
        lines.append(
            f"then: {f.strategy}"
            + (f" after {duration_text(f.delay)}" if f.delay else "")
            + (f" ({f.why})" if f.why else "")
        )
    return "\n".join(_short(x, 400) for x in lines)


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Plot:
    """The time scale of one group's panel."""

    def __init__(self, lanes: Sequence[TaskLane]) -> None:
        self.t0 = min(lane.first_time for lane in lanes)
        last = max(
            [lane.last_time for lane in lanes]
            + [a.end or a.start for lane in lanes for a in lane.attempts]
            + [f.time + f.delay for lane in lanes for a in lane.attempts for f in a.followups]
        )
        span = max(last - self.t0, 1.0)
        self.step = tick_step(span)
        ticks = max(1, -(-span // self.step))
        self.end = ticks * self.step

    def x(self, time: float) -> float:
        return _PLOT_X0 + (_PLOT_X1 - _PLOT_X0) * (time - self.t0) / self.end


def _axis(plot: _Plot, height: float, lanes: Sequence[TaskLane]) -> str:
    """Ticks with units along the top, and a diamond there for each operator action."""
    parts = []
    actions: dict[float, list[str]] = {}
    for lane in lanes:
        for mark in lane.marks:
            if mark.kind == "operator":
                names = actions.setdefault(mark.time, [_short(mark.text, 300)])
                names.append(lane.name)
    for time, (text, *names) in sorted(actions.items()):
        x = plot.x(time)
        title = f"operator action at +{duration_text(time - plot.t0)}: {text} ({', '.join(names)})"
        parts.append(
            f'<g class="operator"><title>{esc(title)}</title>'
            f'<path d="M{x:.1f} {_AXIS_H - 14}l6 6-6 6-6-6z" '
            f'fill="{COLOURS["operator"]}"/><text class="op-label" x="{x + 9:.1f}" '
            f'y="{_AXIS_H - 4}">operator</text></g>'
        )
    count = round(plot.end / plot.step)
    for i in range(count + 1):
        seconds = i * plot.step
        x = plot.x(plot.t0 + seconds)
        parts.insert(
            0,
            f'<line class="grid" x1="{x:.1f}" y1="{_AXIS_H - 20}" x2="{x:.1f}" y2="{height:.1f}"/>',
        )
        anchor = "end" if i == count else ("start" if i == 0 else "middle")
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="14" '
            f'text-anchor="{anchor}">{esc(time_label(seconds, plot.step))}</text>'
        )
    parts.append(
        f'<text class="tick" x="{_PLOT_X0 - 8}" y="14" text-anchor="end">time since start</text>'
    )
    return f'<g class="axis-ticks">{"".join(parts)}</g>'


_CHAR_W = 6.6  # a generous width of one 11 px label character (tests measure it in Chromium)
_LABEL_GAP = 6.0


class _LabelRows:
    """One lane's bar labels on two rows, above and below its bars, none over another: a label
    goes at its bar's start when there is room on a row, else right after the last label of
    the emptier row; one that fits nowhere is shortened to its attempt number, and left out
    when even that does not fit (the bar's title and the details still say it all)."""

    def __init__(self) -> None:
        self.ends = [-math.inf, -math.inf]  # right end of the last label on each row

    def place(self, x0: float, texts: tuple[str, ...], first: int) -> tuple[str, float, int] | None:
        rows = (first, 1 - first)
        for text in texts:
            width = _CHAR_W * len(text)
            want = min(x0, _PLOT_X1 - width)
            for row in rows:
                if want >= self.ends[row] + _LABEL_GAP:
                    self.ends[row] = want + width
                    return text, want, row
            row = min(rows, key=lambda r: self.ends[r])
            x = self.ends[row] + _LABEL_GAP
            if x + width <= _PLOT_X1:
                self.ends[row] = x + width
                return text, x, row
        return None


def _lane_svg(index: int, lane: TaskLane, row: int, plot: _Plot, faults: FaultNotes) -> str:
    """One task's lane, in layers: its name, then operator lines and backoff waits, then the
    attempt bars (each a link to its details, with its label and any fault mark), then the
    escalation and give-up flags."""
    top = _AXIS_H + row * _LANE_H
    head = [
        f'<rect class="lane" x="0" y="{top + 2}" width="{_W}" height="{_LANE_H - 4}" rx="4"/>',
        f'<text class="name" x="8" y="{top + 20}">{esc(_short(lane.name, 26))}</text>',
        f'<text class="title" x="8" y="{top + 36}">{esc(_short(lane.title, 30))}</text>',
    ]
    behind, bars, front = [], [], []
    rows = _LabelRows()
    for span in lane.attempts:
        x0 = plot.x(span.start)
        x1 = plot.x(span.end) if span.end is not None else plot.x(lane.last_time)
        state = "ok" if span.succeeded else ("fail" if span.reason is not None else "open")
        label = _attempt_label(span)
        notes = faults.get((lane.task_id, span.number), ())
        fault = (
            (
                f'<g class="fault"><title>{esc(chr(10).join(notes))}</title>'
                f'<circle cx="{x0 + 6:.1f}" cy="{top + 25}" r="5" fill="{COLOURS["fault"]}" '
                'stroke="#fff" stroke-width="1.5"/></g>'
            )
            if notes
            else ""
        )
        placed = rows.place(x0, (label, f"#{span.number}"), 0 if span.number % 2 else 1)
        text = (
            ""
            if placed is None
            else f'<text class="bar-label" x="{placed[1]:.1f}" '
            f'y="{top + 13 if placed[2] == 0 else top + 45}">{esc(placed[0])}</text>'
        )
        bars.append(
            f'<a href="#a{index}-{span.number}" class="attempt" data-attempt="{span.number}">'
            f"<title>{esc(_attempt_title(lane, span, plot.t0))}</title>"
            f'<rect class="bar {state}" x="{x0:.1f}" y="{top + 17}" '
            f'width="{max(x1 - x0, 4.0):.1f}" height="16" rx="3" fill="{COLOURS[state]}"/>'
            f"{text}{fault}</a>"
        )
        for f in span.followups:
            if f.delay > 0:
                wx0, wx1 = plot.x(f.time), plot.x(f.time + f.delay)
                behind.append(
                    f'<rect class="wait" x="{wx0:.1f}" y="{top + 21}" '
                    f'width="{max(wx1 - wx0, 2):.1f}" height="8" fill="{COLOURS["wait"]}">'
                    f"<title>{esc(f'backoff {duration_text(f.delay)} before {f.strategy}')}"
                    "</title></rect>"
                )
    for mark in lane.marks:
        x = plot.x(mark.time)
        title = esc(f"{mark.kind}: {_short(mark.text, 300)}")
        if mark.kind == "operator":
            behind.insert(
                0,
                (
                    f'<g class="operator"><title>{title}</title>'
                    f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + _LANE_H}" '
                    f'stroke="{COLOURS["operator"]}" stroke-width="2" stroke-dasharray="4 2"/></g>'
                ),
            )
        else:
            front.append(
                f'<g class="{mark.kind}"><title>{title}</title>'
                f'<path d="M{x:.1f} {top + 35}v-20l9 4-9 4" fill="{COLOURS["ink"]}" '
                f'stroke="{COLOURS["ink"]}" stroke-width="1.5"/></g>'
            )
    return "".join(head + behind + bars + front)


def _details(index: int, lane: TaskLane, t0: float, faults: FaultNotes) -> str:
    attempts = []
    for span in lane.attempts:
        end = "running" if span.end is None else f"+{duration_text(span.end - t0)}"
        took = "" if span.end is None else f" ({duration_text(span.end - span.start)})"
        rows = [("exit", span.exit_text)]
        if span.reason is not None:
            rows.append(("reason", f"{span.reason} (confidence {(span.confidence or 0):.0%})"))
            rows.append(("evidence", span.evidence or "none recorded"))
            rows.append(("partial work", ", ".join(span.partial) or "none"))
        if span.succeeded:
            rows.append(
                ("result", "succeeded" + (f", PR #{span.pr}" if span.pr is not None else ""))
            )
        for f in span.followups:
            wait = f", after a backoff of {duration_text(f.delay)}" if f.delay else ""
            rows.append(("then", f"{f.strategy}{wait}: {f.why}"))
        dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_short(v, 600))}</dd>" for k, v in rows)
        notes = "".join(
            f'<p class="fault">{esc(n)}</p>' for n in faults.get((lane.task_id, span.number), ())
        )
        attempts.append(
            f'<li id="a{index}-{span.number}"><b>Attempt {span.number}</b> '
            f"({esc(span.launched_as or 'first attempt')}"
            f"{', agent ' + esc(span.agent) if span.agent else ''}): "
            f"+{esc(duration_text(span.start - t0))} to {esc(end)}{esc(took)}"
            f"<dl>{dl}</dl>{notes}</li>"
        )
    marks = "".join(
        f"<li>+{esc(duration_text(m.time - t0))} {esc(m.kind)}: {esc(_short(m.text, 400))}</li>"
        for m in lane.marks
    )
    recovery = (
        f", recovery {duration_text(lane.recovery_time)}" if lane.recovery_time is not None else ""
    )
    summary = (
        f'<b>{esc(lane.name)}</b> <span class="badge {esc(lane.outcome)}">'
        f"{esc(lane.outcome)}</span> {esc(_short(lane.title, 80))} · "
        f"{len(lane.attempts)} attempt(s){esc(recovery)}"
    )
    return (
        f'<details id="t{index}"><summary>{summary}</summary>'
        f'<ol class="attempts">{"".join(attempts)}</ol>'
        + (f'<ul class="marks">{marks}</ul>' if marks else "")
        + "</details>"
    )


def _legend(with_faults: bool) -> str:
    def swatch(shape: str) -> str:
        return f'<svg width="22" height="14" viewBox="0 0 22 14" aria-hidden="true">{shape}</svg>'

    items = [
        (
            f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["ok"]}"/>',
            "attempt that succeeded",
            "",
        ),
        (
            f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["fail"]}"/>',
            "failed attempt (label: number, attributed reason → strategy that followed)",
            "",
        ),
        (
            f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["open"]}"/>',
            "no attribution or no exit recorded",
            "",
        ),
        (
            f'<rect x="1" y="4" width="20" height="6" fill="{COLOURS["wait"]}"/>',
            "backoff before the next attempt",
            "",
        ),
        (
            f'<circle cx="11" cy="7" r="5" fill="{COLOURS["fault"]}"/>',
            "fault injected into this attempt",
            "fault",
        ),
        (
            f'<path d="M11 0l5 5-5 5-5-5z" fill="{COLOURS["operator"]}"/>'
            f'<line x1="11" y1="8" x2="11" y2="14" stroke="{COLOURS["operator"]}"'
            ' stroke-width="2"/>',
            "operator action",
            "",
        ),
        (f'<path d="M8 13v-12l9 4-9 4" fill="{COLOURS["ink"]}"/>', "escalated or given up", ""),
    ]
    body = "".join(
        f"<li{' class=' + chr(34) + cls + chr(34) if cls else ''}>{swatch(shape)}{esc(text)}</li>"
        for shape, text, cls in items
        if with_faults or not cls
    )
    return f'<ul class="legend" aria-label="legend">{body}</ul>'


def timeline_section(
    lanes: Sequence[TaskLane], tasks: int, campaign: Mapping[str, Any] | None
) -> str:
    """The ``<section id="timeline">``: the first lanes of ``lanes`` (in the order the tasks
    first appeared), and the rest of ``tasks`` counted as not drawn; ``campaign`` (the gate's
    JSON) adds the fault marks."""
    shown = lanes[:MAX_TIMELINE_TASKS]
    by_attempt, by_group = _fault_notes(campaign)
    panels = []
    index = 0
    for group, members in grouped(shown):
        plot = _Plot(members)
        height = _AXIS_H + _LANE_H * len(members) + 4
        rows = []
        details = []
        for row, lane in enumerate(members):
            index += 1
            rows.append(_lane_svg(index, lane, row, plot, by_attempt))
            details.append(_details(index, lane, plot.t0, by_attempt))
        group_notes = "".join(f'<p class="fault">{esc(n)}</p>' for n in by_group.get(group, ()))
        name = group or "Tasks"
        label = (
            f"Timeline of {name}: {len(members)} task(s), axis in "
            f"{time_label(plot.step, plot.step).split()[-1]} from {stamp(plot.t0)}"
        )
        panels.append(
            f'<section class="group"><h3>{esc(name)}</h3>'
            f'<p class="note">t = 0 at {esc(stamp(plot.t0))}; ticks every '
            f"{esc(duration_text(plot.step))}.</p>{group_notes}"
            f'<div class="scroll"><svg class="timeline" viewBox="0 0 {_W} {height}" '
            f'role="group" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
            f"{_axis(plot, height, members)}{''.join(rows)}</svg></div>"
            f'<div class="tasks">{"".join(details)}</div></section>'
        )
    omitted = tasks - len(shown)
    more = (
        f'<p class="note">{omitted} more task(s) not drawn; the JSON report lists every one.</p>'
        if omitted > 0
        else ""
    )
    body = "".join(panels) or '<p class="empty">No tasks in these events.</p>'
    return (
        '<section id="timeline"><h2>Timeline</h2><p class="note">One lane per task; '
        "hover over an attempt for its evidence, or click it to open its details.</p>"
        f"{_legend(campaign is not None)}{body}{more}</section>"
    )
