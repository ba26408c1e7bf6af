"""Recovery policy: a declarative table from the situation after a failure to a decision.

The table (:data:`DEFAULT_RULES`) is read top to bottom and the first rule whose condition holds
decides. Each rule names its strategy, the reason in words a person can act on, and the lesson
(the recovery design's "Prevention" for its pattern). Users override the policy by passing
their own rule list, budgets or breaker settings to :class:`Policy`; :func:`describe_rules`
prints the table.

Fleet-wide protection lives in :class:`CircuitBreaker`: when the same reason fails several
distinct agents within a window, it opens for that reason and every further failure with it is
escalated under one systematic cause instead of being restarted into the same wall. It stays
open until an operator closes it (``Coordinator.release``).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pytest_orch_recovery.engine.model import (
    Attribution,
    Decision,
    PartialWork,
    Reason,
    Strategy,
    Task,
    WorkItem,
    WorkKind,
    full_plan,
)

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "PastAttempt",
    "Policy",
    "PolicySettings",
    "Rule",
    "Situation",
    "describe_rules",
]

# Reasons whose repetition says nothing about the environment: the breaker ignores them.
TASK_SPECIFIC_REASONS = frozenset({Reason.TEST_FAILURE, Reason.INCOMPLETE})

# Runtime remedies a rule may order before the next attempt.
REMEDY_STALE_INDEX_LOCK = "remove_stale_index_lock"

# Reasons that restarting with the same configuration cannot fix.
CONFIGURATION_REASONS = frozenset({Reason.PERMISSION})
# Below this confidence an attribution is a hint (a cue word, not a known message): the
# policy does not act on it as if it were certain.
WEAK_CONFIDENCE = 0.5


@dataclass(frozen=True)
class PastAttempt:
    """What the policy needs to know about an earlier attempt of the same task."""

    number: int
    agent_type: str
    reason: Reason | None  # None when it succeeded
    strategy: Strategy | None  # how it was launched; None for the first attempt
    usage_limited: bool = False  # it ended on the account's usage limit, not on the task
    host_lost: bool = False  # its host was lost (lease ran out): no verdict on the task


@dataclass(frozen=True)
class Situation:
    """Everything a rule may look at."""

    task: Task
    agent: str
    agent_type: str  # type of the attempt that just failed
    attribution: Attribution
    partial: PartialWork
    missing: tuple[WorkItem, ...]
    history: tuple[PastAttempt, ...]  # earlier attempts incl. the one that just failed
    breaker_open: bool  # the circuit breaker is open for this reason
    max_attempts: int
    now: float = 0.0  # the coordinator's clock
    # The usage limit of this agent type's account in force: launches wait until then.
    limited_until: float | None = None
    # The next agent of the fallback chain whose account is not limited, if any.
    fallback_agent: str | None = None
    usage_limit_horizon: float = math.inf  # a reset further away than this escalates
    free_limit_waits: int = 0  # usage-limited attempts not charged to the budget

    @property
    def reason(self) -> Reason:
        return self.attribution.reason

    @property
    def attempts(self) -> int:
        return len(self.history)

    @property
    def budget_spent(self) -> int:
        """Attempts charged to the budget: an attempt ended by the account's usage limit says
        nothing about the task, so the first ``free_limit_waits`` of them are free."""
        limited = sum(1 for a in self.history if a.usage_limited)
        lost = sum(1 for a in self.history if a.host_lost)
        return self.attempts - min(limited, self.free_limit_waits) - lost

    @property
    def host_lost(self) -> bool:
        """The attempt's host was lost: another host took the task over (its lease ran out)."""
        return bool(self.history) and self.history[-1].host_lost

    @property
    def usage_limited(self) -> bool:
        """The attempt ended on a usage limit whose reset is known."""
        return (
            self.reason is Reason.API_ERROR
            and self.attribution.usage_limit
            and self.attribution.resets_at is not None
        )

    @property
    def reset_wait(self) -> float:
        """Seconds until the account's limit lifts (the condition's end, jitter included)."""
        resets_at = self.attribution.resets_at
        until = self.limited_until if self.limited_until is not None else resets_at
        return 0.0 if until is None else max(0.0, until - self.now)

    @property
    def failed_agent_types(self) -> frozenset[str]:
        return frozenset(a.agent_type for a in self.history if a.reason is not None)

    @property
    def same_reason_streak(self) -> int:
        """How many of the latest attempts in a row failed with this reason."""
        streak = 0
        for past in reversed(self.history):
            if past.reason is not self.reason:
                break
            streak += 1
        return streak


