"""pytest entry point (``pytest11``): options, hooks and fixtures of ``pytest --orch-chaos``.

With ``--orch-chaos`` off the plugin registers its options (:mod:`.options`), its marker and
its fixtures and nothing else: the engine is never imported and no scenario file is collected.
Everything heavy is imported inside the hooks that run only when the campaign is on (or inside
a fixture a test asked for), to keep an unused plugin free: :mod:`.items` (scenario items),
:mod:`.gate` (the controller's aggregation, merge gate and reports), and through them the
chaos tiers and the engine.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_orch_recovery.plugin.options import (
    DEFAULT_AGENT,
    FLEET_DATABASE,
    MARKER,
    SETTINGS,
    ChaosSettings,
    add_options,
    campaign_only,
    chaos_settings,
    given,
    resolve_settings,
    setting,
    stored_run,
)

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.faults import FaultSpec
    from pytest_orch_recovery.chaos.record import ScenarioRun
    from pytest_orch_recovery.engine.model import Task


# Hypothesis' pytest plugin, by its entry-point name.
HYPOTHESIS_PLUGIN = "hypothesispytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*faults): fault specs (FaultSpec objects, or kind names with keyword "
        "arguments task=, attempt=, params=) for the orch_engine fixture to inject",
    )
    if not setting(config, "orch_chaos"):
        return
    settings = resolve_settings(config)
    # Checked without importing the tier: a controller of xdist workers runs no scenario, and
    # the campaign's modules (the engine, the runtime, libtmux) would delay its workers' start.
    from pytest_orch_recovery.chaos.tiers import tier_problem

    problem = tier_problem(settings.tier)
    if problem is not None:
        raise pytest.UsageError(f"--orch-tier {settings.tier}: {problem}")
    _check_hosts(settings)
    config.stash[SETTINGS] = settings
    if settings.hosts > 1 and settings.tier != "sim":
        # Nothing starts here: the private server starts when a host scenario first needs
        # it (in the process running it: each xdist worker its own), and goes at the end.
        from pytest_orch_recovery.chaos.fleetdb import FleetDatabase

        config.stash[FLEET_DATABASE] = FleetDatabase(settings.store)
    config.pluginmanager.register(ScenarioLoadErrors(), ScenarioLoadErrors.NAME)
    if campaign_only(config):
        if not settings.campaign:
            # No Python test and no generated run uses Hypothesis in this session, so its
            # plugin has nothing to do, yet its terminal summary imports all of Hypothesis in
            # every pytest process (each xdist worker too): ~0.65 CPU s apiece where bytecode
            # is not written, as pytest re-parses a plugin's modules to rewrite their asserts
            # (docs/performance.md). Generated runs draw their fault schedules with
            # Hypothesis, which warns of "slow code in plugin" unless its plugin marks the
            # session's start: there it stays.
            config.pluginmanager.set_blocked(HYPOTHESIS_PLUGIN)
        # ``pytest --orch-chaos`` with no paths runs the campaign, not the unit tests: the
        # bundled scenarios and the project's own, as --orch-project-scenarios combines them.
        # The bundled set lives in the installed package, outside the rootdir: its items are
        # added at collection (pytest_collection_modifyitems), named orch-bundled/<file>,
        # rather than collected as a path whose conftest files and node ids would be the
        # installation's.
        sets = scenario_sets(config, settings)
        config.stash[SCENARIO_SETS] = sets
        config.args = [str(s.directory) for s in sets if s.label != "bundled"]
    if not hasattr(config, "workerinput") and not config.option.collectonly:
        # --collect-only lists the scenarios: nothing ran, so there is nothing to judge and
        # no report to write (it used to write an empty campaign's orch-report.md).
        from pytest_orch_recovery.plugin.gate import ChaosGate

        config.pluginmanager.register(ChaosGate(config, settings), ChaosGate.NAME)


def _check_hosts(settings: ChaosSettings) -> None:
    """Usage errors of ``--orch-hosts`` and ``--orch-store``, found before anything runs."""
    from importlib.util import find_spec

    if settings.store is not None and (settings.hosts < 2 or settings.tier == "sim"):
        raise pytest.UsageError(
            "--orch-store: the fleet store of --orch-hosts N (N >= 2) on the tmux tier; "
            + (
                "the sim tier models the store in memory"
                if settings.tier == "sim"
                else "add --orch-hosts 2 or more"
            )
        )
    if settings.hosts < 2 or settings.tier == "sim":
        return
    if find_spec("psycopg") is None:
        raise pytest.UsageError(
            f"--orch-hosts {settings.hosts}: the tmux tier's hosts share a PostgreSQL store "
            "through psycopg, which is not installed (pip install 'pytest-orch-recovery"
            "[postgres]'), or use --orch-tier sim"
        )
    if settings.store is None:
        from pytest_orch_recovery.infra.postgres_server import PostgresServerError, find_bin_dir

        try:
            find_bin_dir()
        except PostgresServerError as exc:
            raise pytest.UsageError(
                f"--orch-hosts {settings.hosts}: {exc}; or name a server with --orch-store URL"
            ) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    """The campaign's private PostgreSQL server, if a host scenario started one, goes with
    the session (also after ^C or a failed run)."""
    database = config.stash.get(FLEET_DATABASE, None)
    if database is not None:
        database.close()


@dataclass(frozen=True)
class ScenarioSet:
    """One directory of scenario files the campaign collects."""

    label: str  # "bundled" or "project"
    directory: Path
    files: int

    def describe(self) -> str:
        return f"{self.label} {self.files} ({self.directory})"


SCENARIO_SETS = pytest.StashKey[list[ScenarioSet]]()


def scenario_sets(config: pytest.Config, settings: ChaosSettings) -> list[ScenarioSet]:
    """The scenario directories a campaign-only session collects: the bundled campaign (package
    data), and the project's own scenarios (``--orch-scenarios``, default ``scenarios``)
    beside it or instead of it (``--orch-project-scenarios``). A project without scenario
    files runs the bundled campaign. Usage errors: a ``--orch-scenarios`` directory named
    but missing, and a rootdir that is not where pytest was started (see below)."""
    from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS

    def count(directory: Path) -> int:
        return sum(1 for p in directory.glob("*.toml") if p.is_file())

    bundled = ScenarioSet("bundled", BUNDLED_SCENARIOS, count(BUNDLED_SCENARIOS))
    project_dir = settings.scenarios
    if given(config, "orch_scenarios"):
        if not project_dir.is_dir():
            raise pytest.UsageError(
                f"--orch-scenarios: {project_dir} is not a directory (rootdir {config.rootpath})"
            )
    elif config.inipath is None and config.rootpath != config.invocation_params.dir:
        # pytest picks its rootdir before it knows plugin options: `--orch-report /x/y.md`
        # (a space, not `=`) naming a file that exists makes it take that value for a test
        # path and move the rootdir away from the project, whose scenarios would be missed.
        # Without an ini file only path arguments move the rootdir from the current
        # directory, and a campaign-only session has none left.
        raise pytest.UsageError(
            f"the rootdir {config.rootpath} is not where pytest was started "
            f"({config.invocation_params.dir}), so the project's scenarios "
            f"({project_dir}) would be missed: write options that take a value as "
            "--orch-report=PATH so pytest does not take the value for a test path"
        )
    files = count(project_dir) if project_dir.is_dir() else 0
    if files == 0 or project_dir.resolve() == BUNDLED_SCENARIOS:
        return [bundled]
    project = ScenarioSet("project", project_dir, files)
    return [project] if settings.project_rule == "instead" else [bundled, project]


class ScenarioLoadErrors:
    """A scenario file that does not load is a usage error (exit 4), like a bad option; its
    one-line ``file:line: field: message`` is the collection error pytest shows. Under xdist
    the controller sees the workers' collection reports here too."""

    NAME = "orch-scenario-load-errors"

    def __init__(self) -> None:
        self.files: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and report.nodeid.endswith(".toml"):
            self.files.append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.files:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = chaos_settings(config)
    if settings is None:
        return []
    lines = [
        f"orch-chaos: seed {settings.seed}, tier {settings.tier}, agent {settings.agent}, "
        f"generated runs {settings.campaign}"
    ]
    sets = config.stash.get(SCENARIO_SETS, None)
    if sets is not None:
        names = {s.label for s in sets}
        lines.append(
            "orch-chaos scenarios: "
            + " + ".join(s.describe() for s in sets)
            + ("" if "project" in names else f"; the project has none in {settings.scenarios}")
            + (f" (--orch-project-scenarios={settings.project_rule})" if "project" in names else "")
        )
    fleet = settings.fleet
    if fleet is not None:
        lines.append(f"orch-chaos fleet file {fleet.source}: {fleet.describe()}")
        if settings.agent_given and settings.agent != fleet.agent:
            lines.append(
                f"orch-chaos agent {settings.agent} (--orch-agent), not the fleet file's "
                f"{fleet.agent}"
            )
    return lines


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    settings = chaos_settings(parent.config)
    if settings is None or file_path.suffix != ".toml":
        return None
    sets = parent.config.stash.get(SCENARIO_SETS, [])
    projects = [s.directory for s in sets if s.label != "bundled"]
    if file_path.parent in projects or parent.session.isinitpath(file_path):
        from pytest_orch_recovery.plugin.items import ScenarioFile

        return ScenarioFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    settings = chaos_settings(config)
    if settings is None:
        return
    from pytest_orch_recovery.plugin.items import (
        BundledScenarios,
        GeneratedCampaign,
        longest_first,
        repeated_names,
    )

    if any(s.label == "bundled" for s in config.stash.get(SCENARIO_SETS, [])):
        bundled = BundledScenarios.from_parent(
            session, name=BundledScenarios.NAME, nodeid=BundledScenarios.NAME
        )
        # Collected as pytest collects a path: reported (counted, a load error shown as one),
        # so --collect-only and the "collected N items" line include them.
        items[:0] = list(session.genitems(bundled))
    repeated = repeated_names(items)
    if repeated:
        raise pytest.UsageError(
            "; ".join(repeated) + ": rename one (name = ... in the file), or run the "
            "project's scenarios alone with --orch-project-scenarios=instead"
        )
    longest_first(items)
    if not settings.campaign:
        return
    collector = GeneratedCampaign.from_parent(
        session, name=GeneratedCampaign.NAME, nodeid=GeneratedCampaign.NAME
    )
    items.extend(collector.collect_items(settings.seed, settings.campaign))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        run = stored_run(item)
        if run is not None:
            # The whole run rides on the report as a private attribute (xdist serialises the
            # report's __dict__); a compact summary goes to user_properties (JUnit XML).
            report._orch_run = json.dumps(run.to_json(), separators=(",", ":"))  # type: ignore[attr-defined]
            report.user_properties.append(
                ("orch_outcomes", json.dumps(run.outcomes, sort_keys=True))
            )
    return report


