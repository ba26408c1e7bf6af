"""Why did an attempt fail? Weigh every signal, never the exit code alone.

Signals, each turned into :class:`~pytest_orch_recovery.engine.model.Evidence` with a weight:

- the exit (status, signal, 128+N, tmux ``pane_dead_signal``, coreutils 124);
- what the supervisor knows: it timed the attempt out, it delivered signals to the group,
  and who sent each signal (the launch wrapper's ``siginfo``: typed at the pane's terminal,
  or ``kill()`` from pid N with its command line; a time-limit program such as coreutils
  ``timeout`` sending SIGINT makes the cause a timeout, not an interruption); the launching
  orchestrator saw rate-limit/quota output;
- the kernel's word on a SIGKILL: the cgroup's ``oom_kill`` counter rose (the OOM killer);
- the agent's result JSON (Claude Code ``--output-format json``: ``type: "result"``,
  ``subtype``, ``is_error``, ``result``, ``permission_denials``, ``api_error_status``,
  ``terminal_reason``);
- log and pane text: the pattern table's exact rows (:mod:`.patterns`, scanned by
  :mod:`.matcher`) and, on lines no row knows, the cause model's reading of cue words and
  what the line is about (:mod:`.cues`); JSON events among the lines (stream-json, Codex
  ``exec --json``, Gemini CLI ``--output-format json``: :mod:`.structured`);
- the deliverables actually present, and whether the tests pass.

Evidence for the same reason combines as a noisy-OR (independent witnesses); the reason with
the highest score wins and the confidence is that score discounted by the runner-up.
Evidence drawn from the exit alone is capped at :data:`EXIT_ONLY_CONFIDENCE_CAP`.

Known behaviour this encodes (docs/claude-code.md, docs/attribution.md):
real Claude Code interrupted while waiting on the API exits 0 with no output at all, and
interrupted while a tool or hook runs exits 0 with ``subtype: "error_during_execution"``,
``terminal_reason: "aborted_tools"`` (measured with 2.1.328, docs/claude-code.md); run
without ``--dangerously-skip-permissions`` it exits 0 with ``permission_denials`` and writes
nothing; headless API errors may come back as ``subtype: "success"`` with the error only in
``result`` (anthropics/claude-code#79500).
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from pytest_orch_recovery.engine.matcher import TABLE, JsonLine, Match, Reading, Table, read_lines
from pytest_orch_recovery.engine.model import (
    Attribution,
    Evidence,
    ExitInfo,
    Reason,
    SignalOrigin,
    SignalSender,
)
from pytest_orch_recovery.engine.resets import observed_reset
from pytest_orch_recovery.engine.structured import event_facts, is_result

__all__ = [
    "LogText",
    "Observation",
    "classify",
    "looks_successful",
]

# Evidence from the exit alone never carries more weight than this, so an attribution made
# from an exit code with nothing else observed never claims more confidence than this.
EXIT_ONLY_CONFIDENCE_CAP = 0.6

# When two reasons score the same, the more specific / more actionable one wins.
_PRIORITY: tuple[Reason, ...] = (
    Reason.PERMISSION,
    Reason.TIMEOUT,
    Reason.SIGINT,
    Reason.API_ERROR,
    Reason.GITHUB_ERROR,
    Reason.GIT_ERROR,
    Reason.TEST_FAILURE,
    Reason.KILLED,
    Reason.INCOMPLETE,
    Reason.UNKNOWN,
)
_RANK = {reason: rank for rank, reason in enumerate(_PRIORITY)}

# An earlier fatal-looking line that the run got past is worth this fraction of its weight.
_SUPERSEDED = 0.35
# Evidence at or above this weight "explains" missing deliverables.
_EXPLAINS = 0.5

_SIGINT = int(_signal.SIGINT)
_KILLING = frozenset(int(s) for s in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGHUP))


@dataclass(frozen=True)
class LogText:
    """Text an attempt left behind: a log file, captured pane, stdout or stderr."""

    source: str
    text: str


@dataclass(frozen=True)
class Observation:
    """Everything known about one ended attempt."""

    exit: ExitInfo | None = None
    result: Mapping[str, Any] | None = None  # the agent's result JSON
    logs: tuple[LogText, ...] = ()
    deliverables_present: tuple[str, ...] = ()
    deliverables_missing: tuple[str, ...] = ()
    timed_out: bool = False  # the supervisor killed it for exceeding its timeout
    signals_delivered: tuple[int, ...] = ()  # seen delivered to the agent's process group
    tests_passed: bool | None = None
    # Steps of the task still undone besides files (e.g. "git commit", "open the PR"): an
    # agent that wrote every file but never committed or opened its PR is not finished.
    work_missing: tuple[str, ...] = ()
    # The launching orchestrator saw rate-limit or quota output in the attempt's output (the
    # seed orchestrator's wrapper logs "rate_limited=1" and records "rate_limited": true).
    rate_limited: bool = False
    # When the attempt ended (epoch seconds) and the zone its CLI printed clock times in:
    # what a "resets 3pm" is read against (engine.resets).
    observed_at: float | None = None
    zone: tzinfo = UTC


# --------------------------------------------------------------------------- evidence


@dataclass
class _Found:
    evidence: list[Evidence]
    api_status: int | None = None
    retry_after: float | None = None

    def add(
        self,
        kind: str,
        reason: Reason,
        weight: float,
        detail: str,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.evidence.append(Evidence(kind, reason, round(weight, 6), detail, source, line))


def _sig_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _supervisor_timed_out(obs: Observation) -> bool:
    return obs.timed_out or (obs.exit is not None and obs.exit.timed_out)


def _ended_early(obs: Observation) -> Reason | None:
    """The reason the runtime ended the attempt for what it saw on the screen: the signals
    it sent to do so, and the exit they caused, are that reason's consequence."""
    screen = obs.exit.screen if obs.exit is not None else None
    if screen is None:
        return None
    return Reason.PERMISSION if screen.kind == "dialog" else Reason.TIMEOUT