@dataclass(frozen=True)
class Rule:
    """One row of the policy table."""

    name: str
    when: Callable[[Situation], bool]
    strategy: Strategy
    why: Callable[[Situation], str]
    lesson: str = ""
    # Work the next attempt must do; default: whatever analysis says is missing.
    work: Callable[[Situation], tuple[WorkItem, ...]] | None = None
    backoff: bool = False  # wait with exponential backoff and jitter before acting
    systematic: bool = False  # the escalation names a fleet-wide cause
    remedies: tuple[str, ...] = ()  # runtime actions before the next attempt (see runtime)
    # A wait the situation dictates (a usage limit's reset), instead of backoff.
    wait: Callable[[Situation], float] | None = None
    # The agent a REASSIGN goes to, instead of the fix agent of the failed one.
    agent: Callable[[Situation], str | None] | None = None
    # The systematic cause an escalation names, instead of the reason's.
    cause: Callable[[Situation], str] | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, honouring Retry-After when the API gave one."""

    base: float = 2.0
    factor: float = 2.0
    cap: float = 120.0

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        >>> b = Backoff(base=2.0, cap=60.0)
        >>> all(0 <= b.delay(n, random.Random(n)) <= min(60.0, 2.0 * 2 ** (n - 1))
        ...     for n in range(1, 10))
        True
        >>> b.delay(1, random.Random(0), retry_after=30.0) >= 30.0
        True
        """
        exponent = min(max(0, retry - 1), 64)  # past 2**64 the cap has long won; no overflow
        ceiling = min(self.cap, self.base * self.factor**exponent)
        jittered = rng.uniform(0.0, ceiling)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            return max(retry_after, jittered)
        return jittered


@dataclass
class CircuitBreaker:
    """Opens for a reason when ``threshold`` distinct agents fail with it within ``window``."""

    threshold: int = 3
    window: float = 600.0
    _recent: dict[Reason, deque[tuple[float, str]]] = field(default_factory=dict)
    _open: dict[Reason, str] = field(default_factory=dict)  # reason -> cause text
    # reason -> agent -> failures of it still in the window: distinct agents in O(1).
    _agents: dict[Reason, dict[str, int]] = field(default_factory=dict)

    def record(self, reason: Reason, agent: str, now: float) -> bool:
        """Note a failure; return True when the breaker is (now) open for ``reason``."""
        if reason in TASK_SPECIFIC_REASONS:
            return False
        if reason in self._open:
            return True
        seen = self._recent.setdefault(reason, deque())
        agents = self._agents.setdefault(reason, {})
        seen.append((now, agent))
        agents[agent] = agents.get(agent, 0) + 1
        while seen and seen[0][0] < now - self.window:
            _, gone = seen.popleft()
            agents[gone] -= 1
            if not agents[gone]:
                del agents[gone]
        if len(agents) >= self.threshold:
            self._open[reason] = systematic_cause(reason)
            return True
        return False

    def is_open(self, reason: Reason) -> bool:
        return reason in self._open

    def cause(self, reason: Reason) -> str | None:
        return self._open.get(reason)

    def open_causes(self) -> dict[Reason, str]:
        return dict(self._open)

    def close(self, reason: Reason) -> None:
        self._open.pop(reason, None)
        self._recent.pop(reason, None)
        self._agents.pop(reason, None)

    def recorded(
        self,
    ) -> tuple[
        tuple[tuple[Reason, str], ...], tuple[tuple[Reason, tuple[tuple[float, str], ...]], ...]
    ]:
        """What it holds, as data: the open reasons with their causes, and each reason's
        failures still in the window (:meth:`restore` takes them back)."""
        recent = tuple((reason, tuple(seen)) for reason, seen in self._recent.items())
        return tuple(self._open.items()), recent

    def restore(
        self,
        open_causes: Iterable[tuple[Reason, str]],
        recent: Iterable[tuple[Reason, Iterable[tuple[float, str]]]],
    ) -> None:
        """Hold exactly what :meth:`recorded` gave (the settings stay this breaker's)."""
        self._open = dict(open_causes)
        self._recent = {reason: deque(seen) for reason, seen in recent}
        self._agents = {}
        for reason, seen in self._recent.items():
            agents = self._agents[reason] = {}
            for _, agent in seen:
                agents[agent] = agents.get(agent, 0) + 1


