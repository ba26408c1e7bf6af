"""pytest entry point (``pytest11``): options, hooks and fixtures of ``pytest --orch-chaos``.

With ``--orch-chaos`` off the plugin registers its options, its marker and its fixtures and
nothing else: the engine is never imported and no scenario file is collected. Everything heavy
is imported inside the hooks that run only when the campaign is on (or inside a fixture a test
asked for): ``campaign`` (scenario items, runs), ``gate`` (the controller's aggregation, merge
gate and reports), ``generate`` (Hypothesis/Faker campaigns).

Every setting is a CLI option and an ini key sharing one help text; values are validated by the
argparse ``type=`` functions below (a bad value is a usage error), and the CLI wins over the
ini file, which wins over the default.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_orch_recovery.infra.argtypes import count, rate

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.campaign import ScenarioRun
    from pytest_orch_recovery.chaos.faults import FaultSpec
    from pytest_orch_recovery.engine.model import Task

OPTION_CHAOS = "--orch-chaos"
MARKER = "orch_faults"
GATES = ("point", "lower-bound")
TIERS = ("sim", "tmux")
DEFAULT_TIER = "tmux"  # real processes: the embedded sim agent in tmux, real git
DEFAULT_AGENT = "sim"
DEFAULT_REPORT = "orch-report.md"
REPORT_SUFFIXES = (".md", ".json", ".html")
TEMPLATE_FIELDS = frozenset({"prompt", "prompt_file", "workdir", "task_id", "session", "agent"})
SEED_MAX = 2**32 - 1


# --------------------------------------------------------------------------- option types


def _seed(text: str) -> int:
    value = count(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be <= {SEED_MAX}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of " + ", ".join(choices)
            )
        return text

    parse.__name__ = "choice"
    return parse


def _agent(text: str) -> str:
    """``sim``, ``claude-code``, or a command template such as ``my-agent --task {prompt}``.

    >>> _agent("sim"), _agent("aider --message {prompt}")
    ('sim', 'aider --message {prompt}')
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the agent must not be empty")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid command template: {exc}") \
            from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r} uses unknown placeholder(s) {', '.join(sorted(unknown))}; known: "
            + ", ".join(sorted(TEMPLATE_FIELDS))
        )
    return text


def _report_path(text: str) -> str:
    if Path(text).suffix.lower() not in REPORT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a report file name must end in " + ", ".join(REPORT_SUFFIXES)
        )
    return text


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


@dataclass(frozen=True)
class _Option:
    flag: str
    type: Callable[[str], Any] | None  # None: a store_true flag
    default: Any
    help: str
    metavar: str | None = None
    append: bool = False

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def ini(self) -> str:
        return self.dest


