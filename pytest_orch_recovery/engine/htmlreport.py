"""The HTML report a person opens: one self-contained page (no script, no network, no web
font) from journal events, their metrics and the judged criteria.

Both front doors call :func:`render_html`: the pytest plugin (``--orch-report=x.html``) with
the campaign's facts (``campaign``: the gate's JSON plus ``seed``, ``tier``, ``agent``,
``replay``), and ``orch-recovery report --format html`` over any journal, without them. The
page is built in parts, each a ``<section id=...>``; what needs campaign data (the campaign
section, and the fault marks, which carry ``class="fault"``) is left out without it, and
everything else is drawn from the events alone, so the two pages agree wherever both apply.

Hover shows an SVG ``<title>``; the same facts are in a ``<details>`` element per task, which
a click on an attempt's bar opens (a fragment link, no script).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pytest_orch_recovery import __version__
from pytest_orch_recovery.engine.charts import (
    COLOURS,
    criteria_chart,
    duration_text,
    esc,
    reasons_chart,
    recovery_time_chart,
    tick_step,
    time_label,
)
from pytest_orch_recovery.engine.metrics import CriterionResult, Metrics
from pytest_orch_recovery.engine.model import Event
from pytest_orch_recovery.engine.timeline import AttemptSpan, TaskLane, grouped, task_lanes

MAX_TIMELINE_TASKS = 120  # lanes drawn; the rest are counted as omitted
MAX_LEDGER_ROWS = 200
SECTIONS = ("overview", "criteria", "charts", "timeline")  # and "campaign" with campaign data

# Timeline geometry (SVG user units; the SVG scales to its column, never below min-width).
_W, _LABEL_W, _PLOT_X0, _PLOT_X1 = 960, 196, 206, 944
_AXIS_H, _LANE_H = 40, 48

_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--bg:#f6f8fa;--ok:#009e73;
--fail:#d55e00;--open:#8a8a8a;--wait:#e69f00;--fault:#cc79a7;--op:#0072b2}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif;
color:var(--ink);background:#fff}
main{max-width:1200px;margin:0 auto;padding:16px}
header{border-bottom:1px solid var(--line);margin-bottom:8px}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.2rem;margin:1.4em 0 .5em}
h3{font-size:1rem;margin:1em 0 .3em}
.source,.note,.empty{color:var(--muted);margin:.3em 0}
.verdict{display:inline-block;font-weight:700;padding:.1em .6em;border-radius:1em;color:#fff}
.verdict.pass{background:var(--ok)}.verdict.fail{background:var(--fail)}
.verdict.insufficient{background:var(--open)}
nav{display:flex;flex-wrap:wrap;gap:4px 16px}
.bar-row{display:flex;flex-wrap:wrap;align-items:center;gap:8px 24px;margin:.6em 0 .8em}
.small{font-size:.85rem}
.dash{display:grid;gap:0 16px}
@media (min-width:1000px){.dash{grid-template-columns:1fr 2fr}
.dash #charts .grid{grid-template-columns:1fr 1fr}}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,340px),1fr));gap:16px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0}
.card h3:first-child{margin-top:0}#campaign .card{margin:12px 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:8px;
padding:0;margin:0;list-style:none}
.tiles li{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.tiles b{display:block;font-size:1.4rem;line-height:1.2}
.tiles span{display:block;color:var(--muted);font-size:.8rem;line-height:1.3}
.tiles.counts{grid-template-columns:1fr 1fr}
.tiles .pass{border-left:5px solid var(--ok)}.tiles .fail{border-left:5px solid var(--fail)}
svg.chart{width:100%;height:auto;display:block;font-size:13px}
svg text{fill:var(--ink)}svg .tick,svg .caption{fill:var(--muted);font-size:12px}
svg .label{font-weight:600}svg .verdict{font-weight:700;font-size:12px}
svg .grid{stroke:var(--line)}svg .axis{stroke:var(--muted)}
svg .track{fill:var(--bg);stroke:var(--line)}
svg .threshold{stroke:var(--ink);stroke-width:2;stroke-dasharray:3 2}
svg .pct line{stroke:var(--ink);stroke-dasharray:4 3}
.scroll{overflow-x:auto;max-width:100%}
svg.timeline{width:100%;min-width:880px;height:auto;display:block;font-size:11px}
svg.timeline .name{font-weight:600;font-size:12px}svg.timeline .title{fill:var(--muted)}
svg.timeline .lane{fill:var(--bg)}svg.timeline .op-label{fill:var(--op);font-weight:600}
svg.timeline .bar-label{paint-order:stroke;stroke:var(--bg);stroke-width:4px;
stroke-linejoin:round}
svg.timeline a:hover rect,svg.timeline a:focus rect{stroke:var(--ink);stroke-width:2}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;padding:0;margin:.5em 0;list-style:none;
font-size:.9rem}
.legend li{display:flex;align-items:center;gap:6px}.legend svg{flex:none}
details{border:1px solid var(--line);border-radius:6px;margin:4px 0;padding:0 10px}
details[open]{padding-bottom:8px}summary{cursor:pointer;padding:6px 0}
.badge{font-size:.8rem;font-weight:700;padding:0 .5em;border-radius:1em;color:#fff;
background:var(--open)}
.badge.succeeded,.badge.recovered{background:var(--ok)}
.badge.escalated,.badge.failed{background:var(--fail)}
ol.attempts{padding-left:1.2em}ol.attempts li{margin:.4em 0}
li:target{outline:2px solid var(--op);outline-offset:2px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0 12px;margin:.2em 0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid var(--line);padding:3px 8px;text-align:left}
th{background:var(--bg)}td.n{text-align:right}
footer{margin-top:2em;color:var(--muted);font-size:.85rem}
"""


