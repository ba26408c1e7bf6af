"""The drill: the production supervisor (``orch-recovery supervise``, a real subprocess) on a
throwaway world, under faults injected at real moments, judged from its journal.

:class:`Drill` builds the world (:mod:`.drillworld`) inside a
:class:`~pytest_orch_recovery.doubles.sandbox.Sandbox` -- so everything it starts or makes is in
a ledger and torn down from any state -- starts the model double and the supervisor, submits
the tasks through the fleet's spool as ``orch-recovery submit`` does, plays the operator (kills
the supervisor and starts it again, deploys a fleet file without the permission flag, fixes it
and releases the escalation), waits for every task's outcome, and judges: each fault attributed
to its cause and recovered from, no attempt launched twice. Waiting is on the supervisor's log
lines (one per journal event) with a bound, never on time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from pytest_orch_recovery.chaos.drillworld import (
    ATTEMPT_TIMEOUT,
    DEFAULT_FAULTS,
    DEFAULT_TASKS,
    GATE_AT,
    GATE_OPEN,
    DrillError,
    DrillTask,
    api_faults,
    fleet_file,
    gated_tests,
    hook_faults,
    model_plan,
    plan_tasks,
    reject_pushes,
    seed_codebase,
    task_file,
)
from pytest_orch_recovery.chaos.tiers.tmux import double_env, write_fault_plan
from pytest_orch_recovery.doubles.modeldouble import ModelDouble
from pytest_orch_recovery.doubles.sandbox import Sandbox, default_base_dir
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.events import Event, EventKind, FailureAttributed, OperatorAction
from pytest_orch_recovery.fleet.intake import Spool, load_tasks
from pytest_orch_recovery.infra.agents import claude_code_missing, driver_for
from pytest_orch_recovery.runtime.server import tmux_server_running
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.journal import read_events

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between the view's ticks while the drill waits
_STOP_BOUND = 60.0  # seconds a stopping supervisor may take
_FINAL = ("task_succeeded", "task_escalated")


class DrillFailed(OrchRecoveryError):
    """The drill could not go on (the supervisor died, a task took longer than the bound)."""


@dataclass(frozen=True)
class DrillSettings:
    agent: str = "sim"
    tasks: int | None = None  # None: DEFAULT_TASKS, or one per fault when there are more
    faults: tuple[str, ...] = DEFAULT_FAULTS
    keep: bool = False
    timeout: float = 600.0  # seconds for the whole drill to reach every outcome
    base_dir: Path | None = None

    def planned(self) -> list[DrillTask]:
        """The drill's tasks; a :class:`DrillError` for settings that cannot run."""
        count = self.tasks if self.tasks is not None else max(DEFAULT_TASKS, len(self.faults))
        tasks = plan_tasks(count, self.faults)
        missing = claude_code_missing() if self.agent == "claude-code" else None
        if missing is not None:
            raise DrillError(f"--agent claude-code: {missing}")
        try:
            driver_for(self.agent)
        except (ValueError, LookupError) as exc:
            raise DrillError(f"--agent {self.agent}: {exc}") from None
        return tasks


class DrillView:
    """What the drill tells the person running it; the command line subclasses it."""

    def say(self, text: str) -> None:
        """A step of the drill (building, injecting, releasing, judging)."""

    def event(self, event: Event) -> None:
        """One journal event of the supervisor."""

    def tick(self) -> None:
        """Called every ``TICK`` seconds or sooner while the drill waits."""


@dataclass
class FaultVerdict:
    task: DrillTask
    reasons: list[str]
    outcome: str  # the task's last phase: succeeded, escalated, failed, unfinished
    ok: bool
    detail: str


@dataclass
class DrillOutcome:
    ok: bool
    verdicts: list[FaultVerdict]
    outcomes: dict[str, str]
    launched_twice: list[tuple[str, int]]
    supervisor_starts: int
    problems: list[str] = field(default_factory=list)