# --------------------------------------------------------------------------- fixtures


@dataclass
class OrchEngine:
    """The in-process (sim tier) engine for users' own tests: run tasks under faults through
    the real coordinator and get a :class:`~pytest_orch_recovery.chaos.record.ScenarioRun`."""

    seed: int
    faults: list[FaultSpec]

    def run(
        self,
        tasks: list[Task],
        *,
        faults: list[FaultSpec] | None = None,
        operator_actions: tuple[str, ...] = (),
        agents: list[str] | None = None,
        name: str = "user-scenario",
    ) -> ScenarioRun:
        from pytest_orch_recovery.chaos.campaign import run_scenario
        from pytest_orch_recovery.chaos.scenario import Scenario, ScenarioTask

        scenario = Scenario(
            name=name,
            tasks=tuple(
                ScenarioTask(t, None if agents is None else agents[i]) for i, t in enumerate(tasks)
            ),
            faults=tuple(self.faults if faults is None else faults),
            operator_actions=operator_actions,
        )
        return run_scenario(scenario, tier="sim", seed=self.seed, agent=DEFAULT_AGENT)


@pytest.fixture
def orch_seed(request: pytest.FixtureRequest) -> int:
    """The campaign seed under --orch-chaos; otherwise --orch-seed, or 0."""
    settings = chaos_settings(request.config)
    if settings is not None:
        return settings.seed
    value = setting(request.config, "orch_seed")
    return 0 if value is None else int(value)


@pytest.fixture
def orch_faults(request: pytest.FixtureRequest) -> list[FaultSpec]:
    """The faults the test's ``@pytest.mark.orch_faults(...)`` markers attach, in order."""
    from pytest_orch_recovery.chaos.faults import FaultSpec

    specs: list[FaultSpec] = []
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        for arg in marker.args:
            if isinstance(arg, FaultSpec):
                specs.append(arg)
            elif isinstance(arg, str):
                specs.append(FaultSpec(arg, **marker.kwargs))
            else:
                raise pytest.UsageError(
                    f"{request.node.nodeid}: @pytest.mark.{MARKER} takes FaultSpec objects or "
                    f"fault kind names, not {type(arg).__name__}"
                )
    return specs


@pytest.fixture
def orch_engine(orch_seed: int, orch_faults: list[FaultSpec]) -> OrchEngine:
    """A sim-tier engine seeded with ``orch_seed`` that injects ``orch_faults``."""
    return OrchEngine(orch_seed, orch_faults)