# --------------------------------------------------------------------------- header


def _stamp(time: float) -> str:
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _overall(results: Sequence[CriterionResult]) -> str:
    verdicts = {r.verdict for r in results}
    if "fail" in verdicts:
        failed = sum(1 for r in results if r.verdict == "fail")
        noun = "criterion" if failed == 1 else "criteria"
        return f'<span class="verdict fail">{failed} {noun} missed</span>'
    if "insufficient samples" in verdicts:
        return '<span class="verdict insufficient">met where judged; some rates lack samples</span>'
    return '<span class="verdict pass">all criteria met</span>'


def _source(events: Sequence[Event], campaign: Mapping[str, Any] | None,
            journals: Sequence[str]) -> str:
    times = [e.time for e in events]
    span = (f"{len(events)} events from {_stamp(min(times))} to {_stamp(max(times))}" if times
            else "no events")
    if campaign is None:
        names = ", ".join(journals) or "journal"
        return f'<p class="source">Journal {esc(names)}: {esc(span)}.</p>'
    return (f'<p class="source">Chaos campaign on the {esc(campaign.get("tier"))} tier, agent '
            f"{esc(campaign.get('agent'))}, seed {esc(campaign.get('seed'))}: "
            f"{esc(campaign.get('runs', 0))} scenario runs, {esc(span)}.</p>"
            f'<p class="source">Replay: <code>{esc(campaign.get("replay", ""))}</code></p>')


# --------------------------------------------------------------------------- criteria, overview


def _count_tiles(results: Sequence[CriterionResult]) -> str:
    words = {"orphaned_workspaces": "orphaned workspaces",
             "unattributed_failures": "unattributed failures"}
    tiles = []
    for r in results:
        if r.is_rate:
            continue
        observed = "-" if r.observed is None else f"{r.observed:g}"
        tiles.append(f'<li class="{esc(r.verdict)}"><b>{observed}</b><span>'
                     f"{esc(words.get(r.name, r.name))}, needs {esc(r.comparison)} "
                     f"{r.threshold:g}: {esc(r.verdict.upper())}</span></li>")
    return f'<ul class="tiles counts">{"".join(tiles)}</ul>'


def _criteria(results: Sequence[CriterionResult], campaign: Mapping[str, Any] | None) -> str:
    basis = ("Dot: the observed rate; band: its Wilson 95% interval; dashed line: the "
             "threshold.")
    if campaign is not None:
        basis += (f" Campaign rules: first-try rates over the {esc(campaign.get('control_tasks'))}"
                  " fault-free tasks; a wrong attribution counts as unattributed.")
    return ('<section id="criteria"><h2>Success criteria</h2><div class="card">'
            f"<h3>Rates against their thresholds</h3>{criteria_chart(results)}"
            f'<p class="note small">{basis}</p><h3>Counts</h3>{_count_tiles(results)}</div>'
            "</section>")