_SYSTEMATIC_HINTS: dict[Reason, str] = {
    Reason.PERMISSION: "agents are launched without permission to write "
    "(check the dispatcher's --dangerously-skip-permissions flag)",
    Reason.API_ERROR: "the model API is failing for the whole fleet (outage, rate limit or key)",
    Reason.GITHUB_ERROR: "GitHub access is failing for the whole fleet (token or network)",
    Reason.GIT_ERROR: "git operations fail for the whole fleet (repository, lock or remote)",
    Reason.SIGINT: "several agents were interrupted: something is sending SIGINT "
    "(tmux input, a timeout mechanism sending the wrong signal)",
    Reason.TIMEOUT: "several agents timed out: the limit may be too low or a dependency hangs",
    Reason.KILLED: "several agents were killed: resource pressure (OOM) or a supervisor",
}


def systematic_cause(reason: Reason) -> str:
    """One stable text per reason, so every escalation of the same wall names one cause."""
    hint = _SYSTEMATIC_HINTS.get(reason, f"{reason} across several agents")
    return f"systematic {reason}: {hint}"


# --------------------------------------------------------------------------- the table


def _pr_only(s: Situation) -> bool:
    kinds = {w.kind for w in s.missing}
    return (
        s.task.wants_pr
        and s.partial.code_complete
        and WorkKind.OPEN_PR in kinds
        and kinds <= {WorkKind.OPEN_PR, WorkKind.PUSH, WorkKind.COMMIT}
    )


def _partial_files(s: Situation) -> bool:
    return bool(s.partial.deliverables_present) and bool(s.partial.deliverables_missing)


def _fix_work(s: Situation) -> tuple[WorkItem, ...]:
    rest = [w for w in s.missing if w.kind not in (WorkKind.TEST, WorkKind.FIX_TESTS)]
    return (WorkItem(WorkKind.FIX_TESTS), *rest)


def _resumable(s: Situation) -> bool:
    return s.partial.usable_checkpoint or s.partial.any_progress


def _evidence_mentions(s: Situation, needle: str) -> bool:
    return any(needle in e.detail for e in s.attribution.evidence)