_OPTIONS = (
    _Option(OPTION_CHAOS, None, False,
            "run the agent-recovery chaos campaign: collect the scenarios, inject faults, let "
            "the engine recover, gate on the success criteria (off: the plugin does nothing)"),
    _Option("--orch-agent", _agent, DEFAULT_AGENT,
            "agent to run: sim, claude-code, or a command template with {prompt}, {workdir}, "
            "{task_id}, {session}, {agent} or {prompt_file} (default: sim)", "AGENT"),
    _Option("--orch-seed", _seed, None,
            "seed of the whole campaign (fault timing, generated runs, task text); printed in "
            "the header and passed to xdist workers (default: random)", "N"),
    _Option("--orch-report", _report_path, (DEFAULT_REPORT,),
            "write the dashboard to PATH: .md, .json or .html; repeatable "
            f"(default: {DEFAULT_REPORT})", "PATH", append=True),
    _Option("--orch-scenarios", str, "scenarios",
            "directory of the scenario files (*.toml) collected under --orch-chaos, relative "
            "to the rootdir (default: scenarios)", "DIR"),
    _Option("--orch-min-recovery-rate", rate, 0.90,
            "minimum share of failed tasks that recover (compared with >; default 0.90)",
            "RATE"),
    _Option("--orch-min-first-try-simple", rate, 0.95,
            "minimum first-try success of fault-free simple tasks, < 5 files (default 0.95)",
            "RATE"),
    _Option("--orch-min-first-try-complex", rate, 0.80,
            "minimum first-try success of fault-free complex tasks, 5+ files (default 0.80)",
            "RATE"),
    _Option("--orch-max-orphans", count, 0,
            "maximum orphaned workspaces (default 0)", "N"),
    _Option("--orch-max-unattributed", count, 0,
            "maximum failures with no, unknown or wrong attribution (default 0)", "N"),
    _Option("--orch-gate", _choice(GATES), "point",
            "compare rates by their observed value (point) or their Wilson 95%% lower bound "
            "(lower-bound) (default: point)", "point|lower-bound"),
    _Option("--orch-min-samples", count, 1,
            "rates with fewer samples are reported as insufficient, neither pass nor fail "
            "(default 1)", "N"),
    _Option("--orch-campaign", count, 0,
            "add N generated runs: Hypothesis fault schedules over Faker task text, derived "
            "from the seed (default 0)", "N"),
    _Option("--orch-tier", _choice(TIERS), DEFAULT_TIER,
            f"where agents run: sim (in-process simulation) or tmux (real tmux sessions and "
            f"git worktrees) (default: {DEFAULT_TIER})", "sim|tmux"),
    _Option("--orch-strict", None, False,
            "also fail when an injected fault never took effect"),
)
_BY_DEST = {o.dest: o for o in _OPTIONS}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "orch-recovery", "chaos testing of agent recovery (pytest-orch-recovery)"
    )
    for option in _OPTIONS:
        if option.type is None:
            group.addoption(option.flag, action="store_true", default=None, dest=option.dest,
                            help=option.help)
            parser.addini(option.ini, option.help, type="bool", default=option.default)
        elif option.append:
            group.addoption(option.flag, action="append", type=option.type, default=None,
                            dest=option.dest, metavar=option.metavar, help=option.help)
            parser.addini(option.ini, option.help, type="linelist", default=[])
        else:
            group.addoption(option.flag, type=option.type, default=None, dest=option.dest,
                            metavar=option.metavar, help=option.help)
            parser.addini(option.ini, option.help, type="string", default="")


def _setting(config: pytest.Config, dest: str) -> Any:
    """CLI, then ini, then default; an ini value goes through the option's own validator."""
    option = _BY_DEST[dest]
    value = config.getoption(dest)
    if value is not None and value != []:
        return tuple(value) if option.append else value
    raw = config.getini(option.ini)
    where = f"ini key {option.ini!r}" + (f" in {config.inipath}" if config.inipath else "")
    try:
        if option.type is None:
            return bool(raw)
        if option.append:
            return tuple(option.type(str(v)) for v in raw) if raw else option.default
        if isinstance(raw, str) and raw.strip():
            return option.type(raw.strip())
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None
    return option.default


@dataclass(frozen=True)
class ChaosSettings:
    """The campaign's settings, resolved once per process (controller and each worker)."""

    seed: int
    agent: str
    tier: str
    reports: tuple[str, ...]
    scenarios: Path
    campaign: int
    strict: bool
    thresholds: dict[str, Any]

    def replay_args(self) -> list[str]:
        """The options that reproduce this campaign's items, for a replay command line."""
        args = [OPTION_CHAOS, "--orch-seed", str(self.seed)]
        if self.campaign:
            args += ["--orch-campaign", str(self.campaign)]
        if self.tier != DEFAULT_TIER:
            args += ["--orch-tier", self.tier]
        if self.agent != DEFAULT_AGENT:
            args += ["--orch-agent", self.agent]
        return args


_SETTINGS = pytest.StashKey[ChaosSettings]()
_RUN = pytest.StashKey["ScenarioRun"]()


def _chaos(config: pytest.Config) -> ChaosSettings | None:
    return config.stash.get(_SETTINGS, None)