def _screen_evidence(obs: Observation, found: _Found) -> None:
    screen = obs.exit.screen if obs.exit is not None else None
    if screen is None:
        return
    if screen.kind == "dialog":
        who = f"{screen.cli} " if screen.cli else ""
        found.add(
            "screen",
            Reason.PERMISSION,
            0.95,
            f"{who}permission dialog on screen, waiting for a person: {screen.detail}",
            "pane",
        )
    else:
        found.add("screen", Reason.TIMEOUT, 0.9, f"stalled: {screen.detail}", "pane")


def _exit_evidence(obs: Observation, found: _Found) -> None:
    exit_info = obs.exit
    if exit_info is None:
        return
    code = exit_info.display_code
    timed_out = _supervisor_timed_out(obs)
    sig = exit_info.signal
    if sig is not None:
        name = _sig_name(sig)
        how = f"ended by {name} (code {code}, from {exit_info.source})"
        early = _ended_early(obs)
        if timed_out and (sig in _KILLING or sig == _SIGINT):
            found.add("exit", Reason.TIMEOUT, 0.3, f"{how}, sent by the timeout")
        elif early is not None and (sig in _KILLING or sig == _SIGINT):
            found.add("exit", early, 0.3, f"{how}, sent by the runtime for what it saw")
        elif exit_info.oom_killed and sig == int(_signal.SIGKILL):
            found.add(
                "kernel",
                Reason.KILLED,
                0.9,
                f"killed by the OOM killer ({how}; the cgroup's oom_kill count rose)",
            )
        elif sig == _SIGINT:
            found.add("exit", Reason.SIGINT, 0.6, how)
        elif sig in _KILLING:
            found.add("exit", Reason.KILLED, 0.55, how)
        else:
            found.add("exit", Reason.UNKNOWN, 0.4, f"{how}: crashed")
        return
    if exit_info.timed_out:
        found.add("exit", Reason.TIMEOUT, 0.6, f"exit status {code}: coreutils timeout(1)")
    elif exit_info.status not in (None, 0):
        found.add("exit", Reason.UNKNOWN, 0.3, f"exit status {code}")


def _orchestrator_evidence(obs: Observation, found: _Found) -> None:
    if obs.rate_limited:
        found.add(
            "supervisor",
            Reason.API_ERROR,
            0.8,
            "the orchestrator saw rate-limit/quota output (rate_limited)",
        )


