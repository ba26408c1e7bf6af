"""The campaign's pytest items: one per scenario file, one per generated run.

Each item runs its scenario on the session's tier
(:func:`~pytest_orch_recovery.chaos.campaign.run_scenario`), stores the run for its report (the
gate aggregates the runs on the controller), and judges it: a scenario file against its
expectations, a generated run against the invariants, shrunk to its minimal fault schedule when
it breaks one.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from pytest_orch_recovery.chaos import BUNDLED_HOST_SCENARIOS, BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.campaign import run_scenario
from pytest_orch_recovery.chaos.oracle import invariant_violations, mismatches
from pytest_orch_recovery.chaos.record import ScenarioRun
from pytest_orch_recovery.chaos.scenario import Scenario, ScenarioError, load_scenario
from pytest_orch_recovery.chaos.tiers import TierUnavailable, TierUnsupported
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.plugin.options import fleet_database, settings_of, store_run


class ScenarioFailed(OrchRecoveryError, AssertionError):
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
        settings = settings_of(self.config)
        try:
            return run_scenario(
                scenario,
                tier=settings.tier,
                seed=settings.seed,
                agent=settings.agent,
                fleet=settings.fleet,
                hosts=settings.hosts,
                database=fleet_database(self.config),
            )
        except SystemExit as exc:
            # SIGTERM: the sandbox turns it into SystemExit(143) so teardown runs, and it has.
            # pytest would report a SystemExit from runtest as this item's failure and go on to
            # the next scenario, building sandboxes for a SIGKILL to strand; end the session.
            code = exc.code if isinstance(exc.code, int) else pytest.ExitCode.INTERRUPTED
            pytest.exit(
                f"terminated during scenario {scenario.name} (exit {code})", returncode=code
            )

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
                f"(seed {run.seed}, tier {run.tier}):",
                problems,
            )


# What a scenario costs beyond its agents' own work, in seconds: a hang is ended by the stall
# window (or, without one, the attempt timeout); a rate limit is waited out by the agent's
# retries and the engine's backoff; any other fault that fails an attempt costs a further one
# (a torn checkpoint or a coordinator crash fails none by itself); a task with tests runs them
# in its attempt and again when its work is judged (each a pytest start-up in the worktree).
_SECONDS_PER_AGENT = 0.5
_SECONDS_PER_RETRY = 1.0
_SECONDS_PER_TESTED_TASK = 0.5
_HANG_KINDS = frozenset({"stall", "api_stall"})


def expected_seconds(scenario: Scenario) -> float:
    """A rough cost of ``scenario`` on the tmux tier, for ordering only: its agents, their
    test runs, and the waits and further attempts its faults impose.

    >>> from pytest_orch_recovery.chaos.faults import FaultSpec
    >>> from pytest_orch_recovery.chaos.scenario import ScenarioTask
    >>> from pytest_orch_recovery.engine.model import Task
    >>> one = (ScenarioTask(Task("t", "T", ("a.md",))),)
    >>> hang = Scenario("h", one, (FaultSpec("stall", task="t"),), stall_window=5.0)
    >>> expected_seconds(hang) > expected_seconds(Scenario("p", one * 1))
    True
    >>> torn = Scenario("c", one, (FaultSpec("corrupt_checkpoint", task="t"),))
    >>> expected_seconds(torn) == expected_seconds(Scenario("p", one))
    True
    >>> tested = (ScenarioTask(Task("t", "T", ("a.md",), tests="pytest -q")),)
    >>> expected_seconds(Scenario("q", tested)) > expected_seconds(Scenario("p", one))
    True
    """
    seconds = sum(
        _SECONDS_PER_AGENT + (_SECONDS_PER_TESTED_TASK if t.task.tests else 0.0)
        for t in scenario.tasks
    )
    for spec in scenario.faults:
        if spec.kind in _HANG_KINDS:
            seconds += scenario.stall_window or scenario.attempt_timeout or 60.0
        elif spec.kind == "api_rate_limit":
            seconds += 3 * float(spec.params.get("retry_after", 30))
        elif spec.kind == "usage_limit":
            seconds += 60.0  # real runs wait for the reset, on the next whole minute
        if spec.entry.expected is not None:
            seconds += _SECONDS_PER_RETRY
    return seconds


def repeated_names(items: Sequence[pytest.Item]) -> list[str]:
    """One line per scenario name two collected files share: a campaign tells its runs (and
    their tasks, and their seeds) apart by scenario name, so a project scenario named like
    a bundled one would mix the two."""
    where: dict[str, list[str]] = {}
    for item in items:
        if isinstance(item, ScenarioItem):
            where.setdefault(item.scenario.name, []).append(str(item.path))
    return [
        f"scenario name {name!r} is used by " + " and ".join(paths)
        for name, paths in sorted(where.items())
        if len(paths) > 1
    ]


def longest_first(items: list[pytest.Item]) -> None:
    """Order the scenarios by :func:`expected_seconds`, longest first (stable otherwise).

    Under xdist the long ones (``control``'s 28 agents, the hangs waited out) then start at
    once and the short ones fill the gaps, so the workers finish together instead of one
    idling while the other runs a hang it was handed last; serially the order changes nothing
    (each scenario's seed comes from the session seed and its name).
    """
    items.sort(
        key=lambda item: -expected_seconds(item.scenario) if isinstance(item, ScenarioItem) else 0.0
    )


class ScenarioFile(pytest.File):
    def collect(self) -> Iterable[pytest.Item]:
        try:
            scenario = load_scenario(self.path)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class BundledScenarios(pytest.Collector):
    """The bundled campaign (package data, ``chaos.BUNDLED_SCENARIOS``), its items named
    ``orch-bundled/<file>::<scenario>`` wherever the package is installed."""

    NAME = "orch-bundled"

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        files = [(path, path.name) for path in sorted(BUNDLED_SCENARIOS.glob("*.toml"))]
        if settings_of(self.config).hosts > 1:  # the host faults need several hosts
            files += [
                (path, f"hosts/{path.name}")
                for path in sorted(BUNDLED_HOST_SCENARIOS.glob("*.toml"))
            ]
        return [
            ScenarioFile.from_parent(self, path=path, nodeid=f"{self.NAME}/{name}")
            for path, name in files
        ]


class GeneratedItem(_RunItem):
    """One generated run: asserts the invariants; a failure is shrunk to its minimal fault
    schedule and printed with the command that replays it."""

    def __init__(self, *, scenario: Scenario, replay: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.replay = replay

    def runtest(self) -> None:
        # Imported here, as below: Hypothesis and Faker load only when a campaign is generated.
        from pytest_orch_recovery.chaos.generate import scenario_toml, shrink

        run = self._run()
        problems = invariant_violations(run)
        if not problems:
            return

        def still_fails(candidate: Scenario) -> bool:
            return bool(invariant_violations(self._run_scenario(candidate)))

        minimal = shrink(self.scenario, still_fails)
        command = " ".join(shlex.quote(a) for a in ["pytest", *self.replay, "-k", self.name])
        raise ScenarioFailed(
            f"generated run {self.name} broke an invariant (seed {run.seed}, tier {run.tier}):",
            problems,
            f"minimal fault schedule ({len(minimal.faults)} of {len(self.scenario.faults)} "
            f"faults), as a scenario file:\n{scenario_toml(minimal)}\nreplay: {command}",
        )


class GeneratedCampaign(pytest.Collector):
    """The ``--orch-campaign N`` runs, identical on every xdist worker for one seed."""

    NAME = "orch-campaign"

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        return []

    def collect_items(self, seed: int, count: int) -> list[pytest.Item]:
        from pytest_orch_recovery.chaos.generate import generated_scenarios, run_name

        replay = settings_of(self.config).replay_args()
        return [
            GeneratedItem.from_parent(
                self, name=run_name(i, count), scenario=scenario, replay=replay
            )
            for i, scenario in enumerate(generated_scenarios(seed, count))
        ]