def _overview(m: Metrics) -> str:
    tiles = [
        (m.total_tasks, "tasks"),
        (m.first_try, "succeeded first try"),
        (m.required_recovery, "required recovery"),
        (m.recovered, f"recovered, {m.recovered_after_operator} via an operator"),
        (m.escalated, "still escalated"),
        (m.failed_after_recovery, "failed after recovery"),
        (m.recovering + m.unsettled, "in progress"),
        (m.attempts, f"attempts ({m.failures} failed)"),
        (duration_text(m.recovery_time_mean), "mean recovery time"),
    ]
    body = "".join(f"<li><b>{esc(v)}</b><span>{esc(k)}</span></li>" for v, k in tiles)
    causes = "".join(
        f"<li>{esc(c.cause)} ({len(c.tasks)} tasks; fix applied: "
        f"{esc('; '.join(c.operator_actions) or 'none yet')})</li>"
        for c in m.systematic_causes[:20])
    systematic = f"<h3>Systematic causes</h3><ul>{causes}</ul>" if causes else ""
    return (f'<section id="overview"><h2>Overview</h2><ul class="tiles">{body}</ul>'
            f"{systematic}</section>")


def _charts(m: Metrics) -> str:
    return ('<section id="charts"><h2>Failures and recovery times</h2><div class="grid">'
            f'<div class="card"><h3>Failed attempts by reason</h3>{reasons_chart(m.reasons)}'
            '</div><div class="card"><h3>Recovery time distribution</h3>'
            f"{recovery_time_chart(m.recovery_times, m.recovery_time_p50, m.recovery_time_p95)}"
            "</div></div></section>")


# --------------------------------------------------------------------------- timeline

FaultNotes = Mapping[tuple[str, int], Sequence[str]]


def _fault_notes(campaign: Mapping[str, Any] | None) -> tuple[dict[tuple[str, int], list[str]],
                                                           dict[str, list[str]]]:
    """The ledger's hits: per (task id as the events name it, attempt), and per group for
    faults that hit the whole run (a coordinator crash)."""
    by_attempt: dict[tuple[str, int], list[str]] = {}
    by_group: dict[str, list[str]] = {}
    for entry in (campaign or {}).get("ledger", ()):
        trig = entry.get("trigger") or {}
        trigger = (f"after {trig['path']} is written" if trig.get("path")
                   else f"at {trig.get('event')} #{trig.get('n')}")
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
                key = (f"{scenario}/{task}" if scenario else task, attempt)
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
    lines = [f"{lane.name} attempt {span.number} ({span.launched_as or 'first attempt'}): "
             f"+{duration_text(span.start - t0)} to {end}", f"exit: {span.exit_text}"]
    if span.reason is not None:
        lines.append(f"reason: {span.reason} ({(span.confidence or 0):.0%})")
        if span.evidence:
            lines.append(f"evidence: {span.evidence}")
        lines.append("partial work: " + (", ".join(span.partial) or "none"))
    for f in span.followups:
        lines.append(f"then: {f.strategy}" + (f" after {duration_text(f.delay)}" if f.delay else "")
                     + (f" ({f.why})" if f.why else ""))
    return "\n".join(_short(x, 400) for x in lines)


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Plot:
    """The time scale of one group's panel."""

    def __init__(self, lanes: Sequence[TaskLane]) -> None:
        self.t0 = min(lane.first_time for lane in lanes)
        last = max([lane.last_time for lane in lanes]
                   + [a.end or a.start for lane in lanes for a in lane.attempts]
                   + [f.time + f.delay for lane in lanes for a in lane.attempts
                      for f in a.followups])
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
        parts.append(f'<g class="operator"><title>{esc(title)}</title>'
                     f'<path d="M{x:.1f} {_AXIS_H - 14}l6 6-6 6-6-6z" '
                     f'fill="{COLOURS["operator"]}"/><text class="op-label" x="{x + 9:.1f}" '
                     f'y="{_AXIS_H - 4}">operator</text></g>')
    count = round(plot.end / plot.step)
    for i in range(count + 1):
        seconds = i * plot.step
        x = plot.x(plot.t0 + seconds)
        parts.insert(0, f'<line class="grid" x1="{x:.1f}" y1="{_AXIS_H - 20}" x2="{x:.1f}" '
                     f'y2="{height:.1f}"/>')
        anchor = "end" if i == count else ("start" if i == 0 else "middle")
        parts.append(f'<text class="tick" x="{x:.1f}" y="14" '
                     f'text-anchor="{anchor}">{esc(time_label(seconds, plot.step))}</text>')
    parts.append(f'<text class="tick" x="{_PLOT_X0 - 8}" y="14" text-anchor="end">'
                 "time since start</text>")
    return f'<g class="axis-ticks">{"".join(parts)}</g>'


