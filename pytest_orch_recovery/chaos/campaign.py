"""Run one chaos scenario on a tier and judge it: expectations, invariants, attribution oracle.

:func:`run_scenario` is the one entry point both tiers share. The ``sim`` tier runs the real
coordinator over the in-process simulation
(:func:`~pytest_orch_recovery.chaos.simulation.simulate`);
the ``tmux`` tier is ``pytest_orch_recovery.chaos.harness.run_scenario_tmux`` (real agents in tmux
sessions and git worktrees), which returns the same :class:`ScenarioRun`.

A run travels from an xdist worker to the controller as :meth:`ScenarioRun.to_json` (compact:
the events without their output tails and prompts), and the controller aggregates the runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from pytest_orch_recovery.chaos.faults import CATALOGUE, FaultStatus
from pytest_orch_recovery.chaos.scenario import Expectation, Scenario
from pytest_orch_recovery.engine.metrics import orphaned_paths
from pytest_orch_recovery.engine.model import Event, EventKind, Reason

TIERS = ("sim", "tmux")
RUN_SCHEMA_VERSION = 1

# Journal data fields a report never needs: dropped before a run leaves its worker.
_BULKY_FIELDS = frozenset({"output_tail", "prompt", "result"})


class TierUnsupported(RuntimeError):
    """The tier runs, but cannot inject one of this scenario's faults: the item is skipped
    with the reason, never silently passed."""


class TierUnavailable(RuntimeError):
    """The requested tier cannot run here (e.g. the tmux harness is not installed)."""


@dataclass(frozen=True)
class RepoState:
    """One task's repository at the end of a run."""

    files: tuple[str, ...] = ()  # deliverables present
    commits: int = 0  # commits on the branch ahead of the base
    pushed: bool = False  # the branch tip is on origin
    pr: int | None = None  # the open PR's number

    def to_json(self) -> dict[str, Any]:
        return {"files": list(self.files), "commits": self.commits, "pushed": self.pushed,
                "pr": self.pr}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RepoState:
        return cls(tuple(data.get("files", ())), int(data.get("commits", 0)),
                   bool(data.get("pushed", False)), data.get("pr"))


@dataclass
class ScenarioRun:
    """Everything one scenario run produced that the gate and the reports need."""

    scenario: str
    events: list[Event]
    ledger: dict[str, dict[str, Any]]  # FaultLedger.entries
    outcomes: dict[str, str]  # task id -> succeeded / recovered / escalated / failed / ...
    repos: dict[str, RepoState]  # task id -> final repository state
    orphans: list[str]  # workspaces (or sessions) left behind
    tier: str = "sim"
    seed: int = 0
    agent: str = "sim"
    violations: list[str] = field(default_factory=list)  # engine misbehaviour seen
    crashes: int = 0  # coordinator crashes survived
    generated: bool = False  # a --orch-campaign run (its triggers may never come: not strict)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": RUN_SCHEMA_VERSION,
            "scenario": self.scenario,
            "tier": self.tier,
            "seed": self.seed,
            "agent": self.agent,
            "events": [_compact(e) for e in self.events],
            "ledger": self.ledger,
            "outcomes": self.outcomes,
            "repos": {k: v.to_json() for k, v in self.repos.items()},
            "orphans": self.orphans,
            "violations": self.violations,
            "crashes": self.crashes,
            "generated": self.generated,
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
        )


def _compact(event: Event) -> dict[str, Any]:
    out = event.to_json()
    if "data" in out:
        out["data"] = {k: v for k, v in out["data"].items() if k not in _BULKY_FIELDS}
    return out


