"""``orch-recovery status``: one row per task from a journal - agent, phase, attempt n of
budget, elapsed, last reason with its confidence and strongest evidence, next launch time.

``--live`` asks tmux whether each running attempt's session is alive (on the socket and session
its launch recorded, else on ``--tmux-socket`` with the session named after the agent;
``unknown`` when neither is known or tmux cannot answer) and reports how long ago each agent's
checkpoint file was written. ``--watch N`` redraws every N seconds until
Ctrl-C (exit 0). Exit 2 on a usage error, naming the file (and line).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.cli import statuscache, statusrows
from pytest_orch_recovery.cli.fleet_output import (
    add_host_filter,
    add_journal_options,
    check_host_filter,
    duration,
    fail,
    fleet_history,
    fleet_settings,
    from_kept,
    history_keeping,
    json_chunks,
    table,
    task_hosts,
    write_chunks,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.events import TmuxTarget
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.infra.argtypes import positive_int, seconds
from pytest_orch_recovery.infra.checkpoint import CheckpointError, checkpoint_path
from pytest_orch_recovery.report.fleetview import FleetView, TaskStatus, UsageCondition
from pytest_orch_recovery.report.jsondoc import Rows
from pytest_orch_recovery.report.safetext import terminal
from pytest_orch_recovery.store.journal import JournalError
from pytest_orch_recovery.store.snapshot import HistoryFollower

PROG = "orch-recovery status"
_TMUX_TIMEOUT = 10.0  # seconds for one has-session; a wedged server reads as "unknown"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Where every task of a journal stands: agent, phase, attempt n of budget, "
        "elapsed, last failure reason (confidence, strongest evidence), next launch time.",
    )
    add_journal_options(parser)
    add_host_filter(parser)
    parser.add_argument(
        "--budget",
        type=positive_int,
        metavar="N",
        help="attempt budget shown when the journal does not record one (default: the "
        f"--config fleet file's max_attempts, else the policy's, {Policy().max_attempts})",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="also ask tmux whether each running attempt's session is alive and report how "
        "fresh each agent's checkpoint file is",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        metavar="DIR",
        help="where agents' checkpoint files are, for --live (default: the --config fleet "
        "file's checkpoint_dir, else $ORCH_CHECKPOINT_DIR, else /tmp/orchestration_checkpoints)",
    )
    parser.add_argument(
        "--tmux-socket",
        metavar="NAME",
        help="for --live: the tmux socket name (tmux -L) of the server the agents run on, "
        "sessions named after agents; used where a launch recorded no tmux target (default: "
        "the --config fleet file's tmux_socket)",
    )
    parser.add_argument(
        "--watch",
        type=seconds(0, 86400, open_range=True),
        metavar="SECONDS",
        help="redraw every SECONDS until Ctrl-C (exits 0 then)",
    )
    return parser


# --------------------------------------------------------------------------- live checks


@dataclass(frozen=True)
class Liveness:
    session: str  # alive | dead | unknown | -
    checkpoint_age: float | None  # seconds since the checkpoint file was written
    checkpoint_at: float | None


def _session_alive(target: TmuxTarget | None) -> str:
    """``alive``; ``exited`` (the pane is kept after its process ended: remain-on-exit);
    ``dead`` (no such session or server); ``unknown`` (nothing recorded, or no answer)."""
    if target is None:
        return "unknown"
    tmux = shutil.which("tmux")
    if tmux is None:
        return "unknown"

    def ask(*argv: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                [tmux, "-L", target.socket, *argv],
                capture_output=True,
                text=True,
                timeout=_TMUX_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    exists = ask("has-session", "-t", f"={target.session}")
    if exists is None:
        return "unknown"
    if exists.returncode != 0:
        # "no server running" / "can't find session": the session is gone.
        return "dead" if exists.stderr.strip() else "unknown"
    pane = ask("display-message", "-p", "-t", f"={target.session}:", "#{pane_dead}")
    if pane is None or pane.returncode != 0:
        return "unknown"
    return {"0": "alive", "1": "exited"}.get(pane.stdout.strip(), "unknown")


def _checkpoint_mtime(directory: Path | None, agent: str) -> float | None:
    try:
        return checkpoint_path(directory, agent).stat().st_mtime
    except (OSError, CheckpointError):
        return None


def live(
    row: TaskStatus, directory: Path | None, now: float, socket: str | None = None
) -> Liveness:
    target = row.tmux
    if target is None and socket is not None:
        target = TmuxTarget(socket, row.agent)  # the supervisor names sessions after agents
    session = _session_alive(target) if str(row.phase) == "running" else "-"
    mtime = _checkpoint_mtime(directory, row.agent)
    return Liveness(session, None if mtime is None else max(0.0, now - mtime), mtime)


# --------------------------------------------------------------------------- rendering


def render(
    rows: list[TaskStatus],
    lives: list[Liveness] | None,
    fmt: str,
    now: float,
    conditions: Sequence[UsageCondition] = (),
    hosts: Mapping[str, str] | None = None,
) -> str:
    """``hosts`` (task id -> host) comes from a fleet store: a HOST column / ``host`` field."""
    return "".join(render_chunks(rows, lives, fmt, now, conditions, hosts))


def _json_rows(
    rows: list[TaskStatus], lives: list[Liveness] | None, hosts: Mapping[str, str] | None
) -> Iterator[dict[str, Any]]:
    for index, row in enumerate(rows):
        data = row.to_json()
        if hosts is not None:
            data["host"] = hosts.get(row.task_id)
        if lives is not None:
            life = lives[index]
            data["live"] = {
                "session": life.session,
                "checkpoint_age": life.checkpoint_age,
                "checkpoint_at": life.checkpoint_at,
            }
        yield data


def render_chunks(
    rows: list[TaskStatus],
    lives: list[Liveness] | None,
    fmt: str,
    now: float,
    conditions: Sequence[UsageCondition] = (),
    hosts: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """:func:`render`'s text in pieces, written as they are made."""
    if fmt == "json":
        return json_chunks(
            "status",
            {
                "live": lives is not None,
                "tasks": Rows(_json_rows(rows, lives, hosts)),
                "usage_limits": [c.to_json() for c in conditions],
            },
            now=now,
        )
    return iter((_table(rows, lives, conditions, hosts),))


