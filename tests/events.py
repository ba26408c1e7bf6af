"""Realistic journal event sequences for tests: what the coordinator writes for common stories.

A :class:`JournalBuilder` holds a clock and the seq counter; :meth:`JournalBuilder.task` returns
a :class:`TaskScript` whose steps append the events docs/journal.md describes, with the data
the coordinator would record. Scenario functions (``first_try_success``, ``sigint_resumed``,
``permission_outage`` ...) tell whole stories; :func:`seed_incident` is the seed's own
incident log; :func:`random_journal` is a Hypothesis strategy for many stories interleaved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from pytest_orch_recovery.engine.events import (
    AdoptedRun,
    AppliedRemedy,
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    FailureAttributed,
    LaunchOrder,
    OperatorAction,
    OrchestratorResult,
    PartialSummary,
    Payload,
    TaskEscalated,
    TaskSubmitted,
    TaskSucceeded,
    TmuxTarget,
    UsageLimited,
    WorkspaceCleaned,
    WorkspaceOrphaned,
)
from pytest_orch_recovery.engine.model import (
    Attribution,
    Decision,
    Evidence,
    ExitInfo,
    PartialWork,
    Reason,
    Strategy,
    Task,
    WorkItem,
    WorkKind,
    full_plan,
)

# The seed's incident happened on 2025-07-23.
SEED_DAY = datetime(2025, 7, 23, 9, 0, tzinfo=UTC).timestamp()

# What each reason looks like when the classifier attributes it, and its typical exit. Wording:
# API error - Claude Code prints "API Error: <status> <body>" and the Messages API error body is
#   {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
#   (anthropics/claude-code#61365; Anthropic's error shape as the Claude API docs give it);
# GitHub - gh's "pull request create failed: GraphQL: Resource not accessible by integration
#   (createPullRequest)" (JetBrains/intellij-platform-plugin-template#268);
# git - remote-curl.c's die("unable to access '%s': %s", url, curl_errorstr).
_REASON_SHAPES: dict[Reason, tuple[ExitInfo, str, str]] = {
    Reason.SIGINT: (ExitInfo(status=None, signal=2, source="tmux"), "exit", "exit 130 (SIGINT)"),
    Reason.TIMEOUT: (ExitInfo(124, timed_out=True), "supervisor", "killed after 1800 s timeout"),
    Reason.API_ERROR: (
        ExitInfo(1),
        "result",
        'API Error: 529 {"type":"error","error":{"type":"overloaded_error",'
        '"message":"Overloaded"}}',
    ),
    Reason.PERMISSION: (ExitInfo(0), "result", "result JSON lists 3 permission_denials"),
    Reason.GITHUB_ERROR: (
        ExitInfo(1),
        "log",
        "pull request create failed: GraphQL: Resource not accessible by integration "
        "(createPullRequest)",
    ),
    Reason.GIT_ERROR: (
        ExitInfo(128),
        "log",
        "fatal: unable to access 'https://github.com/acme/app.git/': Could not resolve host: "
        "github.com",
    ),
    Reason.TEST_FAILURE: (ExitInfo(0), "deliverables", "tests fail: 2 failed, 5 passed"),
    Reason.KILLED: (ExitInfo(status=None, signal=9), "exit", "exit 137 (SIGKILL)"),
    Reason.INCOMPLETE: (ExitInfo(0), "deliverables", "2 of 3 deliverables missing"),
    Reason.UNKNOWN: (ExitInfo(1), "exit", "exit 1 with no recognisable output"),
}


class JournalBuilder:
    """Appends events with increasing seq and a clock that only moves forward."""

    def __init__(self, start: float = SEED_DAY) -> None:
        self.clock = start
        self.events: list[Event] = []

    def add(
        self,
        payload: Payload,
        *,
        task_id: str | None = None,
        agent: str | None = None,
        attempt: int | None = None,
        key: str | None = None,
        after: float = 1.0,
    ) -> Event:
        self.clock += after
        event = Event(
            payload,
            time=self.clock,
            task_id=task_id,
            agent=agent,
            attempt=attempt,
            key=key,
            seq=len(self.events) + 1,
        )
        self.events.append(event)
        return event

    def advance_to(self, time: float) -> None:
        if time < self.clock:
            raise ValueError(f"clock would go back from {self.clock} to {time}")
        self.clock = time

    def task(
        self,
        task_id: str,
        agent: str,
        *,
        title: str = "",
        deliverables: Sequence[str] = ("README.md",),
    ) -> TaskScript:
        return TaskScript(
            self, Task(task_id, title or f"Task {task_id}", tuple(deliverables)), agent
        )

    def operator_action(self, action: str, tasks: Iterable[str], *, after: float = 1.0) -> Event:
        return self.add(OperatorAction(action, tuple(tasks)), after=after)

    def orphaned(self, path: str) -> Event:
        return self.add(WorkspaceOrphaned(path))

    def cleaned(self, path: str) -> Event:
        return self.add(WorkspaceCleaned(path))

    def write_jsonl(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in self.events))
        return path


class TaskScript:
    """One task's story, step by step, as the coordinator journals it."""

    def __init__(self, journal: JournalBuilder, task: Task, agent: str) -> None:
        self.journal = journal
        self.task = task
        self.agent = agent
        self.attempt = 0
        self.first_failed_exit: float | None = None
        self._last_exit_time = 0.0
        self._last_reason = Reason.UNKNOWN
        journal.add(TaskSubmitted.of(task), task_id=task.task_id, agent=agent)

    def _add(self, payload: Payload, *, after: float = 1.0, key: str | None = None) -> Event:
        return self.journal.add(
            payload,
            task_id=self.task.task_id,
            agent=self.agent,
            attempt=self.attempt or None,
            key=key,
            after=after,
        )

    def launch(
        self, strategy: Strategy | None = None, *, agent: str | None = None, after: float = 1.0
    ) -> TaskScript:
        self.attempt += 1
        self.agent = agent or self.agent
        self._add(
            AttemptLaunched(self.task.agent_type, strategy, full_plan(self.task)),
            key=f"{self.task.task_id}:{self.attempt}",
            after=after,
        )
        return self

    def exit(self, exit: ExitInfo, *, after: float = 60.0, tail: str = "") -> TaskScript:
        started = self.journal.clock
        event = self._add(
            AttemptExited(
                exit=exit,
                started_at=started,
                ended_at=started + after,
                output_tail=tail,
                session_id=f"session-{self.task.task_id}-{self.attempt}",
            ),
            after=after,
        )
        self._last_exit_time = event.time
        return self

    def attribute(
        self,
        reason: Reason,
        *,
        detail: str | None = None,
        partial: PartialWork | None = None,
        missing: Sequence[WorkItem] | None = None,
    ) -> TaskScript:
        _, kind, default_detail = _REASON_SHAPES[reason]
        evidence = (
            Evidence("exit", reason, 0.3, "weak corroborating signal"),
            Evidence(kind, reason, 0.9, detail or default_detail, source="pane", line=12),
        )
        part = partial or PartialWork(deliverables_missing=self.task.deliverables)
        work = full_plan(self.task) if missing is None else tuple(missing)
        self._add(
            FailureAttributed(Attribution(reason, 0.9, evidence), PartialSummary.of(part), work)
        )
        if self.first_failed_exit is None:
            self.first_failed_exit = self._last_exit_time
        self._last_reason = reason
        return self

    def fail_with(self, reason: Reason, **kwargs: Any) -> TaskScript:
        """Exit the way ``reason`` usually looks, then attribute it."""
        return self.exit(_REASON_SHAPES[reason][0]).attribute(reason, **kwargs)

    def decide(
        self,
        strategy: Strategy,
        *,
        lesson: str = "",
        systematic_cause: str | None = None,
        rule: str | None = None,
        after: float = 1.0,
    ) -> TaskScript:
        decision = Decision(
            strategy,
            why=f"policy chose {strategy}",
            rule=rule or f"{self._last_reason}-{strategy}",
            systematic_cause=systematic_cause,
            lesson=lesson,
        )
        self._add(
            DecisionMade(decision),
            key=f"{self.task.task_id}:{self.attempt}:decision",
            after=after,
        )
        return self

    def succeed(self, *, pr: int | None = None, after: float = 1.0) -> TaskScript:
        self.journal.clock += after
        recovery = (
            None if self.first_failed_exit is None else self.journal.clock - self.first_failed_exit
        )
        self._add(
            TaskSucceeded(
                first_try=recovery is None, attempts=self.attempt, recovery_time=recovery, pr=pr
            ),
            after=0.0,
        )
        return self

    def escalate(
        self, why: str = "needs a person", *, systematic_cause: str | None = None
    ) -> TaskScript:
        self._add(TaskEscalated(why, systematic_cause, self._last_reason))
        return self


