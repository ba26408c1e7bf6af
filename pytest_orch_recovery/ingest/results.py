"""Read what an existing orchestrator left on disk: results files and attempt logs.

The seed orchestrator (``orchestration/task_dispatcher.py`` of the seed project) writes, per
run of an agent (a run may try several CLIs in turn, its ``cli_chain``):

- ``<results>/<agent>_results_<suffix>.json`` when the run ends, one JSON object:
  ``agent``, ``status`` (``completed`` / ``failed``), ``exit_code``, ``cli_used`` (completed) or
  ``cli_last`` (failed), ``cli_chain`` (one comma-joined string), optional ``rate_limited``,
  ``fallback_from``, ``fallback_to``, ``fallback_attempted``. ``<suffix>`` is
  ``<milliseconds since the epoch>-<pid>``. ``<agent>_results.json`` is a symlink to the latest
  run's file, made at launch, so it dangles while that run is going;
- ``<logs>/<agent>_<suffix>.log``: the wrapper's own lines, each prefixed ``[$(date)] ``
  (``🔁 Attempt N: Claude``, ``Claude exit code: N``, ``⏱️  CLI execution timed out after Ns``
  - the wrapper then reports exit 1, not 124 -, ``⚠️  Detected rate limit/quota output``,
  ``❌ Attempt failed via Claude (exit=N rate_limited=0|1)``, ``✅ Agent completed successfully
  via Claude``, ``Agent interrupted with signal SIGINT`` - its trap then exits 130 and writes no
  results file -) interleaved with the CLI's own output (Claude Code's ``stream-json``: one JSON
  event per line, possibly cut off mid-line when the run was interrupted).

Every file is read through :func:`read_bounded`: a regular file of at most
:data:`MAX_FILE_BYTES`, else one clear error naming it (a FIFO or ``/dev/zero`` is refused
before anything is read from it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.classify import LogText, Observation
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import ExitInfo, PartialWork, WorkItem, WorkKind
from pytest_orch_recovery.store import validation

MAX_FILE_BYTES = 16 * 1024 * 1024  # a long stream-json log is a few MiB

# <agent>_results_<suffix>.json / <agent>_results.json / <agent>_<suffix>.log. Agent names are
# the origin orchestrator's sanitized tokens ([A-Za-z0-9_.-]); the suffix is "<ms>-<pid>".
SUFFIX = r"\d+-\d+"
_RESULTS_NAME = re.compile(rf"(?P<agent>[A-Za-z0-9_.-]+?)_results_(?P<suffix>{SUFFIX})\.json")
_LATEST_RESULTS_NAME = re.compile(r"(?P<agent>[A-Za-z0-9_.-]+?)_results\.json")
_LOG_NAME = re.compile(rf"(?P<agent>[A-Za-z0-9_.-]+?)_(?P<suffix>{SUFFIX})\.log")

# The wrapper's lines, after its "[$(date)] " prefix (optional here).
_PREFIX = r"^(?:\[[^\]\n]*\]\s*)?"
_CLI_START = re.compile(_PREFIX + r"🔁 Attempt (?P<n>\d+): (?P<cli>.+?)\s*$")
_CLI_EXIT = re.compile(_PREFIX + r"(?P<cli>\S.*?) exit code: (?P<code>-?\d+)\s*$")
_CLI_FAILED = re.compile(
    _PREFIX + r"❌ Attempt failed via (?P<cli>.+?) \(exit=(?P<code>-?\d+) "
    r"rate_limited=(?P<rl>[01])\)"
)
_CLI_TIMED_OUT = re.compile(_PREFIX + r"⏱️\s+CLI execution timed out after (?P<secs>\d+)s")
_RATE_LIMITED = re.compile(_PREFIX + r"⚠️\s+Detected rate limit/quota output")
_COMPLETED = re.compile(_PREFIX + r"✅ Agent completed successfully via (?P<cli>.+?)\s*$")
_ENDED = re.compile(_PREFIX + r"Agent execution completed\.")
_TRAPPED = re.compile(_PREFIX + r"Agent (?:interrupted|terminated) with signal (?P<sig>SIG[A-Z]+)")

# A wrapper line glued to the end of a stream-json line the CLI left unfinished (its output had
# no final newline when it was killed): "{...,"role":"assi[Tue Dec  1 04:30:03 UTC 2026] ...".
_GLUED = re.compile(r"\[[^\[\]{}\"\n]*\d{1,2}:\d{2}:\d{2}[^\[\]{}\"\n]*\] ")

# The wrapper's trap exits with these after logging the signal.
_TRAP_STATUS = {"SIGINT": 130, "SIGTERM": 143}


class ResultsError(OrchRecoveryError):
    """A results or log file cannot be used; the message names the file (and line)."""


# --------------------------------------------------------------------------- bounded reading


def read_bounded(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (the one bounded
    reader, :func:`~pytest_orch_recovery.store.validation.read_bounded`, with the origin
    orchestrator's dangling ``<agent>_results.json`` link named as such)."""
    if not os.path.exists(path):
        if os.path.lexists(path):
            raise ResultsError(f"{path}: dangling symlink (its run has not written it)")
        raise ResultsError(f"{path}: no such file")
    try:
        return validation.read_bounded(path, limit)
    except validation.RuleError as exc:
        raise ResultsError(f"{path}: {exc}") from None


