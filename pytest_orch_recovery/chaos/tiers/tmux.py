"""Real runs: the coordinator driving real agents in real tmux sessions on real git worktrees.

:func:`run_tmux` builds one sandbox (git repo + bare origin, isolated HOME, ``gh`` forge, tmux
server), starts the model double on loopback, dispatches each task to an agent (the bundled sim
agent, the real Claude Code CLI, or a command template), injects the scheduled faults where each
one belongs, lets the engine recover, plays the operator where the schedule says so, and returns
what happened — then tears everything down and checks nothing is left.

Where each fault is injected (all keyed on events, none on time):

- the agent's ``PostToolUse`` hook (:mod:`.faulthook`): SIGINT (process group or typed C-c),
  SIGKILL / SIGTERM, a stall, a stale ``index.lock``, a torn checkpoint;
- the model double: 529 / 429 / 500 bursts and a stalled API, keyed on the task's request;
- the forge: ``gh pr create`` failures with real gh messages;
- the dispatcher's configuration: the missing ``--dangerously-skip-permissions`` flag, and an
  attempt launched interactive (no ``-p``) without it, which parks at the first tool call's
  permission dialog until its timeout (``permission_prompt``);
- the journal: the coordinator itself dies after its Nth event and a new one takes over.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orch_recovery.chaos.faults import HOST_FAULTS, FaultLedger, FaultSpec, FaultStatus
from pytest_orch_recovery.chaos.record import RepoState, ScenarioRun, journal_orphans, task_outcomes
from pytest_orch_recovery.chaos.scenario import Scenario
from pytest_orch_recovery.chaos.tiers import TierUnsupported
from pytest_orch_recovery.chaos.tiers.sim import CrashingJournal, Supervisor
from pytest_orch_recovery.chaos.tiers.simruntime import AGENT_MAX_RETRIES as SIM_AGENT_MAX_RETRIES
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task
from pytest_orch_recovery.doubles.modeldouble.faults import ApiFaultKind, ApiFaultSpec
from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan, default_content
from pytest_orch_recovery.doubles.sandbox import Sandbox, default_base_dir
from pytest_orch_recovery.engine.coordinator import Coordinator, CoordinatorConfig
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    Event,
    FailureAttributed,
)
from pytest_orch_recovery.engine.matcher import match_lines
from pytest_orch_recovery.engine.model import ExitInfo, Phase, Reason, Task
from pytest_orch_recovery.engine.policy import Policy, PolicySettings
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.fleet.steps import remove_finished_workspaces
from pytest_orch_recovery.infra.agents import (
    AgentConfig,
    AgentDriver,
    CliAgentDriver,
    accept_claude_code_first_run,
    driver_for,
)
from pytest_orch_recovery.infra.cleanup import find_orphans
from pytest_orch_recovery.infra.git import rev_count
from pytest_orch_recovery.infra.placeholders import BUILTIN_AGENTS
from pytest_orch_recovery.infra.processes import MAX_NICE
from pytest_orch_recovery.runtime.dispatch import Dispatcher
from pytest_orch_recovery.runtime.tmux import TmuxRuntime
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.journal import Journal

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings

HOOK_FAULTS = frozenset(
    {
        "sigint",
        "sigint_keys",
        "kill",
        "terminate",
        "stall",
        "stale_index_lock",
        "corrupt_checkpoint",
    }
)
API_FAULTS = {
    "api_overloaded": ApiFaultKind.OVERLOADED,
    "api_rate_limit": ApiFaultKind.RATE_LIMIT,
    "api_server_error": ApiFaultKind.SERVER_ERROR,
    "api_stall": ApiFaultKind.STALL,
    "quit_early": ApiFaultKind.QUIT_EARLY,
    "usage_limit": ApiFaultKind.USAGE_LIMIT,
}
# Faults this tier cannot inject yet; a schedule that holds one is refused up front.
UNSUPPORTED: frozenset[str] = frozenset()
# Faults injected through the dispatcher's agent configuration (the permission flag left out,
# an interactive launch): a command-template agent's words are its own, so they cannot be.
DISPATCHER_FLAG_FAULTS = frozenset({"missing_permission_flag", "permission_prompt"})

# The fallback agents' accounts on this tier (numbered in the chain's order).
FALLBACK_API_KEY = "sk-ant-api03-double-fallback-account"
# The agents' accounts: an API key, or, where a scenario's account has a plan's usage limit, a
# subscription's OAuth token (Claude Code sends it as ``Authorization: Bearer``).
API_KEY = "sk-ant-api03-double-not-a-real-key"
SUBSCRIPTION_TOKEN = "sk-ant-oat01-double-not-a-real-token"

# On this tier a usage limit's reset is seconds away (the model double then rounds it up to
# the whole minute the CLI prints), whatever the scenario's ``resets_in`` says.
USAGE_LIMIT_SECONDS = 5.0

# Per-attempt limit in scenario runs unless the scenario sets ``attempt_timeout``: generous,
# since a loaded CI machine is slow; the timeout scenario sets a short one of its own.
SCENARIO_ATTEMPT_TIMEOUT = {"sim": 120.0, "claude-code": 300.0}

# The agents' own API retries, kept small so a burst that beats them is short. Real Claude Code
# reads CLAUDE_CODE_MAX_RETRIES; the sim agent reads the same variable.
AGENT_RETRIES = 2


@dataclass
class TmuxOutcome:
    events: list[Event]
    outcomes: dict[str, Phase]
    agents: dict[str, str]  # task id -> agent name
    repo: dict[str, RepoState]
    ledger: FaultLedger
    transcript: list[dict[str, Any]]
    gh_calls: list[dict[str, Any]]
    crashes: int = 0
    leftovers: list[str] = field(default_factory=list)
    sandbox_root: Path | None = None


def _check_schedule(tasks: Sequence[Task], faults: Sequence[FaultSpec]) -> None:
    titles = [t.title for t in tasks]
    if len(set(titles)) != len(titles):
        raise InvalidValue("task titles must be unique: the model double routes by title")
    for spec in faults:
        if spec.kind in UNSUPPORTED:
            raise InvalidValue(f"fault {spec.kind!r} is not injectable on the tmux tier yet")


def api_fault_spec(spec: FaultSpec, task: Task | None) -> ApiFaultSpec:
    """The model double's fault for an API fault of the catalogue (``API_FAULTS``) on ``task``
    (None: any task)."""
    trigger = spec.effective_trigger
    kind = API_FAULTS[spec.kind]
    if kind is ApiFaultKind.STALL:
        # One request never answered: the attempt hangs until its timeout; the next is served.
        return ApiFaultSpec(
            kind=kind,
            times=1,
            at_request=trigger.n,
            scope="task",
            task=None if task is None else task.title,
            seconds=3600.0,
        )
    if kind is ApiFaultKind.USAGE_LIMIT:
        # Fired once; the account then refuses every request until the reset.
        return ApiFaultSpec(
            kind=kind,
            times=1,
            at_request=trigger.n,
            scope="task",
            task=None if task is None else task.title,
            seconds=USAGE_LIMIT_SECONDS,
        )
    if kind is ApiFaultKind.QUIT_EARLY:
        # The model's reply after the Nth tool call is a premature "done" (once).
        return ApiFaultSpec(
            kind=kind,
            times=1,
            at_request=trigger.n + 1,
            scope="task",
            task=None if task is None else task.title,
        )
    # ``count`` means the same on both tiers: a burst the agent's own retries absorb, or one
    # they cannot (the simulation's agents retry AGENT_MAX_RETRIES times, real runs here
    # AGENT_RETRIES times). A burst that beats the retries fails exactly one attempt.
    count = int(spec.params.get("count", SIM_AGENT_MAX_RETRIES + 2))
    times = AGENT_RETRIES + 1 if count > SIM_AGENT_MAX_RETRIES else min(count, AGENT_RETRIES)
    return ApiFaultSpec(
        kind=kind,
        times=times,
        at_request=trigger.n if trigger.event == "api_request" else None,
        scope="task",
        task=None if task is None else task.title,
        seconds=float(spec.params.get("retry_after", 1)),
    )


# CFS gives a task at nice n a weight 1024 / 1.25**n (kernel/sched/core.c, sched_prio_to_weight).
_NICE_STEP = 1.25


def sandbox_nice(agents_at_once: int) -> int:
    """The nice value at which ``agents_at_once`` agents weigh, together, about what one
    normal-priority process group weighs: every scenario's agents then get the same share of
    the CPU whatever their number. Each tmux pane is its own scheduling group (autogroup), so
    a scenario with 28 agents beside one with a single agent (xdist) would otherwise get 28
    shares to its 1, stretching the small scenario's waits for the CPU several times over
    (measured: ``timeout`` 6 s alone, 10 s beside ``control``).

    >>> [sandbox_nice(n) for n in (1, 2, 4, 28, 10_000)]
    [0, 3, 6, 15, 19]
    """
    if agents_at_once <= 1:
        return 0
    return min(MAX_NICE, round(math.log(agents_at_once) / math.log(_NICE_STEP)))


def run_tmux(
    tasks: Sequence[Task],
    faults: Sequence[FaultSpec] = (),
    *,
    agent: str = "sim",
    agents: Sequence[str] | None = None,
    seed: int = 0,
    operator_actions: Sequence[str] = (),
    attempt_timeout: float = 60.0,
    stall_window: float | None = None,
    crash_after_event: int | None = None,
    base_dir: Path | None = None,
    config: AgentConfig | None = None,
    driver_factory: Callable[[AgentConfig], AgentDriver] | None = None,
    policy: PolicySettings | None = None,
    budget: Mapping[str, int] | None = None,
    max_live: int | None = None,
    env_allow: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    fallback_agents: Sequence[str] = (),
    on_event: Callable[[Event], None] | None = None,
) -> TmuxOutcome:
    """Run ``tasks`` under ``faults`` with real agents; always tears the sandbox down.
    ``env_allow`` and ``env``: a fleet file's, for the agents' environment (the sandbox's
    own variables win)."""
    _check_schedule(tasks, faults)
    faults = [s if s.fault_id else replace(s, fault_id=f"f{i + 1}") for i, s in enumerate(faults)]
    ledger = FaultLedger()
    for spec in faults:
        ledger.register(spec)
    crash_after_event = _crash_point(crash_after_event, faults)
    sandbox = Sandbox.create(base_dir=base_dir, name="orch", unwind_on_sigterm=True)
    sandbox.env_allow = None if env_allow is None else tuple(env_allow)
    sandbox.fleet_env = dict(env or {})
    held = _Held()
    try:
        held.double = start_model_double(sandbox, tasks, faults)
        _inject_forge_faults(sandbox, faults)
        _point_agents_at(sandbox, held.double, _on_a_plan(faults))
        parked: dict[str, tuple[str, int]] = {}  # permission_prompt fault -> (task, attempt)
        dispatcher = _dispatcher(
            sandbox,
            faults,
            parked,
            tasks,
            agent=agent,
            config=_agent_config(config, faults),
            driver_factory=driver_factory,
            fallback_agents=fallback_agents,
        )
        command_for = dispatcher.command_for
        if agent == "claude-code":
            command_for = functools.partial(_first_run_done, sandbox, dispatcher)
        command_for = functools.partial(
            _armed_launch, _ApiFaultArming(held.double, faults, tasks), command_for
        )
        at_once = len(tasks) if max_live is None else min(len(tasks), max_live)
        # The supervisor's own transport (one control-mode client), so the campaign proves
        # the tmux path production runs; exits stay serial (workers=0) for a replayable order.
        held.runtime = TmuxRuntime(
            sandbox,
            command_for,
            stall_window=stall_window,
            agent_nice=sandbox_nice(at_once),
            control=True,
        )
        held.journal = _open_journal(sandbox, crash_after_event)
        supervisor = _supervisor(
            held.runtime,
            held.journal,
            dispatcher,
            CoordinatorConfig(
                attempt_timeout=attempt_timeout,
                seed=seed,
                max_live=max_live,
                fallback_agents=tuple(fallback_agents),
            ),
            lambda: (policy or PolicySettings()).policy(seed=seed, **(budget or {})),
            on_event,
        )
        supervisor.drive(
            tasks,
            agents,
            operator_actions,
            functools.partial(_operate, dispatcher),
            after_submit=lambda c: _stale_locks_at_start(sandbox, c, faults),
        )
        outcome = _finish(
            sandbox, supervisor, held.double, held.journal, ledger, faults, parked, tasks
        )
    finally:
        held.close()
        sandbox.teardown()
    outcome.leftovers = sandbox.leftovers()
    return outcome


@dataclass
class _Held:
    """What one real run holds open, closed in reverse order whatever happens."""

    double: ModelDouble | None = None
    runtime: TmuxRuntime | None = None
    journal: Journal | None = None

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
        if self.double is not None:
            self.double.stop()
        if self.journal is not None:
            self.journal.close()


def _crash_point(crash_after_event: int | None, faults: Sequence[FaultSpec]) -> int | None:
    """The journal event the coordinator dies after: as asked, else the ``coordinator_crash``
    fault's trigger (four journal events per step)."""
    if crash_after_event is not None:
        return crash_after_event
    crash = next((f for f in faults if f.kind == "coordinator_crash"), None)
    return None if crash is None else crash.effective_trigger.n * 4


