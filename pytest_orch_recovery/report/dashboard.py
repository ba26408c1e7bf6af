"""The recovery dashboard: Markdown in the recovery design's layout, and JSON with a schema
version (the HTML page is :mod:`pytest_orch_recovery.report.htmlreport`).

The Markdown mirrors the recovery design's "Recovery Metrics Dashboard" (overall statistics, the
reasons table in the recovery design's row order and labels, recent recovery events, systematic
failures) and adds the success criteria with their statistical bounds. Free text from the
journal (agent names, evidence, lessons) is flattened to one line, table-escaped and shortened,
and the number of events shown is capped, so the document stays well under
:data:`MAX_REPORT_BYTES`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_orch_recovery import __version__
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.report.metrics import (
    CriterionResult,
    Metrics,
    Outcome,
    ReasonRow,
    RecoveryEvent,
    SystematicCause,
)
from pytest_orch_recovery.report.safetext import markdown, markdown_code
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.attempt_results import AttemptResult

__all__ = [
    "render_json",
    "render_markdown",
    "write_report",
]

# Bumped when a field of the JSON report changes meaning or goes away (2: no
# ``failed_after_recovery``: a task that recovery could not save is escalated).
SCHEMA_VERSION = 2
MAX_REPORT_BYTES = 1024 * 1024
DEFAULT_MAX_EVENTS = 20
_MAX_TEXT = 300  # characters of one free-text field
_MAX_LIST = 10  # items of one list (agents, missing work)
MAX_ATTEMPT_ROWS = 500  # rows of the Attempts table; the rest are counted as omitted

# The recovery design's table, in its order and words; git and GitHub share a row there.
REASON_ROWS: tuple[tuple[str, tuple[Reason, ...]], ...] = (
    ("SIGINT (Ctrl-C)", (Reason.SIGINT,)),
    ("Timeout", (Reason.TIMEOUT,)),
    ("Claude API Error", (Reason.API_ERROR,)),
    ("Git/GitHub Error", (Reason.GIT_ERROR, Reason.GITHUB_ERROR)),
    ("Permission Error", (Reason.PERMISSION,)),
    ("Unknown", (Reason.UNKNOWN,)),
    ("Test Failure", (Reason.TEST_FAILURE,)),
    ("Killed", (Reason.KILLED,)),
    ("Incomplete", (Reason.INCOMPLETE,)),
)

# "3 permission issues, 1 SIGINT": (singular, plural) per reason.
_REASON_NOUNS: dict[Reason, tuple[str, str]] = {
    Reason.SIGINT: ("SIGINT", "SIGINTs"),
    Reason.TIMEOUT: ("timeout", "timeouts"),
    Reason.API_ERROR: ("API error", "API errors"),
    Reason.PERMISSION: ("permission issue", "permission issues"),
    Reason.GITHUB_ERROR: ("GitHub error", "GitHub errors"),
    Reason.GIT_ERROR: ("git error", "git errors"),
    Reason.TEST_FAILURE: ("test failure", "test failures"),
    Reason.KILLED: ("kill", "kills"),
    Reason.INCOMPLETE: ("incomplete run", "incomplete runs"),
    Reason.UNKNOWN: ("unknown failure", "unknown failures"),
}

_OUTCOME_MARK = {
    Outcome.RECOVERED: "✅",
    Outcome.SUCCEEDED: "✅",
    Outcome.ESCALATED: "❌",
    Outcome.IN_PROGRESS: "⏳",
}


# --------------------------------------------------------------------------- formatting helpers


def human_duration(seconds: float | None) -> str:
    """Seconds in the unit a person would use.

    >>> human_duration(300), human_duration(354), human_duration(45), human_duration(7200)
    ('5 minutes', '5.9 minutes', '45 seconds', '2 hours')
    >>> human_duration(None), human_duration(60)
    ('n/a', '1 minute')
    """
    if seconds is None:
        return "n/a"
    for size, unit in ((3600.0, "hour"), (60.0, "minute")):
        if seconds >= 1.5 * size:
            return _amount(seconds / size, unit)
    if seconds >= 60.0:
        return _amount(seconds / 60.0, "minute")
    return _amount(seconds, "second")


def _amount(value: float, unit: str) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}" + ("" if text == "1" else "s")


def _pct(part: float, whole: float) -> str:
    """``20%``, or one decimal when the rate is not whole.

    >>> _pct(1, 5), _pct(1, 3), _pct(0, 0)
    ('20%', '33.3%', '0%')
    """
    if not whole:
        return "0%"
    return f"{100.0 * part / whole:.1f}".removesuffix(".0") + "%"


def _flat(value: object, limit: int = _MAX_TEXT) -> str:
    """Journal text flattened to one line and shortened (not yet escaped)."""
    flat = " ".join(str(value).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text(value: object, limit: int = _MAX_TEXT) -> str:
    """Journal text flattened to one line, shortened, and made safe for Markdown (and the
    terminal it may be printed on): :func:`~pytest_orch_recovery.report.safetext.markdown`."""
    return markdown(_flat(value, limit))


_cell = _text  # markdown() escapes "|" too, so a table cell needs nothing more


def _agents(names: Sequence[str]) -> str:
    """The recovery design's way of listing agents: ``task-agent-1813, 3403, 3532``.

    >>> _agents(["task-agent-1813", "task-agent-3403", "gemini-2"])
    'task-agent-1813, 3403, gemini-2'
    >>> _agents([])
    '-'
    """
    if not names:
        return "-"
    shown = [_flat(n, 80) for n in names[:_MAX_LIST]]
    prefix = shown[0].rsplit("-", 1)[0] + "-" if "-" in shown[0] else None
    out = [shown[0]]
    for name in shown[1:]:
        rest = name.removeprefix(prefix) if prefix else name
        out.append(rest if prefix and name.startswith(prefix) and "-" not in rest else name)
    more = len(names) - len(shown)
    return ", ".join(out) + (f" and {more} more" if more > 0 else "")


def _listing(items: Sequence[str], empty: str = "none") -> str:
    if not items:
        return empty
    shown = ", ".join(items[:_MAX_LIST])
    more = len(items) - _MAX_LIST
    return _text(shown + (f" and {more} more" if more > 0 else ""))


def _breakdown(pairs: Iterable[tuple[Reason, int]]) -> str:
    parts = [f"{n} {_REASON_NOUNS[r][0 if n == 1 else 1]}" for r, n in pairs]
    return ", ".join(parts)


# --------------------------------------------------------------------------- sections


def _overall(m: Metrics) -> list[str]:
    first = f"{m.first_try} ({_pct(m.first_try, m.total_tasks)})"
    if m.first_try_agents:
        first += " - " + _text(_agents(m.first_try_agents))
    required = f"{m.required_recovery} ({_pct(m.required_recovery, m.total_tasks)})"
    if m.required_recovery_by_reason:
        required += " - " + _breakdown(m.required_recovery_by_reason)
    return [
        "### Overall Statistics",
        f"- **Total Agent Tasks**: {m.total_tasks}",
        f"- **Successful First Try**: {first}",
        f"- **Required Recovery**: {required}",
        f"- **Recovered**: {m.recovered} ({_pct(m.recovered, m.required_recovery)}), "
        f"{m.recovered_after_operator} after an operator action",
        f"- **Still Escalated**: {m.escalated}",
        f"- **Average Recovery Time**: {human_duration(m.recovery_time_mean)}",
        "",
    ]


def _reason_table(m: Metrics) -> list[str]:
    rows = {r.reason: r for r in m.reasons}
    lines = [
        "### Recovery Reasons",
        "| Reason | Count | Percentage | Common Agents |",
        "|--------|-------|------------|---------------|",
    ]
    for label, reasons in REASON_ROWS:
        members: list[ReasonRow] = sorted(
            (rows[r] for r in reasons if r in rows), key=lambda row: -row.count
        )
        count = sum(row.count for row in members)
        agents: list[str] = []
        for row in members:
            agents += [a for a in row.common_agents if a not in agents]
        lines.append(
            f"| {label} | {count} | {_pct(count, m.failures)} | {_cell(_agents(agents[:3]))} |"
        )
    return [*lines, ""]


def _exit_code(event: RecoveryEvent) -> str:
    if event.exit_code is None:
        return "unknown (no exit was recorded)"
    if event.exit_signal == "SIGINT":
        return f"{event.exit_code} (SIGINT/Ctrl-C)"
    if event.exit_signal:
        return f"{event.exit_code} ({event.exit_signal})"
    return str(event.exit_code)


def _result(event: RecoveryEvent) -> str:
    if event.outcome is Outcome.RECOVERED:
        text = f"PR #{event.pr} created successfully" if event.pr is not None else "Recovered"
        if event.finished_by is not None:
            text += f" by {event.finished_by}"
        if event.released_by_operator:
            text += " after operator action: " + "; ".join(event.released_by_operator)
        return _text(text)
    if event.outcome is Outcome.ESCALATED:
        return "Escalated - manual intervention needed"
    return "Recovery in progress"


def _reason_label(reason: Reason) -> str:
    return next(label for label, members in REASON_ROWS if reason in members)


def _event(event: RecoveryEvent) -> list[str]:
    code = event.reason.name.replace("_", " ")
    strategy = " → ".join(s.name for s in event.strategies) or "none yet"
    return [
        f"### {event.date} - {_text(event.agent, 80)} ({code}) "
        f"{_OUTCOME_MARK[event.outcome]} {event.outcome.value}",
        f"- **Task**: {_text(event.title)}",
        f"- **Exit Code**: {_exit_code(event)}",
        f"- **Partial Work**: {_listing(event.partial_work)}",
        f"- **Missing Work**: {_listing(event.missing_work)}",
        f"- **Recovery Strategy**: {strategy}",
        f"- **Recovery Time**: {human_duration(event.recovery_time)}",
        f"- **Result**: {_result(event)}",
        f"- **Root Cause Theory**: {_reason_label(event.reason)}"
        + (
            f" - {_text(event.theory)}"
            if event.theory
            else f" - {_text(event.evidence)}"
            if event.evidence
            else ""
        ),
        f"- **Lesson Learned**: {_text(event.lesson) if event.lesson else 'none recorded'}",
        "",
    ]


def _systematic(cause: SystematicCause, outcomes: Mapping[str, Outcome]) -> list[str]:
    title = "Systematic Failures"
    if cause.reason is not None:
        title = f"Systematic {_reason_label(cause.reason).removesuffix(' Error')} Failures"
    recovered = sum(1 for t in cause.tasks if outcomes.get(t) is Outcome.RECOVERED)
    fix = "; ".join(cause.operator_actions) or "none yet"
    return [
        f"### {cause.date} - {title}",
        f"- **Affected Agents**: {_text(_agents(cause.agents))}",
        f"- **Issue**: {_text(cause.cause)}",
        f"- **Fix Applied**: {_text(fix)}",
        f"- **Recovery**: {recovered} of {len(cause.tasks)} tasks succeeded afterwards",
        f"- **Prevention**: {_text(cause.lesson) if cause.lesson else 'none recorded'}",
        "",
    ]


def _recent(m: Metrics, max_events: int) -> list[str]:
    lines = ["## Recent Recovery Events", ""]
    grouped = {t for c in m.systematic_causes for t in c.tasks}
    # The events of tasks without a systematic cause: the newest few, and how many in all.
    single, singles = m.recent.singles(grouped, max_events)
    for event in single:
        lines += _event(event)
    causes = m.systematic_causes[:max_events]
    outcomes = m.recent.outcomes({t for c in causes for t in c.tasks})
    for cause in causes:
        lines += _systematic(cause, outcomes)
    omitted = max(0, singles - max_events)
    omitted_causes = max(0, len(m.systematic_causes) - max_events)
    if omitted or omitted_causes:
        lines += [
            f"_{omitted} older recovery events and {omitted_causes} systematic causes "
            "omitted; the JSON report lists them all._",
            "",
        ]
    if not singles and not m.systematic_causes:
        lines += ["No recovery events.", ""]
    return lines


def _observed(result: CriterionResult) -> str:
    if result.observed is None:
        return "-"
    return f"{result.observed:.3f}" if result.is_rate else f"{result.observed:g}"


def _criteria(m: Metrics, results: Sequence[CriterionResult]) -> list[str]:
    lines = [
        "## Success Criteria",
        "",
        "| Criterion | Threshold | Observed | Samples | 95% Lower Bound | Verdict |",
        "|-----------|-----------|----------|---------|-----------------|---------|",
    ]
    for r in results:
        threshold = f"{r.comparison} " + (f"{r.threshold:.3f}" if r.is_rate else f"{r.threshold:g}")
        samples = f"{r.successes}/{r.n}" if r.is_rate else "-"
        low = "-" if r.lower_bound is None else f"{r.lower_bound:.3f}"
        lines.append(
            f"| {_cell(r.name)} | {threshold} | {_observed(r)} | {samples} | {low} | "
            f"{r.verdict.upper()} |"
        )
    causes = "; ".join(_text(c.cause, 120) for c in m.systematic_causes[:_MAX_LIST]) or "none"
    lines += [
        "",
        f"- **Recovery Time**: p50 {human_duration(m.recovery_time_p50)}, "
        f"p95 {human_duration(m.recovery_time_p95)} "
        f"(over {len(m.recovery_times)} recoveries)",
        f"- **Orphaned Workspaces**: {m.orphaned_workspaces}"
        + (f" ({_listing(m.orphaned_paths)})" if m.orphaned_paths else ""),
        f"- **Unattributed Failures**: {m.unattributed_failures}",
        f"- **Attempts**: {m.attempts} for {m.total_tasks} tasks",
        f"- **Systematic Causes**: {len(m.systematic_causes)} ({causes})",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- attempts
#
# The dispatcher's per-attempt results files (store/attempt_results.py), read alongside the
# journal: one row per judged attempt.


def _attempt_exit(result: AttemptResult) -> str:
    """``1``, ``130 (SIGINT)``, ``- (SIGKILL)``, or ``-`` when no exit was recorded."""
    code = "-" if result.exit_code is None else str(result.exit_code)
    if result.signal is None:
        return code
    return f"{code} ({result.signal})"


def attempts_markdown(
    results: Sequence[AttemptResult], max_rows: int = MAX_ATTEMPT_ROWS
) -> list[str]:
    """The ``## Attempts`` section: one table row per judged attempt, in the given order.

    >>> print("\\n".join(attempts_markdown([AttemptResult(
    ...     "task-agent-5030", 1, "failed", "task-5030", "sigint", exit_code=130, signal="SIGINT",
    ...     duration=12.0)])))
    ## Attempts
    <BLANKLINE>
    | Agent | Task | Attempt | Status | Exit Code | Reason | Duration |
    |-------|------|---------|--------|-----------|--------|----------|
    | task-agent-5030 | task-5030 | 1 | failed | 130 (SIGINT) | sigint | 12 seconds |
    <BLANKLINE>
    """
    lines = ["## Attempts", ""]
    if not results:
        return [*lines, "No attempt results found.", ""]
    lines += [
        "| Agent | Task | Attempt | Status | Exit Code | Reason | Duration |",
        "|-------|------|---------|--------|-----------|--------|----------|",
    ]
    for r in results[:max_rows]:
        lines.append(
            f"| {_text(r.agent, 80)} | {_cell(r.task_id or '-')} | {r.attempt} "
            f"| {_cell(r.status)} | {_attempt_exit(r)} | {_cell(r.reason or '-')} "
            f"| {human_duration(r.duration)} |"
        )
    omitted = len(results) - max_rows
    if omitted > 0:
        lines += ["", f"*{omitted} more attempt(s) omitted.*"]
    return [*lines, ""]


# --------------------------------------------------------------------------- public API


def render_markdown(
    metrics: Metrics,
    results: Sequence[CriterionResult],
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    attempts: Sequence[AttemptResult] | None = None,
) -> str:
    """The dashboard as Markdown, in the recovery design's layout, under :data:`MAX_REPORT_BYTES`;
    with ``attempts``, an ``## Attempts`` table after it."""
    while True:
        lines = [
            "# Orchestration Recovery System - Metrics",
            "",
            "## Recovery Metrics Dashboard",
            "",
            *_overall(metrics),
            *_reason_table(metrics),
            *_recent(metrics, max_events),
            *_criteria(metrics, results),
            *(attempts_markdown(attempts) if attempts is not None else []),
        ]
        text = "\n".join(lines).rstrip("\n") + "\n"
        # The caps above keep real reports far below the limit; halve the events if not.
        if len(text.encode("utf-8")) <= MAX_REPORT_BYTES or max_events == 0:
            return text
        max_events //= 2