class SupervisorProcess:
    """``orch-recovery supervise --config FLEET [OPTION...]`` as a child process in its own
    session; its log lines go to ``log`` (default ``supervise.log`` beside the fleet file)
    and, one by one, to ``lines``."""

    def __init__(
        self,
        config: Path,
        env: dict[str, str],
        lines: queue.Queue[str | None],
        *options: str,
        log: Path | None = None,
    ):
        self._lines = lines
        self._log = (log or config.parent / "supervise.log").open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_orch_recovery", "supervise", "--config", str(config),
             *options],
            cwd=config.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # it exited

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=_STOP_BOUND)
        self._pump.join(timeout=_STOP_BOUND)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._log.close()
        return code


class Drill:
    """One drill; a context manager that removes the world on exit unless ``keep``."""

    def __init__(self, settings: DrillSettings, view: DrillView | None = None) -> None:
        self.settings = settings
        self.tasks = settings.planned()
        self.view = view or DrillView()
        self.sandbox: Sandbox | None = None
        self.double: ModelDouble | None = None
        self.supervisor: SupervisorProcess | None = None
        self.supervisor_starts = 0
        self.leftovers: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._events: list[Event] = []
        self._offset = 0
        self._deadline = 0.0
        self._env: dict[str, str] = {}  # the supervisor's environment
        self._agent_env: dict[str, str] = {}  # the fleet file's [env]
        self._fault_plan: Path | None = None  # the fault hook's plan, when a fault needs it

    # ------------------------------------------------------------------ paths

    @property
    def root(self) -> Path:
        assert self.sandbox is not None, "the drill has not started"
        return self.sandbox.root

    @property
    def config(self) -> Path:
        return self.root / "fleet.toml"

    @property
    def journal(self) -> Path:
        return self.root / "fleet" / "journal.jsonl"

    @property
    def tmux_socket(self) -> str:
        assert self.sandbox is not None
        return self.sandbox.tmux_socket

    def events(self) -> list[Event]:
        return list(self._events)

    # ------------------------------------------------------------------ the run

    def __enter__(self) -> Drill:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self) -> DrillOutcome:
        self._deadline = time.monotonic() + self.settings.timeout
        self._build()
        self._start_supervisor()
        self._wait(lambda: any("supervise: supervising" in s for s in self._seen), "its start")
        together = [t for t in self.tasks if t.fault is None or not t.fault.alone]
        phases = [together] + [[t] for t in self.tasks if t not in together]
        for phase in phases:
            self._run_phase(phase)
        return self._judge()

    def _build(self) -> None:
        self.view.say("building the world: repository, bare origin, gh forge, model double")
        base = self.settings.base_dir or default_base_dir().with_name("orch-drills")
        self.sandbox = box = Sandbox.create(base_dir=base, name="drill", unwind_on_sigterm=True)
        seed_codebase(box.repo)
        gated = gated_tests(box.root, box.tmux_socket)
        self.tasks = [
            replace(t, task=replace(t.task, tests=gated))
            if t.fault and t.fault.name == "kill-supervisor"
            else t
            for t in self.tasks
        ]
        self.double = ModelDouble(
            model_plan(self.tasks), transcript_path=box.root / "transcript.jsonl"
        ).start()
        box.record_port(int(self.double.url.rsplit(":", 1)[1]), what="model double")
        for spec in api_faults(self.tasks):
            self.double.add_fault(spec)
        for t in self.tasks:
            if t.fault and t.fault.name == "push-rejected":
                reject_pushes(box.origin, f"{t.agent}-work", times=2)
        hooked = hook_faults(self.tasks)
        self._fault_plan = (
            write_fault_plan(box, hooked, [t.task.tests for t in self.tasks if t.task.tests])
            if hooked
            else None
        )
        self._agent_env = double_env(self.double.url)
        self._agent_env["ORCH_SANDBOX_ID"] = box.sandbox_id
        self._write_fleet_file(skip_permissions=True)
        tasks_dir = box.root / "tasks"
        tasks_dir.mkdir()
        for t in self.tasks:
            atomic.write_text(tasks_dir / f"{t.task.task_id}.toml", task_file(t))
        env = box.env("supervisor")
        env.pop("ORCH_AGENT", None)
        self._env = env

    def _write_fleet_file(self, *, skip_permissions: bool) -> None:
        assert self.sandbox is not None
        atomic.write_text(
            self.config,
            fleet_file(
                self.sandbox,
                agent=self.settings.agent,
                env=self._agent_env,
                fault_plan=self._fault_plan,
                skip_permissions=skip_permissions,
            ),
        )

    def _start_supervisor(self) -> None:
        assert self.sandbox is not None
        self.supervisor = SupervisorProcess(self.config, self._env, self._lines)
        self.sandbox.record_pid(self.supervisor.proc.pid, what="supervisor")
        self.supervisor_starts += 1
        self.view.say(
            f"orch-recovery supervise --config {self.config} (pid {self.supervisor.proc.pid})"
        )

    def _restart_supervisor(self, sig: int, why: str) -> None:
        assert self.supervisor is not None
        pid = self.supervisor.proc.pid
        self._seen.clear()
        code = self.supervisor.stop(sig)
        self.view.say(f"{why}: supervisor pid {pid} ended ({_exit_words(code)}); starting it again")
        self._start_supervisor()
        self._wait(lambda: any("supervise: recovering" in s for s in self._seen), "its recovery")

    def _run_phase(self, tasks: Sequence[DrillTask]) -> None:
        alone = tasks[0].fault if len(tasks) == 1 and tasks[0].fault else None
        if alone is not None and alone.name == "gh-down":
            assert self.sandbox is not None and self.sandbox.forge is not None
            self.sandbox.forge.inject("unreachable", times=2)
            self.view.say("gh-down: GitHub unreachable for the next 2 `gh pr create` calls")
        if alone is not None and alone.name == "no-permission":
            self._write_fleet_file(skip_permissions=False)
            self._restart_supervisor(
                signal.SIGTERM, "no-permission: fleet file deployed without the permission flag"
            )
        assert self.sandbox is not None
        spool = Spool(self.root / "fleet" / "spool")
        for t in tasks:
            for submission in load_tasks(self.root / "tasks" / f"{t.task.task_id}.toml"):
                spool.submit(submission)
            fault = f", fault {t.fault.name}" if t.fault else ""
            self.view.say(f"submitted {t.task.task_id}: {t.task.title!r} to {t.agent}{fault}")
        ids = {t.task.task_id for t in tasks}
        killing = [t for t in tasks if t.fault and t.fault.name == "kill-supervisor"]
        released: dict[str, int] = {}  # task -> its escalations when the drill released it
        while True:
            self._wait(lambda: self._finished(ids, released) or self._due_kill(killing), "tasks")
            if killing and self._due_kill(killing):
                self._kill_supervisor(killing.pop())
                continue
            escalated = [
                t
                for t in tasks
                if self._last(t.task.task_id) == "task_escalated"
                and t.fault is not None
                and t.fault.release
                and t.task.task_id not in released  # released once: a second one stays
            ]
            if not escalated:
                return
            for t in escalated:
                self._release(t)
                released[t.task.task_id] = self._escalations(t.task.task_id)

    def _due_kill(self, killing: Sequence[DrillTask]) -> bool:
        return any(
            e.kind is EventKind.ATTEMPT_LAUNCHED and e.task_id == t.task.task_id
            for t in killing
            for e in self._events
        )

    def _kill_supervisor(self, t: DrillTask) -> None:
        self.view.say(f"kill-supervisor: waiting for {t.agent} to reach its tests")
        self._tmux("wait-for", GATE_AT)
        assert self.supervisor is not None
        self._restart_supervisor(signal.SIGKILL, f"kill-supervisor: kill -9 while {t.agent} works")
        (self.root / "gate-open").touch()
        self._tmux("wait-for", "-S", GATE_OPEN)
        self.view.say(f"kill-supervisor: {t.agent} goes on; the new supervisor re-adopted it")

    def _release(self, t: DrillTask) -> None:
        self._write_fleet_file(skip_permissions=True)
        note = "drill: put skip_permissions = true back in the fleet file"
        Spool(self.root / "fleet" / "spool").release(t.task.task_id, note)
        self.view.say(
            f"{t.fault.name if t.fault else ''}: fixed the fleet file; "
            f"orch-recovery release {t.task.task_id} --note {note!r}"
        )

    def _tmux(self, *argv: str) -> None:
        left = max(1.0, self._deadline - time.monotonic())
        try:
            subprocess.run(
                ["tmux", "-L", self.tmux_socket, *argv], check=True, capture_output=True,
                timeout=left,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DrillFailed(f"tmux {' '.join(argv)}: no answer in {left:.0f} s") from None
        except subprocess.CalledProcessError as exc:
            raise DrillFailed(f"tmux {' '.join(argv)}: {exc.stderr.decode().strip()}") from None

    def _last(self, task_id: str) -> str | None:
        kinds = [
            str(e.kind)
            for e in self._events
            if e.task_id == task_id and e.kind in (*_FINAL, EventKind.OPERATOR_ACTION)
        ]
        return kinds[-1] if kinds else None

    def _escalations(self, task_id: str) -> int:
        return sum(
            1 for e in self._events if e.kind is EventKind.TASK_ESCALATED and e.task_id == task_id
        )

    def _finished(self, ids: Iterable[str], released: dict[str, int]) -> bool:
        """Every task has an outcome; an escalated one the drill has not released yet ends
        the wait too (the phase loop releases it, or gives up on it)."""
        for task_id in ids:
            last = self._last(task_id)
            if last not in _FINAL:
                return False
            if (
                last == "task_escalated"
                and task_id in released
                and self._escalations(task_id) <= released[task_id]
            ):
                return False  # released; the supervisor has not taken the release yet
        return True

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        """Follow the journal until ``done()``; a line from the supervisor wakes the wait."""
        while True:
            self._read_journal()
            if done():
                return
            if time.monotonic() > self._deadline:
                raise DrillFailed(
                    f"waited {self.settings.timeout:.0f} s for {what} (--timeout); "
                    f"the supervisor's log is {self.root / 'supervise.log'}"
                )
            try:
                line = self._lines.get(timeout=TICK)
            except queue.Empty:
                self.view.tick()
                continue
            if line is None:
                if self.supervisor is not None and self.supervisor.proc.poll() is not None:
                    tail = "\n".join(self._seen[-5:])
                    raise DrillFailed(
                        f"the supervisor exited ({_exit_words(self.supervisor.proc.returncode)})"
                        f" while the drill waited for {what}:\n{tail}"
                    )
                continue
            self._seen.append(line)
            log.debug("supervisor: %s", line)

    def _read_journal(self) -> None:
        if not self.journal.exists():
            return  # the supervisor has not written its first event yet
        seq = self._events[-1].seq if self._events else 0
        # A torn last line is a write in progress: read_events leaves it for the next look.
        for event, end in read_events(self.journal, start=self._offset, seq=seq):
            self._offset = end
            self._events.append(event)
            self.view.event(event)

    # ------------------------------------------------------------------ the verdict

    def _judge(self) -> DrillOutcome:
        launched = Counter(
            (str(e.task_id), e.attempt or 0)
            for e in self._events
            if e.kind is EventKind.ATTEMPT_LAUNCHED
        )
        twice = sorted(k for k, n in launched.items() if n > 1)
        outcomes = {
            t.task.task_id: (self._last(t.task.task_id) or "unfinished").removeprefix("task_")
            for t in self.tasks
        }
        verdicts = [self._verdict(t, outcomes[t.task.task_id]) for t in self.tasks if t.fault]
        problems = [f"{tid}: {o}" for tid, o in outcomes.items() if o != "succeeded"]
        problems += [f"{tid} attempt {n} launched more than once" for tid, n in twice]
        problems += [f"{v.task.label}: {v.detail}" for v in verdicts if not v.ok]
        return DrillOutcome(
            ok=not problems,
            verdicts=verdicts,
            outcomes=outcomes,
            launched_twice=twice,
            supervisor_starts=self.supervisor_starts,
            problems=problems,
        )

    def _verdict(self, t: DrillTask, outcome: str) -> FaultVerdict:
        assert t.fault is not None
        task_id = t.task.task_id
        reasons = [
            str(e.payload.attribution.reason)
            for e in self._events
            if isinstance(e.payload, FailureAttributed) and e.task_id == task_id
        ]
        attempts = sum(
            1 for e in self._events if e.kind is EventKind.ATTEMPT_LAUNCHED and e.task_id == task_id
        )
        recovered = outcome == "succeeded"
        if t.fault.expected is None:  # kill-supervisor: no failure; the attempt re-adopted
            ok = recovered and not reasons and self.supervisor_starts > 1
            detail = (
                f"supervisor killed and started again; attempt 1 re-adopted, launched once, "
                f"{outcome}"
                if ok
                else f"{outcome} after {attempts} attempt(s), reasons {reasons or 'none'}"
            )
            return FaultVerdict(t, reasons, outcome, ok, detail)
        expected = str(t.fault.expected)
        blamed = bool(reasons) and reasons[0] == expected
        ok = blamed and recovered
        released = any(
            isinstance(e.payload, OperatorAction) and task_id in e.payload.tasks
            for e in self._events
        )
        how = " after the operator's release" if released else ""
        detail = (
            f"attributed {reasons[0] if reasons else 'nothing'} (expected {expected}); "
            f"{outcome}{how} on attempt {attempts}"
        )
        return FaultVerdict(t, reasons, outcome, ok, detail)

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        """Stop the supervisor and the double; remove the world unless ``keep``."""
        try:
            if self.supervisor is not None:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    self.supervisor.stop(signal.SIGTERM)
            if self.double is not None:
                self.double.stop()
        finally:
            if self.sandbox is not None:
                if self.settings.keep:
                    self.sandbox.keep()
                else:
                    self.sandbox.teardown()
                    self.leftovers = self.sandbox.leftovers()

    def look_around(self) -> list[str]:
        """The commands a person runs in a kept world."""
        assert self.double is not None
        port = self.double.url.rsplit(":", 1)[1]
        config = self.config
        tmux = tmux_server_running(self.tmux_socket)  # a supervisor's stop may remove it
        return [
            f"cd {self.root}",
            f"orch-recovery status --config {config} --live",
            f"orch-recovery failures --config {config}",
            f"orch-recovery report --journal {self.journal} --format md",
            *([f"tmux -L {self.tmux_socket} ls        # the agents' panes"] if tmux else []),
            f"git -C {self.root / 'repo'} log --oneline --all",
            f"orch-recovery model-double --port {port} &   # the API again, then:",
            f"orch-recovery supervise --config {config}   # and submit more tasks",
            (f"tmux -L {self.tmux_socket} kill-server; " if tmux else "")
            + f"rm -rf {self.root}   # when done",
        ]


def _exit_words(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def default_timeout(tasks: int) -> float:
    """A bound for the whole drill: an attempt timeout per task and phase, generous."""
    return float(ATTEMPT_TIMEOUT * max(2, tasks))


def environment_problem() -> str | None:
    """Why the drill cannot run on this machine (no tmux, no git), or None."""
    import shutil

    for program in ("tmux", "git"):
        if shutil.which(program) is None:
            return f"{program} is not installed (the drill runs real {program})"
    return None


__all__ = [
    "Drill",
    "DrillError",
    "DrillFailed",
    "DrillOutcome",
    "DrillSettings",
    "DrillView",
    "FaultVerdict",
    "SupervisorProcess",
    "default_timeout",
    "environment_problem",
]
