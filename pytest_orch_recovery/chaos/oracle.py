"""The attribution oracle and the judge of a run: what a scenario expected against what its run
recorded, the invariants every fault schedule must keep, and every failed attempt's injected
causes against the reason the engine attributed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pytest_orch_recovery.chaos.faults import CATALOGUE, FaultStatus
from pytest_orch_recovery.chaos.record import RepoState, ScenarioRun
from pytest_orch_recovery.chaos.scenario import Expectation, Scenario
from pytest_orch_recovery.engine.events import DecisionMade, Event, EventKind, FailureAttributed
from pytest_orch_recovery.engine.model import Reason


def attributed_reasons(events: Iterable[Event], task_id: str) -> list[str]:
    return [
        str(e.payload.attribution.reason)
        for e in events
        if isinstance(e.payload, FailureAttributed) and e.task_id == task_id
    ]


def strategies(events: Iterable[Event], task_id: str) -> list[str]:
    return [
        str(e.payload.decision.strategy)
        for e in events
        if isinstance(e.payload, DecisionMade)
        and e.payload.decision is not None
        and e.task_id == task_id
    ]


def attempts(events: Iterable[Event], task_id: str) -> int:
    return sum(1 for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED and e.task_id == task_id)


Verdict = Literal["correct", "wrong", "unattributed", "unexplained"]


@dataclass(frozen=True)
class AttributionCheck:
    """One failed attempt: the causes injected into it against the reason attributed.

    ``injected`` holds the expected reasons of the faults that took effect on this attempt
    (or, when none did, on the task's earlier attempts: a stale lock or broken tests outlive
    the attempt that caused them). ``attributed`` is None when nothing was attributed.
    """

    task_id: str
    attempt: int
    injected: tuple[str, ...]
    attributed: str | None

    @property
    def verdict(self) -> Verdict:
        if not self.injected:
            return "unexplained"
        if self.attributed is None or self.attributed == Reason.UNKNOWN:
            return "unattributed"
        return "correct" if self.attributed in self.injected else "wrong"

    @property
    def cause(self) -> str:
        """The confusion matrix's row: the injected cause (the attributed one when it is
        among several), or ``(none)``."""
        if not self.injected:
            return "(none)"
        if self.attributed in self.injected:
            return str(self.attributed)
        return self.injected[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "injected": list(self.injected),
            "attributed": self.attributed,
            "verdict": self.verdict,
        }


def attribution_checks(run: ScenarioRun) -> list[AttributionCheck]:
    """Judge every failed attempt of ``run`` against the fault ledger."""
    attributed: dict[tuple[str, int], str] = {}
    exited: list[tuple[str, int]] = []
    succeeded: set[tuple[str, int]] = set()
    for e in run.events:
        if e.task_id is None or e.attempt is None:
            continue
        key = (e.task_id, e.attempt)
        if e.kind is EventKind.ATTEMPT_EXITED:
            exited.append(key)
        elif isinstance(e.payload, FailureAttributed):
            attributed[key] = str(e.payload.attribution.reason)
        elif e.kind is EventKind.TASK_SUCCEEDED:
            succeeded.add(key)
    causes: dict[tuple[str, int], set[str]] = {}
    for entry in run.ledger.values():
        expected = (
            CATALOGUE[str(entry["kind"])].expected if entry.get("kind") in CATALOGUE else None
        )
        if expected is None:
            continue
        for hit in entry.get("hits", ()):
            if hit.get("status") == FaultStatus.EXERCISED:
                causes.setdefault((str(hit["task"]), int(hit["attempt"])), set()).add(str(expected))
    checks = []
    for task_id, attempt in exited:
        if (task_id, attempt) in succeeded:
            continue
        injected = causes.get((task_id, attempt), set())
        if not injected:
            for (tid, earlier), reasons in causes.items():
                if tid == task_id and earlier < attempt:
                    injected = injected | reasons
        checks.append(
            AttributionCheck(
                task_id, attempt, tuple(sorted(injected)), attributed.get((task_id, attempt))
            )
        )
    return checks


def _show(value: object) -> str:
    if isinstance(value, list | tuple):
        return " → ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _task_mismatches(task_id: str, expect: Expectation, run: ScenarioRun) -> list[str]:
    got: dict[str, object] = {}
    repo = run.repos.get(task_id, RepoState())
    if expect.outcome is not None:
        got["outcome"] = run.outcomes.get(task_id, "in_progress")
    if expect.reasons is not None:
        got["reasons"] = tuple(attributed_reasons(run.events, task_id))
    if expect.strategies is not None:
        got["strategies"] = tuple(strategies(run.events, task_id))
    if expect.pr is not None:
        got["pr"] = repo.pr is not None
    if expect.pushed is not None:
        got["pushed"] = repo.pushed
    lines = []
    for name, value in got.items():
        wanted = getattr(expect, name)
        if value != wanted:
            lines.append(f"{task_id}: {name}: expected {_show(wanted)}, got {_show(value)}")
    if expect.max_attempts is not None:
        count = attempts(run.events, task_id)
        if count > expect.max_attempts:
            lines.append(
                f"{task_id}: attempts: expected at most {expect.max_attempts}, got {count}"
            )
    if expect.files is not None:
        missing = [f for f in expect.files if f not in repo.files]
        if missing:
            lines.append(
                f"{task_id}: files: expected {', '.join(expect.files)}; missing "
                f"{', '.join(missing)} (present: {_show(list(repo.files))})"
            )
    return lines


def mismatches(scenario: Scenario, run: ScenarioRun) -> list[str]:
    """Every way ``run`` differs from what ``scenario`` expects, one readable line each."""
    lines: list[str] = []
    for task in scenario.tasks:
        lines += _task_mismatches(task.task.task_id, task.expect, run)
    for fault_id, wanted in scenario.fault_expectations.items():
        status = run.ledger.get(fault_id, {}).get("status", FaultStatus.NOT_EXERCISED)
        if status != wanted:
            kind = run.ledger.get(fault_id, {}).get("kind", "?")
            lines.append(f"fault {fault_id} ({kind}): expected {wanted}, ledger says {status}")
    lines += [f"engine misbehaved: {v}" for v in run.violations]
    return lines


def invariant_violations(run: ScenarioRun, *, max_attempts: int = 4) -> list[str]:
    """What must hold for any fault schedule: every task reaches an outcome within the attempt
    budget, no workspace is left behind, the engine never misbehaves, and every failed attempt
    is attributed to a cause that was injected into it."""
    lines = [f"engine misbehaved: {v}" for v in run.violations]
    for task_id, outcome in sorted(run.outcomes.items()):
        if outcome == "in_progress":
            lines.append(f"{task_id}: never reached an outcome")
        count = attempts(run.events, task_id)
        if count > max_attempts:
            lines.append(f"{task_id}: {count} attempts, budget {max_attempts}")
    lines += [f"orphaned workspace: {o}" for o in run.orphans]
    for check in attribution_checks(run):
        if check.verdict != "correct":
            lines.append(
                f"{check.task_id} attempt {check.attempt}: {check.verdict} attribution "
                f"(injected {_show(list(check.injected))}, attributed {check.attributed})"
            )
    return lines