def _agent_config(config: AgentConfig | None, faults: Sequence[FaultSpec]) -> AgentConfig:
    cfg = config or AgentConfig()
    if any(f.kind == "missing_permission_flag" for f in faults):
        cfg = cfg.without_permission_flag()
    return cfg


def start_model_double(
    sandbox: Sandbox, tasks: Sequence[Task], faults: Sequence[FaultSpec]
) -> ModelDouble:
    """The model double on loopback, serving each task's plan and carrying the API faults."""
    broken = {f.task for f in faults if f.kind == "tests_fail"}
    plan = Plan(
        tasks=tuple(
            _plan_with_broken_tests(t)
            if t.task_id in broken or "*" in broken
            else plan_for_task(t, contents=_passing_tests(t))
            for t in tasks
        )
    )
    double = ModelDouble(plan, transcript_path=sandbox.root / "transcript.jsonl").start()
    sandbox.record_port(int(double.url.rsplit(":", 1)[1]), what="model double")
    return double


class _ApiFaultArming:
    """Arms each API fault in the model double when an attempt it applies to launches, as
    the simulation applies it to that attempt: ``attempt = "all"`` fails every attempt (the
    task escalates after its budget), ``attempt = 2`` only the second. A count of requests
    (``at_api_request``) counts from the attempt's own first request."""

    def __init__(self, double: ModelDouble, faults: Sequence[FaultSpec], tasks: Sequence[Task]):
        self._double = double
        self._faults = [f for f in faults if f.kind in API_FAULTS]
        self._by_id = {t.task_id: t for t in tasks}
        self._armed: set[tuple[str, str, int]] = set()

    def __call__(self, spec: LaunchSpec) -> None:
        task, attempt = spec.task.task_id, spec.attempt
        for fault in self._faults:
            key = (fault.fault_id, task, attempt)
            if fault.kind == "usage_limit":
                # The account's limit starts once, at the first request that meets the
                # trigger; armed per attempt, an attempt the limit ended before its Nth
                # request would leave its copy armed to start a second limit after the reset.
                key = (fault.fault_id, "*", 0)
            if key in self._armed or not fault.applies_to(task, attempt):
                continue
            self._armed.add(key)
            if fault.kind == "usage_limit":  # any of its tasks' Nth request (task "*")
                self._double.add_fault(api_fault_spec(fault, self._by_id.get(fault.task)))
                continue
            api = api_fault_spec(fault, self._by_id.get(task))
            if api.at_request is not None:
                already = self._double.task_requests(self._by_id[task].title)
                api = replace(api, at_request=already + api.at_request)
            self._double.add_fault(api)


