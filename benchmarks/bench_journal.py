"""Journal throughput: append with fsync off and on, replay, and reads of a large journal.

Run ``python benchmarks/bench_journal.py``; prints one JSON object. The baseline is a plain
``json.loads`` loop over the same lines measured in the same run, so ``replay_vs_json_loads``
says what building and checking Events costs on top of parsing.

``--reads N`` (0: skip) also writes an N-event journal and runs ``status``, ``failures``,
``partial``, ``report`` (Markdown), ``report --format json`` and ``report --format html`` on
it, and a coordinator restart (open the journal, ``Coordinator.recover``), each in a fresh
process (wall, CPU seconds, and the child's own peak RSS, ``VmHWM``):
first the full replay every read and restart did before snapshots (``full_replay``, the
same-run baseline), then through a snapshot with ``--tail`` events appended after it
(``snapshot``: the history snapshot for reads, the coordinator snapshot for the restart).
A large journal is built from a pool of ``--pool`` distinct tasks, renamed and shifted in
time, so 2,000,000 events take a minute to write, not an hour; ``--workdir`` keeps it (and
its history snapshot) for the next run. Each run first cuts the journal back to where the
tail begins and runs each command once there, so that whatever files a command keeps beside
the journal are written by the code being measured, then puts the tail back and times it.
``--commands`` picks some of the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    FailureAttributed,
    PartialSummary,
    Payload,
    TaskEscalated,
    TaskSubmitted,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import (
    Attribution,
    Complexity,
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
from pytest_orch_recovery.store.journal import Journal, replay
from pytest_orch_recovery.store.restart import state_path
from pytest_orch_recovery.store.snapshot import HistoryFollower, snapshot_path

_REASONS = [Reason.SIGINT, Reason.PERMISSION, Reason.API_ERROR, Reason.GITHUB_ERROR]
# Pane text of the kind an attempt leaves behind; the tail is cut to at most 2 KiB.
_PANE_LINES = [
    "$ claude -p 'Create /fake3 command' --output-format json",
    "Reading cmd/fake3.md",
    "Writing cmd/fake3.md (42 lines)",
    "$ git add -A && git commit -m 'Add /fake3 command'",
    "[task-agent-5030 1a2b3c4] Add /fake3 command",
    " 1 file changed, 42 insertions(+)",
    "$ git push -u origin HEAD",
    "remote: Create a pull request for 'task-agent-5030' on GitHub by visiting:",
    "$ pytest -q",
    "........................................ [100%]",
    "40 passed in 1.92s",
    "^C",
]


def realistic_events(count: int, seed: int = 5030, max_tail: int = 2048) -> Iterator[Event]:
    """A fleet's journal: each task submitted, launched, and (often) failed and recovered."""
    rng = random.Random(seed)
    produced = 0
    clock = 1_753_257_600.0  # 2025-07-23, the seed's incident day
    n = 0
    while produced < count:
        n += 1
        files = tuple(f"cmd/fake{n}_{i}.md" for i in range(rng.randint(1, 7)))
        task = Task(f"task-{n}", f"Create /fake{n} command", files, tests="pytest -q")
        agent = f"task-agent-{rng.randint(1000, 9999)}"
        batch: list[tuple[Payload, int | None, str | None]] = [
            (TaskSubmitted(task, Complexity.SIMPLE), None, None)
        ]
        attempts = 1 if rng.random() < 0.3 else rng.randint(2, 3)
        for attempt in range(1, attempts + 1):
            key = f"{task.task_id}:{attempt}"
            batch.append((AttemptLaunched("claude-code", None, full_plan(task)), attempt, key))
            failed = attempt < attempts
            status = 130 if failed else 0
            exited = AttemptExited(
                exit=ExitInfo.from_shell_status(status),
                started_at=clock,
                ended_at=clock + rng.uniform(30, 900),
                output_tail=_pane_tail(rng, max_tail),
                session_id=f"{rng.getrandbits(64):016x}",
            )
            batch.append((exited, attempt, None))
            if not failed:
                done = TaskSucceeded(attempts == 1, attempts, 300.0)
                batch.append((done, attempt, None))
                break
            reason = rng.choice(_REASONS)
            evidence = Evidence("exit", reason, 0.9, "exit code 130 (SIGINT)", "pane", 12)
            partial = PartialWork(deliverables_present=files[:1], deliverables_missing=files[1:])
            attributed = FailureAttributed(
                Attribution(reason, 0.9, (evidence,)),
                PartialSummary.of(partial),
                (WorkItem(WorkKind.COMMIT),),
            )
            batch.append((attributed, attempt, None))
            decision = Decision(Strategy.RESUME, "partial work present", "resume-partial")
            batch.append((DecisionMade(decision), attempt, f"{key}+1"))
        for payload, attempt_no, action_key in batch:
            if produced >= count:
                return
            clock += rng.uniform(0.1, 5.0)
            yield Event(payload, clock, task.task_id, agent, attempt_no, action_key)
            produced += 1