# --------------------------------------------------------------------------- whole stories


def first_try_success(
    j: JournalBuilder,
    task_id: str,
    agent: str,
    *,
    title: str = "",
    deliverables: Sequence[str] = ("README.md",),
    pr: int | None = None,
) -> TaskScript:
    return (
        j.task(task_id, agent, title=title, deliverables=deliverables)
        .launch()
        .exit(ExitInfo(0))
        .succeed(pr=pr)
    )


def sigint_resumed(
    j: JournalBuilder,
    task_id: str = "fake3",
    agent: str = "task-agent-5030",
    *,
    recovery_minutes: float = 5.0,
    pr: int | None = 886,
) -> TaskScript:
    """The seed's task-agent-5030: Ctrl-C after writing fake3.md; resumed; PR created."""
    t = j.task(
        task_id,
        agent,
        title="Create /fake3 command",
        deliverables=("fake3.md", "fake3.py", "fake3_runner.py"),
    )
    t.launch().exit(ExitInfo(status=None, signal=2, source="tmux"), after=240.0)
    t.attribute(
        Reason.SIGINT,
        detail="pane_dead_signal=2: exit 130 (SIGINT/Ctrl-C), likely tmux keyboard input",
        partial=PartialWork(
            deliverables_present=("fake3.md",),
            deliverables_missing=("fake3.py", "fake3_runner.py"),
            uncommitted=("fake3.md",),
        ),
        missing=(
            WorkItem(WorkKind.WRITE, "fake3.py"),
            WorkItem(WorkKind.WRITE, "fake3_runner.py"),
            WorkItem(WorkKind.COMMIT),
            WorkItem(WorkKind.PUSH),
            WorkItem(WorkKind.OPEN_PR),
        ),
    )
    t.decide(Strategy.RESUME, lesson="/fake3 should be a pure markdown LLM command")
    t.launch(Strategy.RESUME, after=5.0).exit(ExitInfo(0), after=recovery_minutes * 60 - 10.0)
    # exit (E) -> attribute +1 -> decide +1 -> launch +5 -> run -> succeed: E + minutes * 60
    return t.succeed(pr=pr, after=3.0)


