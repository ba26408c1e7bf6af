"""The plugin's options and the settings they resolve to, kept where items, hooks and the gate
can all read them.

Every setting is a CLI option and an ini key sharing one help text; values are validated by the
argparse ``type=`` functions below (a bad value is a usage error), and the CLI wins over the
ini file, which wins over the default. The resolved :class:`ChaosSettings` live in
``config.stash``; a scenario item's run rides in ``item.stash`` until its report is made.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_orch_recovery.infra.argtypes import agent_command, count, rate
from pytest_orch_recovery.infra.placeholders import known as known_placeholders

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetdb import FleetDatabase
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings
    from pytest_orch_recovery.chaos.record import ScenarioRun

OPTION_CHAOS = "--orch-chaos"
MARKER = "orch_faults"
GATES = ("point", "lower-bound")
DEFAULT_TIER = "tmux"  # real processes: the embedded sim agent in tmux, real git
DEFAULT_AGENT = "sim"
DEFAULT_REPORT = "orch-report.md"
DEFAULT_SCENARIOS = "scenarios"
# How a project's own scenarios combine with the bundled campaign; the first is the default.
PROJECT_RULES = ("beside", "instead")
REPORT_SUFFIXES = (".md", ".json", ".html", ".jsonl")
SEED_MAX = 2**32 - 1


# --------------------------------------------------------------------------- option types


def _seed(text: str) -> int:
    value = count(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be <= {SEED_MAX}")
    return value


MAX_HOSTS = 64  # as chaos.scenario.MAX_HOSTS, without importing the campaign here


def _hosts(text: str) -> int:
    value = count(text)
    if not 1 <= value <= MAX_HOSTS:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 1 to {MAX_HOSTS}")
    return value


def _store_url(text: str) -> str:
    """A PostgreSQL URL (``--orch-store``); the message never repeats it (it may hold a
    password)."""
    from pytest_orch_recovery.store import validation

    try:
        validation.store_url(text)
    except validation.RuleError as exc:
        raise argparse.ArgumentTypeError(f"store URL {exc}") from None
    try:
        from psycopg import ProgrammingError, conninfo
    except ImportError:
        return text  # checked again, with the reason, where the store is opened
    try:
        conninfo.conninfo_to_dict(text)
    except ProgrammingError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot be parsed"
        raise argparse.ArgumentTypeError(f"store URL is not valid: {detail}") from None
    return text


def without_password(url: str) -> str:
    """``url`` with any password left out, for a replay line or a report.

    >>> without_password("postgresql://orch:s3cret@db.example:5433/fleet?sslmode=require")
    'postgresql://orch@db.example:5433/fleet?sslmode=require'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of " + ", ".join(choices))
        return text

    parse.__name__ = "choice"
    return parse


def _tier(text: str) -> str:
    # Imported here: the tiers' module brings the package's error base, and an unused plugin
    # imports nothing of the engine; a tier is only named when the campaign is wanted.
    from pytest_orch_recovery.chaos.tiers import TIERS

    return _choice(TIERS)(text)