def _pane_tail(rng: random.Random, max_tail: int) -> str:
    text = "\n".join(rng.choices(_PANE_LINES, k=rng.randint(1, 60))) + "\n"
    return text[-max_tail:] if max_tail else ""


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _best(action: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over ``rounds`` runs (CPU time is what one core
    spends, which stays meaningful when other processes share the machine)."""
    walls, cpus = [], []
    for _ in range(rounds):
        cpu = time.process_time()
        walls.append(_timed(action))
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def _append_all(path: Path, events: list[Event], *, fsync: bool) -> float:
    with Journal(path, fsync=fsync) as journal:
        return _timed(lambda: [journal.append(e) for e in events])


def run(events_count: int, fsync_count: int, rounds: int, max_tail: int) -> dict[str, Any]:
    events = list(realistic_events(events_count, max_tail=max_tail))
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        big = Path(tmp) / "journal.jsonl"
        append_off = _append_all(big, events, fsync=False)
        append_on = _append_all(Path(tmp) / "synced.jsonl", events[:fsync_count], fsync=True)
        lines = big.read_bytes().split(b"\n")[:-1]

        def baseline() -> list[Any]:  # read, decode, split and parse: replay minus the Events
            loads = json.loads
            return [loads(line) for line in big.read_bytes().decode().split("\n")[:-1]]

        replayed = replay(big)
        assert replayed[-1].seq == len(events) == len(lines)
        replay_wall, replay_cpu = _best(lambda: replay(big), rounds)
        baseline_wall, baseline_cpu = _best(baseline, rounds)
        reopen_wall, _ = _best(lambda: Journal(big).close(), rounds)
        size = big.stat().st_size
    return {
        "events": len(events),
        "journal_bytes": size,
        "append_fsync_off": {"events": len(events), "per_second": round(len(events) / append_off)},
        "append_fsync_on": {"events": fsync_count, "per_second": round(fsync_count / append_on)},
        "mean_line_bytes": round(size / len(events)),
        "replay_seconds": round(replay_wall, 4),
        "replay_cpu_seconds": round(replay_cpu, 4),
        "replay_events_per_second": round(len(events) / replay_wall),
        "reopen_seconds": round(reopen_wall, 4),
        "baseline_json_loads_seconds": round(baseline_wall, 4),
        "baseline_json_loads_cpu_seconds": round(baseline_cpu, 4),
        "replay_vs_json_loads": round(replay_cpu / baseline_cpu, 2),
        "python": sys.version.split()[0],
    }


_CHILD = """
import sys, time, contextlib
start, cpu = time.perf_counter(), time.process_time()
mode, command, path = sys.argv[1], sys.argv[2], sys.argv[3]
from pytest_orch_recovery.cli import failures, fleet_output, partial, report, status
from pytest_orch_recovery.cli import failurescache, partialcache, reportcache, statuscache
from pytest_orch_recovery.cli.main import main
if mode == "full_replay":  # every read before snapshots: replay every event, fold them all
    from pytest_orch_recovery.store.history import History
    from pytest_orch_recovery.store.journal import replay
    def whole(paths, follower=None):
        return History(replay(paths[0]))
    from pytest_orch_recovery.cli import pagecache
    pagecache.load = lambda journal: None  # the page folds every event again
    pagecache.save = lambda *args: None  # and leaves the file the other mode reads alone
    for module in (failures, fleet_output, partial, report, status):
        if hasattr(module, "read_history"):
            module.read_history = whole
    for keeper in (statuscache, failurescache, partialcache):  # their kept rows unread
        keeper.render_cached = lambda *args: None
    reportcache.kept_metrics = contextlib.contextmanager(lambda *args, **kw: iter([None]))
words = command.split()
argv = [words[0], "--journal", path] + words[1:]
if words[0] != "report" and "--format" not in words:
    argv += ["--format", "json"]
class Count:  # what a terminal or a pipe takes: counted, not kept
    size = 0
    def write(self, text):
        self.size += len(text)
        return len(text)
    def flush(self):
        pass
out = Count()
with contextlib.redirect_stdout(out):
    main(argv)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(wall, cpu, out.size, peak, file=sys.stderr)
"""

# A supervisor's restart: open the journal and rebuild the coordinator's state, from every
# event (full_replay) or from the coordinator snapshot and the events after it (snapshot).
# The runtime does nothing: no agent runs. "prepare" writes the snapshot (full replay).
_RESTART = """
import sys, time
start, cpu = time.perf_counter(), time.process_time()
from pytest_orch_recovery.engine.coordinator import Coordinator, CoordinatorConfig, fold_settings
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.store.journal import Journal
from pytest_orch_recovery.store.restart import open_journal, save_state
class Clock:
    def now(self): return 2e9
class Idle:
    clock = Clock()
    def launch(self, spec): pass
    def cleanup(self, agent): pass
    def live(self): return frozenset()
mode, path = sys.argv[1], sys.argv[3]
if mode == "snapshot":
    journal, state = open_journal(path, fold_settings(CoordinatorConfig(), Policy()))
    assert state is not None and journal.resumed_at == state.seq, "snapshot not used"
else:
    journal, state = Journal(path, fsync=False), None
with journal:
    coordinator = Coordinator(Idle(), journal).recover(state=state)
    if mode == "prepare":
        assert save_state(journal, coordinator.state())
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(wall, cpu, len(coordinator.tasks) + len(coordinator.settled), peak, file=sys.stderr)
"""


def _child(code: str, *args: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; its wall and CPU seconds, output size and peak
    RSS. The peak is the child's own ``VmHWM``: ``ru_maxrss`` (``wait4``, ``getrusage``)
    also counts the RSS the process had before ``exec``, i.e. this parent's."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({done.returncode}): {done.stderr[-2000:]}")
    wall, cpu, size, peak_kib = done.stderr.split()[-4:]
    return {
        "seconds": round(float(wall), 3),
        "cpu_seconds": round(float(cpu), 3),
        "peak_mib": int(peak_kib) // 1024,
        "output_bytes": int(size),
    }


_COMMANDS = (
    "restart",
    "status --format table",
    "status",
    "failures",
    "failures --format table",
    "partial",
    "partial --format table",
    "report",
    "report --format json",
    "report --format html",
)


# What reads every event whatever the snapshot (measured by full replay only): none now.
_WHOLE: tuple[str, ...] = ()


def _measure(mode: str, command: str, path: Path) -> dict[str, float]:
    code = _RESTART if command == "restart" else _CHILD
    return _child(code, mode, command, str(path))


def _later(stamp: float | None, by: float) -> float | None:
    return None if stamp is None else stamp + by


def write_journal(
    path: Path, count: int, *, pool: int, max_tail: int, escalated: float = 0.0
) -> list[int]:
    """A ``count``-event journal made of ``pool`` distinct tasks, repeated under new ids and
    later times until ``count`` events, cut at the end of a task (nothing in flight: a
    restart finishes no step). Returns the seq at which each task ends. ``escalated``: the
    share of the pool's tasks that escalate at their first failure instead of recovering
    (they stay open: a restart rebuilds them)."""
    template: list[list[Event]] = []
    for event in realistic_events(pool * 12, max_tail=max_tail):
        if not template or event.kind is EventKind.TASK_SUBMITTED:
            template.append([])
        template[-1].append(event)
    template.pop()  # the last task may be cut short
    rng = random.Random(25)
    template = [_escalate(story) if rng.random() < escalated else story for story in template]
    span = template[-1][-1].time - template[0][0].time + 10.0
    seq = 0
    ends: list[int] = []
    with open(path, "w", encoding="utf-8") as out:
        for copy in itertools.count():
            for n, story in enumerate(template):
                if seq + len(story) > count:
                    return ends
                task_id = f"task-{copy * len(template) + n + 1}"
                lines = []
                for event in story:
                    seq += 1
                    payload = event.payload
                    if isinstance(payload, TaskSubmitted) and payload.task is not None:
                        payload = replace(payload, task=replace(payload.task, task_id=task_id))
                    if isinstance(payload, AttemptExited):  # its own clock moves too
                        payload = replace(
                            payload,
                            started_at=_later(payload.started_at, copy * span),
                            ended_at=_later(payload.ended_at, copy * span),
                        )
                    moved = replace(
                        event,
                        payload=payload,
                        task_id=task_id,
                        time=event.time + copy * span,
                        seq=seq,
                        key=None if event.key is None else f"{task_id}:{event.key}",
                    )
                    lines.append(
                        json.dumps(moved.to_json(), separators=(",", ":"), ensure_ascii=False)
                    )
                out.write("\n".join(lines) + "\n")
                ends.append(seq)
    return ends


def _escalate(story: list[Event]) -> list[Event]:
    """``story`` ended at its first attributed failure by an escalation (unchanged when it
    has none)."""
    first = next((i for i, e in enumerate(story) if e.kind is EventKind.FAILURE_ATTRIBUTED), None)
    if first is None:
        return story
    failed = story[first]
    payload = failed.payload
    assert isinstance(payload, FailureAttributed)
    why = "recovery budget exhausted"
    decision = Decision(Strategy.ESCALATE, why, "budget_exhausted")
    return [
        *story[: first + 1],
        replace(failed, payload=DecisionMade(decision), time=failed.time + 1.0, key="escalate"),
        replace(
            failed,
            payload=TaskEscalated(why, None, payload.attribution.reason),
            time=failed.time + 2.0,
            key=None,
        ),
    ]


def reads(
    count: int,
    tail: int,
    max_tail: int,
    pool: int,
    *,
    commands: tuple[str, ...] = _COMMANDS,
    workdir: Path | None = None,
    escalated: float = 0.0,
    baseline: bool = True,
) -> dict[str, Any]:
    """Each read command and a restart on a ``count``-event journal: full replay, then via
    what a read or a supervisor wrote about ``tail`` events before the end. ``workdir``:
    build the journal there, or reuse the one a run with the same arguments left.
    ``baseline`` False skips the full replays (a quick look while developing)."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-reads-") as tmp:
        root = Path(tmp) if workdir is None else workdir
        root.mkdir(parents=True, exist_ok=True)
        path = root / "journal.jsonl"
        built = root / "built.json"
        recipe: dict[str, Any] = {"count": count, "tail": tail, "max_tail": max_tail}
        recipe.update(pool=pool, escalated=escalated)
        figures: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
        if not built.exists() or json.loads(built.read_text())["recipe"] != recipe:
            figures.update(_build(path, recipe))
            built.write_text(json.dumps({"recipe": recipe, "figures": figures}))
        else:
            built_figures = json.loads(built.read_text())["figures"]
            built_figures["load_average_at_build"] = built_figures.pop("load_average", None)
            figures.update(built_figures, reused=str(root))
        figures["prepare"] = _prepare(path, int(figures["cut_bytes"]), commands)
        figures["tasks"] = _tasks(path)
        figures["journal_bytes"] = path.stat().st_size
        for command in commands:
            if not baseline and command not in _WHOLE:
                figures[command] = {"snapshot": _measure("snapshot", command, path)}
                continue
            full = _measure("full_replay", command, path)
            if command in _WHOLE:
                figures[command] = {"full_replay": full}
                continue
            snap = _measure("snapshot", command, path)
            figures[command] = {
                "full_replay": full,
                "snapshot": snap,
                "cpu_ratio": round(snap["cpu_seconds"] / max(full["cpu_seconds"], 1e-9), 4),
                "memory_ratio": round(snap["peak_mib"] / max(full["peak_mib"], 1), 4),
            }
        figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def _build(path: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """Write the journal and the history snapshot ``tail`` events before its end; the
    figures of doing so, and where the cut is (``cut_bytes``)."""
    start = time.perf_counter()
    ends = write_journal(
        path,
        recipe["count"],
        pool=recipe["pool"],
        max_tail=recipe["max_tail"],
        escalated=recipe["escalated"],
    )
    written, tail = ends[-1], recipe["tail"]
    figures: dict[str, Any] = {
        "events": written,
        "journal_write_seconds": round(time.perf_counter() - start, 1),
    }
    # The coordinator's snapshot is taken between steps: at the end of a task here.
    at = next((e for e in reversed(ends) if e <= written - tail), written) if tail else written
    figures["cut_bytes"] = _offset_of_line(path, at) if tail else path.stat().st_size
    figures["tail_after_snapshot"] = written - at
    with _cut(path, figures["cut_bytes"]):
        start, cpu = time.perf_counter(), time.process_time()
        follower = HistoryFollower(path, every=1)  # what the first read after N events writes
        follower.refresh()
        figures["snapshot_bytes"] = snapshot_path(path).stat().st_size
        figures["snapshot_write_seconds"] = round(time.perf_counter() - start, 3)
        figures["snapshot_write_cpu_seconds"] = round(time.process_time() - cpu, 3)
        del follower
    return figures


def _prepare(path: Path, cut: int, commands: tuple[str, ...]) -> dict[str, Any]:
    """At the cut, what each command leaves for the next one: a read's own files (the first
    read past a size writes them; a read whose file is current only reads it), a supervisor's
    coordinator snapshot (a full replay that then saves its state)."""
    figures: dict[str, Any] = {}
    with _cut(path, cut):
        for command in commands:
            if command == "restart":
                figures[command] = _child(_RESTART, "prepare", "restart", str(path))
                figures["coordinator_snapshot_bytes"] = state_path(path).stat().st_size
            elif command not in _WHOLE:
                figures[command] = _measure("snapshot", command, path)
        for name in (".status", ".report"):
            kept = path.with_name(path.name + name)
            if kept.is_file():
                figures[f"kept{name}_bytes"] = kept.stat().st_size
    return figures


@contextlib.contextmanager
def _cut(path: Path, cut: int) -> Iterator[None]:
    """The journal as it was at byte ``cut``, for the block's length; the tail back after."""
    with open(path, "r+b") as handle:
        handle.seek(cut)
        rest = handle.read()
        handle.truncate(cut)
    try:
        yield
    finally:
        with open(path, "ab") as handle:
            handle.write(rest)


def _offset_of_line(path: Path, lines: int) -> int:
    """The byte offset just after the first ``lines`` lines of the file."""
    offset = 0
    with open(path, "rb") as handle:
        for _, line in zip(range(lines), handle, strict=False):
            offset += len(line)
    return offset


def _tasks(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if b'"kind":"task_submitted"' in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="events to write and replay")
    parser.add_argument(
        "--fsync-events", type=int, default=2_000, help="events to append with fsync on"
    )
    parser.add_argument("--rounds", type=int, default=3, help="replays timed; the best is kept")
    parser.add_argument(
        "--max-tail",
        type=int,
        default=2048,
        help="cap on attempt_exited output_tail characters (docs/journal.md: last 2 KiB)",
    )
    parser.add_argument(
        "--reads",
        type=int,
        default=200_000,
        metavar="N",
        help="events of the journal the read commands are timed on (0: skip; the issue's "
        "target size is 2000000)",
    )
    parser.add_argument(
        "--tail", type=int, default=1_000, help="events appended after the snapshot"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=2_000,
        help="distinct tasks the read benchmark's journal repeats under new ids",
    )
    parser.add_argument(
        "--reads-only", action="store_true", help="skip the append and replay figures"
    )
    parser.add_argument(
        "--commands",
        default=",".join(_COMMANDS),
        help=f"comma-separated commands to time (default: all of {', '.join(_COMMANDS)})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="build the read benchmark's journal here and keep it; a later run with the same "
        "--reads, --tail, --max-tail, --pool and --escalated reuses it (each run first lets "
        "each command write its own files at the cut, then times it)",
    )
    parser.add_argument(
        "--escalated",
        type=float,
        default=0.0,
        help="share of the read benchmark's tasks that escalate and stay open (default 0)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the full replays (the same-run baseline): a quick look while developing, "
        "not a figure to report",
    )
    args = parser.parse_args(argv)
    commands = tuple(c.strip() for c in args.commands.split(",") if c.strip())
    unknown = sorted(set(commands) - set(_COMMANDS))
    if unknown:
        parser.error(f"--commands: unknown {', '.join(unknown)}")
    figures: dict[str, Any] = {}
    if not args.reads_only:
        figures = run(args.events, args.fsync_events, args.rounds, args.max_tail)
    if args.reads:
        figures["reads"] = reads(
            args.reads,
            args.tail,
            args.max_tail,
            args.pool,
            commands=commands,
            workdir=args.workdir,
            escalated=args.escalated,
            baseline=not args.no_baseline,
        )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