def permission_outage(
    j: JournalBuilder,
    agents: Sequence[str],
    *,
    cause: str,
    fix: str,
    recovery_minutes: Sequence[float],
) -> list[TaskScript]:
    """The seed's systematic failure: the dispatcher forgot --dangerously-skip-permissions."""
    scripts = []
    for n, agent in enumerate(agents):
        t = j.task(
            f"perm-{n}", agent, title=f"Permission-blocked task {n}", deliverables=("a.py", "b.py")
        )
        t.launch().exit(ExitInfo(0), after=30.0).attribute(
            Reason.PERMISSION,
            detail="result JSON: permission_denials for Write (missing "
            "--dangerously-skip-permissions)",
        )
        scripts.append(t)
    for t in scripts:
        t.decide(
            Strategy.ESCALATE,
            systematic_cause=cause,
            lesson="dispatch every agent with --dangerously-skip-permissions",
        )
        t.escalate("same cause across agents", systematic_cause=cause)
    j.operator_action(fix, [t.task.task_id for t in scripts], after=60.0)
    for t, minutes in zip(scripts, recovery_minutes, strict=True):
        assert t.first_failed_exit is not None
        # Like the coordinator: a release is journaled as a decision, then the launch.
        t.decide(Strategy.RESTART, rule="operator_release").launch(Strategy.RESTART)
        j.advance_to(t.first_failed_exit + minutes * 60 - 2.0)
        t.exit(ExitInfo(0), after=1.0).succeed(after=1.0)
    return scripts


SEED_CAUSE = "Missing --dangerously-skip-permissions flag in task_dispatcher.py"