def _output_empty(obs: Observation) -> bool:
    return obs.result is None and all(not log.text.strip() for log in obs.logs)


def senders_of(obs: Observation) -> list[SignalSender | None]:
    """The sender of each signal in ``obs.signals_delivered`` (None where unknown), matched
    in order against what the launch wrapper recorded."""
    known = [
        s for s in (obs.exit.senders if obs.exit else ()) if s.origin is not SignalOrigin.KERNEL
    ]
    out: list[SignalSender | None] = []
    for sig in obs.signals_delivered:
        index = next((i for i, s in enumerate(known) if s.signal == sig), None)
        out.append(None if index is None else known.pop(index))
    return out


def _supervisor_evidence(obs: Observation, found: _Found) -> None:
    if not obs.timed_out and not obs.signals_delivered:
        return  # nothing the supervisor did (the common case: classify runs in hot loops)
    if obs.timed_out:
        found.add("supervisor", Reason.TIMEOUT, 0.9, "killed by the supervisor for its timeout")
    timed_out = _supervisor_timed_out(obs)
    early = _ended_early(obs)
    senders = senders_of(obs)
    for index, (sig, sender) in enumerate(zip(obs.signals_delivered, senders, strict=True)):
        weight = 0.65 if index == 0 else 0.25  # the first signal sent is the one that mattered
        name = _sig_name(sig)
        who = sender.describe() if sender is not None else f"{name} delivered to the group"
        if timed_out and (sig in _KILLING or sig == _SIGINT):
            said = f"{who}: the timeout" if sender else f"{name} delivered by the timeout"
            found.add("supervisor", Reason.TIMEOUT, 0.3, said)
        elif early is not None and (sig in _KILLING or sig == _SIGINT):
            found.add("supervisor", early, 0.3, f"{who}: the runtime ending it for what it saw")
        elif sender is not None and sender.from_timeout:
            found.add(
                "signal",
                Reason.TIMEOUT,
                0.8 if index == 0 else 0.3,
                f"{who}: a time limit ended the attempt",
            )
        elif sig == _SIGINT:
            found.add("signal" if sender else "supervisor", Reason.SIGINT, weight, who)
        elif sig in _KILLING:
            found.add("signal" if sender else "supervisor", Reason.KILLED, weight, who)
    exit_info = obs.exit
    clean_exit = exit_info is not None and exit_info.status == 0 and exit_info.signal is None
    if _SIGINT in obs.signals_delivered and clean_exit and not timed_out and _output_empty(obs):
        first = senders[obs.signals_delivered.index(_SIGINT)]
        reason = Reason.TIMEOUT if first is not None and first.from_timeout else Reason.SIGINT
        found.add(
            "supervisor",
            reason,
            0.85,
            "exit 0 with no output after SIGINT: how Claude Code ends when interrupted "
            "while waiting on the API",
        )


def _deciding_sender(obs: Observation, winner: Reason) -> SignalSender | None:
    """The sender of the signal behind the verdict: the first SIGINT for sigint, the first
    terminating signal (or the OOM killer) for killed, a time-limit program for timeout."""
    if not obs.signals_delivered and (obs.exit is None or not obs.exit.oom_killed):
        return None  # no signal was delivered, so none decided
    senders = [s for s in senders_of(obs) if s is not None]
    if winner is Reason.SIGINT:
        return next((s for s in senders if s.signal == _SIGINT), None)
    if winner is Reason.TIMEOUT:
        return next((s for s in senders if s.from_timeout), None)
    if winner is Reason.KILLED:
        if obs.exit is not None and obs.exit.oom_killed:
            return next((s for s in obs.exit.senders if s.origin is SignalOrigin.KERNEL), None)
        return next((s for s in senders if s.signal in _KILLING), None)
    return None


def _denial_detail(denial: Any) -> str:
    if not isinstance(denial, Mapping):
        return str(denial)[:80]
    tool = str(denial.get("tool_name", "?"))
    tool_input = denial.get("tool_input")
    target = ""
    if isinstance(tool_input, Mapping):
        for key in ("file_path", "path", "notebook_path", "command"):
            if key in tool_input:
                target = str(tool_input[key])[:80]
                break
    return f"{tool}({target})" if target else tool