def _armed_launch(
    arm: _ApiFaultArming, command_for: Callable[[LaunchSpec], list[str]], spec: LaunchSpec
) -> list[str]:
    arm(spec)
    return command_for(spec)


def _inject_forge_faults(sandbox: Sandbox, faults: Sequence[FaultSpec]) -> None:
    for spec in faults:
        if spec.kind == "pr_create_fails":
            assert sandbox.forge is not None
            sandbox.forge.inject(
                str(spec.params.get("error", "bad_credentials")),
                times=int(spec.params.get("times", 2)),
            )


def _on_a_plan(faults: Sequence[FaultSpec]) -> bool:
    """Whether the run's account is a subscription: a usage limit is a plan's (API-key
    accounts have rate limits and a credit balance, not a plan's session limit)."""
    return any(spec.kind == "usage_limit" for spec in faults)


def _point_agents_at(sandbox: Sandbox, double: ModelDouble, subscription: bool = False) -> None:
    sandbox.agent_env.update(double_env(double.url, subscription=subscription))


def double_env(url: str, *, subscription: bool = False) -> dict[str, str]:
    """The agents' environment: the model double at ``url`` for an API, few retries of their
    own, and the account: an API key, or a subscription's OAuth token (``subscription``).

    The account decides what a plan's usage limit (a 429 with ``anthropic-ratelimit-unified-
    status: rejected``) does to Claude Code 2.1.328 (docs/claude-code.md): on a subscription it
    exits at once with "You've hit your 5-hour limit · resets 2:16pm (UTC)"; on an API key it
    waits out a reset up to a minute away and goes on, and gives up on a later one with "API
    Error: Request rejected (429)" and no reset. A usage-limit scenario is about the first.
    """
    account = (
        {"CLAUDE_CODE_OAUTH_TOKEN": SUBSCRIPTION_TOKEN}
        if subscription
        else {"ANTHROPIC_API_KEY": API_KEY}
    )
    return {
        "ANTHROPIC_BASE_URL": url,
        **account,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(AGENT_RETRIES),
        "ORCH_SIM_RETRY_BASE_MS": "50",
        "IS_SANDBOX": "1",  # Claude Code refuses the permission flag as root without it
    }


