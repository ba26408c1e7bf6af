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
from typing import Any

from pytest_orch_recovery import __version__
from pytest_orch_recovery.report.charts import (
    criteria_chart,
    duration_text,
    esc,
    reasons_chart,
    recovery_time_chart,
)
from pytest_orch_recovery.report.htmltimeline import stamp, timeline_section
from pytest_orch_recovery.report.metrics import CriterionResult, Metrics
from pytest_orch_recovery.report.pagefacts import PageFacts

MAX_LEDGER_ROWS = 200
SECTIONS = ("overview", "criteria", "charts", "timeline")  # and "campaign" with campaign data

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
svg.timeline{width:100%;min-width:960px;height:auto;display:block;font-size:11px}
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


def _overall(results: Sequence[CriterionResult]) -> str:
    verdicts = {r.verdict for r in results}
    if "fail" in verdicts:
        failed = sum(1 for r in results if r.verdict == "fail")
        noun = "criterion" if failed == 1 else "criteria"
        return f'<span class="verdict fail">{failed} {noun} missed</span>'
    if "insufficient samples" in verdicts:
        return '<span class="verdict insufficient">met where judged; some rates lack samples</span>'
    return '<span class="verdict pass">all criteria met</span>'


def _source(facts: PageFacts, campaign: Mapping[str, Any] | None, journals: Sequence[str]) -> str:
    span = (
        f"{facts.events} events from {stamp(facts.first_time)} to {stamp(facts.last_time)}"
        if facts.first_time is not None and facts.last_time is not None
        else "no events"
    )
    if campaign is None:
        names = ", ".join(journals) or "journal"
        return f'<p class="source">Journal {esc(names)}: {esc(span)}.</p>'
    return (
        f'<p class="source">Chaos campaign on the {esc(campaign.get("tier"))} tier, agent '
        f"{esc(campaign.get('agent'))}, seed {esc(campaign.get('seed'))}: "
        f"{esc(campaign.get('runs', 0))} scenario runs, {esc(span)}.</p>"
        f'<p class="source">Replay: <code>{esc(campaign.get("replay", ""))}</code></p>'
        + _fleet(campaign.get("fleet"))
    )


def _fleet(fleet: object) -> str:
    """The production fleet file the campaign ran under (``--orch-fleet``), and each setting
    a scenario pinned over it."""
    if not isinstance(fleet, Mapping):
        return ""
    pinned = "".join(
        f"<li>{esc(o.get('text'))}</li>"
        for o in fleet.get("overrides", ())
        if isinstance(o, Mapping)
    )
    return (
        f'<p class="source">Fleet file <code>{esc(fleet.get("source"))}</code>: '
        f"{esc(fleet.get('summary'))}</p>"
        + (
            f'<p class="source">Pinned by scenarios:</p><ul class="source">{pinned}</ul>'
            if pinned
            else ""
        )
    )


# --------------------------------------------------------------------------- criteria, overview


def _count_tiles(results: Sequence[CriterionResult]) -> str:
    words = {
        "orphaned_workspaces": "orphaned workspaces",
        "unattributed_failures": "unattributed failures",
    }
    tiles = []
    for r in results:
        if r.is_rate:
            continue
        observed = "-" if r.observed is None else f"{r.observed:g}"
        tiles.append(
            f'<li class="{esc(r.verdict)}"><b>{observed}</b><span>'
            f"{esc(words.get(r.name, r.name))}, needs {esc(r.comparison)} "
            f"{r.threshold:g}: {esc(r.verdict.upper())}</span></li>"
        )
    return f'<ul class="tiles counts">{"".join(tiles)}</ul>'


def _criteria(results: Sequence[CriterionResult], campaign: Mapping[str, Any] | None) -> str:
    basis = "Dot: the observed rate; band: its Wilson 95% interval; dashed line: the threshold."
    if campaign is not None:
        basis += (
            f" Campaign rules: first-try rates over the {esc(campaign.get('control_tasks'))}"
            " fault-free tasks; a wrong attribution counts as unattributed."
        )
    return (
        '<section id="criteria"><h2>Success criteria</h2><div class="card">'
        f"<h3>Rates against their thresholds</h3>{criteria_chart(results)}"
        f'<p class="note small">{basis}</p><h3>Counts</h3>{_count_tiles(results)}</div>'
        "</section>"
    )


def _overview(m: Metrics) -> str:
    tiles = [
        (m.total_tasks, "tasks"),
        (m.first_try, "succeeded first try"),
        (m.required_recovery, "required recovery"),
        (m.recovered, f"recovered, {m.recovered_after_operator} via an operator"),
        (m.escalated, "still escalated"),
        (m.recovering + m.unsettled, "in progress"),
        (m.attempts, f"attempts ({m.failures} failed)"),
        (duration_text(m.recovery_time_mean), "mean recovery time"),
    ]
    body = "".join(f"<li><b>{esc(v)}</b><span>{esc(k)}</span></li>" for v, k in tiles)
    causes = "".join(
        f"<li>{esc(c.cause)} ({len(c.tasks)} tasks; fix applied: "
        f"{esc('; '.join(c.operator_actions) or 'none yet')})</li>"
        for c in m.systematic_causes[:20]
    )
    systematic = f"<h3>Systematic causes</h3><ul>{causes}</ul>" if causes else ""
    return (
        f'<section id="overview"><h2>Overview</h2><ul class="tiles">{body}</ul>'
        f"{systematic}</section>"
    )