def _denied_paths(denials: Iterable[Any]) -> list[str]:
    paths: list[str] = []
    for denial in denials:
        if isinstance(denial, Mapping):
            tool_input = denial.get("tool_input")
            if isinstance(tool_input, Mapping):
                for key in ("file_path", "path", "notebook_path"):
                    value = tool_input.get(key)
                    if isinstance(value, str):
                        paths.append(value)
    return paths


# A final result whose stop_reason says the model still wanted to act (call a tool,
# continue a paused turn, or was cut at its output cap) did not finish its work.
_UNFINISHED_STOPS = frozenset({"tool_use", "pause_turn", "max_tokens"})


def _result_evidence(
    result: Mapping[str, Any] | None, obs: Observation, found: _Found, table: Table
) -> list[Match]:
    """Evidence from the result JSON; returns the matches read in its ``result`` text."""
    if not isinstance(result, Mapping):
        return []
    before = len(found.evidence)
    denials = result.get("permission_denials")
    if isinstance(denials, list) and denials:
        shown = ", ".join(_denial_detail(d) for d in denials[:5])
        found.add("result", Reason.PERMISSION, 0.6, f"{len(denials)} permission denial(s): {shown}")
        if obs.deliverables_missing:
            denied = _denied_paths(denials)
            hit = [m for m in obs.deliverables_missing if any(p.endswith(m) for p in denied)]
            detail = (
                f"denied writes to missing deliverables: {', '.join(hit)}"
                if hit
                else f"deliverables missing after denials: {', '.join(obs.deliverables_missing)}"
            )
            found.add("result", Reason.PERMISSION, 0.4 if hit else 0.3, detail)
    status = result.get("api_error_status")
    if isinstance(status, int) and not isinstance(status, bool):
        found.add("result", Reason.API_ERROR, 0.9, f"api_error_status {status}")
        found.api_status = status
    terminal = result.get("terminal_reason")
    if terminal == "api_error":
        found.add("result", Reason.API_ERROR, 0.8, "terminal_reason api_error")
    aborted = isinstance(terminal, str) and terminal.startswith("aborted")
    if aborted:
        found.add(
            "result",
            Reason.SIGINT,
            0.6,
            f"terminal_reason {terminal}: how Claude Code ends when interrupted while a "
            "tool or its hook runs",
        )
    subtype = result.get("subtype")
    if terminal == "hook_stopped":
        found.add(
            "result",
            Reason.PERMISSION,
            0.55,
            "terminal_reason hook_stopped: a hook stopped the turn (blocked by policy)",
        )
    stop = result.get("stop_reason")
    if subtype == "error_max_turns" or terminal == "max_turns":
        said = "subtype error_max_turns" if subtype == "error_max_turns" else "terminal_reason"
        found.add("result", Reason.INCOMPLETE, 0.7, f"{said} max_turns: ran out of turns")
    elif isinstance(subtype, str) and subtype.startswith("error_max_"):
        found.add("result", Reason.INCOMPLETE, 0.7, f"subtype {subtype}: a cap ended the run")
    elif isinstance(stop, str) and stop in _UNFINISHED_STOPS and not aborted:
        found.add(
            "result",
            Reason.INCOMPLETE,
            0.6,
            f"stop_reason {stop} in the final result: stopped before finishing (subtype {subtype})",
        )
    elif aborted and subtype == "error_during_execution":
        pass  # the abort above is the cause; the subtype says nothing more
    elif isinstance(subtype, str) and subtype.startswith("error"):
        found.add("result", Reason.UNKNOWN, 0.35, f"subtype {subtype}")
    text = result.get("result")
    matches = read_lines(text, "result", table).matches if isinstance(text, str) else []
    errors = result.get("errors")
    if not matches and isinstance(errors, list):
        joined = "\n".join(e for e in errors[:5] if isinstance(e, str))
        matches = read_lines(joined, "result", table).matches
    if result.get("is_error") is True and not matches and len(found.evidence) == before:
        found.add("result", Reason.UNKNOWN, 0.35, "is_error true, no cause given")
    return matches


