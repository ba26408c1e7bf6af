"""In-process simulation runtime: scripted agents on a virtual clock, faults from a schedule.

Each attempt works through its launch spec's work items like a headless coding agent: one
Messages API request per step (API faults strike here), then one tool call (write a file, run
the tests, git commit / push, gh pr create). Between steps the scheduled faults fire on the
events named in :mod:`pytest_orch_recovery.chaos.faults`. What the agent prints when it fails is the
wording the real tools print, so the real classifier is exercised, not a shortcut.

Everything is deterministic from the seed: durations come from a ``random.Random`` keyed on
(seed, task, attempt), never from the global generator (Hypothesis reseeds that).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.chaos.faults import FaultLedger, FaultSpec, FaultStatus
from pytest_orch_recovery.doubles.simagent.api import usage_limit_notice
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import (
    Checkpoint,
    ExitInfo,
    PartialWork,
    PullRequest,
    SignalOrigin,
    SignalSender,
    Task,
    WorkItem,
    WorkKind,
)
from pytest_orch_recovery.engine.policy import REMEDY_STALE_INDEX_LOCK
from pytest_orch_recovery.engine.ports import AttemptExit, LaunchSpec

# 2025-07-23 09:00 UTC, the day of the recovery design's incident log: simulated runs start there.
SIM_EPOCH = 1753261200.0

# Real Claude Code retries API errors (529, 429, 5xx, connection) with backoff before giving
# up; its default is 10 retries (CLAUDE_CODE_MAX_RETRIES / the SDK's maxRetries).
AGENT_MAX_RETRIES = 10


def _fault_hook_sender(sig: int) -> SignalSender:
    """Who the launch wrapper names for a signal fault on the tmux tier: the fault hook."""
    return SignalSender(
        sig,
        SignalOrigin.PROCESS,
        0,
        command="python -P -m pytest_orch_recovery.chaos.faulthook --plan faults.json",
    )


def _coordinator_sender(sig: int) -> SignalSender:
    """The coordinator's own interrupt / kill, as the wrapper would name it."""
    return SignalSender(sig, SignalOrigin.PROCESS, 0, command="orch-recovery coordinator")


_OVERLOADED_BODY = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
_RATE_LIMIT_BODY = (
    '{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
    "your account's rate limit. Please try again later.\"}}"
)
_SERVER_ERROR_BODY = (
    '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
)


_API_ERRORS = {
    "api_overloaded": (529, _OVERLOADED_BODY),
    "api_rate_limit": (429, _RATE_LIMIT_BODY),
    "api_server_error": (500, _SERVER_ERROR_BODY),
}

# A usage limit's defaults: Claude Code's five-hour session window, printed in a zone of the
# reports it is modelled on (anthropics/claude-code#79136).
USAGE_LIMIT_RESETS_IN = 3 * 3600.0
USAGE_LIMIT_ZONE = "Europe/Berlin"


def usage_limit_text(wording: str, now: float, resets_at: float) -> str:
    """What the CLI prints when its account is at the limit, with the reset in its words:
    Claude Code's clock time and zone (anthropics/claude-code#79136), Codex's countdown
    (openai/codex#3031).

    >>> usage_limit_text("claude", 0.0, 1753284600.0)
    "You've hit your 5-hour limit · resets 5:30pm (Europe/Berlin)"
    >>> usage_limit_text("codex", 0.0, 3 * 3600 + 120).endswith("try again in 3 hours 2 minutes.")
    True
    """
    if wording == "codex":
        left = max(0, math.ceil((resets_at - now) / 60.0))
        days, rest = divmod(left, 24 * 60)
        hours, minutes = divmod(rest, 60)
        parts = [
            f"{n} {unit}{'s' if n != 1 else ''}"
            for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
            if n
        ]
        return (
            "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) "
            f"or try again in {' '.join(parts) or '1 minute'}."
        )
    # The sim agent's own notice (what the tmux tier's agents print), in the zone of the
    # reports the default is modelled on.
    return usage_limit_notice(resets_at, _FIVE_HOUR_CLAIM, USAGE_LIMIT_ZONE)


_FIVE_HOUR_CLAIM = {"anthropic-ratelimit-unified-representative-claim": "five_hour"}