def seed_incident(start: float = SEED_DAY) -> JournalBuilder:
    """The seed's dashboard: 5 tasks, 1 first try, 1 SIGINT resumed in 5 minutes, 3 permission
    failures escalated as systematic, released by an operator fix, then successful."""
    j = JournalBuilder(start)
    first_try_success(j, "update-fake3", "update-fake3-agent", title="Fix /fake3 spec", pr=887)
    permission_outage(
        j,
        ["task-agent-1813", "task-agent-3403", "task-agent-3532"],
        cause=SEED_CAUSE,
        fix="Updated task_dispatcher.py line 639 to include flag",
        recovery_minutes=(4.0, 5.0, 6.0),
    )
    sigint_resumed(j)
    return j


# --------------------------------------------------------------------------- random journals


@st.composite
def _story(draw: st.DrawFn, j: JournalBuilder, n: int) -> None:
    agent = draw(st.sampled_from(["task-agent-1", "task-agent-2", "task-agent-3", "gemini-7"]))
    size = draw(st.integers(min_value=1, max_value=8))
    t = j.task(f"t{n}", agent, deliverables=[f"f{i}.py" for i in range(size)])
    if draw(st.booleans()) and draw(st.booleans()):
        return  # submitted, not yet launched
    t.launch()
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            t.exit(ExitInfo(1))  # the coordinator moved on without attributing
        else:
            t.fail_with(draw(st.sampled_from(list(Reason))))
        step = draw(st.sampled_from(["resume", "restart", "escalate", "stop"]))
        if step == "stop":
            return
        if step == "escalate":
            t.decide(Strategy.ESCALATE).escalate()
            if not draw(st.booleans()):
                return
            j.operator_action("fixed it", [t.task.task_id])
            t.launch(Strategy.RESTART)
            continue
        t.decide(Strategy(step)).launch(Strategy(step))
    ending = draw(st.sampled_from(["succeed", "succeed", "running", "exit 0 unprocessed"]))
    if ending == "succeed":
        t.exit(ExitInfo(0)).succeed()
    elif ending == "exit 0 unprocessed":
        t.exit(ExitInfo(0))


@st.composite
def random_journal(draw: st.DrawFn, max_tasks: int = 8) -> list[Event]:
    """Several tasks' stories plus workspace events (each story's events kept together)."""
    j = JournalBuilder()
    for n in range(draw(st.integers(min_value=0, max_value=max_tasks))):
        draw(_story(j, n))
    for path in draw(st.lists(st.sampled_from(["/w/a", "/w/b", "/w/c"]), max_size=3)):
        if draw(st.booleans()):
            j.orphaned(path)
        else:
            j.cleaned(path)
    return j.events


# --------------------------------------------------------------------------- any event


def _rounded(max_value: float = 1.0) -> st.SearchStrategy[float]:
    """Numbers the journal keeps as they are: three decimals (confidences, delays)."""
    return st.integers(0, int(max_value * 1000)).map(lambda n: n / 1000)


_text = st.text(max_size=12)
_times = st.floats(0.0, 1e10, allow_nan=False)
_work_items = st.one_of(
    st.builds(WorkItem, st.just(WorkKind.WRITE), st.text(min_size=1, max_size=8)),
    st.sampled_from([WorkKind.TEST, WorkKind.COMMIT, WorkKind.PUSH]).map(WorkItem),
)
_exits = st.one_of(
    st.builds(ExitInfo, st.none() | st.integers(0, 255), st.none(), st.booleans(), _text),
    st.builds(ExitInfo, st.none(), st.integers(1, 31), st.booleans(), _text),
)
_attributions = st.builds(
    Attribution,
    st.sampled_from(list(Reason)),
    _rounded(),
    st.lists(
        st.builds(Evidence, _text, st.sampled_from(list(Reason)), _rounded(), _text), max_size=2
    ).map(tuple),
    st.none() | _rounded(100.0),
    st.none() | st.integers(400, 599),
)
_decisions = st.builds(
    Decision,
    st.sampled_from(list(Strategy)),
    _text,
    _text,
    _rounded(60.0),
    st.none() | _text,
    st.lists(_work_items, max_size=3).map(tuple),
    st.none() | _text,
    st.none() | _text,
    _text,
    st.lists(_text, max_size=2).map(tuple),
)
_tasks = st.builds(
    Task,
    _text,
    _text,
    st.lists(_text, max_size=6).map(tuple),
    st.none() | _text,
    _text,
    st.booleans(),
    _text,
)