def _charts(m: Metrics) -> str:
    return (
        '<section id="charts"><h2>Failures and recovery times</h2><div class="grid">'
        f'<div class="card"><h3>Failed attempts by reason</h3>{reasons_chart(m.reasons)}'
        '</div><div class="card"><h3>Recovery time distribution</h3>'
        f"{recovery_time_chart(m.recovery_times, m.recovery_time_p50, m.recovery_time_p95)}"
        "</div></div></section>"
    )


# --------------------------------------------------------------------------- campaign


def _campaign(campaign: Mapping[str, Any]) -> str:
    fails = "".join(f"<li><code>{esc(f)}</code></li>" for f in campaign.get("fail_lines", ()))
    verdicts = campaign.get("attribution", {})
    attribution = (
        ", ".join(f"{esc(v)} {esc(k)}" for k, v in verdicts.items()) or "no failed attempts"
    )
    matrix: Mapping[str, Mapping[str, int]] = campaign.get("confusion_matrix", {})
    columns = sorted({c for row in matrix.values() for c in row})
    if matrix:
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join(
            f"<tr><th>{esc(cause)}</th>"
            + "".join(f'<td class="n">{row.get(c) or "·"}</td>' for c in columns)
            + "</tr>"
            for cause, row in matrix.items()
        )
        table = (
            f'<div class="scroll"><table><tr><th>injected \\ attributed</th>{head}</tr>'
            f"{body}</table></div>"
        )
    else:
        table = '<p class="empty">No failed attempts.</p>'
    ledger = list(campaign.get("ledger", ()))
    rows = "".join(
        f"<tr><td>{esc(e.get('scenario'))}</td><td>{esc(e.get('id'))}</td>"
        f"<td>{esc(e.get('kind'))}</td><td>{esc(e.get('task'))}</td>"
        f"<td>{esc(str(e.get('status')).replace('_', ' '))}</td>"
        f'<td class="n">{len(e.get("hits", ()))}</td></tr>'
        for e in ledger[:MAX_LEDGER_ROWS]
    )
    more = (
        f'<p class="note">{len(ledger) - MAX_LEDGER_ROWS} more faults in the JSON report.</p>'
        if len(ledger) > MAX_LEDGER_ROWS
        else ""
    )
    return (
        '<section id="campaign"><h2>Chaos campaign</h2>'
        + (f"<h3>Gate failures</h3><ul>{fails}</ul>" if fails else "")
        + f"<p>Attribution of failed attempts against the injected causes: {attribution}.</p>"
        '<div class="card"><h3>Confusion matrix</h3>'
        f'{table}</div><div class="card"><h3>Fault ledger</h3>'
        f'<details><summary>{len(ledger)} faults injected</summary><div class="scroll">'
        "<table><tr><th>scenario</th><th>fault</th><th>kind</th><th>task</th><th>status</th>"
        f"<th>hits</th></tr>{rows}</table></div>{more}</details></div></section>"
    )


# --------------------------------------------------------------------------- page


def render_html(
    facts: PageFacts,
    metrics: Metrics,
    results: Sequence[CriterionResult],
    *,
    campaign: Mapping[str, Any] | None = None,
    journals: Sequence[str] = (),
) -> str:
    """The report page of events folded into ``facts``
    (:func:`~pytest_orch_recovery.report.pagefacts.page_facts`) and ``metrics``
    (the timeline counts ``metrics.total_tasks`` beyond its lanes as not drawn). ``campaign``
    adds the campaign section and the fault marks; ``journals`` names the files the events
    came from, for the header."""
    title = (
        "Orchestration recovery: chaos campaign, seed " + str(campaign.get("seed"))
        if campaign is not None
        else "Orchestration recovery report"
    )
    nav = "".join(
        f'<a href="#{s}">{s}</a>' for s in (*SECTIONS, *(("campaign",) if campaign else ()))
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{esc(title)}</h1>{_source(facts, campaign, journals)}"
        f'<div class="bar-row">{_overall(results)}<nav>{nav}</nav></div></header>'
        f'{_overview(metrics)}<div class="dash">{_criteria(results, campaign)}'
        f"{_charts(metrics)}</div>"
        f"{timeline_section(facts.lanes, metrics.total_tasks, campaign)}"
        f"{_campaign(campaign) if campaign is not None else ''}"
        f"<footer>pytest-orch-recovery {esc(__version__)}</footer></main></body></html>\n"
    )