def _next_minute(t: float) -> float:
    """The CLIs print a reset to the minute; the simulated account resets on one."""
    return math.ceil(t / 60.0) * 60.0


_AFTER_EVENTS = {
    WorkKind.WRITE: "file_written",
    WorkKind.COMMIT: "commit",
    WorkKind.PUSH: "push",
}
# ``gh pr create`` and the test run are events too. The faults that change what the action
# does fire at it (the forge refuses the PR, the tests fail); every other fault keyed on them
# fires after the tool and its hook, as the tmux tier's PostToolUse fault hook does.
_ACTION_EVENTS = {WorkKind.OPEN_PR: "open_pr", WorkKind.TEST: "test"}
_AT_ACTION_KINDS = frozenset({"pr_create_fails", "tests_fail"})


def _at_action(spec: FaultSpec) -> bool:
    return spec.kind in _AT_ACTION_KINDS


def _after_action(spec: FaultSpec) -> bool:
    return spec.kind not in _AT_ACTION_KINDS


class HostFault(OrchRecoveryError):
    """A host-scope fault fired (``host_down``, ``host_partition``, ``store_outage``): raised
    out of :meth:`SimRuntime.next_exit` to the fleet driver, which carries it out."""

    def __init__(self, spec: FaultSpec, agent: str) -> None:
        super().__init__(f"{spec.kind} fired by {agent}")
        self.spec = spec
        self.agent = agent


class VirtualClock:
    def __init__(self, start: float = SIM_EPOCH) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t > self._now:
            self._now = t


@dataclass
class _HookRecord:
    """What the PostToolUse hook has recorded so far: the checkpoint file's content, kept as
    its parts and made a :class:`Checkpoint` only when someone reads it."""

    agent: str
    task_id: str
    attempt: int
    completed: list[str]
    created: list[str]
    next_actions: tuple[str, ...]
    updated_at: float
    session_id: str | None


