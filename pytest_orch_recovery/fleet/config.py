"""The fleet file (``fleet.toml``): what ``orch-recovery supervise`` runs, and where.

Read once with ``tomllib``; every problem is one ``file:line: key: message`` line. Relative
paths are relative to the fleet file's directory. docs/production.md is the reference; the
keys::

    repository      the operator's git repository (required)
    state_dir       where the supervisor keeps its files (default: .orch-fleet beside the file)
    worktree_root   one worktree per agent (default: <state_dir>/worktrees)
    branch_pattern  each agent's branch (default: "{agent}-work"; must contain {agent})
    base            the ref new branches start from (default: "main")
    agent           "claude-code", "sim", or a command template with {prompt_file} ...
    fallback_agents agents (the same forms) a task moves to, in order, while its own agent's
                    account is at its usage limit (default: none, the tasks wait the reset)
    skip_permissions  pass --dangerously-skip-permissions (default: true)
    tmux_socket     the runtime's own tmux server (default: "orch-" + the file's stem)
    attempt_timeout seconds per attempt (default: 1800)
    stall_window    seconds without output or CPU after which an attempt is a stall and is
                    ended (default: off)
    max_attempts    attempt budget per task (default: 4)
    max_live_agents at most this many agents run at once; the rest wait their turn
                    (default: no limit)
    agent_nice      run agents this many steps (0-19) below normal CPU priority, so that a
                    machine full of agents still leaves the supervisor its share (default: 10)
    supervisor_nice run the supervisor and its tmux server this many steps (0-20) above
                    normal CPU priority (needs root or CAP_SYS_NICE; default: 10 where
                    permitted, else normal priority)
    workers         threads that launch agents and read ended attempts (git, tmux, gh), so
                    one slow command holds no other (default: 16; 0: all in the loop)
    remove_finished_worktrees  remove a task's worktree once it succeeded, unpushed work
                    saved to a rescue ref first (default: false, they are kept)
    env_allow       names/patterns of the supervisor's environment agents get (default: see
                    runtime.host.DEFAULT_ENV_ALLOW: HOME, CLAUDE_CONFIG_DIR, GH_*, ...)
    checkpoint_dir  agents' checkpoint files (default: <state_dir>/checkpoints)
    journal         the event journal (default: <state_dir>/journal.jsonl)
    spool           task intake directory (default: <state_dir>/spool)
    on_escalate     argv list; gets the escalation event as JSON on stdin
    incident_settle seconds a systematic incident's one on_escalate run waits for the other
                    tasks the same cause is failing to join it (default: 10)
    intake_interval seconds between looks at the spool while waiting (default: 1)
    fault_plan      a fault drill plan for the fault hook (fault drills only)
    store           "postgresql://..." : the fleet store several hosts share, instead of the
                    journal file and the spool's submissions (docs/multi-host.md)
    lease           seconds a host's claim on a task lasts without a heartbeat, with a
                    store (default: 30; intake_interval must be under half of it)
    [env]           extra variables for every agent (values are strings)
    [policy]        backoff_base, backoff_cap, breaker_threshold, breaker_window,
                    usage_limit_horizon (seconds)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.policy import PolicySettings
from pytest_orch_recovery.infra import git
from pytest_orch_recovery.infra.agents import AgentConfig, AgentDriver, driver_for
from pytest_orch_recovery.infra.processes import MAX_NICE
from pytest_orch_recovery.infra.tomlread import TomlReader, parse_document
from pytest_orch_recovery.runtime.host import DEFAULT_ENV_ALLOW
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.validation import InputError

DEFAULT_WORKERS = 16
# Each agent pane is a scheduling group of its own (autogroup): at normal priority a fleet of
# N agents leaves the supervisor 1/(N+1) of the CPU, and every exit waits for it.
DEFAULT_AGENT_NICE = 10
# The supervisor reads every exit: it must not queue behind its agents (nor behind the launch
# of the next ones). Raising it needs root or CAP_SYS_NICE; by default it is tried quietly.
DEFAULT_SUPERVISOR_NICE = 10
MAX_WORKERS = 64

_KEYS = frozenset(
    {
        "repository",
        "state_dir",
        "worktree_root",
        "branch_pattern",
        "base",
        "agent",
        "fallback_agents",
        "skip_permissions",
        "tmux_socket",
        "attempt_timeout",
        "stall_window",
        "max_attempts",
        "max_live_agents",
        "agent_nice",
        "supervisor_nice",
        "workers",
        "remove_finished_worktrees",
        "env_allow",
        "checkpoint_dir",
        "journal",
        "spool",
        "on_escalate",
        "incident_settle",
        "intake_interval",
        "fault_plan",
        "store",
        "lease",
        "env",
        "policy",
    }
)


class FleetConfigError(InputError):
    """A fleet file that cannot be used: ``file:line: key: message``."""


@dataclass(frozen=True)
class FleetConfig:
    source: Path
    repository: Path
    state_dir: Path
    worktree_root: Path
    checkpoint_dir: Path
    journal: Path
    spool: Path
    tmux_socket: str
    branch_pattern: str = "{agent}-work"
    base: str = "main"
    agent: str = "claude-code"
    fallback_agents: tuple[str, ...] = ()
    skip_permissions: bool = True
    attempt_timeout: float = 1800.0
    stall_window: float | None = None
    max_attempts: int = 4
    max_live_agents: int | None = None
    agent_nice: int = DEFAULT_AGENT_NICE
    supervisor_nice: int = DEFAULT_SUPERVISOR_NICE
    supervisor_nice_set: bool = False  # written in the fleet file (a refusal is then a warning)
    workers: int = DEFAULT_WORKERS
    remove_finished_worktrees: bool = False
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    env: Mapping[str, str] = field(default_factory=dict)
    on_escalate: tuple[str, ...] = ()
    incident_settle: float = 10.0
    intake_interval: float = 1.0
    fault_plan: Path | None = None
    store: str | None = None  # a PostgreSQL URL; None: the journal file (one host)
    lease: float = 30.0  # seconds; with a store
    policy: PolicySettings = field(default_factory=PolicySettings)

    @property
    def results(self) -> Path:
        return self.state_dir / "results"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def agent_config(self) -> AgentConfig:
        return AgentConfig(skip_permissions=self.skip_permissions)

    def driver(self, config: AgentConfig) -> AgentDriver:
        return driver_for(self.agent, config)

    def fallback_driver(self, agent_type: str, config: AgentConfig) -> AgentDriver | None:
        """The driver of an attempt moved to a fallback agent (None: not one of them)."""
        return driver_for(agent_type, config) if agent_type in self.fallback_agents else None


class _FleetReader(TomlReader):
    error = FleetConfigError

    def __init__(self, source: str, text: str, base_dir: Path) -> None:
        super().__init__(source, text)
        self.base_dir = base_dir

    def path(self, value: object, key: str) -> Path:
        text = self.string(value, (key,), limit=4096)
        if "\0" in text:
            raise self.fail((key,), "must not contain NUL")
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def check_agent(self, agent: str, key: str, prefix: str, *, here: bool) -> None:
        """``agent`` names a driver: an unknown name or a bad template is refused, and a CLI
        missing from this machine too when the file is read ``here``."""
        try:
            driver_for(agent, AgentConfig())
        except ValueError as exc:  # unknown name, bad template
            raise self.fail((key,), f"{prefix}{exc}") from None
        except LookupError as exc:  # the CLI is not installed
            if here:
                raise self.fail((key,), f"{prefix}{exc}") from None

    def argv(self, value: object, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            raise self.fail(
                (key,),
                "must be a list of words (argv), never a shell string: "
                'e.g. ["notify-send", "orch"]',
            )
        words = self.strings(value, (key,))
        if not words:
            raise self.fail((key,), "must name a program")
        return words

    def env_table(self, value: object) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.fail(("env",), f"must be a table, not {type(value).__name__}")
        out = {}
        for name, item in value.items():
            if not name or "=" in name or "\0" in name:
                raise self.fail(("env", name), "not a valid variable name")
            text = self.string(item, ("env", name), empty=True)
            if "\0" in text:
                raise self.fail(("env", name), "must not contain NUL")
            out[name] = text
        return out


def parse_fleet(
    text: str, *, source: Path, check_base: bool = True, here: bool = True
) -> FleetConfig:
    """Validate one fleet document read from ``source``; with ``check_base``, also that its
    ``base`` names a commit of the repository (what a supervisor needs; a view of the
    journal does not).

    ``here=False`` reads a production fleet file on another machine for its settings only
    (``pytest --orch-chaos --orch-fleet``, in CI): every key is checked as ``supervise``
    checks it, except what concerns this machine (the repository exists, ``base`` is one of
    its commits, the agent CLI is installed); the campaign checks the agent it actually runs."""
    doc = parse_document(text, str(source), FleetConfigError)
    reader = _FleetReader(str(source), text, source.parent.resolve())
    raw: Mapping[str, Any] = reader.table(doc, (), _KEYS)
    if "repository" not in raw:
        raise reader.fail((), "missing required key 'repository'")
    repository = reader.path(raw["repository"], "repository")
    if here and not (repository / ".git").exists():
        raise reader.fail(("repository",), f"{repository} is not a git repository")
    state_dir = reader.path(raw.get("state_dir", ".orch-fleet"), "state_dir")

    def under(key: str, default: Path) -> Path:
        return reader.path(raw[key], key) if key in raw else default

    pattern = reader.string(raw.get("branch_pattern", "{agent}-work"), ("branch_pattern",))
    base = reader.string(raw.get("base", "main"), ("base",))
    try:
        validation.branch_pattern(pattern)
    except validation.RuleError as exc:
        raise reader.fail(("branch_pattern",), str(exc)) from None
    try:
        validation.ref_name(base, what="base")
    except validation.RuleError as exc:
        raise reader.fail(("base",), str(exc)) from None
    if here and check_base and git.resolve(repository, base) is None:
        # Found now, not at the first workspace probe of a running supervisor.
        raise reader.fail(("base",), f"{base!r} names no branch or commit in {repository}")
    agent = reader.string(raw.get("agent", "claude-code"), ("agent",))
    reader.check_agent(agent, "agent", "", here=here)
    fallbacks = reader.strings(raw.get("fallback_agents", []), ("fallback_agents",))
    for fallback in fallbacks:
        reader.check_agent(fallback, "fallback_agents", f"{fallback!r}: ", here=here)
    if len(set(fallbacks)) != len(fallbacks) or agent in fallbacks:
        raise reader.fail(("fallback_agents",), "each agent once, and not the primary agent")
    socket = reader.string(raw.get("tmux_socket", f"orch-{source.stem}"), ("tmux_socket",))
    if not all(c.isalnum() or c in "-_." for c in socket):
        raise reader.fail(("tmux_socket",), "use letters, digits, '-', '_' and '.'")
    lease = reader.number(raw.get("lease", 30.0), ("lease",), upper=3600)
    interval = reader.number(raw.get("intake_interval", 1.0), ("intake_interval",), upper=3600)
    if "store" in raw and interval * 2 >= lease:
        # The loop renews leases once per pass: a pass must come round well within a lease.
        key = "lease" if "lease" in raw else "intake_interval"
        raise reader.fail(
            (key,),
            f"intake_interval ({interval:g} s) must be under half the lease ({lease:g} s) "
            "so that heartbeats renew it in time",
        )
    return FleetConfig(
        source=source,
        repository=repository,
        state_dir=state_dir,
        worktree_root=under("worktree_root", state_dir / "worktrees"),
        checkpoint_dir=under("checkpoint_dir", state_dir / "checkpoints"),
        journal=under("journal", state_dir / "journal.jsonl"),
        spool=under("spool", state_dir / "spool"),
        tmux_socket=socket,
        branch_pattern=pattern,
        base=base,
        agent=agent,
        fallback_agents=fallbacks,
        skip_permissions=reader.boolean(raw.get("skip_permissions", True), ("skip_permissions",)),
        attempt_timeout=reader.number(raw.get("attempt_timeout", 1800), ("attempt_timeout",)),
        stall_window=(
            reader.number(raw["stall_window"], ("stall_window",)) if "stall_window" in raw else None
        ),
        max_attempts=reader.integer(raw.get("max_attempts", 4), ("max_attempts",)),
        max_live_agents=(
            reader.integer(raw["max_live_agents"], ("max_live_agents",))
            if "max_live_agents" in raw
            else None
        ),
        agent_nice=reader.integer(
            raw.get("agent_nice", DEFAULT_AGENT_NICE), ("agent_nice",), minimum=0, maximum=MAX_NICE
        ),
        supervisor_nice=reader.integer(
            raw.get("supervisor_nice", DEFAULT_SUPERVISOR_NICE),
            ("supervisor_nice",),
            minimum=0,
            maximum=20,
        ),
        supervisor_nice_set="supervisor_nice" in raw,
        workers=reader.integer(
            raw.get("workers", DEFAULT_WORKERS), ("workers",), minimum=0, maximum=MAX_WORKERS
        ),
        remove_finished_worktrees=reader.boolean(
            raw.get("remove_finished_worktrees", False), ("remove_finished_worktrees",)
        ),
        env_allow=(
            reader.strings(raw["env_allow"], ("env_allow",))
            if "env_allow" in raw
            else DEFAULT_ENV_ALLOW
        ),
        env=reader.env_table(raw.get("env", {})),
        on_escalate=reader.argv(raw["on_escalate"], "on_escalate") if "on_escalate" in raw else (),
        intake_interval=interval,
        incident_settle=reader.number(
            raw.get("incident_settle", 10.0), ("incident_settle",), upper=3600
        ),
        fault_plan=reader.path(raw["fault_plan"], "fault_plan") if "fault_plan" in raw else None,
        store=(
            reader.checked(validation.store_url, raw["store"], ("store",))
            if "store" in raw
            else None
        ),
        lease=lease,
        policy=reader.policy_settings(raw.get("policy", {}), ("policy",)),
    )


def load_fleet(path: str | Path, *, check_base: bool = True, here: bool = True) -> FleetConfig:
    """Read and validate the fleet file at ``path`` (``check_base``, ``here``: see
    :func:`parse_fleet`)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetConfigError(str(source), 1, "", f"cannot read: {exc}") from None
    return parse_fleet(text, source=source, check_base=check_base, here=here)