def _text_evidence(sources: list[list[Match]], found: _Found) -> None:
    """Per source: the last fatal line counts in full, earlier fatal lines the run got past
    count for little, retried errors count as the small warnings they are. One evidence item
    per (source, reason), so a thousand retry lines do not outvote one fatal line."""
    # Match fields are read directly, not through its properties: this runs for every
    # classification, and the property calls were a measurable share of it.
    for matches in sources:
        if not matches:
            continue
        last_fatal = next(
            (
                m
                for m in reversed(matches)
                if m.exact and (m.pattern.stops_run if m.fatal is None else m.fatal)
            ),
            None,
        )
        fatal_line = None if last_fatal is None else last_fatal.line
        weights: dict[Reason, float] = {}
        best: dict[Reason, Match] = {}
        counts: dict[Reason, int] = {}
        for m in matches:
            row = m.pattern
            reason = row.reason
            weight = row.weight if m.weight is None else m.weight
            if m.exact:
                if m is not last_fatal and (row.stops_run if m.fatal is None else m.fatal):
                    weight *= _SUPERSEDED
            elif fatal_line is not None and m.line < fatal_line:
                weight *= _SUPERSEDED  # a cue reading before the exact line that stopped the run
            if reason in weights:
                counts[reason] += 1
                if weight < weights[reason]:
                    continue
            else:
                counts[reason] = 1
            weights[reason], best[reason] = weight, m
        for reason, m in best.items():
            count = counts[reason]
            more = f" (+{count - 1} more line(s))" if count > 1 else ""
            kind = "result" if m.source == "result" else "log"
            detail = f"{m.pattern.name}: {m.text}{more}"
            found.add(kind, reason, weights[reason], detail, m.source, m.line)
        for m in reversed(matches):
            if m.api_status and found.api_status is None and m.pattern.reason is Reason.API_ERROR:
                found.api_status = m.api_status
            if m.retry_after is not None and found.retry_after is None:
                found.retry_after = m.retry_after


def _parked_at_prompt(obs: Observation, log_matches: list[list[Match]], found: _Found) -> None:
    """An agent killed by the timeout while its last words were a permission prompt was not
    slow: it was waiting for a person. The prompt is the cause, the timeout its symptom."""
    if not _supervisor_timed_out(obs):
        return
    for matches in log_matches:
        exact = [m for m in matches if m.exact]
        if exact and exact[-1].reason is Reason.PERMISSION:
            last = exact[-1]
            found.add(
                "log",
                Reason.PERMISSION,
                0.95,
                f"waiting at a permission prompt when the timeout fired: {last.text}",
                last.source,
                last.line,
            )
            return


# --------------------------------------------------------------------------- what the exit hides

# A claim of success contradicted by the text is a witness in its own right (the CLI said one
# thing and printed another), worth this much on top of the text's own weight.
_CONTRADICTED_CLAIM = 0.3
# A time-limit line in the log explaining an exit status that does not say timeout.
_MASKED_TIMEOUT = 0.6


def _last_fatal(matches: Iterable[Match]) -> Match | None:
    fatal = [m for m in matches if m.stops_run]
    return fatal[-1] if fatal else None


def _success_claim_contradicted(
    obs: Observation,
    result: Any,
    log_matches: list[list[Match]],
    result_matches: list[Match],
    found: _Found,
) -> None:
    """Exit 0 or ``subtype: "success"`` next to text that reports an error that ended the run.

    The claim is the weaker witness: Claude Code returns API errors headless as a successful
    result with the error only in ``result`` (anthropics/claude-code#79500), answers "Prompt
    is too long" with ``subtype: "success", is_error: true`` (#12312), and several CLIs exit 0
    after printing their error. The text is believed, and the evidence says why.
    """
    result = result if isinstance(result, Mapping) else None
    claimed = result is not None and result.get("subtype") == "success"
    in_result = _last_fatal(result_matches) if claimed else None
    if result is not None and in_result is not None:
        flag = "is_error true" if result.get("is_error") is True else "is_error false"
        found.add(
            "result",
            in_result.reason,
            _CONTRADICTED_CLAIM,
            f"result claims success (subtype success, {flag}) but its text says "
            f"{in_result.pattern.name}: {in_result.text}; the text is believed over the "
            "claim (a CLI reporting its error as its answer)",
            "result",
            in_result.line,
        )
        return
    exit_info = obs.exit
    if exit_info is None or not exit_info.clean:
        return
    last = [m for m in (_last_fatal(ms) for ms in log_matches) if m is not None]
    if last:
        m = last[-1]
        found.add(
            "log",
            m.reason,
            _CONTRADICTED_CLAIM * 0.7,
            f"exit 0, yet the last fatal line of {m.source} is {m.pattern.name}: {m.text}; "
            "an exit status of 0 is not success (the CLI printed its error and exited 0)",
            m.source,
            m.line,
        )


