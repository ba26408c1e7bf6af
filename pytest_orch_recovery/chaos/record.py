"""The record of one scenario run: what each task's repository and the journal ended as.

Both tiers return a :class:`ScenarioRun`. A run travels from an xdist worker to the controller as
:meth:`ScenarioRun.to_json` (compact: the events without their output tails and prompts), and the
controller aggregates the runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.engine.events import (
    Event,
)
from pytest_orch_recovery.store.history import History

RUN_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RepoState:
    """One task's repository at the end of a run."""

    files: tuple[str, ...] = ()  # deliverables present
    commits: int = 0  # commits on the branch ahead of the base
    pushed: bool = False  # the branch tip is on origin
    pr: int | None = None  # the open PR's number

    def to_json(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "commits": self.commits,
            "pushed": self.pushed,
            "pr": self.pr,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RepoState:
        return cls(
            tuple(data.get("files", ())),
            int(data.get("commits", 0)),
            bool(data.get("pushed", False)),
            data.get("pr"),
        )


@dataclass
class ScenarioRun:
    """Everything one scenario run produced that the gate and the reports need."""

    scenario: str
    events: list[Event]
    ledger: dict[str, dict[str, Any]]  # FaultLedger.entries
    outcomes: dict[str, str]  # task id -> succeeded / recovered / escalated / in_progress
    repos: dict[str, RepoState]  # task id -> final repository state
    orphans: list[str]  # workspaces (or sessions) left behind
    tier: str = "sim"
    seed: int = 0
    agent: str = "sim"
    violations: list[str] = field(default_factory=list)  # engine misbehaviour seen
    crashes: int = 0  # coordinator crashes survived
    generated: bool = False  # a --orch-campaign run (its triggers may never come: not strict)
    # Settings this scenario pinned over a fleet file's (--orch-fleet): PinnedSetting.to_json()s
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": RUN_SCHEMA_VERSION,
            "scenario": self.scenario,
            "tier": self.tier,
            "seed": self.seed,
            "agent": self.agent,
            "events": [e.to_compact_json() for e in self.events],
            "ledger": self.ledger,
            "outcomes": self.outcomes,
            "repos": {k: v.to_json() for k, v in self.repos.items()},
            "orphans": self.orphans,
            "violations": self.violations,
            "crashes": self.crashes,
            "generated": self.generated,
            "overrides": self.overrides,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScenarioRun:
        return cls(
            scenario=str(data["scenario"]),
            events=[Event.from_json(e) for e in data["events"]],
            ledger={str(k): dict(v) for k, v in data.get("ledger", {}).items()},
            outcomes={str(k): str(v) for k, v in data.get("outcomes", {}).items()},
            repos={str(k): RepoState.from_json(v) for k, v in data.get("repos", {}).items()},
            orphans=[str(o) for o in data.get("orphans", ())],
            tier=str(data.get("tier", "sim")),
            seed=int(data.get("seed", 0)),
            agent=str(data.get("agent", "sim")),
            violations=[str(v) for v in data.get("violations", ())],
            crashes=int(data.get("crashes", 0)),
            generated=bool(data.get("generated", False)),
            overrides=[dict(o) for o in data.get("overrides", ())],
        )


def journal_orphans(events: Iterable[Event]) -> list[str]:
    """Workspaces the journal reports orphaned and not cleaned afterwards."""
    return list(History(events).orphaned_paths)


def task_outcomes(events: Iterable[Event] | History) -> dict[str, str]:
    """Each task's outcome from its journal: the last terminal event, ``recovered`` when it
    succeeded after a failed attempt, ``in_progress`` when it has none.

    >>> from pytest_orch_recovery.engine.events import TaskSubmitted, TaskSucceeded
    >>> task_outcomes([Event(TaskSubmitted(), 0.0, "t1"), Event(TaskSucceeded(), 1.0, "t1")])
    {'t1': 'succeeded'}
    """
    history = events if isinstance(events, History) else History(events)
    return {task_id: str(task.result) for task_id, task in history.tasks.items()}