def render_json(
    metrics: Metrics,
    results: Sequence[CriterionResult],
    *,
    attempts: Sequence[AttemptResult] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """Every figure, every recovery event and every criterion, with a schema version; with
    ``attempts``, an ``attempts`` list too (every one: JSON is not capped). ``stream``: the
    events as :class:`~pytest_orch_recovery.report.jsondoc.Rows`, for
    :func:`~pytest_orch_recovery.report.jsondoc.document_chunks` to write one by one."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generator": f"pytest-orch-recovery {__version__}",
        "metrics": metrics.to_json(stream=stream),
        "criteria": [r.to_json() for r in results],
        "failed_criteria": [r.name for r in results if r.verdict == "fail"],
    }
    if attempts is not None:
        out["attempts"] = [a.to_json() for a in attempts]
    return out


def write_report(
    path: str | os.PathLike[str],
    metrics: Metrics,
    results: Sequence[CriterionResult],
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> None:
    """Write the report atomically, as Markdown (``.md``) or JSON (``.json``) by suffix."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".md":
        atomic.write_text(target, render_markdown(metrics, results, max_events=max_events))
    elif suffix == ".json":
        atomic.write_json(target, render_json(metrics, results))
    else:
        raise InvalidValue(f"{target}: report file name must end in .md or .json, not {suffix!r}")


# --------------------------------------------------------------------------- chaos campaigns
#
# ``campaign`` below is the JSON of :class:`pytest_orch_recovery.plugin.gate.CampaignResult` plus
# the session's ``seed``, ``tier``, ``agent`` and ``replay``, and under ``--orch-fleet`` the
# fleet file's settings (``fleet``: ``source``, ``summary``, the settings, ``overrides``, each
# with its ``text``).

_MAX_LEDGER_ROWS = 200
# The fleet file's settings line: the agent's command template and every number, all of it.
_MAX_FLEET_SUMMARY = 4000


def _campaign_sections(campaign: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Chaos Campaign",
        "",
        f"- **Seed**: {_text(campaign.get('seed'))} (tier {_text(campaign.get('tier'))}, agent "
        f"{_text(campaign.get('agent'), 80)}); replay: "
        f"{markdown_code(_flat(campaign.get('replay', '')))}",
        f"- **Scenario Runs**: {campaign.get('runs', 0)}; fault-free tasks judged for "
        f"first-try success: {campaign.get('control_tasks', 0)}",
        "- **Attribution**: "
        + (
            ", ".join(_text(f"{v} {k}") for k, v in campaign.get("attribution", {}).items())
            or "no failed attempts"
        ),
    ]
    fleet = campaign.get("fleet")
    if isinstance(fleet, Mapping):
        lines.append(
            f"- **Fleet File**: `{_text(fleet.get('source'), 200)}`: "
            + _text(fleet.get("summary"), _MAX_FLEET_SUMMARY)
        )
        lines += [
            f"  - pinned by {_text(o.get('text'))}"
            for o in fleet.get("overrides", ())
            if isinstance(o, Mapping)
        ]
    lines.append("")
    fails = list(campaign.get("fail_lines", ()))
    if fails:
        lines += ["### Gate Failures", "", *[f"- {markdown_code(_flat(f))}" for f in fails], ""]
    matrix: Mapping[str, Mapping[str, int]] = campaign.get("confusion_matrix", {})
    columns = sorted({c for row in matrix.values() for c in row})
    lines += ["### Attribution Confusion Matrix (injected cause → attributed reason)", ""]
    if matrix:
        lines += [
            "| Injected \\ Attributed | " + " | ".join(_cell(c) for c in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for cause, row in matrix.items():
            cells = [str(row.get(c, 0)) if row.get(c) else "·" for c in columns]
            lines.append(f"| {_cell(cause)} | " + " | ".join(cells) + " |")
    else:
        lines.append("No failed attempts.")
    lines += ["", "### Fault Ledger", ""]
    ledger: Sequence[Mapping[str, Any]] = campaign.get("ledger", ())
    if ledger:
        lines += [
            "| Scenario | Fault | Kind | Trigger | Task | Attempt | Status | Hits |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for entry in ledger[:_MAX_LEDGER_ROWS]:
            trig = entry.get("trigger") or {}
            trigger = trig.get("path") or f"{trig.get('event')} #{trig.get('n')}"
            attempt = entry.get("attempt")
            lines.append(
                f"| {_cell(entry.get('scenario'))} | {_cell(entry.get('id'))} | "
                f"{_cell(entry.get('kind'))} | "
                f"{_cell(trigger)} | {_cell(entry.get('task'))} | "
                f"{'all' if attempt is None else attempt} | "
                f"{_cell(str(entry.get('status')).replace('_', ' '))} | "
                f"{len(entry.get('hits', ()))} |"
            )
        if len(ledger) > _MAX_LEDGER_ROWS:
            lines.append(f"\n_{len(ledger) - _MAX_LEDGER_ROWS} more faults in the JSON report._")
    else:
        lines.append("No faults injected.")
    return [*lines, ""]


def render_campaign_markdown(
    metrics: Metrics, results: Sequence[CriterionResult], campaign: Mapping[str, Any]
) -> str:
    """The dashboard (seed layout) followed by the campaign: gate failures, the confusion
    matrix of injected cause against attributed reason, and the fault ledger."""
    text = render_markdown(metrics, results).rstrip("\n") + "\n\n"
    text += "\n".join(_campaign_sections(campaign)).rstrip("\n") + "\n"
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_REPORT_BYTES:
        cut = encoded[: MAX_REPORT_BYTES - 200].decode("utf-8", "ignore")
        text = cut.rsplit("\n", 1)[0] + "\n\n_Report truncated at 1 MiB; see the JSON report._\n"
    return text


def render_campaign_json(
    metrics: Metrics, results: Sequence[CriterionResult], campaign: Mapping[str, Any]
) -> dict[str, Any]:
    out = render_json(metrics, results)
    out["campaign"] = dict(campaign)
    return out


def write_campaign_report(
    path: str | os.PathLike[str],
    metrics: Metrics,
    results: Sequence[CriterionResult],
    campaign: Mapping[str, Any],
) -> None:
    """Write a campaign report atomically: ``.md`` or ``.json`` by suffix (the HTML page is
    :func:`pytest_orch_recovery.report.htmlreport.render_html`'s)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".md":
        atomic.write_text(target, render_campaign_markdown(metrics, results, campaign))
    elif suffix == ".json":
        atomic.write_json(target, render_campaign_json(metrics, results, campaign))
    else:
        raise InvalidValue(f"{target}: report file name must end in .md or .json")