def _masked_timeout(obs: Observation, log_matches: list[list[Match]], found: _Found) -> None:
    """A time limit the exit status does not show.

    coreutils ``timeout`` exits 124, but ``timeout 900 agent || exit 1``, a CI step or a shell
    wrapper hands its caller 1 (or 0, or 143 from the TERM it sent): the exit then reads as an
    ordinary failure or a kill. A log line from the limit itself (``timeout: sending signal``,
    "exceeded the maximum execution time", "Process completed with exit code 124") says what
    happened, and outweighs the exit code.
    """
    exit_info = obs.exit
    if exit_info is None or exit_info.timed_out or _supervisor_timed_out(obs):
        return
    limit = next(
        (m for ms in log_matches for m in reversed(ms) if m.reason is Reason.TIMEOUT), None
    )
    if limit is None:
        return
    if exit_info.signal is not None:
        shown = f"ended by {_sig_name(exit_info.signal)}"
        why = "the signal was the time limit's, not a separate kill"
    else:
        shown = f"exit status {exit_info.display_code}"
        why = (
            "coreutils timeout exits 124; a wrapper or CI step re-coded it"
            if exit_info.status != 0
            else "the wrapper swallowed the limit's 124"
        )
    found.add(
        "log",
        Reason.TIMEOUT,
        _MASKED_TIMEOUT,
        f"{shown} does not say timeout, but {limit.source} line {limit.line} does "
        f"({limit.pattern.name}: {limit.text}): {why}",
        limit.source,
        limit.line,
    )


def _interrupt_without_signal(
    obs: Observation, log_matches: list[list[Match]], result_matches: list[Match], found: _Found
) -> None:
    """The agent says it was interrupted, but no SIGINT shows in the exit or among the signals
    the supervisor delivered or the wrapper saw.

    Claude Code prints "[Request interrupted by user]" after Esc as well as Ctrl-C, Codex
    "Conversation interrupted" after Esc; both are keys read by the TUI, not signals. The
    agent's own words stand (sigint: the turn was interrupted), and the evidence records that
    no signal corroborates them, so a reader looks at the pane's input rather than for a
    sender.
    """
    said = next(
        (
            m
            for ms in (*log_matches, result_matches)
            for m in reversed(ms)
            if m.reason is Reason.SIGINT
        ),
        None,
    )
    if said is None or _supervisor_timed_out(obs):
        return
    exit_info = obs.exit
    if _SIGINT in obs.signals_delivered or (exit_info is not None and exit_info.signal == _SIGINT):
        return
    if exit_info is not None and exit_info.senders:
        return  # the wrapper saw the signals: its sender evidence already speaks
    how = (
        "exit 0"
        if exit_info is not None and exit_info.clean
        else ("no exit recorded" if exit_info is None else f"exit {exit_info.display_code}")
    )
    found.add(
        "log" if said.source != "result" else "result",
        Reason.SIGINT,
        0.0,
        f"interrupted per the agent ({said.pattern.name}: {said.text}) with {how} and no "
        "SIGINT delivered or seen: a key typed in the pane (Esc or Ctrl-C read by the "
        "TUI) or a signal the supervisor does not see",
        said.source,
        said.line,
    )