def _task_submitted(task: Task, budget: int | None, adopted: str | None) -> TaskSubmitted:
    return TaskSubmitted.of(task, budget=budget, adopted_from=adopted)


PAYLOADS: dict[EventKind, st.SearchStrategy[Payload]] = {
    EventKind.TASK_SUBMITTED: st.builds(
        _task_submitted, _tasks, st.none() | st.integers(1, 50), st.none() | _text
    ),
    EventKind.ATTEMPT_LAUNCHED: st.builds(
        AttemptLaunched,
        _text,
        st.none() | st.sampled_from(list(Strategy)),
        st.lists(_work_items, max_size=3).map(tuple),
        st.none() | _text,
        _text,
        st.none() | _times,
        st.lists(st.builds(AppliedRemedy, _text, _text), max_size=2).map(tuple),
        st.none() | st.builds(TmuxTarget, _text.filter(bool), _text.filter(bool)),
        st.none() | _text,
        st.none() | st.builds(AdoptedRun, _text, st.none() | _text, st.none() | _text),
    ),
    EventKind.ATTEMPT_EXITED: st.builds(
        AttemptExited,
        st.none() | _exits,
        st.none() | _times,
        st.none() | _times,
        _text,
        st.none() | st.dictionaries(_text, st.none() | st.integers() | _text, max_size=3),
        st.none() | _text,
        st.lists(st.sampled_from(["SIGINT", "SIGTERM"]), max_size=2).map(tuple),
        st.none()
        | st.builds(
            OrchestratorResult,
            _text,
            st.none() | st.integers(-64, 255),
            st.none() | _text,
            st.lists(_text, max_size=2).map(tuple),
            st.booleans(),
        ),
        st.none() | st.booleans(),
    ).filter(lambda e: e.superseded is not None or e.orchestrator_result is None),
    EventKind.FAILURE_ATTRIBUTED: st.builds(
        FailureAttributed,
        _attributions,
        st.none()
        | st.builds(
            PartialSummary,
            st.lists(_text, max_size=2).map(tuple),
            st.lists(_text, max_size=2).map(tuple),
            st.lists(_text, max_size=2).map(tuple),
            st.integers(0, 9),
            st.booleans(),
            st.none() | st.integers(1, 10**6),
            st.booleans(),
            st.none() | _text,
            st.none() | st.booleans(),
        ),
        st.lists(_work_items, max_size=3).map(tuple),
    ),
    EventKind.DECISION: st.builds(
        DecisionMade,
        st.none() | _decisions,
        st.none()
        | st.builds(
            LaunchOrder,
            st.integers(1, 9),
            _text,
            _text,
            st.lists(_work_items, max_size=3).map(tuple),
            st.none() | _text,
            st.none() | _times,
        ),
    ),
    EventKind.TASK_SUCCEEDED: st.builds(
        TaskSucceeded,
        st.none() | st.booleans(),
        st.none() | st.integers(0, 9),
        st.none() | _times,
        st.none() | st.integers(1, 10**6),
    ),
    EventKind.TASK_ESCALATED: st.builds(
        TaskEscalated, _text, st.none() | _text, st.none() | st.sampled_from(list(Reason))
    ),
    EventKind.OPERATOR_ACTION: st.builds(
        OperatorAction,
        _text,
        st.lists(_text, max_size=3).map(tuple),
        st.lists(st.sampled_from(list(Reason)), max_size=2).map(tuple),
    ),
    EventKind.WORKSPACE_CLEANED: st.builds(WorkspaceCleaned, _text, st.none() | _text),
    EventKind.WORKSPACE_ORPHANED: st.builds(WorkspaceOrphaned, _text),
    EventKind.USAGE_LIMITED: st.builds(
        UsageLimited,
        _text,
        st.none() | _times,
        st.none() | _times,
        st.lists(_text, max_size=3).map(tuple),
        _text,
    ),
}


def any_event(kind: EventKind | None = None) -> st.SearchStrategy[Event]:
    """An event of ``kind`` (any kind when None) with any envelope the journal accepts."""
    payloads = st.one_of(*PAYLOADS.values()) if kind is None else PAYLOADS[kind]
    return st.builds(
        Event,
        payloads,
        _times,
        st.none() | _text,
        st.none() | _text,
        st.none() | st.integers(1, 50),
        st.none() | _text,
    )