def _lane_svg(index: int, lane: TaskLane, row: int, plot: _Plot, faults: FaultNotes) -> str:
    """One task's lane, in layers: its name, then operator lines and backoff waits, then the
    attempt bars (each a link to its details, with its label and any fault mark), then the
    escalation and give-up flags."""
    top = _AXIS_H + row * _LANE_H
    head = [f'<rect class="lane" x="0" y="{top + 2}" width="{_W}" height="{_LANE_H - 4}" '
            'rx="4"/>',
            f'<text class="name" x="8" y="{top + 20}">{esc(_short(lane.name, 26))}</text>',
            f'<text class="title" x="8" y="{top + 36}">{esc(_short(lane.title, 30))}</text>']
    behind, bars, front = [], [], []
    for span in lane.attempts:
        x0 = plot.x(span.start)
        x1 = plot.x(span.end) if span.end is not None else plot.x(lane.last_time)
        state = "ok" if span.succeeded else ("fail" if span.reason is not None else "open")
        label = _attempt_label(span)
        notes = faults.get((lane.task_id, span.number), ())
        fault = (f'<g class="fault"><title>{esc(chr(10).join(notes))}</title>'
                 f'<circle cx="{x0 + 6:.1f}" cy="{top + 25}" r="5" fill="{COLOURS["fault"]}" '
                 'stroke="#fff" stroke-width="1.5"/></g>') if notes else ""
        bars.append(
            f'<a href="#a{index}-{span.number}" class="attempt" data-attempt="{span.number}">'
            f"<title>{esc(_attempt_title(lane, span, plot.t0))}</title>"
            f'<rect class="bar {state}" x="{x0:.1f}" y="{top + 17}" '
            f'width="{max(x1 - x0, 4.0):.1f}" height="16" rx="3" fill="{COLOURS[state]}"/>'
            f'<text class="bar-label" x="{min(x0, _PLOT_X1 - 6.2 * len(label)):.1f}" '
            f'y="{top + 13 if span.number % 2 else top + 45}">{esc(label)}</text>{fault}</a>')
        for f in span.followups:
            if f.delay > 0:
                wx0, wx1 = plot.x(f.time), plot.x(f.time + f.delay)
                behind.append(
                    f'<rect class="wait" x="{wx0:.1f}" y="{top + 21}" '
                    f'width="{max(wx1 - wx0, 2):.1f}" height="8" fill="{COLOURS["wait"]}">'
                    f"<title>{esc(f'backoff {duration_text(f.delay)} before {f.strategy}')}"
                    "</title></rect>")
    for mark in lane.marks:
        x = plot.x(mark.time)
        title = esc(f"{mark.kind}: {_short(mark.text, 300)}")
        if mark.kind == "operator":
            behind.insert(0, (
                f'<g class="operator"><title>{title}</title>'
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + _LANE_H}" '
                f'stroke="{COLOURS["operator"]}" stroke-width="2" stroke-dasharray="4 2"/></g>'))
        else:
            front.append(
                f'<g class="{mark.kind}"><title>{title}</title>'
                f'<path d="M{x:.1f} {top + 35}v-20l9 4-9 4" fill="{COLOURS["ink"]}" '
                f'stroke="{COLOURS["ink"]}" stroke-width="1.5"/></g>')
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
            rows.append(("result", "succeeded" + (f", PR #{span.pr}" if span.pr is not None
                                                 else "")))
        for f in span.followups:
            wait = f", after a backoff of {duration_text(f.delay)}" if f.delay else ""
            rows.append(("then", f"{f.strategy}{wait}: {f.why}"))
        dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_short(v, 600))}</dd>" for k, v in rows)
        notes = "".join(f'<p class="fault">{esc(n)}</p>'
                        for n in faults.get((lane.task_id, span.number), ()))
        attempts.append(
            f'<li id="a{index}-{span.number}"><b>Attempt {span.number}</b> '
            f"({esc(span.launched_as or 'first attempt')}"
            f"{', agent ' + esc(span.agent) if span.agent else ''}): "
            f"+{esc(duration_text(span.start - t0))} to {esc(end)}{esc(took)}"
            f"<dl>{dl}</dl>{notes}</li>")
    marks = "".join(f"<li>+{esc(duration_text(m.time - t0))} {esc(m.kind)}: "
                    f"{esc(_short(m.text, 400))}</li>" for m in lane.marks)
    recovery = (f", recovery {duration_text(lane.recovery_time)}"
                if lane.recovery_time is not None else "")
    summary = (f'<b>{esc(lane.name)}</b> <span class="badge {esc(lane.outcome)}">'
               f"{esc(lane.outcome)}</span> {esc(_short(lane.title, 80))} · "
               f"{len(lane.attempts)} attempt(s){esc(recovery)}")
    return (f'<details id="t{index}"><summary>{summary}</summary>'
            f'<ol class="attempts">{"".join(attempts)}</ol>'
            + (f'<ul class="marks">{marks}</ul>' if marks else "") + "</details>")


