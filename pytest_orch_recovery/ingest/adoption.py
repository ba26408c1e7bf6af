"""Adopt an existing orchestrator's attempts into an engine journal.

Each run of the seed orchestrator (see :mod:`.results` for its files) becomes one attempt of a
task named after its agent: ``task_submitted`` for the agent's first run, then per run
``attempt_launched``, and once the run has ended ``attempt_exited`` followed by
``task_succeeded`` or ``failure_attributed`` (the worktree probed, the engine's classifier
weighing the results file, the log and the probe). The seed orchestrator makes its own
decisions, so none is journaled.

Every event carries an idempotency key, ``ingest:<agent>`` and ``ingest:<agent>:<suffix>:
launched|exited|judged``; a step whose key the journal holds is skipped. Event times come from
the files (the suffix's milliseconds for a launch, the results file's or log's mtime for an
exit), never from the clock, so adopting the same tree twice leaves the journal byte-identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pytest_orch_recovery.engine.classify import classify
from pytest_orch_recovery.engine.events import (
    AdoptedRun,
    AttemptExited,
    AttemptLaunched,
    Event,
    EventKind,
    FailureAttributed,
    OrchestratorResult,
    PartialSummary,
    Payload,
    TaskSubmitted,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import ExitInfo, PartialWork, Task
from pytest_orch_recovery.infra import git
from pytest_orch_recovery.infra.workspace import PullRequestLookup, WorkspaceError, probe
from pytest_orch_recovery.ingest import results as seed
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.journal import Journal

OUTPUT_TAIL_BYTES = 2048
DEFAULT_BRANCH_PATTERN = "{agent}-work"  # the origin orchestrator's branch per agent


@dataclass(frozen=True)
class AdoptionSource:
    """Where the orchestrator keeps its runs."""

    results: Path
    logs: Path | None = None
    worktrees: Path | None = None  # <worktrees>/<agent> is the agent's git worktree
    branch: str = DEFAULT_BRANCH_PATTERN
    base: str = "main"
    remote: str = "origin"
    prs: PullRequestLookup | None = None


@dataclass
class AdoptionReport:
    """What one pass appended, and what it could not use (one line each, naming the file)."""

    tasks: int = 0
    launched: int = 0
    exited: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0  # runs not ended yet (their results file not written)
    problems: list[str] = field(default_factory=list)

    @property
    def appended(self) -> int:
        return self.tasks + self.launched + self.exited + self.succeeded + self.failed


def _tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[-limit:].decode("utf-8", "replace")


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    # A clock set wrong (or a `touch -d`) must not stop adoption: the journal refuses times
    # outside its range, so such a file's time is not used.
    return mtime if 0.0 <= mtime <= validation.MAX_TIME else None


class _Adopter:
    def __init__(self, journal: Journal, source: AdoptionSource) -> None:
        self.journal = journal
        self.source = source
        self.report = AdoptionReport()
        self.attempts: dict[str, int] = {}
        self.first_failure: dict[str, float] = {}
        for event in journal.events():
            if event.task_id is None:
                continue
            if event.kind is EventKind.ATTEMPT_LAUNCHED:
                self.attempts[event.task_id] = self.attempts.get(event.task_id, 0) + 1
            elif event.kind is EventKind.FAILURE_ATTRIBUTED:
                self.first_failure.setdefault(event.task_id, event.time)

    def _append(
        self, payload: Payload, agent: str, key: str, time: float, attempt: int | None = None
    ) -> None:
        self.journal.append(
            Event(payload, time, task_id=agent, agent=agent, attempt=attempt, key=key)
        )

    def _attempt_of(self, agent: str, suffix: str) -> int:
        key = f"ingest:{agent}:{suffix}:launched"
        for event in self.journal.events_for(agent):
            if event.key == key and event.attempt is not None:
                return event.attempt
        return self.attempts.get(agent, 0)

    def run(self, run: seed.RunFiles, superseded_at: float | None) -> None:
        agent, base = run.agent, f"ingest:{run.agent}:{run.suffix}"
        if self.journal.has_key(f"{base}:judged"):
            return  # adopted in full: its files are not read again
        started = run.started_ms / 1000.0
        result = self._load_result(run)
        log = self._load_log(run)
        if not self.journal.has_key(f"ingest:{agent}"):
            chain = result.cli_chain if result is not None and result.cli_chain else ()
            task = Task(agent, agent, (), agent_type=chain[0] if chain else "claude")
            self._append(
                TaskSubmitted.of(task, adopted_from="seed orchestrator"),
                agent,
                f"ingest:{agent}",
                started,
            )
            self.report.tasks += 1
        if not self.journal.has_key(f"{base}:launched"):
            self.attempts[agent] = self.attempts.get(agent, 0) + 1
            adopted = AdoptedRun(
                run.suffix,
                None if run.results is None else str(run.results),
                None if run.log is None else str(run.log),
            )
            self._append(
                AttemptLaunched(
                    agent_type=result.cli_chain[0] if result and result.cli_chain else "claude",
                    adopted=adopted,
                ),
                agent,
                f"{base}:launched",
                started,
                attempt=self.attempts[agent],
            )
            self.report.launched += 1
        ended = result is not None or (log is not None and log.trapped is not None)
        if not ended and superseded_at is None:
            self.report.running += 1
            return
        attempt = self._attempt_of(agent, run.suffix)
        ended_at = _mtime(run.results) or _mtime(run.log) or started
        if not ended and superseded_at is not None:
            ended_at = superseded_at
        exit_info = self._exit(result, log)
        if not self.journal.has_key(f"{base}:exited"):
            agent_result = None if log is None else log.result
            session = None if agent_result is None else agent_result.get("session_id")
            self._append(
                AttemptExited(
                    exit=exit_info,
                    started_at=started,
                    ended_at=ended_at,
                    output_tail="" if log is None else _tail(log.text),
                    result=None if agent_result is None else dict(agent_result),
                    session_id=session if isinstance(session, str) else None,
                    orchestrator_result=None
                    if result is None
                    else OrchestratorResult(
                        status=result.status,
                        exit_code=result.exit_code,
                        cli=result.cli,
                        cli_chain=tuple(result.cli_chain),
                        rate_limited=result.rate_limited,
                    ),
                    superseded=not ended,
                ),
                agent,
                f"{base}:exited",
                ended_at,
                attempt=attempt,
            )
            self.report.exited += 1
        if not self.journal.has_key(f"{base}:judged"):
            self._judge(run, attempt, ended_at, result, log)

    def _load_result(self, run: seed.RunFiles) -> seed.RunResult | None:
        if run.results is None:
            return None
        try:
            return seed.load_run_result(run.results)
        except seed.ResultsError as exc:
            self.report.problems.append(str(exc))
            return None

    def _load_log(self, run: seed.RunFiles) -> seed.RunLog | None:
        if run.log is None:
            return None
        try:
            return seed.load_run_log(run.log)
        except seed.ResultsError as exc:
            self.report.problems.append(str(exc))
            return None

    @staticmethod
    def _exit(result: seed.RunResult | None, log: seed.RunLog | None) -> ExitInfo:
        if log is not None and log.trapped is not None and log.exit is not None:
            return log.exit
        if result is not None and result.exit is not None:
            return result.exit
        if log is not None and log.exit is not None:
            return log.exit
        return ExitInfo(None, source="ingest")

    def _probe(self, agent: str) -> PartialWork | None:
        root = self.source.worktrees
        if root is None:
            return None
        worktree = root / agent
        expected = self.source.branch.format(agent=agent)
        try:
            branch = git.current_branch(worktree) if worktree.is_dir() else None
        except git.GitError:
            branch = None
        if branch is not None and branch != expected:
            self.report.problems.append(
                f"{worktree}: on branch {branch!r}, expected {expected!r} (--branch)"
            )
        try:
            return probe(
                worktree,
                Task(agent, agent),
                base=self.source.base,
                remote=self.source.remote,
                prs=self.source.prs,
            )
        except WorkspaceError as exc:
            self.report.problems.append(str(exc))
            return None

    def _judge(
        self,
        run: seed.RunFiles,
        attempt: int,
        ended_at: float,
        result: seed.RunResult | None,
        log: seed.RunLog | None,
    ) -> None:
        agent, key = run.agent, f"ingest:{run.agent}:{run.suffix}:judged"
        partial = self._probe(agent)
        pr_known = self.source.prs is not None
        obs = seed.observation(result, log, partial=partial, pr_known=pr_known)
        undone = obs.deliverables_missing or obs.work_missing
        # The whole log is weighed, as `orch-recovery classify` weighs it: a run the results
        # file calls completed whose log shows a cause (permission denials, gh's 401) failed.
        attribution = classify(obs)
        if result is not None and result.completed and not undone and not attribution.confidence:
            first = self.first_failure.get(agent)
            self._append(
                TaskSucceeded(
                    first_try=attempt == 1 and first is None,
                    attempts=attempt,
                    recovery_time=None if first is None else max(0.0, ended_at - first),
                    pr=None if partial is None or partial.pr is None else partial.pr.number,
                ),
                agent,
                key,
                ended_at,
                attempt=attempt,
            )
            self.report.succeeded += 1
            return
        self._append(
            FailureAttributed(
                attribution,
                None if partial is None else PartialSummary.of(partial),
                seed.undone_work(partial, pr_known=pr_known),
            ),
            agent,
            key,
            ended_at,
            attempt=attempt,
        )
        self.first_failure.setdefault(agent, ended_at)
        self.report.failed += 1


def adopt(journal: Journal, source: AdoptionSource) -> AdoptionReport:
    """One pass over ``source``: append what the journal does not hold yet."""
    if not source.results.is_dir():
        raise seed.ResultsError(f"{source.results}: no such results directory")
    if source.logs is not None and not source.logs.is_dir():
        raise seed.ResultsError(f"{source.logs}: no such logs directory")
    if source.worktrees is not None and not source.worktrees.is_dir():
        raise seed.ResultsError(f"{source.worktrees}: no such worktrees directory")
    adopter = _Adopter(journal, source)
    runs = seed.find_runs(source.results, source.logs, adopter.report.problems)
    # A run the orchestrator started the same agent again after never ended by itself: the
    # seed kills an agent's old session before it launches a new one under the same name.
    next_start: dict[tuple[str, str], float] = {}
    last: dict[str, seed.RunFiles] = {}
    for run in runs:
        previous = last.get(run.agent)
        if previous is not None:
            next_start[(previous.agent, previous.suffix)] = run.started_ms / 1000.0
        last[run.agent] = run
    for run in runs:
        adopter.run(run, next_start.get((run.agent, run.suffix)))
    return adopter.report