def _report_path(text: str) -> str:
    if Path(text).suffix.lower() not in REPORT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a report file name must end in " + ", ".join(REPORT_SUFFIXES)
        )
    # Imported here: an unused plugin imports nothing of the engine.
    from pytest_orch_recovery.store.atomic import OutputError, output_target

    try:
        output_target(text)  # a device, a FIFO, or a missing directory outside the cwd
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _fleet_path(text: str) -> str:
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file name")
    return text


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
    _Option(
        OPTION_CHAOS,
        None,
        False,
        "run the agent-recovery chaos campaign: collect the scenarios, inject faults, let "
        "the engine recover, gate on the success criteria (off: the plugin does nothing)",
    ),
    _Option(
        "--orch-agent",
        agent_command,
        DEFAULT_AGENT,
        "agent to run: sim, claude-code, or a command template run without a shell, "
        f"with placeholders {known_placeholders()} (default: sim)",
        "AGENT",
    ),
    _Option(
        "--orch-seed",
        _seed,
        None,
        "seed of the whole campaign (fault timing, generated runs, task text); printed in "
        "the header and passed to xdist workers (default: random)",
        "N",
    ),
    _Option(
        "--orch-report",
        _report_path,
        (DEFAULT_REPORT,),
        "write the dashboard to PATH: .md, .json or .html, or the campaign's events as a "
        "journal (.jsonl) that orch-recovery report reads; repeatable "
        f"(default: {DEFAULT_REPORT})",
        "PATH",
        append=True,
    ),
    _Option(
        "--orch-scenarios",
        str,
        DEFAULT_SCENARIOS,
        "the project's own scenario files (*.toml), a directory relative to the ini file's "
        "directory or the rootdir; they run as --orch-project-scenarios says "
        f"(default: {DEFAULT_SCENARIOS}, when it exists)",
        "DIR",
    ),
    _Option(
        "--orch-project-scenarios",
        _choice(PROJECT_RULES),
        PROJECT_RULES[0],
        "how the project's own scenarios combine with the bundled campaign: beside (both "
        "run) or instead (the bundled scenarios run only when the project has none) "
        f"(default: {PROJECT_RULES[0]})",
        "|".join(PROJECT_RULES),
    ),
    _Option(
        "--orch-fleet",
        _fleet_path,
        None,
        "run every scenario under the settings of this production fleet file (agent, "
        "skip_permissions, [policy], max_attempts, max_live_agents, attempt_timeout, "
        "stall_window, env_allow, [env]); the sandbox keeps its own repository, worktrees "
        "and tmux server (default: the campaign's own settings)",
        "FLEET.toml",
    ),
    _Option(
        "--orch-min-recovery-rate",
        rate,
        0.90,
        "minimum share of failed tasks that recover (compared with >; default 0.90)",
        "RATE",
    ),
    _Option(
        "--orch-min-first-try-simple",
        rate,
        0.95,
        "minimum first-try success of fault-free simple tasks, < 5 files (default 0.95)",
        "RATE",
    ),
    _Option(
        "--orch-min-first-try-complex",
        rate,
        0.80,
        "minimum first-try success of fault-free complex tasks, 5+ files (default 0.80)",
        "RATE",
    ),
    _Option("--orch-max-orphans", count, 0, "maximum orphaned workspaces (default 0)", "N"),
    _Option(
        "--orch-max-unattributed",
        count,
        0,
        "maximum failures with no, unknown or wrong attribution (default 0)",
        "N",
    ),
    _Option(
        "--orch-gate",
        _choice(GATES),
        "point",
        "compare rates by their observed value (point) or their Wilson 95%% lower bound "
        "(lower-bound) (default: point)",
        "point|lower-bound",
    ),
    _Option(
        "--orch-min-samples",
        count,
        1,
        "rates with fewer samples are reported as insufficient, neither pass nor fail (default 1)",
        "N",
    ),
    _Option(
        "--orch-campaign",
        count,
        0,
        "add N generated runs: Hypothesis fault schedules over Faker task text, derived "
        "from the seed (default 0)",
        "N",
    ),
    _Option(
        "--orch-tier",
        _tier,
        DEFAULT_TIER,
        f"where agents run: sim (in-process simulation) or tmux (real tmux sessions and "
        f"git worktrees) (default: {DEFAULT_TIER})",
        "sim|tmux",
    ),
    _Option(
        "--orch-hosts",
        _hosts,
        1,
        "run the campaign with N hosts sharing one fleet store (leases, fencing), and add "
        "the bundled host scenarios (host_down, host_partition, store_outage). On the sim "
        "tier every scenario runs over N simulated hosts; on the tmux tier the host "
        "scenarios run over N real supervisors (own tmux servers and clones) on a private "
        "PostgreSQL the plugin starts for the session, or --orch-store, and the others on "
        "one host (default 1: one host, no database)",
        "N",
    ),
    _Option(
        "--orch-store",
        _store_url,
        None,
        "with --orch-hosts N on the tmux tier: the PostgreSQL server to keep the fleet "
        "stores on instead of a private one (postgresql://USER@HOST/DB; the role needs "
        "CREATEDB: each scenario gets a database of its own, dropped after; keep the "
        "password in ~/.pgpass or PGPASSWORD; store_outage scenarios are skipped, since "
        "only the plugin's own server is stopped)",
        "URL",
    ),
    _Option("--orch-strict", None, False, "also fail when an injected fault never took effect"),
)
_BY_DEST = {o.dest: o for o in _OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini key (the plugin's ``pytest_addoption``)."""
    group = parser.getgroup(
        "orch-recovery", "chaos testing of agent recovery (pytest-orch-recovery)"
    )
    for option in _OPTIONS:
        if option.type is None:
            group.addoption(
                option.flag, action="store_true", default=None, dest=option.dest, help=option.help
            )
            parser.addini(option.ini, option.help, type="bool", default=option.default)
        elif option.append:
            group.addoption(
                option.flag,
                action="append",
                type=option.type,
                default=None,
                dest=option.dest,
                metavar=option.metavar,
                help=option.help,
            )
            parser.addini(option.ini, option.help, type="linelist", default=[])
        else:
            group.addoption(
                option.flag,
                type=option.type,
                default=None,
                dest=option.dest,
                metavar=option.metavar,
                help=option.help,
            )
            parser.addini(option.ini, option.help, type="string", default="")


def setting(config: pytest.Config, dest: str) -> Any:
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
    scenarios: Path  # the project's own scenarios directory (it may not exist)
    campaign: int
    strict: bool
    thresholds: dict[str, Any]
    project_rule: str = PROJECT_RULES[0]
    fleet: ProductionSettings | None = None
    fleet_arg: str | None = None  # --orch-fleet as given, for the replay command line
    agent_given: bool = False  # --orch-agent (or its ini key) chose the agent
    hosts: int = 1  # --orch-hosts
    store: str | None = None  # --orch-store

    def replay_args(self) -> list[str]:
        """The options that reproduce this campaign's items, for a replay command line."""
        args = [OPTION_CHAOS, "--orch-seed", str(self.seed)]
        if self.campaign:
            args += ["--orch-campaign", str(self.campaign)]
        if self.tier != DEFAULT_TIER:
            args += ["--orch-tier", self.tier]
        if self.fleet_arg is not None:
            args += [f"--orch-fleet={self.fleet_arg}"]
        if self.agent != (DEFAULT_AGENT if self.fleet is None else self.fleet.agent):
            args += ["--orch-agent", self.agent]
        if self.project_rule != PROJECT_RULES[0]:
            args += [f"--orch-project-scenarios={self.project_rule}"]
        if self.hosts != 1:
            args += ["--orch-hosts", str(self.hosts)]
        if self.store is not None:
            args += [f"--orch-store={without_password(self.store)}"]
        return args


SETTINGS = pytest.StashKey[ChaosSettings]()
# The tmux tier's host scenarios' PostgreSQL (--orch-hosts N >= 2, --orch-store).
FLEET_DATABASE = pytest.StashKey["FleetDatabase"]()


def fleet_database(config: pytest.Config) -> FleetDatabase | None:
    """Where the tmux tier's host scenarios keep their fleet stores, or None (one host)."""
    return config.stash.get(FLEET_DATABASE, None)


_RUN = pytest.StashKey["ScenarioRun"]()


def chaos_settings(config: pytest.Config) -> ChaosSettings | None:
    """The campaign's settings, or None when ``--orch-chaos`` is off."""
    return config.stash.get(SETTINGS, None)


def campaign_only(config: pytest.Config) -> bool:
    """Whether this session runs the campaign and nothing else: ``--orch-chaos`` on and no
    test paths given (the plugin then collects the scenarios directory, not ``testpaths``).
    xdist workers see the controller's arguments, so they agree with it.

    Then no Python test module is collected: the test suite's own set-up (a Hypothesis
    profile, say) and plugins for Python tests have nothing to do in this session.
    """
    return (
        bool(setting(config, "orch_chaos"))
        and config.args_source is not pytest.Config.ArgsSource.ARGS
    )


def resolve_settings(config: pytest.Config) -> ChaosSettings:
    """Resolve every setting once: CLI, then ini, then default; xdist workers take the
    controller's seed."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    seed = setting(config, "orch_seed")
    if workerinput is not None and "orch_seed" in workerinput:
        seed = int(workerinput["orch_seed"])
    elif seed is None:
        seed = secrets.randbelow(SEED_MAX + 1)
    base = config.inipath.parent if config.inipath else config.rootpath
    fleet, fleet_arg = _fleet(config)
    agent_given = given(config, "orch_agent")
    agent = setting(config, "orch_agent")
    if fleet is not None and not agent_given:
        agent = fleet.agent
    return ChaosSettings(
        seed=seed,
        agent=agent,
        agent_given=agent_given,
        fleet=fleet,
        fleet_arg=fleet_arg,
        project_rule=setting(config, "orch_project_scenarios"),
        tier=setting(config, "orch_tier"),
        reports=setting(config, "orch_report"),
        scenarios=(base / setting(config, "orch_scenarios")).resolve(),
        campaign=setting(config, "orch_campaign"),
        strict=setting(config, "orch_strict"),
        hosts=setting(config, "orch_hosts"),
        store=setting(config, "orch_store"),
        thresholds={
            "min_recovery_rate": setting(config, "orch_min_recovery_rate"),
            "min_first_try_simple": setting(config, "orch_min_first_try_simple"),
            "min_first_try_complex": setting(config, "orch_min_first_try_complex"),
            "max_orphans": setting(config, "orch_max_orphans"),
            "max_unattributed": setting(config, "orch_max_unattributed"),
            "gate": setting(config, "orch_gate"),
            "min_samples": setting(config, "orch_min_samples"),
        },
    )


def given(config: pytest.Config, dest: str) -> bool:
    """Whether the option ``dest`` was set on the command line or in the ini file."""
    option = _BY_DEST[dest]
    if config.getoption(dest) not in (None, []):
        return True
    raw = config.getini(option.ini)
    return bool(raw.strip()) if isinstance(raw, str) else bool(raw)


def _fleet(config: pytest.Config) -> tuple[ProductionSettings | None, str | None]:
    """The ``--orch-fleet`` file's settings and the path as given: a command-line path is
    relative to where pytest was started, an ini value to the ini file's directory. A file
    that cannot be used is a usage error with its ``file:line: key: message`` line."""
    given_as: str | None = config.getoption("orch_fleet")
    if given_as is not None:
        # As given (pytest runs where it was started), so that a mistake reads
        # ``fleet.toml:3: ...`` exactly as ``orch-recovery supervise --config`` says it.
        path = Path(given_as)
    else:  # the ini file names it, and names it again to a replay
        text = str(config.getini("orch_fleet")).strip()
        if not text:
            return None, None
        path = (config.inipath.parent if config.inipath else config.rootpath) / text
    # Imported here: an unused plugin imports nothing of the engine.
    from pytest_orch_recovery.chaos.fleetfile import load_fleet_settings
    from pytest_orch_recovery.engine.errors import OrchRecoveryError

    try:
        return load_fleet_settings(str(path)), given_as
    except OrchRecoveryError as exc:
        raise pytest.UsageError(str(exc)) from None


def store_run(item: pytest.Item, run: ScenarioRun) -> None:
    """Called by the campaign's items: the run their report will carry."""
    item.stash[_RUN] = run


def settings_of(config: pytest.Config) -> ChaosSettings:
    """The campaign's settings, for an item that cannot run without them."""
    settings = chaos_settings(config)
    if settings is None:
        raise pytest.UsageError(f"chaos items need {OPTION_CHAOS}")
    return settings


def stored_run(item: pytest.Item) -> ScenarioRun | None:
    """The run ``item`` stored, if it is a scenario item that ran."""
    return item.stash.get(_RUN, None)