def _legend(with_faults: bool) -> str:
    def swatch(shape: str) -> str:
        return f'<svg width="22" height="14" viewBox="0 0 22 14" aria-hidden="true">{shape}</svg>'

    items = [
        (f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["ok"]}"/>',
         "attempt that succeeded", ""),
        (f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["fail"]}"/>',
         "failed attempt (label: number, attributed reason → strategy that followed)", ""),
        (f'<rect x="1" y="1" width="20" height="12" rx="3" fill="{COLOURS["open"]}"/>',
         "no attribution or no exit recorded", ""),
        (f'<rect x="1" y="4" width="20" height="6" fill="{COLOURS["wait"]}"/>',
         "backoff before the next attempt", ""),
        (f'<circle cx="11" cy="7" r="5" fill="{COLOURS["fault"]}"/>',
         "fault injected into this attempt", "fault"),
        (f'<path d="M11 0l5 5-5 5-5-5z" fill="{COLOURS["operator"]}"/>'
         f'<line x1="11" y1="8" x2="11" y2="14" stroke="{COLOURS["operator"]}" stroke-width="2"/>',
         "operator action", ""),
        (f'<path d="M8 13v-12l9 4-9 4" fill="{COLOURS["ink"]}"/>',
         "escalated or given up", ""),
    ]
    body = "".join(
        f'<li{" class=" + chr(34) + cls + chr(34) if cls else ""}>{swatch(shape)}{esc(text)}</li>'
        for shape, text, cls in items if with_faults or not cls)
    return f'<ul class="legend" aria-label="legend">{body}</ul>'


def _timeline(events: Sequence[Event], campaign: Mapping[str, Any] | None) -> str:
    lanes = task_lanes(events)
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
        label = (f"Timeline of {name}: {len(members)} task(s), axis in "
                 f"{time_label(plot.step, plot.step).split()[-1]} from {_stamp(plot.t0)}")
        panels.append(
            f'<section class="group"><h3>{esc(name)}</h3>'
            f'<p class="note">t = 0 at {esc(_stamp(plot.t0))}; ticks every '
            f"{esc(duration_text(plot.step))}.</p>{group_notes}"
            f'<div class="scroll"><svg class="timeline" viewBox="0 0 {_W} {height}" '
            f'role="img" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
            f'{_axis(plot, height, members)}{"".join(rows)}</svg></div>'
            f'<div class="tasks">{"".join(details)}</div></section>')
    omitted = len(lanes) - len(shown)
    more = (f'<p class="note">{omitted} more task(s) not drawn; the JSON report lists every '
            "one.</p>" if omitted > 0 else "")
    body = "".join(panels) or '<p class="empty">No tasks in these events.</p>'
    return ('<section id="timeline"><h2>Timeline</h2><p class="note">One lane per task; '
            "hover over an attempt for its evidence, or click it to open its details.</p>"
            f"{_legend(campaign is not None)}{body}{more}</section>")


