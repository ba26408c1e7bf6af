"""Journal throughput: append with fsync off and on, replay, and reads of a large journal.

Run ``python benchmarks/bench_journal.py``; prints one JSON object. The baseline is a plain
``json.loads`` loop over the same lines measured in the same run, so ``replay_vs_json_loads``
says what building and checking Events costs on top of parsing.

``--reads N`` (0: skip) also writes an N-event journal and runs ``status``, ``failures``,
``partial`` and ``report`` on it, each in a fresh process (wall, CPU seconds and peak RSS):
first the full replay every read did before snapshots (``full_replay``, the same-run
baseline), then through a snapshot with ``--tail`` events appended after it (``snapshot``).
"""

from __future__ import annotations

import argparse
import json
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
    FailureAttributed,
    PartialSummary,
    Payload,
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
from pytest_orch_recovery.store.snapshot import read_history, snapshot_path

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
import resource, sys, time, io, contextlib
start, cpu = time.perf_counter(), time.process_time()
mode, command, path = sys.argv[1], sys.argv[2], sys.argv[3]
from pytest_orch_recovery.cli import failures, partial, report, status
from pytest_orch_recovery.cli.main import main
if mode == "full_replay":  # every read before snapshots: replay every event, fold them all
    from pytest_orch_recovery.store.history import History
    from pytest_orch_recovery.store.journal import replay
    def whole(paths, follower=None):
        return History(replay(paths[0]))
    for module in (failures, partial, report, status):
        module.read_history = whole
argv = [command, "--journal", path] + (["--format", "json"] if command != "report" else [])
with contextlib.redirect_stdout(io.StringIO()):
    main(argv)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _read(mode: str, command: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, command, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    wall, cpu, rss_kib = float(out[0]), float(out[1]), int(out[2])
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "peak_mib": rss_kib // 1024}


def reads(count: int, tail: int, max_tail: int) -> dict[str, Any]:
    """Each read command on a ``count``-event journal: full replay, then via a snapshot."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-reads-") as tmp:
        path = Path(tmp) / "journal.jsonl"
        events = realistic_events(count + tail, max_tail=max_tail)
        with open(path, "w", encoding="utf-8") as out:
            for seq, event in enumerate(events, 1):
                if seq == count + 1:
                    out.flush()
                    start = time.perf_counter()
                    read_history(path, every=1)  # what the first read after N events writes
                    snapshot_seconds = time.perf_counter() - start
                out.write(
                    json.dumps(
                        replace(event, seq=seq).to_json(),
                        separators=(",", ":"),
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        figures: dict[str, Any] = {
            "events": count + tail,
            "tail_after_snapshot": tail,
            "journal_bytes": path.stat().st_size,
            "snapshot_bytes": snapshot_path(path).stat().st_size,
            "snapshot_write_seconds": round(snapshot_seconds, 3),
        }
        for command in ("status", "failures", "partial", "report"):
            full = _read("full_replay", command, path)
            snap = _read("snapshot", command, path)
            figures[command] = {
                "full_replay": full,
                "snapshot": snap,
                "cpu_ratio": round(snap["cpu_seconds"] / max(full["cpu_seconds"], 1e-9), 4),
                "memory_ratio": round(snap["peak_mib"] / max(full["peak_mib"], 1), 4),
            }
    return figures


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
    args = parser.parse_args(argv)
    figures = run(args.events, args.fsync_events, args.rounds, args.max_tail)
    if args.reads:
        figures["reads"] = reads(args.reads, args.tail, args.max_tail)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