def _reset_text(s: Situation) -> str:
    resets_at = s.attribution.resets_at
    return "unknown" if resets_at is None else _utc(resets_at)


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        "attempt_budget_spent",
        lambda s: s.budget_spent >= s.max_attempts,
        Strategy.ESCALATE,
        lambda s: (
            f"{s.budget_spent} attempts spent (budget {s.max_attempts}); last failure "
            f"{s.reason}. A person should look at the task and the workspace."
        ),
        lesson="Budget attempts per task so a hopeless task cannot loop forever.",
    ),
    Rule(
        "usage_limit_fallback",
        lambda s: s.usage_limited and s.fallback_agent is not None,
        Strategy.REASSIGN,
        lambda s: (
            f"the {s.agent_type} account hit its usage limit until {_reset_text(s)}; "
            f"handing the task to the fallback agent {s.fallback_agent} with what is left."
        ),
        lesson="Keep a fallback agent on another account for when a plan runs out.",
        agent=lambda s: s.fallback_agent,
    ),
    Rule(
        "usage_limit_beyond_horizon",
        lambda s: s.usage_limited and s.reset_wait > s.usage_limit_horizon,
        Strategy.ESCALATE,
        lambda s: (
            f"the {s.agent_type} account hit its usage limit; it resets at {_reset_text(s)}, "
            f"{s.reset_wait / 3600:.1f} h away, beyond the horizon of "
            f"{s.usage_limit_horizon / 3600:.1f} h. Add a fallback agent or raise the limit, "
            "then release the task."
        ),
        lesson="List fallback_agents for a fleet whose account can run out.",
        systematic=True,
        cause=lambda s: (
            f"usage limit of the {s.agent_type} account until {_reset_text(s)} (beyond the horizon)"
        ),
    ),
    Rule(
        "usage_limit_wait",
        lambda s: s.usage_limited,
        Strategy.RESUME,
        lambda s: (
            f"the {s.agent_type} account hit its usage limit; every task on it waits for the "
            f"reset at {_reset_text(s)} ({s.reset_wait:.0f}s), no attempt charged, then resumes."
        ),
        lesson="A usage limit is the account's, not the task's: wait for its reset.",
        wait=lambda s: s.reset_wait,
    ),
    Rule(
        # The attempt's host died or was cut off past its lease; this host took the task
        # over. The machine failed, not the task nor the agent: the same agent type carries
        # on here from what reached the origin, told what is left.
        "host_lost",
        lambda s: s.host_lost,
        Strategy.REASSIGN,
        lambda s: (
            f"attempt {s.attempts} was lost with its host (its lease ran out); reassigned "
            "to this host, "
            + ("resuming with what is left." if _resumable(s) else "with the whole task.")
        ),
        lesson="Push work in progress to the origin at each checkpoint: a host loss then "
        "costs only the work since.",
        agent=lambda s: s.agent_type,
    ),
    Rule(
        "circuit_breaker_open",
        lambda s: s.breaker_open,
        Strategy.ESCALATE,
        lambda s: (
            f"{s.reason} is failing agents fleet-wide; restarting would hit the same "
            "wall. Fix the common cause, then release the held tasks."
        ),
        lesson="Detect systematic causes across agents and stop restarting into them.",
        systematic=True,
    ),
    Rule(
        # A permission verdict read from a weak cue (a "denied" in an uncatalogued line)
        # does not yet justify holding the task for a person: try once more, and escalate
        # when the same reason comes back.
        "weak_permission_cue",
        lambda s: (
            s.reason in CONFIGURATION_REASONS
            and s.attribution.confidence < WEAK_CONFIDENCE
            and s.same_reason_streak < 2
        ),
        Strategy.RESTART,
        lambda s: (
            f"{s.reason} read from a weak cue (confidence {s.attribution.confidence:.2f}: "
            + (s.attribution.evidence[0].detail if s.attribution.evidence else "no evidence")
            + "); retrying once before escalating to a person."
        ),
        lesson="Let a low-confidence attribution cost one retry, not an escalation.",
        backoff=True,
    ),
    Rule(
        "missing_permissions",
        lambda s: s.reason in CONFIGURATION_REASONS,
        Strategy.ESCALATE,
        lambda s: (
            "the agent was denied the tools it needs (permission_denials / permission "
            "prompt). The launch command probably lacks --dangerously-skip-permissions: fix the "
            "dispatcher's configuration, then release the task."
        ),
        lesson="Launch headless agents with the permission flag; verify the dispatcher's "
        "command line in CI.",
        systematic=True,
    ),
    Rule(
        "poison_task",
        lambda s: len(s.failed_agent_types) >= 2 and s.reason not in (Reason.API_ERROR,),
        Strategy.ESCALATE,
        lambda s: (
            f"the task failed with {len(s.failed_agent_types)} agent types "
            f"({', '.join(sorted(s.failed_agent_types))}); the task itself is likely at fault."
        ),
        lesson="A task that defeats two kinds of agent needs its spec fixed, not more agents.",
    ),
    Rule(
        "corrupt_checkpoint",
        lambda s: s.partial.checkpoint_problem is not None and s.reason is not Reason.API_ERROR,
        Strategy.RESTART,
        lambda s: (
            f"the checkpoint cannot be trusted ({s.partial.checkpoint_problem}); "
            "restarting with the full task rather than resuming from bad state."
        ),
        lesson="Write checkpoints atomically (temp file, fsync, rename).",
        work=lambda s: s.missing,
    ),
    Rule(
        "tests_fail_after_implementation",
        lambda s: s.reason is Reason.TEST_FAILURE and s.partial.code_complete,
        Strategy.REASSIGN,
        lambda s: (
            "the implementation is complete but the tests fail; handing it to a "
            "fix-focused agent with the test output."
        ),
        lesson="Run tests incrementally while implementing.",
        work=_fix_work,
    ),
    Rule(
        "pr_creation_failed",
        lambda s: s.reason in (Reason.GITHUB_ERROR, Reason.INCOMPLETE) and _pr_only(s),
        Strategy.RESUME,
        lambda s: (
            "the code is complete but the PR was not created; resuming only to "
            + ", ".join(w.describe() for w in s.missing)
            + "."
        ),
        lesson="Verify the GitHub token and branch state before the agent starts.",
        backoff=True,
    ),
    Rule(
        "api_error_retry",
        lambda s: s.reason is Reason.API_ERROR,
        Strategy.RESUME,
        lambda s: (
            "the model API failed"
            + (f" (HTTP {s.attribution.api_status})" if s.attribution.api_status else "")
            + "; retrying after backoff"
            + (
                f", honouring Retry-After {s.attribution.retry_after:g}s"
                if s.attribution.retry_after is not None
                else ""
            )
            + "."
        ),
        lesson="Retry API errors with exponential backoff and jitter.",
        backoff=True,
    ),
    Rule(
        # A Ctrl-C arriving through the terminal while a person's tmux client is attached to
        # the agent's session: someone at the pane stopped it, perhaps on purpose. Restarting
        # or resuming behind their back would undo their decision, so the task waits for the
        # operator (releasing it resumes the work). A tty Ctrl-C with no client attached came
        # from a program typing into the pane (tmux send-keys) and is recovered as below.
        "sigint_typed_by_person",
        lambda s: (
            s.reason is Reason.SIGINT
            and s.attribution.sender is not None
            and s.attribution.sender.typed_by_person
        ),
        Strategy.ESCALATE,
        lambda s: (
            "a person typed Ctrl-C in the agent's pane (tty SIGINT with "
            f"{s.attribution.sender.clients if s.attribution.sender else '?'} client(s) attached); "
            "not retried behind their back. Release the task to resume it."
        ),
        lesson="Ask before stopping an agent by hand; release it when the interruption was a "
        "mistake.",
    ),
    Rule(
        "sigint_with_checkpoint",
        lambda s: s.reason is Reason.SIGINT and s.partial.usable_checkpoint,
        Strategy.RESUME,
        lambda s: (
            "interrupted (SIGINT) after useful progress recorded in the checkpoint; "
            "resuming with what is left."
        ),
        lesson="Keep the dispatcher's keystrokes out of agent panes; checkpoint after each file.",
    ),
    Rule(
        "sigint_with_partial_work",
        lambda s: s.reason is Reason.SIGINT and s.partial.any_progress,
        Strategy.RESUME,
        lambda s: (
            "interrupted (SIGINT) without a checkpoint, but the workspace holds "
            "progress; resuming with what is left."
        ),
        lesson="Keep the dispatcher's keystrokes out of agent panes; checkpoint after each file.",
    ),
    Rule(
        "sigint_without_checkpoint",
        lambda s: s.reason is Reason.SIGINT,
        Strategy.RESTART,
        lambda s: "interrupted (SIGINT) with nothing usable; restarting the full task.",
        lesson="Keep the dispatcher's keystrokes out of agent panes.",
    ),
    Rule(
        "stale_git_lock",
        lambda s: s.reason is Reason.GIT_ERROR and _evidence_mentions(s, "index.lock"),
        Strategy.RESUME,
        lambda s: (
            "git found a stale index.lock; removing it (no git process holds it) and resuming."
        ),
        lesson="Never kill agents in the middle of git operations; clear stale locks.",
        backoff=True,
        remedies=(REMEDY_STALE_INDEX_LOCK,),
    ),
    Rule(
        "partial_files",
        _partial_files,
        Strategy.RESUME,
        lambda s: (
            f"{len(s.partial.deliverables_present)} of {len(s.task.deliverables)} files "
            "exist; resuming with a continuation prompt for the rest."
        ),
        lesson="Atomic file operations; commit after each file.",
    ),
    Rule(
        "progress_worth_keeping",
        _resumable,
        Strategy.RESUME,
        lambda s: f"failed ({s.reason}) after some progress; resuming with what is left.",
        lesson="Checkpoint after every tool call so work survives the agent.",
        backoff=True,
    ),
    Rule(
        "nothing_to_keep",
        lambda s: True,
        Strategy.RESTART,
        lambda s: f"failed ({s.reason}) with nothing worth keeping; restarting the full task.",
        lesson="Make failures visible early; a restart costs the whole task again.",
        backoff=True,
    ),
)