# --------------------------------------------------------------------------- campaign


def _campaign(campaign: Mapping[str, Any]) -> str:
    fails = "".join(f"<li><code>{esc(f)}</code></li>" for f in campaign.get("fail_lines", ()))
    verdicts = campaign.get("attribution", {})
    attribution = ", ".join(f"{esc(v)} {esc(k)}" for k, v in verdicts.items()) or \
        "no failed attempts"
    matrix: Mapping[str, Mapping[str, int]] = campaign.get("confusion_matrix", {})
    columns = sorted({c for row in matrix.values() for c in row})
    if matrix:
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join(
            f"<tr><th>{esc(cause)}</th>"
            + "".join(f'<td class="n">{row.get(c) or "·"}</td>' for c in columns) + "</tr>"
            for cause, row in matrix.items())
        table = (f'<div class="scroll"><table><tr><th>injected \\ attributed</th>{head}</tr>'
                 f"{body}</table></div>")
    else:
        table = '<p class="empty">No failed attempts.</p>'
    ledger = list(campaign.get("ledger", ()))
    rows = "".join(
        f"<tr><td>{esc(e.get('scenario'))}</td><td>{esc(e.get('id'))}</td>"
        f"<td>{esc(e.get('kind'))}</td><td>{esc(e.get('task'))}</td>"
        f"<td>{esc(str(e.get('status')).replace('_', ' '))}</td>"
        f'<td class="n">{len(e.get("hits", ()))}</td></tr>'
        for e in ledger[:MAX_LEDGER_ROWS])
    more = (f'<p class="note">{len(ledger) - MAX_LEDGER_ROWS} more faults in the JSON '
            "report.</p>" if len(ledger) > MAX_LEDGER_ROWS else "")
    return (
        '<section id="campaign"><h2>Chaos campaign</h2>'
        + (f"<h3>Gate failures</h3><ul>{fails}</ul>" if fails else "")
        + f"<p>Attribution of failed attempts against the injected causes: {attribution}.</p>"
        "<div class=\"card\"><h3>Confusion matrix</h3>"
        f"{table}</div><div class=\"card\"><h3>Fault ledger</h3>"
        f"<details><summary>{len(ledger)} faults injected</summary><div class=\"scroll\">"
        "<table><tr><th>scenario</th><th>fault</th><th>kind</th><th>task</th><th>status</th>"
        f"<th>hits</th></tr>{rows}</table></div>{more}</details></div></section>")


# --------------------------------------------------------------------------- page


def render_html(events: Sequence[Event], metrics: Metrics, results: Sequence[CriterionResult],
                *, campaign: Mapping[str, Any] | None = None,
                journals: Sequence[str] = ()) -> str:
    """The report page. ``campaign`` adds the campaign section and the fault marks;
    ``journals`` names the files the events came from, for the header."""
    title = ("Orchestration recovery: chaos campaign, seed " + str(campaign.get("seed"))
             if campaign is not None else "Orchestration recovery report")
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in
                  (*SECTIONS, *(("campaign",) if campaign else ())))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{esc(title)}</h1>{_source(events, campaign, journals)}"
        f'<div class="bar-row">{_overall(results)}<nav>{nav}</nav></div></header>'
        f'{_overview(metrics)}<div class="dash">{_criteria(results, campaign)}'
        f"{_charts(metrics)}</div>"
        f"{_timeline(events, campaign)}"
        f"{_campaign(campaign) if campaign is not None else ''}"
        f"<footer>pytest-orch-recovery {esc(__version__)}</footer></main></body></html>\n")
