"""What the fleet commands (``status``, ``failures``, ``partial``) share: reading journals for
the views, the ``--journal`` / ``--format`` options, and plain-text tables.

A journal is read without its lock (a running supervisor holds it) and without repairing a
torn last line; a bad line is one error naming the file and line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.events import Event, EventKind
from pytest_orch_recovery.fleet.config import FleetConfig, FleetConfigError, load_fleet
from pytest_orch_recovery.infra import argtypes
from pytest_orch_recovery.report.fleetview import SCHEMA_VERSION
from pytest_orch_recovery.report.jsondoc import document_chunks
from pytest_orch_recovery.report.safetext import one_line, terminal
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import JournalError, replay
from pytest_orch_recovery.store.snapshot import HistoryFollower

if TYPE_CHECKING:
    from pytest_orch_recovery.store.postgres import PostgresStore

T = TypeVar("T")


def add_journal_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal",
        type=Path,
        action="append",
        metavar="PATH",
        help="a journal.jsonl written by the engine (or by 'orch-recovery ingest'); repeat "
        "to combine several (task ids must be unique across them); default: the --config "
        "fleet file's journal",
    )
    parser.add_argument(
        "--store",
        type=argtypes.store_url,
        metavar="URL",
        help="read the fleet store several hosts share (postgresql://...) instead of a "
        "journal file; default: the --config fleet file's store, when it has one",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FLEET",
        help="a fleet file (as 'orch-recovery supervise' takes): its journal (or store), "
        "attempt budget, tmux socket and checkpoint directory are the defaults of the "
        "options here",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="'table' (default) for people, 'json' (one object with schema_version) for tools",
    )


@dataclass(frozen=True)
class FleetSettings:
    """What the views read, from the command line first and the fleet file second."""

    journals: tuple[Path, ...]
    budget: int | None = None
    store: str | None = None  # a fleet store's URL: read instead of the journals
    tmux_socket: str | None = None
    checkpoint_dir: Path | None = None


def fleet_settings(args: argparse.Namespace) -> FleetSettings:
    """``--journal``/``--config`` (and, where the command has them, ``--budget``,
    ``--tmux-socket``, ``--checkpoint-dir``) resolved; :class:`UsageError` names the file."""
    config: FleetConfig | None = None
    if args.config is not None:
        try:
            config = load_fleet(args.config, check_base=False)  # the journal is what is read
        except FleetConfigError as exc:
            raise UsageError(str(exc)) from None
    store = getattr(args, "store", None)
    if store is None and not args.journal and config is not None:
        store = config.store
    journals = tuple(args.journal or ()) or ((config.journal,) if config else ())
    if store is not None and args.journal:
        raise UsageError("--journal and --store are two sources: name one")
    if not journals and store is None:
        raise UsageError("one of the arguments --journal or --config (or --store) is required")

    def pick(name: str, from_config: object) -> Any:
        given = getattr(args, name, None)
        return given if given is not None else from_config

    return FleetSettings(
        journals=() if store is not None else journals,
        store=store,
        budget=pick("budget", config and config.max_attempts),
        tmux_socket=pick("tmux_socket", config and config.tmux_socket),
        checkpoint_dir=pick("checkpoint_dir", config and config.checkpoint_dir),
    )


def read_events(paths: Sequence[Path]) -> list[Event]:
    """The events of one or more journals, each line checked; a problem is a
    :class:`UsageError` naming the file and line. Combined journals need unique task ids."""
    events: list[Event] = []
    owner: dict[str, tuple[int, Path]] = {}  # task id -> (which journal, its path)
    for index, path in enumerate(paths):
        if not path.is_file():
            raise UsageError(f"{path}: no such journal file")
        try:
            loaded = replay(path)
        except JournalError as exc:
            raise UsageError(str(exc)) from None
        for line, event in enumerate(loaded, 1):  # replay keeps one event per line
            if event.kind is EventKind.TASK_SUBMITTED and event.task_id is not None:
                first, where = owner.setdefault(event.task_id, (index, path))
                if first != index:
                    raise UsageError(
                        f"{path}:{line}: task id {event.task_id!r} was already submitted in "
                        f"{where}; combined journals need unique task ids"
                    )
        events += loaded
    return events


def read_history(paths: Sequence[Path], *, follower: HistoryFollower | None = None) -> History:
    """The folded history of one or more journals (as :func:`read_events` checks them). One
    journal is read through its snapshot (``store/snapshot.py``): only what was appended since
    is parsed; ``follower`` keeps that state between reads (``status --watch``)."""
    if len(paths) != 1:
        return History(read_events(paths))
    path = paths[0]
    if not path.is_file():
        raise UsageError(f"{path}: no such journal file")
    try:
        return (follower or HistoryFollower(path)).refresh()
    except JournalError as exc:
        raise UsageError(str(exc)) from None


STORE_PATIENCE = 10.0  # seconds a view retries an unreachable store before it says so


def fleet_history(settings: FleetSettings, *, follower: HistoryFollower | None = None) -> History:
    """What the views read: the journals' history (:func:`read_history`), or the fleet
    store's, all hosts' events folded at once."""
    if settings.store is None:
        return read_history(settings.journals, follower=follower)
    return History(store_events(settings.store))


def from_kept(settings: FleetSettings, render: Callable[[Path], T | None]) -> T | None:
    """A read's output from what it keeps beside its one journal file (``render``: None when
    there is nothing to use there); None with a fleet store or several journals. A kept file
    that is damaged beyond falling back is one usage error naming it."""
    if settings.store is not None or len(settings.journals) != 1:
        return None
    journal = settings.journals[0]
    if not journal.is_file():
        return None
    try:
        return render(journal)
    except JournalError as exc:
        raise UsageError(str(exc)) from None


def history_keeping(
    settings: FleetSettings, keep: Callable[[Path, History, int, int], None], keep_from: int
) -> History:
    """:func:`fleet_history`; one journal read whole that holds ``keep_from`` events or more
    is handed to ``keep`` (with the offset and seq read) so the next read can use its file."""
    if settings.store is not None or len(settings.journals) != 1:
        return fleet_history(settings)
    follower = HistoryFollower(settings.journals[0])
    history = fleet_history(settings, follower=follower)
    if follower.seq >= keep_from:
        keep(settings.journals[0], history, follower.offset, follower.seq)
    return history


def store_events(url: str) -> list[Event]:
    """Every host's events in the fleet store at ``url``; problems as one UsageError line."""
    return _from_store(url, lambda store: list(store.events()))