def read_text(path: Path, *, limit: int = MAX_FILE_BYTES) -> str:
    return read_bounded(path, limit=limit).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- results files


@dataclass(frozen=True)
class RunResult:
    """One ``<agent>_results_<suffix>.json`` of the seed orchestrator."""

    agent: str
    status: str  # completed | failed
    exit_code: int | None
    cli: str | None  # cli_used (completed) or cli_last (failed)
    cli_chain: tuple[str, ...]
    rate_limited: bool
    fallback_from: str | None = None
    fallback_to: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def exit(self) -> ExitInfo | None:
        if self.exit_code is None:
            return None
        return ExitInfo.from_shell_status(self.exit_code, source="results")


def is_run_result(data: object) -> bool:
    """Whether ``data`` has the seed orchestrator's results shape (not the engine
    dispatcher's, which numbers its ``attempt``, nor a Claude Code result)."""
    return (
        isinstance(data, Mapping)
        and data.get("status") in ("completed", "failed")
        and "attempt" not in data
        and "type" not in data
    )


def run_result(path: Path, data: Mapping[str, Any]) -> RunResult:
    """Check one results object; :class:`ResultsError` names the file and field."""

    def fail(name: str, expected: str) -> ResultsError:
        return ResultsError(f"{path}: field {name}: expected {expected}, got {data.get(name)!r}")

    agent = data.get("agent")
    if not isinstance(agent, str) or not agent:
        raise fail("agent", "a non-empty string")
    status = data.get("status")
    if status not in ("completed", "failed"):
        raise fail("status", "'completed' or 'failed'")
    code = data.get("exit_code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise fail("exit_code", "an integer")
    chain = data.get("cli_chain", "")
    if isinstance(chain, list):
        chain = ",".join(str(c) for c in chain)
    if not isinstance(chain, str):
        raise fail("cli_chain", "a comma-joined string")
    cli = data.get("cli_used") if status == "completed" else data.get("cli_last")
    limited = data.get("rate_limited", False)
    if not isinstance(limited, bool):
        raise fail("rate_limited", "true or false")
    return RunResult(
        agent=agent,
        status=str(status),
        exit_code=code,
        cli=str(cli) if cli else None,
        cli_chain=tuple(c.strip() for c in chain.split(",") if c.strip()),
        rate_limited=limited,
        fallback_from=str(data["fallback_from"]) if data.get("fallback_from") else None,
        fallback_to=str(data["fallback_to"]) if data.get("fallback_to") else None,
    )


def load_json_object(path: Path) -> dict[str, Any]:
    """One JSON object from ``path`` (bounded), or :class:`ResultsError` with the line."""
    text = read_text(path)
    try:
        data = validation.loads_json(text)  # bounded depth and integers, finite numbers
    except validation.DocumentError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        raise ResultsError(f"{where}: {exc.describe()}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}:1: expected a JSON object, got {type(data).__name__}")
    return data


def load_run_result(path: Path) -> RunResult:
    data = load_json_object(path)
    if "attempt" in data or "type" in data:
        raise ResultsError(
            f"{path}: not a seed orchestrator results file (it has "
            f"{'attempt' if 'attempt' in data else 'type'})"
        )
    return run_result(path, data)


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class CliTry:
    """One CLI of a run's chain, as the wrapper logged it."""

    cli: str
    exit_code: int | None = None
    rate_limited: bool = False
    timed_out: bool = False
    failed: bool = False
    line: int | None = None  # of its last wrapper line


@dataclass(frozen=True)
class RunLog:
    """What a run's log says: the wrapper's facts and the CLI's last result event."""

    source: str
    text: str
    tries: tuple[CliTry, ...]
    completed_via: str | None  # "✅ Agent completed successfully via X"
    trapped: str | None  # signal name the wrapper's trap logged (it then exits 128+N)
    result: Mapping[str, Any] | None  # the last stream-json {"type": "result"} event
    json_lines: int  # stream-json lines parsed
    bad_json_lines: tuple[int, ...]  # lines that began like JSON and did not parse (cut off)
    wrapper_lines: int
    ended: bool = False  # "Agent execution completed." (written after the results file)
    # ``text`` line for line, each stream-json event replaced by the words in it (what a
    # pattern should read, and what a person reads as evidence); line numbers are kept.
    readable: str = ""

    @property
    def last_try(self) -> CliTry | None:
        return self.tries[-1] if self.tries else None

    @property
    def finished(self) -> bool:
        """The wrapper got to the end of the run, or its trap ended it."""
        return self.ended or self.trapped is not None

    @property
    def exit(self) -> ExitInfo | None:
        """How the run ended as far as the log tells."""
        if self.trapped is not None:
            return ExitInfo.from_shell_status(_TRAP_STATUS.get(self.trapped, 1), source="log")
        last = self.last_try
        if last is not None and last.exit_code is not None:
            return ExitInfo.from_shell_status(last.exit_code, source="log")
        return None


class _TryBuilder:
    def __init__(self, cli: str, number: int | None = None) -> None:
        self.cli = cli
        self.number = number
        self.exit_code: int | None = None
        self.rate_limited = False
        self.timed_out = False
        self.failed = False
        self.line: int | None = None

    def build(self) -> CliTry:
        return CliTry(
            self.cli, self.exit_code, self.rate_limited, self.timed_out, self.failed, self.line
        )


def _words(value: object) -> list[str]:
    """The text inside a message content value: a string, or blocks of text/tool results."""
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    if isinstance(value, list):
        for block in value:
            if isinstance(block, Mapping):
                for key in ("text", "content"):
                    out += _words(block.get(key))
    return out


def event_words(event: object) -> str:
    """One stream-json event as the words a person would read, on one line: the result's
    text, an assistant's text, a tool's output. Other events (init, tool calls) read as ""."""
    if not isinstance(event, Mapping):
        return ""
    words: list[str] = []
    if event.get("type") == "result":
        words += _words(event.get("result"))
    message = event.get("message")
    if isinstance(message, Mapping):
        words += _words(message.get("content"))
    return " ".join(" ".join(words).split())


# Complexity: one branch per kind of line the origin orchestrator's wrapper writes.
def parse_log(source: str, text: str) -> RunLog:  # noqa: C901
    """Split a run's log into wrapper facts and the CLI's stream-json result (pure)."""
    tries: list[_TryBuilder] = []
    completed_via: str | None = None
    trapped: str | None = None
    result: Mapping[str, Any] | None = None
    parsed = 0
    bad: list[int] = []
    wrapper = 0
    ended = False
    readable: list[str] = []

    def current(cli: str | None = None) -> _TryBuilder:
        if not tries or (cli is not None and tries[-1].cli != cli and tries[-1].failed):
            tries.append(_TryBuilder(cli or "?"))
        return tries[-1]

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        readable.append(stripped)  # one entry per line: evidence keeps its line number
        if stripped.startswith("{"):
            readable[-1] = ""  # JSON is not words; a cut-off line says nothing either
            try:
                event = json.loads(stripped)
            except (RecursionError, ValueError) as exc:  # too deep, or a huge integer
                bad.append(number)
                if not isinstance(exc, json.JSONDecodeError):
                    continue
                glued = _GLUED.search(stripped)
                if glued is None:
                    continue
                stripped = readable[-1] = stripped[glued.start() :]
            else:
                parsed += 1
                readable[-1] = event_words(event)
                if isinstance(event, dict) and event.get("type") == "result":
                    result = event
                continue
        if (m := _CLI_START.match(stripped)) is not None:
            # The same line twice is one start: without tmux the origin orchestrator's wrapper
            # output goes to the log both through its `tee -a` and as the process's own stdout.
            if not tries or tries[-1].number != int(m["n"]):
                tries.append(_TryBuilder(m["cli"], int(m["n"])))
        elif (m := _CLI_FAILED.match(stripped)) is not None:
            t = current(m["cli"])
            t.exit_code, t.rate_limited, t.failed = int(m["code"]), m["rl"] == "1", True
            t.line = number
        elif (m := _CLI_TIMED_OUT.match(stripped)) is not None:
            current().timed_out = True
            current().line = number
        elif _RATE_LIMITED.match(stripped) is not None:
            current().rate_limited = True
            current().line = number
        elif (m := _COMPLETED.match(stripped)) is not None:
            completed_via = m["cli"]
        elif (m := _TRAPPED.match(stripped)) is not None:
            trapped = m["sig"]
        elif _ENDED.match(stripped) is not None:
            ended = True
        elif (m := _CLI_EXIT.match(stripped)) is not None:
            t = current(m["cli"])
            t.exit_code, t.line = int(m["code"]), number
        else:
            continue
        wrapper += 1
    return RunLog(
        source,
        text,
        tuple(t.build() for t in tries),
        completed_via,
        trapped,
        result,
        parsed,
        tuple(bad),
        wrapper,
        ended,
        "\n".join(readable),
    )


def load_run_log(path: Path) -> RunLog:
    return parse_log(str(path), read_text(path))


def looks_like_log(log: RunLog) -> bool:
    """Whether ``log`` holds anything a reader can use: wrapper lines or stream-json."""
    return log.wrapper_lines > 0 or log.json_lines > 0


# ----------------------------------------------------------------- the origin orchestrator's layout


@dataclass(frozen=True)
class RunFiles:
    """The files of one run, found by name."""

    agent: str
    suffix: str
    results: Path | None  # None while the run goes on (or after its trap fired)
    log: Path | None

    @property
    def started_ms(self) -> int:
        return int(self.suffix.split("-", 1)[0])


def find_runs(
    results_dir: Path, logs_dir: Path | None, problems: list[str] | None = None
) -> list[RunFiles]:
    """Every (agent, suffix) the directories name, oldest first. A ``<agent>_results.json``
    symlink is only a pointer to the latest run's file and adds no run of its own.

    A file this cannot use is skipped, with one line in ``problems`` saying why
    (:func:`unusable`): one odd file in a tree another program writes must not stop the
    adoption of the rest."""
    runs: dict[tuple[str, str], dict[str, Path]] = {}
    for directory, pattern, role in (
        (results_dir, _RESULTS_NAME, "results"),
        (logs_dir, _LOG_NAME, "log"),
    ):
        if directory is None:
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise ResultsError(f"{directory}: cannot list: {exc.strerror or exc}") from None
        for name in names:
            m = pattern.fullmatch(name)
            if m is None:
                continue
            problem = unusable(directory, name, m["agent"], m["suffix"])
            if problem is not None:
                if problems is not None:
                    problems.append(f"{directory / name}: skipped: {problem}")
                continue
            runs.setdefault((m["agent"], m["suffix"]), {})[role] = directory / name
    found = [
        RunFiles(agent, suffix, files.get("results"), files.get("log"))
        for (agent, suffix), files in runs.items()
    ]
    return sorted(found, key=lambda r: (r.started_ms, r.agent, r.suffix))


def unusable(directory: Path, name: str, agent: str, suffix: str) -> str | None:
    """Why a run's file cannot be adopted, or None: an agent name outside the documented
    alphabet (it becomes a worktree path and a branch: ``..`` would be the worktrees'
    parent), a start time past the journal's range, a symbolic link that leads out of its
    directory (its content would be copied into the journal)."""
    try:
        validation.agent_name(agent)
    except validation.RuleError as exc:
        return str(exc)
    started = int(suffix.split("-", 1)[0]) / 1000.0
    if started > validation.MAX_TIME:
        return (
            f"its start time, {suffix.split('-', 1)[0]} ms, is past the journal's limit "
            f"({validation.MAX_TIME:g} s)"
        )
    path = directory / name
    if path.is_symlink():
        real, root = os.path.realpath(path), os.path.realpath(directory)
        if os.path.commonpath([real, root]) != root:
            return f"a symbolic link out of {directory} (to {real})"
    return None


def latest_pointer(results_dir: Path, agent: str) -> Path:
    return results_dir / f"{agent}_results.json"


def is_latest_pointer_name(name: str) -> bool:
    return _LATEST_RESULTS_NAME.fullmatch(name) is not None


# --------------------------------------------------------------------------- observation


def undone_work(partial: PartialWork | None, *, pr_known: bool = True) -> tuple[WorkItem, ...]:
    """Steps a probed worktree shows undone (the seed asks every agent for a pushed PR).
    ``pr_known=False``: nothing was asked about pull requests, so a missing one is not
    counted."""
    if partial is None:
        return ()
    items: list[WorkItem] = []
    if partial.uncommitted:
        items.append(WorkItem(WorkKind.COMMIT))
    if not partial.pushed:
        items.append(WorkItem(WorkKind.PUSH))
    if partial.pr is None and pr_known:
        items.append(WorkItem(WorkKind.OPEN_PR))
    return tuple(items)


def observation(
    result: RunResult | None,
    log: RunLog | None,
    *,
    partial: PartialWork | None = None,
    pr_known: bool = True,
) -> Observation:
    """What the engine's classifier needs from a run's results file, log and worktree."""
    exit_info = result.exit if result is not None else None
    if log is not None and (exit_info is None or log.trapped is not None):
        exit_info = log.exit
    last = None if log is None else log.last_try
    return Observation(
        exit=exit_info,
        result=None if log is None else log.result,
        logs=()
        if log is None or not log.readable.strip()
        else (LogText(log.source, log.readable),),
        deliverables_present=() if partial is None else partial.deliverables_present,
        deliverables_missing=() if partial is None else partial.deliverables_missing,
        timed_out=bool(last is not None and last.timed_out),
        rate_limited=bool(
            (result is not None and result.rate_limited) or (last is not None and last.rate_limited)
        ),
        work_missing=tuple(i.describe() for i in undone_work(partial, pr_known=pr_known)),
    )