def _dispatcher(
    sandbox: Sandbox,
    faults: Sequence[FaultSpec],
    parked: dict[str, tuple[str, int]],
    tasks: Sequence[Task],
    *,
    agent: str,
    config: AgentConfig,
    driver_factory: Callable[[AgentConfig], AgentDriver] | None,
    fallback_agents: Sequence[str] = (),
) -> Dispatcher:
    """The dispatcher launching each attempt, with the hook faults' plan and the faults keyed
    on an attempt's start (a signal, a parked permission dialog)."""
    fault_plan = write_fault_plan(
        sandbox, [f for f in faults if f.kind in HOOK_FAULTS], [t.tests for t in tasks if t.tests]
    )
    factory = driver_factory or (lambda c: driver_for(agent, c))
    return Dispatcher(
        sandbox,
        factory,
        config,
        fault_plan=fault_plan,
        start_signal=functools.partial(_start_signal, sandbox, faults),
        config_for=functools.partial(_parked_config, faults, parked),
        driver_of_type=functools.partial(_fallback_driver, factory, tuple(fallback_agents)),
    )


def _fallback_driver(
    factory: Callable[[AgentConfig], AgentDriver],
    fallback_agents: tuple[str, ...],
    agent_type: str,
    config: AgentConfig,
) -> AgentDriver | None:
    """A fallback agent of a scenario: the run's own agent on another account (its own API
    key, which the model double's usage limits tell apart and which Claude Code uses before
    an OAuth token in its environment), so that it is not limited when the primary's
    account is."""
    if agent_type not in fallback_agents:
        return None
    driver = factory(config)
    if not isinstance(driver, CliAgentDriver):
        return driver
    key = ("ANTHROPIC_API_KEY", f"{FALLBACK_API_KEY}-{fallback_agents.index(agent_type) + 1}")
    return replace(driver, environment=(*driver.environment, key))