def scenario_seed(seed: int, name: str) -> int:
    """The seed one scenario runs with: the campaign seed and the scenario's name, hashed, so a
    scenario behaves the same whichever worker runs it and whatever else is collected.

    >>> scenario_seed(1, "a") == scenario_seed(1, "a") != scenario_seed(2, "a")
    True
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# --------------------------------------------------------------------------- running


def run_scenario(scenario: Scenario, *, tier: str, seed: int, agent: str) -> ScenarioRun:
    """Run ``scenario`` on ``tier`` (``sim`` or ``tmux``) and collect what it produced."""
    run: ScenarioRun
    if tier == "sim":
        run = _run_sim(scenario, seed=scenario_seed(seed, scenario.name), agent=agent)
    elif tier == "tmux":
        from pytest_orch_recovery.doubles.sandbox import default_base_dir

        run_tmux = tmux_runner()
        # The shared sandbox base, not a private temporary directory: the sandbox tears itself
        # down on return, exception, ^C and SIGTERM, and when its owner is SIGKILLed the next
        # run's Sandbox.create reaps it from here (a private directory would never be seen).
        run = run_tmux(scenario, seed=scenario_seed(seed, scenario.name), agent=agent,
                       workdir=default_base_dir())
    else:
        raise ValueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    run.generated = scenario.generated
    # The scenario's own word on a fault's ledger status travels with the run (--orch-strict).
    for fault_id, status in scenario.fault_expectations.items():
        if fault_id in run.ledger:
            run.ledger[fault_id]["expected_status"] = status
    return run


def tmux_runner() -> Any:
    """The tmux tier's runner, or :class:`TierUnavailable` saying why there is none."""
    try:
        from pytest_orch_recovery.chaos import harness
    except ImportError as exc:
        raise TierUnavailable(
            f"the tmux tier is not available in this installation ({exc}); use --orch-tier sim"
        ) from None
    problem = harness.environment_ready()
    if problem is not None:
        raise TierUnavailable(f"the tmux tier cannot run here: {problem}; use --orch-tier sim")
    return harness.run_scenario_tmux


def _run_sim(scenario: Scenario, *, seed: int, agent: str) -> ScenarioRun:
    from pytest_orch_recovery.chaos.simulation import simulate

    tasks = [t.task for t in scenario.tasks]
    agents = [t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks]
    # ``attempt_timeout`` is in real seconds for real runs; the simulation's agents work on a
    # virtual clock whose steps take 2-20 s, so it keeps the production default.
    out = simulate(tasks, scenario.faults, seed=seed, agents=agents,
                   operator_actions=scenario.operator_actions,
                   crash_after_event=scenario.crash_after_event)
    ledger = out.ledger
    runtime = out.runtime
    repos: dict[str, RepoState] = {}
    for task, name in zip(tasks, agents, strict=True):
        ws = runtime.workspaces.get(name)
        if ws is None:
            repos[task.task_id] = RepoState()
            continue
        repos[task.task_id] = RepoState(
            files=tuple(p for p in task.deliverables if p in ws.files),
            commits=ws.commits,
            pushed=ws.commits > 0 and ws.pushed_commits == ws.commits,
            pr=None if ws.pr is None else ws.pr.number,
        )
    # The simulation journals unowned, uncleaned workspaces itself ("sim://<agent>"); an
    # attempt still running after the run is left behind as well.
    orphans = sorted(set(journal_orphans(out.events))
                     | {f"sim://{name}" for name in runtime.live()})
    return ScenarioRun(
        scenario=scenario.name,
        events=list(out.events),
        ledger=ledger.entries,
        outcomes=task_outcomes(out.events),
        repos=repos,
        orphans=orphans,
        tier="sim",
        seed=seed,
        agent=agent,
        violations=list(runtime.violations),
        crashes=out.crashes,
    )


def journal_orphans(events: Iterable[Event]) -> list[str]:
    """Workspaces the journal reports orphaned and not cleaned afterwards."""
    return list(orphaned_paths(events))


# --------------------------------------------------------------------------- reading a run