@dataclass
class Policy:
    """Turns a :class:`Situation` into a :class:`Decision` using a rule table."""

    rules: Sequence[Rule] = DEFAULT_RULES
    max_attempts: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    # Reassign target per agent type; anything not listed goes to "<type>-fixer".
    fix_agent_types: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    # A usage limit whose reset is further away than this escalates instead of waiting.
    usage_limit_horizon: float = 8 * 3600.0
    # At most this many seconds of jitter after a reset, so a fleet does not stampede it.
    usage_limit_jitter: float = 60.0
    # Usage-limited attempts per task not charged to its budget (past them a limit that never
    # lifts costs attempts like any failure, and the budget ends it).
    free_limit_waits: int = 3

    def fix_agent_for(self, agent_type: str) -> str:
        return self.fix_agent_types.get(agent_type, f"{agent_type}-fixer")

    def decide(self, s: Situation) -> Decision:
        for rule in self.rules:
            if rule.when(s):
                return self._decision(rule, s)
        raise LookupError("no policy rule matched; the table needs a catch-all last rule")

    def _decision(self, rule: Rule, s: Situation) -> Decision:
        work = rule.work(s) if rule.work is not None else s.missing
        delay = 0.0
        if rule.wait is not None:
            delay = rule.wait(s)
        elif rule.backoff:
            # The jitter is drawn for this task's attempt, not from one stream shared by every
            # decision: a coordinator rebuilt from the journal after a crash (a new Policy,
            # same seed) then waits exactly as the one that died would have. With one shared
            # stream it drew different delays, the fleet's failures interleaved differently
            # and a task could hit the circuit breaker it had escaped (found by the property
            # test_a_coordinator_crash_anywhere_changes_no_outcome).
            rng = random.Random(f"{self.seed}:{s.task.task_id}:{s.attempts}")
            delay = self.backoff.delay(s.same_reason_streak, rng, s.attribution.retry_after)
        agent_type = s.agent_type
        if rule.strategy is Strategy.REASSIGN:
            chosen = rule.agent(s) if rule.agent is not None else None
            agent_type = chosen or self.fix_agent_for(s.agent_type)
        elif rule.strategy is Strategy.RESTART:
            work = _restart_work(s)
        resume_session = None
        if rule.strategy is Strategy.RESUME and s.partial.checkpoint is not None:
            resume_session = s.partial.checkpoint.session_id
        cause = None
        if rule.strategy is Strategy.ESCALATE and rule.cause is not None:
            cause = rule.cause(s)
        elif rule.strategy is Strategy.ESCALATE and rule.systematic:
            cause = self.breaker.cause(s.reason) or systematic_cause(s.reason)
        return Decision(
            strategy=rule.strategy,
            why=rule.why(s),
            rule=rule.name,
            delay=delay,
            agent_type=agent_type,
            work=() if rule.strategy is Strategy.ESCALATE else work,
            resume_session=resume_session,
            systematic_cause=cause,
            lesson=rule.lesson,
            remedies=rule.remedies,
        )