def _open_journal(sandbox: Sandbox, crash_after_event: int | None) -> Journal:
    path = sandbox.root / "journal.jsonl"
    if crash_after_event is not None:
        return CrashingJournal(crash_after_event, path)
    return Journal(path)


def _supervisor(
    runtime: TmuxRuntime,
    journal: Journal,
    dispatcher: Dispatcher,
    config: CoordinatorConfig,
    policy: Callable[[], Policy],
    on_event: Callable[[Event], None] | None,
) -> Supervisor:
    """A supervisor whose coordinators (the first, and any replacement after a crash) share
    the runtime, the journal and the dispatcher's view of events; each gets ``policy()``."""

    def observe(event: Event) -> None:
        dispatcher.observe(event)
        if on_event is not None:
            on_event(event)

    def new_coordinator(rebuild: bool) -> Coordinator:
        coordinator = Coordinator(
            runtime, journal, policy=policy(), config=config, on_event=observe
        )
        return coordinator.recover() if rebuild else coordinator

    return Supervisor(new_coordinator)


def _operate(dispatcher: Dispatcher, action: str) -> None:
    """The operator's side of an operator action: fix what the escalation asked for."""
    if action == "fix_permission_flag":
        dispatcher.configure(replace(dispatcher.config, skip_permissions=True))


def _finish(
    sandbox: Sandbox,
    supervisor: Supervisor,
    double: ModelDouble,
    journal: Journal,
    ledger: FaultLedger,
    faults: Sequence[FaultSpec],
    parked: dict[str, tuple[str, int]],
    tasks: Sequence[Task],
) -> TmuxOutcome:
    """Read the repositories, settle the workspaces, and judge every fault in the ledger."""
    coordinator, crashes = supervisor.coordinator, supervisor.crashes
    repo = {tid: _repo_state(sandbox, s.task, s.agent) for tid, s in coordinator.tasks.items()}
    _settle_workspaces(sandbox, coordinator)
    double.stop()  # releases stalled requests, so the transcript is complete
    events = journal.events()
    _fill_ledger(ledger, sandbox, faults, double, {t.task_id: t for t in tasks}, events)
    _mark_parked(ledger, faults, parked, events)
    ledger.mark_fleet_faults(faults, events, crashes)
    return TmuxOutcome(
        events=list(events),
        outcomes={tid: s.phase for tid, s in coordinator.tasks.items()},
        agents={tid: s.agent for tid, s in coordinator.tasks.items()},
        repo=repo,
        ledger=ledger,
        transcript=list(double.transcript),
        gh_calls=sandbox.forge.calls() if sandbox.forge is not None else [],
        crashes=crashes,
        sandbox_root=sandbox.root,
    )


def _settle_workspaces(sandbox: Sandbox, coordinator: Coordinator) -> None:
    """Remove the worktrees of finished tasks (rescuing anything unpushed), keep escalated
    ones for a person, and journal any worktree nobody owns as an orphan."""
    remove_finished_workspaces(coordinator, sandbox)
    for path in find_orphans(sandbox.repo, [sandbox.worktrees], coordinator.owners()):
        coordinator.note_workspace_orphaned(str(path), path.name)


# Content for a task whose tests must fail until a fix-focused agent repairs the code: the
# implementation carries a marker the test rejects; the plan's fix_tests step rewrites it.
_BROKEN = "# BROKEN: the first implementation gets the edge case wrong\n"


def fill_template(template: str, **fields: object) -> str:
    """A generated test file: ``chaos/templates/<template>.py.tmpl`` filled with ``fields``
    (``str.format``). The templates are package data, so no library module defines a test."""
    text = resources.files("pytest_orch_recovery.chaos").joinpath(
        "templates", f"{template}.py.tmpl"
    )
    return text.read_text(encoding="utf-8").format(**fields)