def task_outcomes(events: Iterable[Event]) -> dict[str, str]:
    """Each task's outcome from its journal: the last terminal event, ``recovered`` when it
    succeeded after a failed attempt, ``in_progress`` when it has none.

    >>> from pytest_orch_recovery.engine.model import Event, EventKind
    >>> task_outcomes([Event(EventKind.TASK_SUBMITTED, 0.0, "t1"),
    ...                Event(EventKind.TASK_SUCCEEDED, 1.0, "t1")])
    {'t1': 'succeeded'}
    """
    outcome: dict[str, str] = {}
    failed: set[str] = set()
    for event in events:
        tid = event.task_id
        if tid is None:
            if event.kind is EventKind.OPERATOR_ACTION:
                for released in event.data.get("tasks", ()) or ():
                    if outcome.get(str(released)) == "escalated":
                        outcome[str(released)] = "in_progress"
            continue
        outcome.setdefault(tid, "in_progress")
        if event.kind is EventKind.FAILURE_ATTRIBUTED:
            failed.add(tid)
        elif event.kind is EventKind.TASK_SUCCEEDED:
            outcome[tid] = "recovered" if tid in failed else "succeeded"
        elif event.kind is EventKind.TASK_ESCALATED:
            outcome[tid] = "escalated"
        elif event.kind is EventKind.TASK_FAILED:
            outcome[tid] = "failed"
    return outcome


def attributed_reasons(events: Iterable[Event], task_id: str) -> list[str]:
    return [
        str(e.data.get("attribution", {}).get("reason", "unknown"))
        for e in events
        if e.kind is EventKind.FAILURE_ATTRIBUTED and e.task_id == task_id
    ]


def strategies(events: Iterable[Event], task_id: str) -> list[str]:
    return [
        str(e.data["decision"]["strategy"])
        for e in events
        if e.kind is EventKind.DECISION and e.task_id == task_id and "decision" in e.data
    ]


def attempts(events: Iterable[Event], task_id: str) -> int:
    return sum(1 for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED and e.task_id == task_id)


# --------------------------------------------------------------------------- attribution oracle

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
        return {"task_id": self.task_id, "attempt": self.attempt,
                "injected": list(self.injected), "attributed": self.attributed,
                "verdict": self.verdict}


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
        elif e.kind is EventKind.FAILURE_ATTRIBUTED:
            attributed[key] = str(e.data.get("attribution", {}).get("reason", "unknown"))
        elif e.kind is EventKind.TASK_SUCCEEDED:
            succeeded.add(key)
    causes: dict[tuple[str, int], set[str]] = {}
    for entry in run.ledger.values():
        expected = CATALOGUE[str(entry["kind"])].expected if entry.get("kind") in CATALOGUE \
            else None
        if expected is None:
            continue
        for hit in entry.get("hits", ()):
            if hit.get("status") == FaultStatus.EXERCISED:
                causes.setdefault((str(hit["task"]), int(hit["attempt"])), set()).add(
                    str(expected))
    checks = []
    for task_id, attempt in exited:
        if (task_id, attempt) in succeeded:
            continue
        injected = causes.get((task_id, attempt), set())
        if not injected:
            for (tid, earlier), reasons in causes.items():
                if tid == task_id and earlier < attempt:
                    injected = injected | reasons
        checks.append(AttributionCheck(task_id, attempt, tuple(sorted(injected)),
                                       attributed.get((task_id, attempt))))
    return checks


# --------------------------------------------------------------------------- judging a run


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
            lines.append(f"{task_id}: attempts: expected at most {expect.max_attempts}, "
                         f"got {count}")
    if expect.files is not None:
        missing = [f for f in expect.files if f not in repo.files]
        if missing:
            lines.append(f"{task_id}: files: expected {', '.join(expect.files)}; missing "
                         f"{', '.join(missing)} (present: {_show(list(repo.files))})")
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


# --------------------------------------------------------------------------- pytest items