@dataclass
class SimWorkspace:
    """The in-memory stand-in for one agent's git worktree, origin branch and PR."""

    files: set[str] = field(default_factory=set)
    uncommitted: set[str] = field(default_factory=set)
    commits: int = 0
    pushed_commits: int = 0
    pr: PullRequest | None = None
    index_lock: bool = False
    tests_broken: bool = False
    hook_record: _HookRecord | None = None
    checkpoint_problem: str | None = None
    session_id: str | None = None

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint file as the hook last wrote it (None: none, or torn)."""
        record = self.hook_record
        if record is None:
            return None
        return Checkpoint(
            agent=record.agent,
            task_id=record.task_id,
            attempt=record.attempt,
            completed_subtasks=tuple(record.completed),
            created_files=tuple(record.created),
            next_actions=record.next_actions,
            updated_at=f"{record.updated_at:.3f}",
            session_id=record.session_id,
        )


@dataclass
class _Attempt:
    spec: LaunchSpec
    started_at: float
    rng: random.Random
    step: int = 0  # index into spec.work of the next step
    api_requests: int = 0
    tool_calls: int = 0
    files_written: int = 0
    events_seen: dict[str, int] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    live: bool = True
    stalled: bool = False
    permission_denials: list[dict[str, Any]] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    descriptions: tuple[str, ...] = ()  # spec.work in words, for checkpoints
    armed: dict[str, list[FaultSpec]] = field(default_factory=dict)  # faults by trigger event


# Heap entries: (time, seq, agent, attempt number); plain tuples compare fastest.
_Wake = tuple[float, int, str, int]


class SimRuntime:
    """A :class:`~pytest_orch_recovery.engine.ports.Runtime` on a virtual clock."""

    def __init__(
        self,
        *,
        seed: int = 0,
        faults: Sequence[FaultSpec] = (),
        ledger: FaultLedger | None = None,
        permission_flag: bool = True,
        tests_broken: Iterable[str] = (),
        pr_start: int = 1,
    ) -> None:
        self.clock = VirtualClock()
        self.seed = seed
        self.faults = [
            spec if spec.fault_id else dataclasses.replace(spec, fault_id=f"f{index + 1}")
            for index, spec in enumerate(faults)
        ]
        self.ledger = ledger or FaultLedger()
        # Faults by target task (and "*"), with their schedule position to keep that order.
        self._faults_by_task: dict[str, list[tuple[int, FaultSpec]]] = {}
        for position, spec in enumerate(self.faults):
            self.ledger.register(spec)
            self._faults_by_task.setdefault(spec.task, []).append((position, spec))
        # Per task id: the attempt-scope faults that may hit it, by trigger event, in schedule
        # order. Built on a task's first event; most tasks have none, and ask nothing more.
        self._armed: dict[str, dict[str, list[FaultSpec]]] = {}
        self.permission_flag = permission_flag and not any(
            f.kind == "missing_permission_flag" for f in self.faults
        )
        self._tests_broken = set(tests_broken)
        self.workspaces: dict[str, SimWorkspace] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._keys: set[str] = set()
        self._wakes: list[_Wake] = []
        self._seq = 0
        self._exits: list[AttemptExit] = []
        self._next_pr = pr_start
        self._fired: set[tuple[str, str, int]] = set()  # (fault id, task, attempt)
        self.launch_log: list[tuple[str, str]] = []  # (agent, key) in launch order
        self.violations: list[str] = []  # engine misbehaviour seen by the runtime
        self.cleaned: set[str] = set()
        # Agent type (its account) -> (reset time, the fault that started it) while its usage
        # limit holds.
        self.usage_limits: dict[str, tuple[float, FaultSpec]] = {}
        # Host-scope faults fired by a step, for the fleet driver (simhosts.py) to carry out:
        # (fault, agent whose step fired it); next_exit raises HostFault for each.
        self.host_faults: list[tuple[FaultSpec, str]] = []

    # ------------------------------------------------------------------ operator knobs

    def fix_permission_flag(self) -> None:
        """The operator fixed the dispatcher's configuration."""
        self.permission_flag = True

    # ------------------------------------------------------------------ Runtime protocol

    def launch(self, spec: LaunchSpec) -> None:
        if spec.key in self._keys:
            return
        current = self._attempts.get(spec.agent)
        if current is not None and current.live:
            self.violations.append(
                f"{spec.agent}: attempt {spec.attempt} launched while attempt "
                f"{current.spec.attempt} is live"
            )
            return
        self._keys.add(spec.key)
        self.launch_log.append((spec.agent, spec.key))
        ws = self.workspaces.setdefault(spec.agent, SimWorkspace())
        if spec.task.task_id in self._tests_broken and ws.commits == 0 and not ws.files:
            ws.tests_broken = True
        rng = random.Random(f"{self.seed}:{spec.task.task_id}:{spec.attempt}")
        attempt = _Attempt(
            spec=spec,
            started_at=self.clock.now(),
            rng=rng,
            descriptions=tuple(w.describe() for w in spec.work),
            armed=self._armed_for(spec.task.task_id),
        )
        if spec.resume_session is None or spec.resume_session != ws.session_id:
            ws.session_id = f"sess-{rng.getrandbits(64):016x}"
        self._attempts[spec.agent] = attempt
        self.cleaned.discard(spec.agent)
        if self._fire("start", attempt, ws):
            return
        self._schedule(attempt, self._think_time(attempt))

    def next_exit(self, deadline: float | None) -> AttemptExit | None:
        while True:
            if self._exits:
                return self._exits.pop(0)
            if not self._wakes:
                if deadline is not None:
                    self.clock.advance_to(deadline)
                return None
            when, _, agent, number = self._wakes[0]
            if deadline is not None and when > deadline:
                self.clock.advance_to(deadline)
                return None
            heapq.heappop(self._wakes)
            self.clock.advance_to(when)
            attempt = self._attempts.get(agent)
            if attempt is None or attempt.spec.attempt != number or not attempt.live:
                continue
            self._step(attempt)
            if self.host_faults:
                # Raised between steps, with the agent's own step finished and its next one
                # scheduled: the coordinator calling here is at a clean point.
                raise HostFault(*self.host_faults.pop(0))

    def power_off(self) -> list[str]:
        """The machine is gone: every attempt stops at once and nothing reports its end (no
        exit, no hook); returns the agents that were running."""
        running = sorted(a for a, att in self._attempts.items() if att.live)
        for attempt in self._attempts.values():
            attempt.live = False
        self._wakes.clear()
        self._exits.clear()
        return running

    def interrupt(self, agent: str) -> None:
        attempt = self._attempts.get(agent)
        if attempt is not None and attempt.live:
            self._die_by_signal(attempt, 2, claude_style=True, sender=_coordinator_sender(2))

    def kill(self, agent: str) -> None:
        attempt = self._attempts.get(agent)
        if attempt is not None and attempt.live:
            self._die_by_signal(attempt, 15, claude_style=False, sender=_coordinator_sender(15))

    def output(self, agent: str) -> str:
        attempt = self._attempts.get(agent)
        return "" if attempt is None else "\n".join(attempt.output)

    def partial_work(self, task: Task, agent: str) -> PartialWork:
        ws = self.workspaces.get(agent, SimWorkspace())
        present = tuple(p for p in task.deliverables if p in ws.files)
        missing = tuple(p for p in task.deliverables if p not in ws.files)
        tests_passed: bool | None = None
        test_output: str | None = None
        if task.tests:
            tests_passed = not missing and not ws.tests_broken
            if ws.tests_broken:
                test_output = (
                    f"$ {task.tests}\nFAILED tests/test_{task.task_id}.py::test_edge"
                    " - AssertionError\n=== 2 failed, 3 passed in 0.42s ==="
                )
        return PartialWork(
            deliverables_present=present,
            deliverables_missing=missing,
            uncommitted=tuple(sorted(ws.uncommitted)),
            commits_ahead=ws.commits,
            pushed=ws.commits > 0 and ws.pushed_commits == ws.commits,
            pr=ws.pr,
            checkpoint=ws.checkpoint,
            checkpoint_problem=ws.checkpoint_problem,
            tests_passed=tests_passed,
            test_output=test_output,
        )

    def live(self) -> frozenset[str]:
        running = {a for a, att in self._attempts.items() if att.live}
        return frozenset(running | {e.agent for e in self._exits})

    def apply_remedy(self, agent: str, remedy: str) -> str:
        ws = self.workspaces.get(agent)
        if remedy == REMEDY_STALE_INDEX_LOCK:
            if ws is not None and ws.index_lock:
                ws.index_lock = False
                return "removed stale .git/index.lock (no git process held it)"
            return "no index.lock present"
        return f"unknown remedy {remedy!r}: nothing done"

    def cleanup(self, agent: str) -> None:
        attempt = self._attempts.get(agent)
        if attempt is not None and attempt.live:
            self.violations.append(f"{agent}: cleaned up while live")
            attempt.live = False
        self.cleaned.add(agent)

    # ------------------------------------------------------------------ the agent loop

    def _schedule(self, attempt: _Attempt, delay: float) -> None:
        self._seq += 1
        heapq.heappush(
            self._wakes,
            (self.clock.now() + delay, self._seq, attempt.spec.agent, attempt.spec.attempt),
        )

    def _think_time(self, attempt: _Attempt) -> float:
        # random.uniform(2.0, 20.0) spelled out: the same numbers, one call fewer per step.
        return 2.0 + 18.0 * attempt.rng.random()

    def _step(self, attempt: _Attempt) -> None:
        ws = self.workspaces[attempt.spec.agent]
        attempt.api_requests += 1
        if self.usage_limits and self._at_usage_limit(attempt, ws):
            return
        # Most attempts have no fault waiting for them: they skip the fault checks entirely.
        armed = bool(attempt.armed)
        if armed and self._api_request(attempt, ws):
            return
        work = attempt.spec.work
        if attempt.step >= len(work):
            self._exit_clean(attempt, self._summary(attempt, ws))
            return
        item = work[attempt.step]
        attempt.step += 1
        if not self.permission_flag and item.kind is not WorkKind.TEST:
            self._deny(attempt, item, ws)
            return
        if not self._do(attempt, item, ws):
            return
        attempt.tool_calls += 1
        self._checkpoint(attempt, item, ws)
        if armed:
            # Events that mean "this step is done" fire after the tool and its PostToolUse
            # hook, as they do for a real agent: the checkpoint already records the step.
            after = _AFTER_EVENTS.get(item.kind)
            if after is not None and self._fire(after, attempt, ws, path=item.path):
                return
            action = _ACTION_EVENTS.get(item.kind)
            if action is not None and self._fire(
                action, attempt, ws, select=_after_action, counted=False
            ):
                return
            if self._fire("tool_call", attempt, ws):
                return
        if attempt.live:
            self._schedule(attempt, self._think_time(attempt))

    def _do(self, attempt: _Attempt, item: WorkItem, ws: SimWorkspace) -> bool:
        """Run one tool call. False when the attempt ended (fault or a give-up)."""
        kind = item.kind
        if kind is WorkKind.WRITE and item.path is not None:
            ws.files.add(item.path)
            ws.uncommitted.add(item.path)
            attempt.files_written += 1
            attempt.output.append(f"⏺ Write({item.path})")
            return True
        if kind is WorkKind.TEST:
            attempt.output.append(f"⏺ Bash({attempt.spec.task.tests})")
            if self._fire("test", attempt, ws, select=_at_action):
                return False
            if ws.tests_broken:
                attempt.output.append(
                    "========================= 2 failed, 3 passed in 0.42s "
                    "========================="
                )
                self._exit_clean(
                    attempt,
                    "The implementation is complete but 2 tests fail; I could not make them pass.",
                )
                return False
            attempt.output.append(
                "========================= 5 passed in 0.31s ========================="
            )
            return True
        if kind is WorkKind.FIX_TESTS:
            attempt.output.append("⏺ Edit(fix failing tests)")
            ws.tests_broken = False
            ws.uncommitted.update(attempt.spec.task.deliverables[:1])
            return True
        if kind is WorkKind.COMMIT:
            attempt.output.append("⏺ Bash(git add -A && git commit)")
            if ws.index_lock:
                attempt.output.append(
                    "fatal: Unable to create '/work/.git/index.lock': File exists."
                )
                self._exit_clean(
                    attempt,
                    "git commit failed: another git process seems to be "
                    "running (index.lock exists).",
                )
                return False
            if ws.uncommitted or ws.commits == 0:
                ws.commits += 1
                ws.uncommitted.clear()
            return True
        if kind is WorkKind.PUSH:
            attempt.output.append("⏺ Bash(git push -u origin HEAD)")
            ws.pushed_commits = ws.commits
            return True
        if kind is WorkKind.OPEN_PR:
            attempt.output.append("⏺ Bash(gh pr create)")
            if self._fire("open_pr", attempt, ws, select=_at_action):
                return False
            if ws.pr is None:
                ws.pr = PullRequest(
                    number=self._next_pr,
                    branch=attempt.spec.agent,
                    url=f"https://github.com/acme/agent-project/pull/{self._next_pr}",
                    title=attempt.spec.task.title,
                )
                self._next_pr += 1
            attempt.output.append(ws.pr.url)
            return True
        return True

    def _deny(self, attempt: _Attempt, item: WorkItem, ws: SimWorkspace) -> None:
        """Headless Claude Code without the permission flag: the tool is refused, the model
        tries again once, gives up, and the CLI exits 0 with permission_denials."""
        tool = "Write" if item.kind is WorkKind.WRITE else "Bash"
        target = item.path or item.describe()
        for _ in range(2):  # the model retries a denied tool once, then gives up
            attempt.permission_denials.append(
                {
                    "tool_name": tool,
                    "tool_use_id": f"toolu_{attempt.rng.getrandbits(48):012x}",
                    "tool_input": {"file_path": target} if tool == "Write" else {"command": target},
                }
            )
            verb = "write to " + target if tool == "Write" else "use Bash"
            attempt.output.append(
                f"Claude requested permissions to {verb}, but you haven't granted it yet."
            )
        self._exit_clean(attempt, "I don't have permission to write files in this session.")

    def _checkpoint(self, attempt: _Attempt, item: WorkItem, ws: SimWorkspace) -> None:
        """What the PostToolUse hook records after each tool call."""
        spec = attempt.spec
        record = ws.hook_record
        if record is None:
            record = ws.hook_record = _HookRecord(
                spec.agent, spec.task.task_id, spec.attempt, [], [], (), 0.0, None
            )
        elif record.attempt != spec.attempt:
            record.agent, record.task_id, record.attempt = (
                spec.agent,
                spec.task.task_id,
                spec.attempt,
            )
        path = item.path
        if path and item.kind is WorkKind.WRITE and path not in record.created:
            record.created.append(path)
        record.completed.append(attempt.descriptions[attempt.step - 1])
        record.next_actions = attempt.descriptions[attempt.step :]
        record.updated_at = self.clock.now()
        record.session_id = ws.session_id
        ws.checkpoint_problem = None  # the hook's atomic rewrite replaces a torn file

    def _summary(self, attempt: _Attempt, ws: SimWorkspace) -> str:
        if ws.pr is not None:
            return f"Done. Created {ws.pr.url}"
        return "Done."

    # ------------------------------------------------------------------ API requests

    def _api_request(self, attempt: _Attempt, ws: SimWorkspace) -> bool:
        """True when the request ended the attempt (or parked it)."""
        for spec in self._matching("api_request", attempt, n=attempt.api_requests):
            kind = spec.kind
            if kind == "usage_limit":
                now = self.clock.now()
                resets_in = float(spec.params.get("resets_in", USAGE_LIMIT_RESETS_IN))
                account = attempt.spec.agent_type
                held = self.usage_limits.get(account)
                if held is None or held[0] <= now:
                    self.usage_limits[account] = (_next_minute(now + resets_in), spec)
                self._at_usage_limit(attempt, ws)
                return True
            if kind not in _API_ERRORS and kind != "api_stall":
                if self._inject(spec, attempt, ws):
                    return True
                continue
            if kind == "api_stall":
                self._mark(spec, attempt, FaultStatus.EXERCISED, "request never answered")
                attempt.stalled = True
                return True
            burst = int(spec.params.get("count", AGENT_MAX_RETRIES + 2))
            retry_after = spec.params.get("retry_after")
            if burst <= AGENT_MAX_RETRIES:
                # The agent's own retries absorb the burst: time passes, nothing fails.
                self._mark(
                    spec,
                    attempt,
                    FaultStatus.INEFFECTIVE,
                    f"{burst} errors absorbed by the agent's retries",
                )
                attempt.output.append(f"API Error ({burst} retries), retrying…")
                continue
            status, body = _API_ERRORS[kind]
            if retry_after is not None:
                attempt.output.append(f"retry-after: {int(retry_after)}")
            attempt.output.append(f"API Error: {status} {body}")
            self._mark(spec, attempt, FaultStatus.EXERCISED, f"HTTP {status} x{burst}")
            self._exit(
                attempt,
                ExitInfo.from_returncode(1),
                result=self._result(
                    attempt,
                    ws,
                    is_error=True,
                    text=f"API Error: {status} {body}",
                    api_status=status,
                ),
            )
            return True
        return False

    def _at_usage_limit(self, attempt: _Attempt, ws: SimWorkspace) -> bool:
        """The account's usage limit refuses the request: the CLI prints its limit text with
        the reset and exits 1 without retrying (a plan's limit is not a transient error)."""
        held = self.usage_limits.get(attempt.spec.agent_type)
        now = self.clock.now()
        if held is None or held[0] <= now:
            return False
        spec = held[1]
        # The fault takes effect on every attempt the account refuses, not only the first.
        self._mark(spec, attempt, FaultStatus.EXERCISED, "refused by the account's usage limit")
        text = usage_limit_text(str(spec.params.get("wording", "claude")), now, held[0])
        attempt.output.append(text)
        self._exit(
            attempt,
            ExitInfo.from_returncode(1),
            result=self._result(attempt, ws, is_error=True, text=text, api_status=429),
        )
        return True

    # ------------------------------------------------------------------ faults

    def _armed_for(self, task_id: str) -> dict[str, list[FaultSpec]]:
        armed = self._armed.get(task_id)
        if armed is None:
            armed = {}
            candidates = sorted(
                self._faults_by_task.get(task_id, []) + self._faults_by_task.get("*", []),
                key=lambda pair: pair[0],
            )
            for _, spec in candidates:
                if spec.entry.scope != "fleet":
                    armed.setdefault(spec.effective_trigger.event, []).append(spec)
            self._armed[task_id] = armed
        return armed

    def _matching(
        self,
        event: str,
        attempt: _Attempt,
        *,
        n: int | None = None,
        path: str | None = None,
        select: Callable[[FaultSpec], bool] | None = None,
    ) -> list[FaultSpec]:
        task_id = attempt.spec.task.task_id
        candidates = attempt.armed.get(event)
        if not candidates:
            return []
        hits = []
        for spec in candidates:
            if not spec.applies_to(task_id, attempt.spec.attempt):
                continue
            if select is not None and not select(spec):
                continue
            trig = spec.effective_trigger
            if trig.path is not None:
                if trig.path != path:
                    continue
            elif n is not None and trig.n != n:
                continue
            key = (spec.fault_id, task_id, attempt.spec.attempt)
            if key in self._fired:
                continue
            self._fired.add(key)
            hits.append(spec)
        return hits

    def _fire(
        self,
        event: str,
        attempt: _Attempt,
        ws: SimWorkspace,
        *,
        path: str | None = None,
        select: Callable[[FaultSpec], bool] | None = None,
        counted: bool = True,
    ) -> bool:
        """Fire the faults keyed on ``event`` (those ``select`` accepts); True when the attempt
        is over (or parked). ``counted=False``: the same occurrence as the previous call."""
        if event not in attempt.armed:
            # No fault of this task waits on the event: its count can never matter.
            return not attempt.live or attempt.stalled
        count = attempt.events_seen.get(event, 0) + (1 if counted else 0)
        attempt.events_seen[event] = count
        n = attempt.files_written if event == "file_written" else count
        if event == "tool_call":
            n = attempt.tool_calls
        for spec in self._matching(event, attempt, n=n, path=path, select=select):
            if self._inject(spec, attempt, ws):
                return True
        return not attempt.live or attempt.stalled

    def _inject(self, spec: FaultSpec, attempt: _Attempt, ws: SimWorkspace) -> bool:
        kind = spec.kind
        mark = self._mark
        if spec.entry.scope == "host":
            # The host, or the store every host shares: the fleet driver's to carry out.
            self.host_faults.append((spec, attempt.spec.agent))
            return False
        if kind in ("sigint", "sigint_keys"):
            mark(spec, attempt, FaultStatus.EXERCISED, "SIGINT delivered")
            sender = (
                SignalSender(2, SignalOrigin.TTY, 0x80, clients=0)
                if kind == "sigint_keys"
                else _fault_hook_sender(2)
            )
            self._die_by_signal(
                attempt,
                2,
                claude_style=spec.params.get("style", "claude") == "claude",
                sender=sender,
            )
            return True
        if kind in ("kill", "terminate"):
            mark(spec, attempt, FaultStatus.EXERCISED, kind)
            if spec.params.get("oom"):
                attempt.output.append("Killed")
            sig = 9 if kind == "kill" else 15
            oom = bool(spec.params.get("oom")) and sig == 9
            self._die_by_signal(
                attempt,
                sig,
                claude_style=False,
                sender=SignalSender(9, SignalOrigin.KERNEL) if oom else _fault_hook_sender(sig),
                oom=oom,
            )
            return True
        if kind in ("stall", "permission_prompt"):
            if kind == "permission_prompt":
                target = (
                    attempt.spec.task.deliverables[0]
                    if attempt.spec.task.deliverables
                    else "the file"
                )
                attempt.output.append(f"Do you want to create {target}?")
                attempt.output.append("\u276f 1. Yes")  # Claude Code's selection marker
            mark(spec, attempt, FaultStatus.EXERCISED, "agent stalled")
            attempt.stalled = True
            return True
        if kind == "pr_create_fails":
            # gh fails ``times`` invocations; the agent tries gh twice before giving up, so a
            # single failure is absorbed by its retry.
            wanted = int(spec.params.get("times", 2))
            how = str(spec.params.get("error", "bad_credentials"))
            if wanted < 2:
                mark(spec, attempt, FaultStatus.INEFFECTIVE, "absorbed by the agent's retry")
                return False
            lines = {
                "bad_credentials": [
                    "HTTP 401: Bad credentials (https://api.github.com/graphql)",
                    "Try authenticating with:  gh auth login",
                ],
                "unreachable": [
                    "error connecting to api.github.com",
                    "check your internet connection or https://githubstatus.com",
                ],
            }.get(how, [f"pull request create failed: {how}"])
            attempt.output.extend(lines * 2)
            mark(spec, attempt, FaultStatus.EXERCISED, how)
            self._exit_clean(
                attempt, f"The code is pushed but I could not create the pull request: {lines[0]}"
            )
            return True
        if kind == "stale_index_lock":
            # A git killed mid-operation left its lock: the next commit fails on it.
            ws.index_lock = True
            mark(spec, attempt, FaultStatus.EXERCISED, "index.lock left behind")
            return False
        if kind == "tests_fail":
            ws.tests_broken = True
            mark(spec, attempt, FaultStatus.EXERCISED, "tests broken")
            return False
        if kind == "quit_early":
            mark(spec, attempt, FaultStatus.EXERCISED, "exited early")
            self._exit_clean(attempt, "All done!")
            return True
        if kind == "corrupt_checkpoint":
            ws.hook_record = None
            ws.checkpoint_problem = (
                f"{attempt.spec.agent}.json: line 1 column 57: Unterminated string (torn file)"
            )
            mark(spec, attempt, FaultStatus.EXERCISED, "checkpoint torn")
            return False
        return False

    def _mark(self, spec: FaultSpec, attempt: _Attempt, status: str, detail: str) -> None:
        self.ledger.mark(
            spec,
            status,
            task=attempt.spec.task.task_id,
            attempt=attempt.spec.attempt,
            detail=detail,
        )

    # ------------------------------------------------------------------ exits

    def _die_by_signal(
        self,
        attempt: _Attempt,
        sig: int,
        *,
        claude_style: bool,
        sender: SignalSender | None = None,
        oom: bool = False,
    ) -> None:
        """End by ``sig``; ``sender`` is who the launch wrapper's siginfo would name (a
        SIGKILL reaches the agent, never the wrapper: the kernel's counter tells of an OOM)."""
        if not oom:
            attempt.signals.append(sig)
        senders = () if sender is None else (sender,)
        if sig == 2 and claude_style:
            # Measured: real Claude Code given SIGINT while waiting on the API exits 0 and
            # prints nothing. The launch wrapper's trap still records the delivered signal.
            attempt.output.clear()
            self._exit(attempt, ExitInfo.from_returncode(0).with_evidence(senders), result=None)
            return
        exit_info = ExitInfo.from_returncode(-sig).with_evidence(senders, oom_killed=oom)
        self._exit(attempt, exit_info, result=None)

    def _exit_clean(self, attempt: _Attempt, text: str) -> None:
        ws = self.workspaces[attempt.spec.agent]
        self._exit(
            attempt,
            ExitInfo.from_returncode(0),
            result=self._result(attempt, ws, is_error=False, text=text),
        )

    def _result(
        self,
        attempt: _Attempt,
        ws: SimWorkspace,
        *,
        is_error: bool,
        text: str,
        api_status: int | None = None,
    ) -> dict[str, Any]:
        """A result object with the keys of Claude Code's ``--output-format json``."""
        duration_ms = int((self.clock.now() - attempt.started_at) * 1000)
        result: dict[str, Any] = {
            "type": "result",
            "subtype": "success",
            "is_error": is_error,
            "duration_ms": duration_ms,
            "duration_api_ms": duration_ms // 2,
            "num_turns": attempt.api_requests,
            "result": text,
            "session_id": ws.session_id,
            "total_cost_usd": 0.0,
            "permission_denials": list(attempt.permission_denials),
        }
        if api_status is not None:
            result["api_error_status"] = api_status
        return result

    def _exit(self, attempt: _Attempt, exit_info: ExitInfo, result: dict[str, Any] | None) -> None:
        if not attempt.live:
            return
        attempt.live = False
        attempt.stalled = False
        ws = self.workspaces[attempt.spec.agent]
        output = "\n".join(attempt.output)
        if result is not None:
            output = (output + "\n" if output else "") + json.dumps(result)
        self._exits.append(
            AttemptExit(
                agent=attempt.spec.agent,
                attempt=attempt.spec.attempt,
                exit=exit_info,
                started_at=attempt.started_at,
                ended_at=self.clock.now(),
                output=output,
                result=result,
                session_id=ws.session_id,
                extra={"signals_delivered": tuple(attempt.signals)},
            )
        )