def _resolve(config: pytest.Config) -> ChaosSettings:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    seed = _setting(config, "orch_seed")
    if workerinput is not None and "orch_seed" in workerinput:
        seed = int(workerinput["orch_seed"])
    elif seed is None:
        seed = secrets.randbelow(SEED_MAX + 1)
    base = config.inipath.parent if config.inipath else config.rootpath
    return ChaosSettings(
        seed=seed,
        agent=_setting(config, "orch_agent"),
        tier=_setting(config, "orch_tier"),
        reports=_setting(config, "orch_report"),
        scenarios=(base / _setting(config, "orch_scenarios")).resolve(),
        campaign=_setting(config, "orch_campaign"),
        strict=_setting(config, "orch_strict"),
        thresholds={
            "min_recovery_rate": _setting(config, "orch_min_recovery_rate"),
            "min_first_try_simple": _setting(config, "orch_min_first_try_simple"),
            "min_first_try_complex": _setting(config, "orch_min_first_try_complex"),
            "max_orphans": _setting(config, "orch_max_orphans"),
            "max_unattributed": _setting(config, "orch_max_unattributed"),
            "gate": _setting(config, "orch_gate"),
            "min_samples": _setting(config, "orch_min_samples"),
        },
    )


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*faults): fault specs (FaultSpec objects, or kind names with keyword "
        "arguments task=, attempt=, params=) for the orch_engine fixture to inject",
    )
    if not _setting(config, "orch_chaos"):
        return
    settings = _resolve(config)
    if settings.tier == "tmux":
        from pytest_orch_recovery.chaos.campaign import TierUnavailable, tmux_runner

        try:
            tmux_runner()
        except TierUnavailable as exc:
            raise pytest.UsageError(f"--orch-tier tmux: {exc}") from None
    config.stash[_SETTINGS] = settings
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        # ``pytest --orch-chaos`` with no paths runs the campaign, not the unit tests.
        # Without a scenarios directory only the generated runs (if any) are collected.
        config.args = [str(settings.scenarios)] if settings.scenarios.is_dir() else []
    if not hasattr(config, "workerinput"):
        from pytest_orch_recovery.plugin.gate import ChaosGate

        config.pluginmanager.register(ChaosGate(config, settings), ChaosGate.NAME)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = _chaos(config)
    if settings is None:
        return []
    return [
        f"orch-chaos: seed {settings.seed}, tier {settings.tier}, agent {settings.agent}, "
        f"scenarios {settings.scenarios}, generated runs {settings.campaign}"
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    settings = _chaos(parent.config)
    if settings is None or file_path.suffix != ".toml":
        return None
    if file_path.parent == settings.scenarios or parent.session.isinitpath(file_path):
        from pytest_orch_recovery.chaos.campaign import ScenarioFile

        return ScenarioFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    settings = _chaos(config)
    if settings is None or not settings.campaign:
        return
    from pytest_orch_recovery.chaos.campaign import GeneratedCampaign

    collector = GeneratedCampaign.from_parent(session, name=GeneratedCampaign.NAME,
                                              nodeid=GeneratedCampaign.NAME)
    items.extend(collector.collect_items(settings.seed, settings.campaign))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        run = item.stash.get(_RUN, None)
        if run is not None:
            # The whole run rides on the report as a private attribute (xdist serialises the
            # report's __dict__); a compact summary goes to user_properties (JUnit XML).
            report._orch_run = json.dumps(run.to_json(), separators=(",", ":"))  # type: ignore[attr-defined]
            report.user_properties.append(
                ("orch_outcomes", json.dumps(run.outcomes, sort_keys=True))
            )
    return report


def store_run(item: pytest.Item, run: ScenarioRun) -> None:
    """Called by the campaign's items: the run their report will carry."""
    item.stash[_RUN] = run


def settings_of(config: pytest.Config) -> ChaosSettings:
    settings = _chaos(config)
    if settings is None:
        raise pytest.UsageError(f"chaos items need {OPTION_CHAOS}")
    return settings


# --------------------------------------------------------------------------- fixtures


@dataclass
class OrchEngine:
    """The in-process (sim tier) engine for users' own tests: run tasks under faults through
    the real coordinator and get a :class:`~pytest_orch_recovery.chaos.campaign.ScenarioRun`."""

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
                ScenarioTask(t, None if agents is None else agents[i])
                for i, t in enumerate(tasks)
            ),
            faults=tuple(self.faults if faults is None else faults),
            operator_actions=operator_actions,
        )
        return run_scenario(scenario, tier="sim", seed=self.seed, agent=DEFAULT_AGENT)


@pytest.fixture
def orch_seed(request: pytest.FixtureRequest) -> int:
    """The campaign seed under --orch-chaos; otherwise --orch-seed, or 0."""
    settings = _chaos(request.config)
    if settings is not None:
        return settings.seed
    value = _setting(request.config, "orch_seed")
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


def github_step_summary() -> Path | None:
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None