class ScenarioFailed(AssertionError):
    """A scenario's run differed from its expectations (or broke an invariant)."""

    def __init__(self, title: str, lines: Sequence[str], footer: str = "") -> None:
        self.title = title
        self.lines = list(lines)
        self.footer = footer
        super().__init__(self.render())

    def render(self) -> str:
        body = "\n".join(f"  {line}" for line in self.lines)
        return f"{self.title}\n{body}" + (f"\n{self.footer}" if self.footer else "")


class _RunItem(pytest.Item):
    """Shared by bundled and generated scenario items: run, store, judge."""

    scenario: Scenario

    def _run(self) -> ScenarioRun:
        from pytest_orch_recovery.plugin.hooks import store_run

        try:
            run = self._run_scenario(self.scenario)
        except TierUnavailable as exc:
            raise pytest.UsageError(str(exc)) from None
        except TierUnsupported as exc:
            pytest.skip(str(exc))
        store_run(self, run)
        return run

    def _run_scenario(self, scenario: Scenario) -> ScenarioRun:
        """One run with the session's settings; SIGTERM during it ends the session."""
        from pytest_orch_recovery.plugin.hooks import settings_of

        settings = settings_of(self.config)
        try:
            return run_scenario(scenario, tier=settings.tier, seed=settings.seed,
                                agent=settings.agent)
        except SystemExit as exc:
            # SIGTERM: the sandbox turns it into SystemExit(143) so teardown runs, and it has.
            # pytest would report a SystemExit from runtest as this item's failure and go on to
            # the next scenario, building sandboxes for a SIGKILL to strand; end the session.
            code = exc.code if isinstance(exc.code, int) else pytest.ExitCode.INTERRUPTED
            pytest.exit(f"terminated during scenario {scenario.name} (exit {code})",
                        returncode=code)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.render()
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"scenario {self.scenario.name}"


class ScenarioItem(_RunItem):
    """One bundled or user scenario file: asserts the scenario's expectations."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        run = self._run()
        problems = mismatches(self.scenario, run)
        if problems:
            raise ScenarioFailed(
                f"scenario {self.scenario.name} did not go as expected "
                f"(seed {run.seed}, tier {run.tier}):", problems)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterable[pytest.Item]:
        from pytest_orch_recovery.chaos.scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class GeneratedItem(_RunItem):
    """One generated run: asserts the invariants; a failure is shrunk to its minimal fault
    schedule and printed with the command that replays it."""

    def __init__(self, *, scenario: Scenario, replay: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.replay = replay

    def runtest(self) -> None:
        from pytest_orch_recovery.chaos.generate import scenario_toml, shrink

        run = self._run()
        problems = invariant_violations(run)
        if not problems:
            return
        def still_fails(candidate: Scenario) -> bool:
            return bool(invariant_violations(self._run_scenario(candidate)))

        minimal = shrink(self.scenario, still_fails)
        command = " ".join(_quote(a) for a in ["pytest", *self.replay, "-k", self.name])
        raise ScenarioFailed(
            f"generated run {self.name} broke an invariant (seed {run.seed}, tier {run.tier}):",
            problems,
            f"minimal fault schedule ({len(minimal.faults)} of {len(self.scenario.faults)} "
            f"faults), as a scenario file:\n{scenario_toml(minimal)}\nreplay: {command}",
        )


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


class GeneratedCampaign(pytest.Collector):
    """The ``--orch-campaign N`` runs, identical on every xdist worker for one seed."""

    NAME = "orch-campaign"

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        return []

    def collect_items(self, seed: int, count: int) -> list[pytest.Item]:
        from pytest_orch_recovery.chaos.generate import generated_scenarios, run_name
        from pytest_orch_recovery.plugin.hooks import settings_of

        replay = settings_of(self.config).replay_args()
        return [
            GeneratedItem.from_parent(self, name=run_name(i, count), scenario=scenario,
                                      replay=replay)
            for i, scenario in enumerate(generated_scenarios(seed, count))
        ]