def _deliverable_evidence(obs: Observation, found: _Found) -> None:
    present = obs.deliverables_present
    missing = (*obs.deliverables_missing, *obs.work_missing)
    if obs.tests_passed is False:
        if not obs.deliverables_missing:
            detail = f"all {len(present)} deliverable(s) present; tests fail"
            found.add("deliverables", Reason.TEST_FAILURE, 0.8, detail)
        else:
            found.add("deliverables", Reason.TEST_FAILURE, 0.3, "tests fail; work incomplete")
    if not missing:
        return
    explained = any(
        e.weight >= _EXPLAINS and e.reason not in (Reason.INCOMPLETE, Reason.UNKNOWN)
        for e in found.evidence
    )
    if obs.deliverables_missing:
        files = obs.deliverables_missing
        total = len(files) + len(present)
        detail = f"{len(files)} of {total} deliverable(s) missing: {', '.join(files[:5])}"
        if obs.work_missing:
            detail += f"; also undone: {', '.join(obs.work_missing[:5])}"
    else:
        detail = f"all deliverables present but undone: {', '.join(obs.work_missing[:5])}"
    if explained:  # listed for the reader, not scored: another reason accounts for it
        found.add("deliverables", Reason.INCOMPLETE, 0.0, detail)
        return
    exit_info = obs.exit
    if exit_info is None:
        weight, how = 0.5, "exit unknown"
    elif exit_info.status == 0 and exit_info.signal is None:
        weight, how = 0.75, "exit 0"
    else:
        weight, how = 0.2, f"exit {exit_info.display_code}"
    detail = f"{how}, nothing else explains it; {detail}"
    found.add("deliverables", Reason.INCOMPLETE, weight, detail)


# --------------------------------------------------------------------------- verdict


def _scores(evidence: Iterable[Evidence]) -> dict[Reason, float]:
    misses: dict[Reason, float] = {}
    for e in evidence:
        weight = min(max(e.weight, 0.0), 1.0)
        misses[e.reason] = misses.get(e.reason, 1.0) * (1.0 - weight)
    return {reason: 1.0 - miss for reason, miss in misses.items()}


def _readings(obs: Observation, table: Table) -> list[Reading]:
    return [read_lines(log.text, log.source, table) for log in obs.logs]


def _adopted_result(obs: Observation, readings: list[Reading]) -> tuple[Any, JsonLine | None]:
    """The result JSON: the observation's own, or else the last ``result`` event printed
    in a log (stream-json, or a json result captured with the pane)."""
    if obs.result is not None:
        return obs.result, None
    for reading in reversed(readings):
        for event in reversed(reading.events):
            if is_result(event.data):
                return event.data, event
    return None, None


def _event_evidence(obs: Observation, readings: list[Reading], found: _Found) -> None:
    """What Codex and Gemini CLI events say beyond their messages: a failed turn, a code."""
    for log, reading in zip(obs.logs, readings, strict=True):
        if not reading.events:
            continue
        facts = [(event, fact) for event in reading.events for fact in event_facts(event.data)]
        for index, (event, fact) in enumerate(facts):
            last = index == len(facts) - 1
            weight = fact.weight if (last or not fact.fatal) else fact.weight * _SUPERSEDED
            found.add("structured", fact.reason, weight, fact.detail, log.source, event.line)
            if fact.api_status is not None and found.api_status is None:
                found.api_status = fact.api_status


def looks_successful(obs: Observation) -> bool:
    """Clean exit, every deliverable present, tests not failing, and no error seen anywhere.

    Exit 0 alone is not enough: something must show work was done (a deliverable present or
    a successful result JSON).

    >>> looks_successful(Observation(exit=ExitInfo(0), deliverables_present=("a.md",)))
    True
    >>> looks_successful(Observation(exit=ExitInfo(0)))
    False
    """
    readings = _readings(obs, TABLE)
    result, _ = _adopted_result(obs, readings)
    return _looks_successful(obs, result, [r.matches for r in readings], TABLE)