def _table(
    rows: list[TaskStatus],
    lives: list[Liveness] | None,
    conditions: Sequence[UsageCondition],
    hosts: Mapping[str, str] | None,
) -> str:
    headers = list(statusrows.HEADERS[:-1])
    if hosts is not None:
        headers.insert(1, "HOST")
    if lives is not None:
        headers += ["SESSION", "CHECKPOINT"]
    headers.append(statusrows.HEADERS[-1])
    body = []
    for index, row in enumerate(rows):
        cells = statusrows.row_cells(row)
        if hosts is not None:
            cells.insert(1, hosts.get(row.task_id, "-"))
        if lives is not None:
            life = lives[index]
            age = "-" if life.checkpoint_age is None else duration(life.checkpoint_age) + " ago"
            cells[-1:-1] = [life.session, age]
        body.append(cells)
    notes = "".join(map(statusrows.condition_note, conditions)) + "".join(
        note for note in map(statusrows.delay_note, rows) if note is not None
    )
    return notes + table(headers, body, empty=statusrows.EMPTY)


def _draw(args: argparse.Namespace, follower: HistoryFollower | None = None) -> str:
    return "".join(_draw_chunks(args, follower))


def _draw_chunks(
    args: argparse.Namespace, follower: HistoryFollower | None = None
) -> Iterator[str]:
    now = time.time()
    settings = fleet_settings(args)
    check_host_filter(args, settings)
    budget = settings.budget if settings.budget is not None else Policy().max_attempts
    # One journal, read once, no live checks: the ended tasks' rows may come from the file
    # kept beside it (statuscache), which a read without one writes.
    cacheable = (
        follower is None
        and settings.store is None
        and len(settings.journals) == 1
        and not args.live
        and args.host is None
    )
    if cacheable:
        cached = from_kept(
            settings, lambda journal: statuscache.render_cached(journal, budget, args.format, now)
        )
        if cached is not None:
            return cached
        history = history_keeping(settings, statuscache.save, statuscache.CACHE_FROM)
    else:
        history = fleet_history(settings, follower=follower)
    view = FleetView(history, budget=budget)
    hosts = task_hosts(settings)
    rows = [
        r
        for r in view.statuses(now=now)
        if args.host is None or (hosts is not None and hosts.get(r.task_id) == args.host)
    ]
    lives = (
        [live(r, settings.checkpoint_dir, now, settings.tmux_socket) for r in rows]
        if args.live
        else None
    )
    conditions = view.usage_conditions(now=now)
    return render_chunks(rows, lives, args.format, now, conditions, hosts)


def run(args: argparse.Namespace) -> int:
    if args.watch is None:
        try:
            chunks = _draw_chunks(args)
        except UsageError as exc:
            return fail(PROG, str(exc))
        try:
            write_chunks(chunks)
        except JournalError as exc:  # status's own kept rows, found damaged while written
            return fail(PROG, str(exc))
        return 0
    try:
        text = _draw(args)
    except UsageError as exc:
        return fail(PROG, str(exc))
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() and args.format == "table" else ""
    stop = threading.Event()
    journals = fleet_settings(args).journals
    # One journal: each frame folds only what was appended since the last one.
    follower = HistoryFollower(journals[0]) if len(journals) == 1 else None
    try:
        while True:
            sys.stdout.write(clear + text)
            sys.stdout.flush()
            stop.wait(args.watch)
            try:
                text = _draw(args, follower)
            except UsageError as exc:  # e.g. the journal moved away: say so, keep watching
                text = f"{PROG}: error: {terminal(str(exc))}\n"
    except KeyboardInterrupt:
        return 0