def _is_test_file(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") and name.endswith(".py")


def _passing_tests(task: Task) -> dict[str, str]:
    """Test deliverables get a real test that passes once the task's files exist."""
    others = [p for p in task.deliverables if not _is_test_file(p)]
    return {
        p: fill_template("deliverables_exist", title=task.title, files=others)
        for p in task.deliverables
        if _is_test_file(p)
    }


def _plan_with_broken_tests(task: Task) -> TaskPlan:
    """The standard plan, with an implementation that fails the task's tests and a
    ``fix_tests`` step (taken only when a continuation asks to make the tests pass)."""
    if not task.tests:
        raise InvalidValue(f"task {task.task_id}: tests_fail needs a tests command")
    impls = [p for p in task.deliverables if not _is_test_file(p)]
    tests = [p for p in task.deliverables if _is_test_file(p)]
    if not impls or not tests:
        raise InvalidValue(
            f"task {task.task_id}: tests_fail needs an implementation file and "
            "a test file among the deliverables"
        )
    impl = impls[0]
    fixed = default_content(task, impl)
    contents = {impl: _BROKEN + fixed, tests[0]: fill_template("implementation_fixed", impl=impl)}
    base = plan_for_task(task, contents=contents)
    fix = Step("write", impl, "fix_tests", content=fixed)
    return replace(base, steps=(*base.steps, fix))


def write_fault_plan(
    sandbox: Sandbox,
    hook_faults: Sequence[FaultSpec],
    test_commands: Sequence[str] = (),
    *,
    name: str = "faults.json",
    context: Mapping[str, str] | None = None,
) -> Path:
    """The fault hook's plan, ``name`` in the sandbox; ``context``: one host's tmux socket,
    checkpoint folder and name when several hosts run there (each its own plan, one shared
    fault state)."""
    state_dir = sandbox.root / "fault-state"
    state_dir.mkdir(exist_ok=True)
    path = sandbox.root / name
    atomic.write_json(
        path,
        {
            "faults": [f.to_json() for f in hook_faults if f.effective_trigger.event != "start"],
            "state_dir": str(state_dir),
            "test_commands": sorted(set(test_commands)),  # a Bash call of one is the test event
            "context": {
                "tmux_socket": sandbox.tmux_socket,
                "checkpoint_dir": str(sandbox.checkpoints),
                **(context or {}),
            },
        },
    )
    return path


_START_SIGNALS = {"kill": "KILL", "terminate": "TERM", "sigint": "INT", "sigint_keys": "INT"}


def _start_signal(sandbox: Sandbox, faults: Sequence[FaultSpec], spec: LaunchSpec) -> str | None:
    """The signal a ``start``-keyed fault kills this attempt with, if any (and ledger it)."""
    for fault in faults:
        if (
            fault.kind in _START_SIGNALS
            and fault.effective_trigger.event == "start"
            and fault.applies_to(spec.task.task_id, spec.attempt)
        ):
            _append_fired(sandbox, fault, spec.task.task_id, spec.attempt, "start")
            return _START_SIGNALS[fault.kind]
    return None


def _first_run_done(sandbox: Sandbox, dispatcher: Dispatcher, spec: LaunchSpec) -> list[str]:
    """The dispatcher's command, after leaving the sandbox HOME as a person's is once they ran
    the interactive CLI in this worktree (onboarding, API key, folder trust answered)."""
    argv = dispatcher.command_for(spec)
    env = sandbox.env(spec.agent)
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or env["HOME"])
    accept_claude_code_first_run(
        config_dir, sandbox.workspace(spec.agent), env.get("ANTHROPIC_API_KEY")
    )
    return argv


def _parked_config(
    faults: Sequence[FaultSpec],
    parked: dict[str, tuple[str, int]],
    spec: LaunchSpec,
    current: AgentConfig,
) -> AgentConfig | None:
    """``permission_prompt``: the first attempt the fault applies to is launched as a person
    would launch it (interactive, no ``-p``) and without the permission flag, so the agent
    stops at a permission dialog and waits for a key that never comes. Keyed on tool calls
    (the default) the attempt runs in ``acceptEdits`` mode, so its file writes go through and
    it parks at its first shell command, the commit ("Do you want to proceed?"); keyed on
    ``start`` it parks at its very first call, the first Write ("Do you want to create
    ...?"). Later attempts get the dispatcher's configuration."""
    for fault in faults:
        if fault.kind != "permission_prompt" or fault.fault_id in parked:
            continue
        if fault.applies_to(spec.task.task_id, spec.attempt):
            parked[fault.fault_id] = (spec.task.task_id, spec.attempt)
            # Named explicitly: Claude Code 2.1.328 starts in "auto" mode when none is given.
            mode = "default" if fault.effective_trigger.event == "start" else "acceptEdits"
            extra = (*current.extra_args, "--permission-mode", mode)
            return replace(current, interactive=True, skip_permissions=False, extra_args=extra)
    return None