def _looks_successful(
    obs: Observation, result: Any, log_matches: list[list[Match]], table: Table
) -> bool:
    if obs.exit is None and result is None:
        return False  # nothing says it ended well (checked first: the common log-only case)
    if obs.timed_out or obs.deliverables_missing or obs.tests_passed is False:
        return False
    if obs.work_missing or obs.signals_delivered or obs.rate_limited:
        return False
    if obs.exit is not None and not obs.exit.clean:
        return False
    result_ok = False
    if isinstance(result, Mapping):
        if result.get("is_error") is True or result.get("permission_denials"):
            return False
        if result.get("api_error_status") is not None:
            return False
        subtype = result.get("subtype")
        if subtype not in (None, "success"):
            return False
        if result.get("stop_reason") in _UNFINISHED_STOPS:
            return False
        terminal = result.get("terminal_reason")
        if isinstance(terminal, str) and terminal != "completed":
            return False
        result_ok = subtype == "success"
        text = result.get("result")
        if isinstance(text, str) and any(
            m.stops_run and m.exact for m in read_lines(text, "result", table).matches
        ):
            return False
    # Only exact rows veto success: a cue word in the output of work that was delivered
    # ("fixed the failing test") is the agent talking, not an error.
    if any(m.stops_run and m.exact for ms in log_matches for m in ms):
        return False
    return bool(obs.deliverables_present) or result_ok


def classify(obs: Observation, *, table: Table = TABLE) -> Attribution:
    """Attribute the cause of an attempt's end, with evidence. Deterministic and pure.

    ``table`` is the pattern table to read lines with (default: all of it); the
    leave-one-tool-out measurement passes one without a tool's own rows.

    >>> classify(Observation(exit=ExitInfo.from_shell_status(130))).reason
    <Reason.SIGINT: 'sigint'>
    """
    readings = _readings(obs, table)  # scanned once: classify runs in simulation hot loops
    result, adopted = _adopted_result(obs, readings)
    if adopted is not None:  # its messages are read as the result's, not again as log lines
        readings = [
            Reading([m for m in r.matches if m.line != adopted.line], r.events)
            if adopted in r.events
            else r
            for r in readings
        ]
    log_matches = [r.matches for r in readings]
    if _looks_successful(obs, result, log_matches, table):
        note = Evidence(
            "summary",
            Reason.UNKNOWN,
            0.0,
            f"attempt looks successful: {len(obs.deliverables_present)} deliverable(s) "
            "present, clean exit, no error seen",
        )
        return Attribution(Reason.UNKNOWN, 0.0, (note,))
    found = _Found([])
    _exit_evidence(obs, found)
    _screen_evidence(obs, found)
    _supervisor_evidence(obs, found)
    _orchestrator_evidence(obs, found)
    result_matches = _result_evidence(result, obs, found, table)
    _event_evidence(obs, readings, found)
    _text_evidence([*log_matches, result_matches], found)
    _success_claim_contradicted(obs, result, log_matches, result_matches, found)
    _masked_timeout(obs, log_matches, found)
    _interrupt_without_signal(obs, log_matches, result_matches, found)
    _parked_at_prompt(obs, log_matches, found)
    _deliverable_evidence(obs, found)
    scores = _scores(e for e in found.evidence if e.weight > 0)
    if not scores:
        note = Evidence("summary", Reason.UNKNOWN, 0.0, "no signal points at a cause")
        return Attribution(Reason.UNKNOWN, 0.0, (*found.evidence, note))
    ranked = sorted(scores.items(), key=lambda item: (-item[1], _RANK[item[0]]))
    winner, top = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    confidence = min(max(top * (1.0 - 0.5 * runner_up), 0.0), 1.0)
    # Strongest first, so a reader sees the deciding evidence at the top.
    ordered = sorted(
        found.evidence, key=lambda e: (e.reason is not winner, -e.weight, _RANK[e.reason])
    )
    is_api = winner is Reason.API_ERROR
    reset = observed_reset(obs.logs, obs.result, obs.observed_at, obs.zone) if is_api else None
    retry_after = found.retry_after
    if retry_after is None and reset is not None and not reset.usage_limit:
        retry_after = reset.seconds  # a throttle's "try again in 11 seconds"
    return Attribution(
        winner,
        round(confidence, 6),
        tuple(ordered) + (() if reset is None else (reset.evidence(),)),
        retry_after=retry_after if is_api else None,
        api_status=found.api_status if is_api else None,
        sender=_deciding_sender(obs, winner),
        oom_killed=winner is Reason.KILLED and obs.exit is not None and obs.exit.oom_killed,
        resets_at=None if reset is None else reset.at,
        usage_limit=reset is not None and reset.usage_limit,
    )