def task_hosts(settings: FleetSettings) -> dict[str, str] | None:
    """With a fleet store, the host each task ran on last (its latest launch, else the host
    holding it); None for journal files, which are one host's."""
    if settings.store is None:
        return None
    return _from_store(settings.store, lambda store: store.task_hosts())


def attempt_hosts(settings: FleetSettings) -> dict[tuple[str, int], str] | None:
    """With a fleet store, the host that launched each (task, attempt); None for journals."""
    if settings.store is None:
        return None
    launches = _from_store(settings.store, lambda store: store.launches())
    return {(task_id, attempt): host for task_id, attempt, _, host, _ in launches}


def request_release(url: str, target: str, tasks: Sequence[str], note: str | None) -> list[str]:
    """Leave a release of ``target`` for every host that holds one of ``tasks`` now, through
    the fleet store; returns those hosts (none: nobody holds them, nothing was sent)."""

    def send(store: PostgresStore) -> list[str]:
        hosts = sorted({h for h in store.holders(tasks).values() if h is not None})
        for host in hosts:
            store.send_request(host, "release", {"task_id": target, "note": note})
        return hosts

    return _from_store(url, send)


def add_host_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        type=argtypes.host_name,
        metavar="NAME",
        help="with a fleet store: only what this host ran",
    )


def check_host_filter(args: argparse.Namespace, settings: FleetSettings) -> None:
    if args.host is not None and settings.store is None:
        raise UsageError("--host needs a fleet store (--store URL, or a fleet file with 'store')")


def _from_store(url: str, read: Callable[[PostgresStore], T]) -> T:
    """``read(store)``; the store's refusals and outages as one :class:`UsageError` line."""
    # psycopg is the optional 'postgres' extra: imported only when a store is read.
    try:
        from pytest_orch_recovery.store.postgres import PostgresStore, StoreError
    except ImportError as exc:
        raise UsageError(f"reading a fleet store needs psycopg ({exc.name})") from None
    try:
        with PostgresStore(url, outage_limit=STORE_PATIENCE) as store:
            return read(store)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {terminal(message)}", file=sys.stderr)
    return 2


def json_chunks(kind: str, body: dict[str, Any], *, now: float | None = None) -> Iterator[str]:
    """A view's JSON document in pieces to write one after another; its lists of rows may be
    :class:`~pytest_orch_recovery.report.jsondoc.Rows`, encoded as they are written."""
    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": kind}
    if now is not None:
        document["generated_at"] = now
    document.update(body)
    return document_chunks(document, allow_nan=False)


def dump_json(kind: str, body: dict[str, Any], *, now: float | None = None) -> str:
    return "".join(json_chunks(kind, body, now=now))


def write_chunks(chunks: Iterable[str]) -> None:
    """Write a view to standard output as it is made."""
    write = sys.stdout.write
    for chunk in chunks:
        write(chunk)


_CELL_CHARS = 100


def cell(text: object) -> str:
    """A table cell: one terminal-safe line of at most 100 characters."""
    return one_line(text, _CELL_CHARS)


def table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One line of a table: cells padded to ``widths``, the last never padded."""
    parts = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
    return "  ".join([*parts, cells[-1]]).rstrip() + "\n"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """Columns padded to their widest cell; the last column is never padded. Every cell is
    one terminal-safe line (:func:`~pytest_orch_recovery.report.safetext.one_line`): the
    cells hold agents' text (evidence, next actions, titles, file names)."""
    if not rows:
        return empty + "\n"
    cells = [list(headers), *[[cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "".join(table_line(row, widths) for row in cells)


def duration(seconds: float | None) -> str:
    """``45s``, ``12m05s``, ``3h02m``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def clock(stamp: float | None) -> str:
    """An event time as UTC ``HH:MM:SS`` (date too when not today); ``-`` for none."""
    if stamp is None:
        return "-"
    moment = datetime.fromtimestamp(stamp, UTC)
    today = datetime.fromtimestamp(time.time(), UTC).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")