def _restart_work(s: Situation) -> tuple[WorkItem, ...]:
    # A restart is a fresh agent told the whole task, whatever the workspace holds.
    return full_plan(s.task)


def describe_rules(rules: Sequence[Rule] = DEFAULT_RULES) -> str:
    """The table as text, one rule a line, in the order they are tried."""
    width = max(len(r.name) for r in rules)
    return "\n".join(
        f"{i:>2}. {r.name:<{width}}  -> {r.strategy}"
        + ("  (backoff)" if r.backoff else "")
        + ("  (systematic)" if r.systematic else "")
        for i, r in enumerate(rules, 1)
    )


POLICY_SETTING_KEYS = frozenset(
    {
        "backoff_base",
        "backoff_cap",
        "breaker_threshold",
        "breaker_window",
        "usage_limit_horizon",
    }
)


@dataclass(frozen=True)
class PolicySettings:
    """The policy's tunable numbers: a fleet file's ``[policy]`` table, and a scenario's, so a
    campaign can prove the policy exactly as production configures it. None keeps the
    default."""

    backoff_base: float | None = None
    backoff_cap: float | None = None
    breaker_threshold: int | None = None
    breaker_window: float | None = None
    usage_limit_horizon: float | None = None

    def policy(self, *, max_attempts: int = 4, seed: int = 0) -> Policy:
        """A new :class:`Policy` with these settings (each call: a fresh breaker and rng).

        >>> PolicySettings(backoff_base=0.5).policy(seed=3).backoff.base
        0.5
        >>> PolicySettings().policy().breaker.threshold == CircuitBreaker().threshold
        True
        """
        default, breaker = Backoff(), CircuitBreaker()
        backoff = Backoff(
            base=default.base if self.backoff_base is None else self.backoff_base,
            factor=default.factor,
            cap=default.cap if self.backoff_cap is None else self.backoff_cap,
        )
        if self.breaker_threshold is not None:
            breaker.threshold = self.breaker_threshold
        if self.breaker_window is not None:
            breaker.window = self.breaker_window
        policy = Policy(max_attempts=max_attempts, backoff=backoff, breaker=breaker, seed=seed)
        if self.usage_limit_horizon is not None:
            policy.usage_limit_horizon = self.usage_limit_horizon
        return policy