_CAUSES = (None, None, "ci runner out of disk", "expired token")
_AGENTS = ("task-agent-1", "task-agent-2", "gemini-7", "task-agent-3")


@st.composite
def interleaved_journal(
    draw: st.DrawFn, max_tasks: int = 8, texts: Sequence[str] = ()
) -> list[Event]:
    """Tasks whose steps interleave (so the order of first failures is not the task order),
    agents shared by tasks and changing between attempts, systematic causes, lessons,
    releases, workspace records, and times coarsened so that many events share one (ties
    in every order the report sorts by). ``texts``: titles and lessons to draw from too."""
    j = JournalBuilder()
    titles = ["", *texts]
    scripts: list[tuple[TaskScript, list[str]]] = []
    for n in range(draw(st.integers(min_value=0, max_value=max_tasks))):
        size = draw(st.integers(min_value=1, max_value=7))
        script = j.task(
            f"t{n}",
            draw(st.sampled_from(_AGENTS)),
            title=draw(st.sampled_from(titles)),
            deliverables=[f"f{i}.py" for i in range(size)],
        )
        scripts.append((script, ["new"]))
    current = 0
    for _ in range(draw(st.integers(min_value=0, max_value=10 * len(scripts)))):
        if draw(st.integers(0, 9)) == 0:
            path = draw(st.sampled_from(["/w/a", "/w/b"]))
            j.orphaned(path) if draw(st.booleans()) else j.cleaned(path)
            continue
        if not scripts:
            break
        if draw(st.integers(0, 2)) == 0:  # mostly a task goes on for a while, then another
            current = draw(st.integers(0, len(scripts) - 1))
        t, state = scripts[current]
        if state[0] == "done":
            current = (current + 1) % len(scripts)
        _step(draw, j, t, state, titles)
    quantum = draw(st.sampled_from([1.0, 60.0, 3600.0]))
    # Times may also wrap round (a later step at an earlier time: clocks of several hosts),
    # so that tasks submitted late can hold the newest failures or the oldest.
    wrap = draw(st.sampled_from([None, 300.0, 1200.0]))
    start = SEED_DAY
    return [
        replace(e, time=start + ((e.time - start) % (wrap or 1e12)) // quantum * quantum)
        for e in j.events
    ]


def _step(
    draw: st.DrawFn, j: JournalBuilder, t: TaskScript, state: list[str], texts: list[str]
) -> None:
    """One more step of a task's story (``state[0]`` says where it is)."""
    where = state[0]
    if where == "new":
        t.launch(agent=draw(st.sampled_from([None, *_AGENTS])))
        state[0] = "running"
    elif where == "running":
        ending = draw(st.integers(0, 9))
        if ending < 5:
            t.fail_with(draw(st.sampled_from(list(Reason))))
            state[0] = "failed"
        elif ending < 8:
            t.exit(ExitInfo(0)).succeed(pr=draw(st.sampled_from([None, 7])))
            state[0] = "done"
        elif ending == 8:
            t.exit(ExitInfo(1))  # the coordinator moves on without attributing
            state[0] = "failed"
        else:
            t.exit(ExitInfo(0))  # never processed
            state[0] = "done"
    elif where == "failed":
        cause = draw(st.sampled_from(_CAUSES))
        lesson = draw(st.sampled_from(texts))
        if draw(st.integers(0, 3)) == 0:
            t.decide(Strategy.ESCALATE, lesson=lesson, systematic_cause=cause)
            t.escalate(systematic_cause=draw(st.sampled_from(_CAUSES)))
            state[0] = "escalated"
        else:
            strategy = draw(st.sampled_from([Strategy.RESUME, Strategy.RESTART]))
            t.decide(strategy, lesson=lesson, systematic_cause=cause)
            t.launch(strategy, agent=draw(st.sampled_from([None, *_AGENTS])))
            state[0] = "running"
    elif where == "escalated" and draw(st.booleans()):
        j.operator_action(
            draw(st.sampled_from(["fixed it", "rotated the token"])), [t.task.task_id]
        )
        t.launch(Strategy.RESTART)
        state[0] = "running"
