"""``orch-recovery drill``: the production supervisor on this machine, under faults, in one
command -- no GitHub or API account.

It builds a throwaway world (a repository with a small codebase and its tests, a bare origin,
the ``gh`` forge first on PATH, the model double), writes the fleet file, starts
``orch-recovery supervise`` as a subprocess, submits the tasks, injects the named faults at
real moments, plays the operator where a fault asks for one, and ends with the report
(Markdown here, the HTML page written to ``--report``) and a verdict: exit 0 when every task
recovered and every fault was attributed to its cause, 1 when not, 2 on a usage error. The
world is removed at the end unless ``--keep``. docs/production.md ("A drill") walks through it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn, TextIO

from pytest_orch_recovery.chaos.drill import (
    Drill,
    DrillError,
    DrillFailed,
    DrillOutcome,
    DrillSettings,
    DrillView,
    default_timeout,
    environment_problem,
)
from pytest_orch_recovery.chaos.drillworld import DEFAULT_FAULTS, DEFAULT_TASKS, describe_faults
from pytest_orch_recovery.cli.fleet_output import fail, read_events
from pytest_orch_recovery.cli.status import live, render
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    FailureAttributed,
    OperatorAction,
    TaskEscalated,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import ExitInfo
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.report.fleetview import FleetView

PROG = "orch-recovery drill"
_QUIET_AFTER = 10.0  # seconds without news after which a piped run prints a progress line
_REDRAW_EVERY = 0.5  # seconds between redraws of the terminal's status view


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, ``orch-recovery drill: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=prog,
        description="Run the production supervisor on a throwaway world under injected faults\n"
        "and judge the recovery. No GitHub or API account needed; everything it makes is\n"
        "removed at the end unless --keep. docs/production.md: 'A drill first'.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="faults (--fault KIND, repeatable; default: "
        + ", ".join(DEFAULT_FAULTS)
        + "):\n"
        + describe_faults()
        + "\n\nExit status: 0 every task recovered, 1 not, 2 usage error.",
    )
    parser.add_argument(
        "--agent",
        default="sim",
        choices=("sim", "claude-code"),
        help="the agent CLI: the bundled sim agent, or the real Claude Code CLI "
        "(tools/install-claude-code.sh) talking to the model double (default: %(default)s)",
    )
    parser.add_argument(
        "--tasks",
        type=_count,
        metavar="N",
        help=f"how many tasks (default: {DEFAULT_TASKS}, or one per fault when more)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        metavar="KIND",
        help="a fault to inject, each on a task of its own (repeatable); see below",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the world (repository, origin, journal, logs, worktrees) and print how to "
        "look around",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("orch-drill-report.html"),
        metavar="FILE.html",
        help="where to write the HTML report (default: %(default)s)",
    )
    parser.add_argument(
        "--save-journal",
        type=Path,
        metavar="FILE",
        help="copy the supervisor's journal here before the world is removed",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="bound for the whole drill (default: 180 s per task, at least 360)",
    )
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 50")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 1 <= value <= 86400:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1 and 86400 seconds")
    return value


# --------------------------------------------------------------------------- the view


class _Progress(DrillView):
    """Plain lines when piped; on a terminal, the same lines above a live status table
    (``orch-recovery status --live``) redrawn in place."""

    def __init__(self, out: TextIO, drill: Drill | None = None) -> None:
        self.out = out
        self.drill = drill
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._drawn = 0  # lines of the status table on screen
        self._last_draw = 0.0
        self._last_news = time.monotonic()

    def _clock(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def _line(self, text: str) -> None:
        self._erase()
        self.out.write(f"{self._clock()} {text}\n")
        self._last_news = time.monotonic()
        self._draw()

    def say(self, text: str) -> None:
        self._line(f"drill: {text}")

    def event(self, event: Event) -> None:
        words = _event_words(event)
        if words is not None:
            tasks = event.payload.tasks if isinstance(event.payload, OperatorAction) else ()
            task = event.task_id or ",".join(tasks)
            self._line(f"{task:<22} {words}")

    def tick(self) -> None:
        if self.tty:
            if time.monotonic() - self._last_draw >= _REDRAW_EVERY:
                self._erase()
                self._draw()
        elif time.monotonic() - self._last_news >= _QUIET_AFTER:
            self.say("still waiting: " + (self._waiting() or "the supervisor"))

    def _rows(self) -> str:
        if self.drill is None or self.drill.sandbox is None or not self.drill.journal.exists():
            return ""
        now = time.time()
        try:
            rows = FleetView(read_events([self.drill.journal]), budget=Policy().max_attempts)
        except UsageError:
            return ""
        statuses = rows.statuses(now=now)
        checkpoints = self.drill.root / "checkpoints"
        lives = [live(r, checkpoints, now, self.drill.tmux_socket) for r in statuses]
        return render(statuses, lives, "table", now)

    def _waiting(self) -> str:
        if self.drill is None or self.drill.sandbox is None or not self.drill.journal.exists():
            return ""
        try:
            view = FleetView(read_events([self.drill.journal]))
        except UsageError:
            return ""
        open_rows = [r for r in view.statuses(now=time.time()) if str(r.phase) not in _DONE]
        return ", ".join(f"{r.task_id} {r.phase} (attempt {r.attempt})" for r in open_rows)

    def _draw(self) -> None:
        if self.tty:
            text = self._rows()
            self.out.write(text)
            self._drawn = text.count("\n")
            self._last_draw = time.monotonic()
        self.out.flush()

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the table's start, clear
        self._drawn = 0

    def done(self) -> None:
        """Leave the last table on screen (a terminal) and stop redrawing."""
        self._drawn = 0
        self.tty = False


_DONE = ("succeeded", "escalated")


def _event_words(event: Event) -> str | None:
    """One line for the drill's log of the supervisor's events; None for the kinds it skips."""
    data, attempt = event.payload, event.attempt
    if isinstance(data, AttemptLaunched):
        return f"attempt {attempt} launched on {event.agent} ({data.strategy or 'fresh'})"
    if isinstance(data, AttemptExited):
        info = data.exit or ExitInfo(None)
        ended = f"signal {info.signal_name}" if info.signal else f"exit {info.status}"
        return f"attempt {attempt} exited ({ended})"
    if isinstance(data, FailureAttributed):
        att = data.attribution
        evidence = att.evidence[0].detail if att.evidence else ""
        return f"attributed {att.reason} ({att.confidence}): {evidence}"[:160]
    if isinstance(data, DecisionMade):
        decision = data.decision
        strategy, why = (decision.strategy, decision.why) if decision else (None, "")
        return f"decided {strategy}: {why}"[:160]
    if isinstance(data, TaskSucceeded):
        return f"succeeded on attempt {attempt}"
    if isinstance(data, TaskEscalated):
        return f"escalated: {data.why}"[:160]
    if isinstance(data, OperatorAction):
        return f"operator: {data.action}"
    return None


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    faults = tuple(args.fault) if args.fault else DEFAULT_FAULTS
    problem = environment_problem()
    if problem is not None:
        return fail(PROG, problem)
    count = args.tasks if args.tasks is not None else max(DEFAULT_TASKS, len(faults))
    settings = DrillSettings(
        agent=args.agent,
        tasks=count,
        faults=faults,
        keep=args.keep,
        timeout=args.timeout or default_timeout(count),
    )
    out = sys.stdout
    view = _Progress(out)
    try:
        drill = Drill(settings, view)
    except DrillError as exc:
        return fail(PROG, str(exc))
    view.drill = drill
    outcome: DrillOutcome | None = None
    failure = None
    try:
        with drill:
            try:
                outcome = drill.run()
            except DrillFailed as exc:
                failure = str(exc)
            view.done()
            if drill.journal.exists():
                _report(drill, args, out)
            if args.keep:
                out.write("\nThe world is kept. To look around:\n")
                out.write("".join(f"  {line}\n" for line in drill.look_around()))
    except KeyboardInterrupt:
        out.write(f"\n{PROG}: interrupted; the world is removed\n")
        return 130
    return _verdict(outcome, failure, drill.leftovers, out)


def _report(drill: Drill, args: argparse.Namespace, out: TextIO) -> None:
    from pytest_orch_recovery.cli.main import main as cli

    journal = str(drill.journal)
    out.write("\n")
    out.flush()
    cli(["report", "--journal", journal, "--format", "md"])
    sys.stdout.flush()
    with contextlib.redirect_stdout(sys.stderr):
        code = cli(
            ["report", "--journal", journal, "--format", "html", "--output", str(args.report)]
        )
    if code == 0:
        out.write(f"\nHTML report: {args.report.resolve()}\n")
    if args.save_journal is not None:
        try:
            shutil.copyfile(drill.journal, args.save_journal)
        except OSError as exc:
            out.write(f"journal not saved: {args.save_journal}: {exc.strerror or exc}\n")
        else:
            out.write(f"journal: {args.save_journal.resolve()}\n")


def _verdict(
    outcome: DrillOutcome | None, failure: str | None, leftovers: list[str], out: TextIO
) -> int:
    out.write("\nVerdict\n")
    ok = outcome is not None and outcome.ok and failure is None and not leftovers
    if outcome is not None:
        for v in outcome.verdicts:
            mark = "ok  " if v.ok else "FAIL"
            assert v.task.fault is not None
            out.write(f"  {mark} {v.task.fault.name:<16} {v.task.task.task_id}: {v.detail}\n")
        for task_id, phase in outcome.outcomes.items():
            if phase != "succeeded":
                out.write(f"  FAIL {task_id}: {phase}\n")
        for task_id, attempt in outcome.launched_twice:
            out.write(f"  FAIL {task_id}: attempt {attempt} launched twice\n")
        launched = "no attempt launched twice" if not outcome.launched_twice else ""
        if launched:
            out.write(f"  ok   {launched}\n")
    if failure is not None:
        out.write(f"  FAIL {failure}\n")
    for item in leftovers:
        out.write(f"  FAIL left behind: {item}\n")
    tasks = len(outcome.outcomes) if outcome is not None else 0
    if ok:
        out.write(f"PASS: {tasks} task(s), every one recovered\n")
    else:
        out.write("FAIL: the drill did not recover every task (see above)\n")
    out.flush()
    return 0 if ok else 1