def _mark_parked(
    ledger: FaultLedger,
    faults: Sequence[FaultSpec],
    parked: dict[str, tuple[str, int]],
    events: Sequence[Event],
) -> None:
    """A parked attempt is exercised when the runtime saw its permission dialog on screen and
    ended it, or it timed out with the dialog as its last words; otherwise it is not."""
    by_fault = {f.fault_id: f for f in faults}
    for fault_id, (task_id, attempt) in parked.items():
        spec = by_fault[fault_id]
        exited = next(
            (
                e.payload
                for e in events
                if isinstance(e.payload, AttemptExited)
                and e.task_id == task_id
                and e.attempt == attempt
            ),
            None,
        )
        if exited is None:
            continue
        exit_info = exited.exit or ExitInfo(None)
        if exit_info.screen is not None and exit_info.screen.kind == "dialog":
            ledger.mark(
                spec,
                FaultStatus.EXERCISED,
                task=task_id,
                attempt=attempt,
                detail=f"the runtime saw the permission dialog: {exit_info.screen.detail}",
            )
            continue
        timed_out = exit_info.timed_out
        lines = match_lines(exited.output_tail, "pane")
        on_screen = bool(lines) and lines[-1].pattern.reason is Reason.PERMISSION
        if timed_out and on_screen:
            ledger.mark(
                spec,
                FaultStatus.EXERCISED,
                task=task_id,
                attempt=attempt,
                detail=f"timed out at the permission dialog: {lines[-1].text}",
            )
        else:
            ledger.mark(
                spec,
                FaultStatus.INEFFECTIVE,
                task=task_id,
                attempt=attempt,
                detail="the interactive attempt "
                + (
                    "timed out without the dialog on screen"
                    if timed_out
                    else "ended before its timeout"
                ),
            )


def _stale_locks_at_start(
    sandbox: Sandbox, coordinator: Coordinator, faults: Sequence[FaultSpec]
) -> None:
    """``start``-keyed stale locks: a lock left by a git that died before the agent began."""
    for spec in faults:
        if spec.kind != "stale_index_lock" or spec.effective_trigger.event != "start":
            continue
        for state in coordinator.tasks.values():
            if spec.task not in ("*", state.task.task_id):
                continue
            worktree = sandbox.add_workspace(state.agent)
            git_dir = sandbox.repo / ".git" / "worktrees" / worktree.name
            (git_dir / "index.lock").touch()
            _append_fired(sandbox, spec, state.task.task_id, 1, "start")


def _append_fired(
    sandbox: Sandbox, spec: FaultSpec, task_id: str, attempt: int, event: str
) -> None:
    state_dir = sandbox.root / "fault-state"
    state_dir.mkdir(exist_ok=True)
    with open(state_dir / "fired.jsonl", "a") as log:
        log.write(
            json.dumps(
                {
                    "id": spec.fault_id,
                    "kind": spec.kind,
                    "task": task_id,
                    "attempt": attempt,
                    "event": event,
                }
            )
            + "\n"
        )


def _mark_usage_limit(
    ledger: FaultLedger,
    spec: FaultSpec,
    double: ModelDouble,
    by_id: dict[str, Task],
    events: Sequence[Event],
) -> None:
    """A usage limit takes effect on every attempt the account refused, not only the one
    whose request started it: each refused request is matched to its task by title and to
    the attempt of that task running when the double answered it."""
    by_title = {t.title: t.task_id for t in by_id.values()}
    launches: dict[str, list[tuple[float, int]]] = {}
    for event in events:
        if isinstance(event.payload, AttemptLaunched) and event.task_id and event.attempt:
            launches.setdefault(event.task_id, []).append((event.time, event.attempt))
    for entry in double.transcript:
        task_id = by_title.get(str(entry.get("task")))
        if entry.get("usage_limit") is None or task_id is None:
            continue
        running = [n for at, n in launches.get(task_id, ()) if at <= float(entry["time"])]
        if running:
            ledger.mark(
                spec,
                FaultStatus.EXERCISED,
                task=task_id,
                attempt=running[-1],
                detail="request refused by the account's usage limit",
            )


def _fill_ledger(
    ledger: FaultLedger,
    sandbox: Sandbox,
    faults: Sequence[FaultSpec],
    double: ModelDouble,
    by_id: dict[str, Task],
    events: Sequence[Event],
) -> None:
    by_fault = {f.fault_id: f for f in faults}
    fired = sandbox.root / "fault-state" / "fired.jsonl"
    if fired.exists():
        for line in fired.read_text().splitlines():
            record = json.loads(line)
            spec = by_fault.get(record["id"])
            if spec is not None:
                ledger.mark(
                    spec,
                    FaultStatus.EXERCISED,
                    task=record["task"],
                    attempt=int(record["attempt"]),
                    detail=f"at {record['event']}",
                )
    hits = [t for t in double.transcript if t.get("fault")]
    for spec in faults:
        if spec.kind == "usage_limit":
            _mark_usage_limit(ledger, spec, double, by_id, events)
        elif spec.kind in API_FAULTS:
            title = by_id[spec.task].title if spec.task in by_id else None
            mine = [t for t in hits if title is None or t.get("task") == title]
            if mine:
                ledger.mark(
                    spec,
                    FaultStatus.EXERCISED,
                    task=spec.task,
                    attempt=1,
                    detail=f"{len(mine)} API error replies",
                )
        elif spec.kind == "tests_fail":
            for event in events:
                payload = event.payload
                if (
                    isinstance(payload, FailureAttributed)
                    and spec.task in ("*", event.task_id)
                    and payload.partial is not None
                    and payload.partial.tests_passed is False
                ):
                    ledger.mark(
                        spec,
                        FaultStatus.EXERCISED,
                        task=str(event.task_id),
                        attempt=int(event.attempt or 0),
                        detail="the task's tests failed",
                    )
        elif spec.kind == "pr_create_fails" and sandbox.forge is not None:
            failed = [c for c in sandbox.forge.calls() if c.get("fault")]
            if failed:
                ledger.mark(
                    spec,
                    FaultStatus.EXERCISED,
                    task=spec.task,
                    attempt=1,
                    detail=f"{len(failed)} gh pr create failures",
                )


def _repo_state(sandbox: Sandbox, task: Task, agent: str) -> RepoState:
    worktree = sandbox.workspace(agent)
    files = tuple(p for p in task.deliverables if (worktree / p).is_file())
    try:
        commits = rev_count(sandbox.origin, "main", agent)
    except Exception:
        commits = 0  # the branch never reached origin
    pr = sandbox.forge.pull_request_for(agent) if sandbox.forge is not None else None
    # Real runs count what reached origin: commits on origin/<branch> ahead of main.
    return RepoState(
        files=files, commits=commits, pushed=commits > 0, pr=None if pr is None else pr.number
    )


def _template_can_run(scenario: Scenario, agent: str) -> None:
    """A command template writes its own command line, so what this tier injects through the
    dispatcher's configuration cannot reach it: the permission flag left out, an interactive
    launch, and a fallback agent's second account (an API key in the CLI driver's
    environment). Such a scenario is skipped with the reason, never passed untested."""
    flagged = sorted({f.kind for f in scenario.faults} & DISPATCHER_FLAG_FAULTS)
    if flagged:
        raise TierUnsupported(
            f"fault(s) {', '.join(flagged)} act through the dispatcher's permission flag "
            f"and launch mode, which the command template {agent!r} writes itself"
        )
    if scenario.fallback_agents:
        raise TierUnsupported(
            "its fallback agents run on a second account set in the built-in agents' "
            f"environment, which the command template {agent!r} does not take"
        )


def _fleet_arguments(fleet: ProductionSettings) -> dict[str, Any]:
    """What :func:`run_tmux` takes from a fleet file beyond the scenario's settings."""
    return {
        "config": AgentConfig(skip_permissions=fleet.skip_permissions),
        "env_allow": fleet.env_allow,
        "env": fleet.env,
    }


class TmuxTier:
    """The campaign's ``tmux`` tier: one scenario, real processes, in a sandbox under the shared
    sandbox base directory, on one host. Host faults need several: the campaign's tmux tier
    (:class:`~pytest_orch_recovery.chaos.tiers.tmuxhosts.HostsTmuxTier`) runs those."""

    name = "tmux"

    def run(
        self, scenario: Scenario, *, seed: int, agent: str, fleet: ProductionSettings | None = None
    ) -> ScenarioRun:
        hosts = sorted({f.kind for f in scenario.faults} & HOST_FAULTS)
        if hosts:
            raise TierUnsupported(
                f"fault(s) {', '.join(hosts)} take a host away: they run over several real "
                "supervisors (chaos.tiers.tmuxhosts)"
            )
        blocked = sorted({f.kind for f in scenario.faults} & UNSUPPORTED)
        if blocked:
            raise TierUnsupported(
                f"fault(s) {', '.join(blocked)} cannot be injected in real tmux runs yet; "
                "this scenario runs on --orch-tier sim"
            )
        if agent not in BUILTIN_AGENTS:
            _template_can_run(scenario, agent)
        tasks = [t.task for t in scenario.tasks]
        agents = [t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks]
        timeout = scenario.attempt_timeout or SCENARIO_ATTEMPT_TIMEOUT.get(agent, 300.0)
        # The shared sandbox base, not a private temporary directory: the sandbox tears itself
        # down on return, exception, ^C and SIGTERM, and when its owner is SIGKILLed the next
        # run's Sandbox.create reaps it from there (a private directory would never be seen).
        out = run_tmux(
            tasks,
            scenario.faults,
            agent=agent,
            agents=agents,
            seed=seed,
            operator_actions=scenario.operator_actions,
            crash_after_event=scenario.crash_after_event,
            base_dir=default_base_dir(),
            attempt_timeout=timeout,
            stall_window=scenario.stall_window,
            policy=scenario.policy,
            max_live=scenario.max_live_agents,
            budget=scenario.budget(),
            fallback_agents=scenario.fallback_agents,
            **({} if fleet is None else _fleet_arguments(fleet)),
        )
        return ScenarioRun(
            scenario=scenario.name,
            events=out.events,
            ledger=out.ledger.entries,
            outcomes=task_outcomes(out.events),
            repos=out.repo,
            orphans=sorted(set(journal_orphans(out.events)) | set(out.leftovers)),
            tier=self.name,
            seed=seed,
            agent=agent,
            crashes=out.crashes,
        )
