"""A throw-away world for agent attempts: git repo + bare origin, HOME, PATH, tmux socket.

Everything a sandbox creates is written to its LEDGER (``<root>/ledger.json``, replaced
atomically) before or as it is created, so :meth:`Sandbox.teardown` can undo it from any state:
after a clean run, after a half-finished :meth:`Sandbox.create`, or from another process after
the owner was SIGKILLed (:func:`reap_stale`, which every :meth:`Sandbox.create` runs first).

Signals: SIGINT is left alone (Python turns it into ``KeyboardInterrupt``, pytest handles that,
and ``finally`` / ``__exit__`` run on the way out). SIGTERM's default action kills Python with
no unwinding, so a caller that owns the process (the chaos harness) passes
``unwind_on_sigterm=True`` to :meth:`Sandbox.create`: when -- and only when -- SIGTERM still has
its default disposition in the main thread, a handler that raises ``SystemExit(143)`` is
installed so that the same ``finally`` / ``__exit__`` / ``atexit`` paths run. Importing this
module registers nothing; the first sandbox created registers one ``atexit`` hook that tears
down whatever sandboxes are still open when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import fcntl
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.infra.git import add_worktree, create_repo_with_origin, remove_worktree
from pytest_orch_recovery.infra.processes import (
    pids_with_env,
    process_alive,
    process_start_time,
    stop_process_groups,
)
from pytest_orch_recovery.infra.workspace import PullRequestLookup
from pytest_orch_recovery.runtime.host import allowed_env, check_agent_name
from pytest_orch_recovery.runtime.server import kill_tmux_server, tmux_server_running
from pytest_orch_recovery.store import atomic

SCHEMA_VERSION = 1
LEDGER_NAME = "ledger.json"
_REAP_LOCK = ".reap.lock"
_ENV_MARKER = "ORCH_SANDBOX_ID"  # every agent process carries it; teardown scans /proc for it
_SANDBOX_AUTHOR = ("Sandbox Agent", "agent@sandbox.invalid")

# Variables that would let an agent reach the operator's tmux server, git repository or
# configuration, or a real API account, from inside the sandbox.
_DROPPED_PREFIXES = ("GIT_", "ANTHROPIC_", "CLAUDE_", "XDG_", "SSH_AUTH_SOCK", "GH_")
# TMUX / TMUX_PANE would point agents at the operator's tmux; TMUX_TMPDIR is kept, since it
# says where this sandbox's own tmux socket lives (the fault hook talks to that server).
_DROPPED = frozenset(
    {"GITHUB_TOKEN", "PYTHONSTARTUP", "PROMPT_COMMAND", "BASH_ENV", "ENV", "TMUX", "TMUX_PANE"}
)
# Passed whatever a fleet file's env_allow says: the harness's own processes (launch wrapper,
# checkpoint hook, sim agent) must import the harness's package, and TMUX_TMPDIR says where
# the sandbox's tmux socket lives.
_HARNESS_ENV = ("PYTHON*", "TMUX_TMPDIR")
_NEVER_PASSED = frozenset({"TMUX", "TMUX_PANE"})


def default_base_dir() -> Path:
    """``$TMPDIR/orch-sandboxes`` (``tempfile.gettempdir()`` honours TMPDIR)."""
    return Path(tempfile.gettempdir()) / "orch-sandboxes"


# --------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """What a sandbox has created, persisted after every change."""

    path: Path
    owner_pid: int
    owner_start: int | None
    created_at: str
    sandbox_id: str
    tmux_socket: str
    pids: list[dict[str, Any]] = field(default_factory=list)
    worktrees: list[str] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    kept: bool = False  # handed over to a person (Sandbox.keep): never reaped

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "owner_pid": self.owner_pid,
            "owner_start": self.owner_start,
            "created_at": self.created_at,
            "sandbox_id": self.sandbox_id,
            "tmux_socket": self.tmux_socket,
            "pids": list(self.pids),
            "worktrees": list(self.worktrees),
            "ports": list(self.ports),
            "dirs": list(self.dirs),
            "kept": self.kept,
        }

    def save(self) -> None:
        atomic.write_json(self.path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """Read a ledger; errors name the file and the field."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidValue(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidValue(f"{path}:1: expected a JSON object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise InvalidValue(f"{path}: field schema_version: expected {SCHEMA_VERSION}")
        start = data.get("owner_start")
        if start is not None and (type(start) is not int or start < 0):
            raise InvalidValue(
                f"{path}: field owner_start: expected clock ticks (an integer "
                f">= 0) or null, got {start!r}"[:200]
            )
        try:
            return cls(
                path=path,
                owner_pid=int(data["owner_pid"]),
                owner_start=start,
                created_at=str(data["created_at"]),
                sandbox_id=str(data["sandbox_id"]),
                tmux_socket=str(data["tmux_socket"]),
                pids=list(data.get("pids", [])),
                worktrees=[str(w) for w in data.get("worktrees", [])],
                ports=list(data.get("ports", [])),
                dirs=[str(d) for d in data.get("dirs", [])],
                kept=data.get("kept") is True,
            )
        except KeyError as exc:
            raise InvalidValue(f"{path}: field {exc.args[0]}: missing") from None

    def owner_alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_start)


# --------------------------------------------------------------------------- the sandbox

_OPEN: weakref.WeakSet[Sandbox] = weakref.WeakSet()  # for the atexit hook only
_SIGNALS_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _install_sigterm_unwinding() -> None:
    """Make SIGTERM unwind (finally/__exit__/atexit) instead of killing Python outright."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _SIGNALS_LOCK:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_system_exit)


def _teardown_open_sandboxes() -> None:
    for box in list(_OPEN):
        box.teardown()


def _track_open(box: Sandbox) -> None:
    """Remember ``box`` for the interpreter-exit teardown; registered with the first sandbox."""
    global _ATEXIT_REGISTERED
    with _SIGNALS_LOCK:
        if not _ATEXIT_REGISTERED:
            atexit.register(_teardown_open_sandboxes)
            _ATEXIT_REGISTERED = True
    _OPEN.add(box)


def _new_socket_name() -> str:
    # secrets, not random: Hypothesis reseeds the global random module per example.
    return f"orch-{secrets.token_hex(8)}"


class Sandbox:
    """One isolated world for agents. Create with :meth:`create`; use as a context manager."""

    def __init__(self, root: Path, ledger: Ledger) -> None:
        self.root = root
        self.ledger = ledger
        self.name = root.name
        self.repo = root / "repo"
        self.origin = root / "origin.git"
        self.home = root / "home"
        self.bin_dir = root / "bin"
        self.checkpoints = root / "checkpoints"
        self.results = root / "results"
        self.logs = root / "logs"
        self.worktrees = root / "worktrees"
        # Extra variables every agent gets (e.g. ANTHROPIC_BASE_URL of the model double).
        self.agent_env: dict[str, str] = {}
        # A production fleet file's env_allow and [env] (``pytest --orch-fleet``): only the
        # allowed names of this process's environment pass, and [env] is set, below the
        # sandbox's own variables (its HOME, PATH, git and API settings stay the sandbox's).
        self.env_allow: tuple[str, ...] | None = None
        self.fleet_env: dict[str, str] = {}
        self.forge: Forge | None = None  # set once creation has reached it
        self._torn_down = False

    @property
    def tmux_socket(self) -> str:
        return self.ledger.tmux_socket

    @property
    def sandbox_id(self) -> str:
        return self.ledger.sandbox_id

    @property
    def ledger_path(self) -> Path:
        return self.ledger.path

    @property
    def state_dir(self) -> Path:
        """Where the tmux runtime keeps its event FIFO and hook script."""
        return self.root

    @property
    def prs(self) -> PullRequestLookup | None:
        """The sandbox's forge answers which pull request a branch has."""
        return self.forge

    # ----------------------------------------------------------------- creation

    @classmethod
    def create(
        cls,
        *,
        base_dir: Path | None = None,
        name: str | None = None,
        unwind_on_sigterm: bool = False,
    ) -> Sandbox:
        """Reap stale sandboxes under ``base_dir``, then build a fresh one there.

        ``unwind_on_sigterm``: make SIGTERM raise ``SystemExit`` (see the module doc) -- for a
        caller that owns the process, never a library user."""
        base = default_base_dir() if base_dir is None else base_dir
        base.mkdir(parents=True, exist_ok=True)
        reap_stale(base)
        prefix = f"{name}-" if name else "sandbox-"
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        ledger = Ledger(
            path=root / LEDGER_NAME,
            owner_pid=os.getpid(),
            owner_start=process_start_time(os.getpid()),
            created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            sandbox_id=f"{root.name}-{secrets.token_hex(4)}",
            tmux_socket=_new_socket_name(),
            dirs=[str(root)],
        )
        if unwind_on_sigterm:
            # SIGTERM unwinds (SystemExit) before anything exists: it cannot strand the sandbox.
            _install_sigterm_unwinding()
        ledger.save()  # first thing: from here on a crash leaves something reapable
        box = cls(root, ledger)
        _track_open(box)
        try:
            box._build()
        except BaseException:
            box.teardown()
            raise
        return box

    def _build(self) -> None:
        for d in (
            self.home,
            self.bin_dir,
            self.checkpoints,
            self.results,
            self.logs,
            self.worktrees,
        ):
            d.mkdir(parents=True, exist_ok=True)
            self.record_dir(d)
        (self.home / ".gitconfig").write_text(
            "[user]\n"
            f"\tname = {_SANDBOX_AUTHOR[0]}\n"
            f"\temail = {_SANDBOX_AUTHOR[1]}\n"
            "[init]\n\tdefaultBranch = main\n"
            "[advice]\n\tdetachedHead = false\n",
            encoding="utf-8",
        )
        create_repo_with_origin(self.root)
        self._install_forge_shim()

    def _install_forge_shim(self) -> None:
        """A forge (PR store over ``origin``) and its ``gh`` stand-in first on PATH."""
        forge_root = self.root / "forge"
        self.record_dir(forge_root)
        self.forge = Forge(forge_root, origin=self.origin)
        install_gh_shim(self.bin_dir, forge_root)

    # ----------------------------------------------------------------- recording

    def record_pid(self, pid: int, *, what: str, pgid: int | None = None) -> None:
        """Record a process (and its group, stopped as a whole on teardown); once per pid."""
        start = process_start_time(pid)
        if any(e.get("pid") == pid and e.get("start") == start for e in self.ledger.pids):
            return
        self.ledger.pids.append(
            {
                "pid": pid,
                "start": start,
                "pgid": os.getpgid(pid) if pgid is None and process_alive(pid) else pgid,
                "what": what,
            }
        )
        self.ledger.save()

    def record_port(self, port: int, *, what: str) -> None:
        self.ledger.ports.append({"port": port, "what": what})
        self.ledger.save()

    def record_dir(self, path: Path) -> None:
        if str(path) not in self.ledger.dirs:
            self.ledger.dirs.append(str(path))
            self.ledger.save()

    # ----------------------------------------------------------------- workspaces

    def workspace(self, agent: str) -> Path:
        return self.worktrees / agent

    def add_workspace(self, agent: str, *, branch: str | None = None) -> Path:
        """A git worktree ``worktrees/<agent>`` on branch ``branch`` (default: the agent)."""
        check_agent_name(agent)
        path = self.workspace(agent)
        if path.exists():
            return path
        self.ledger.worktrees.append(str(path))  # recorded before it exists: see module doc
        self.ledger.save()
        add_worktree(self.repo, path, branch or agent)
        return path

    def env(self, agent: str) -> dict[str, str]:
        """The environment an agent process runs with: nothing of the operator's HOME, git
        configuration, tmux server or API credentials."""
        passed = (
            os.environ
            if self.env_allow is None
            else allowed_env(os.environ, (*self.env_allow, *_HARNESS_ENV))
        )
        base = {
            k: v
            for k, v in passed.items()
            if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)
        }
        base.update({k: v for k, v in self.fleet_env.items() if k not in _NEVER_PASSED})
        base.update(self._own_env(agent))
        base.update(self.agent_env)
        return base

    def _own_env(self, agent: str) -> dict[str, str]:
        """The variables that make the sandbox a sandbox, whatever an agent is given."""
        return {
            "HOME": str(self.home),
            # The gh stand-in first; then this interpreter's own scripts, so the tasks'
            # ``pytest`` and ``python`` are the harness's interpreter found directly, not
            # through a version manager's shim (pyenv's: a chain of bash scripts per call).
            "PATH": os.pathsep.join(
                [
                    str(self.bin_dir),
                    os.path.dirname(sys.executable),
                    os.environ.get("PATH", os.defpath),
                ]
            ),
            # The task repositories' tests use no pytest plugin; autoloading every plugin
            # installed beside the harness (and, with PYTHONDONTWRITEBYTECODE=1, rewriting
            # their assertions from source) cost each test run seconds of CPU.
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "LC_ALL": "C",
            "LANG": "C",
            "LANGUAGE": "C",
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.home / ".gitconfig"),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "CLAUDE_CONFIG_DIR": str(self.home / ".claude"),
            "ORCH_CHECKPOINT_DIR": str(self.checkpoints),
            "ORCH_RESULTS_DIR": str(self.results),
            "ORCH_AGENT": agent,
            _ENV_MARKER: self.sandbox_id,
        }

    # ----------------------------------------------------------------- teardown

    def teardown(self) -> None:
        """Undo everything in the ledger. Idempotent; safe in any partial state."""
        if self._torn_down:
            return
        self._torn_down = True
        _OPEN.discard(self)
        _teardown_ledger(self.root, self.ledger)

    def keep(self) -> None:
        """Hand the sandbox over to a person: no teardown at interpreter exit, and no other
        sandbox's start reaps it (its owner is gone by then). Removing it is theirs to do."""
        self._torn_down = True
        _OPEN.discard(self)
        self.ledger.kept = True
        self.ledger.save()

    def leftovers(self) -> list[str]:
        """What of this sandbox still exists: empty after a complete teardown."""
        return _leftovers(self.root, self.ledger)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()


def _teardown_ledger(root: Path, ledger: Ledger) -> None:
    kill_tmux_server(ledger.tmux_socket)
    groups = set()
    for entry in ledger.pids:
        pid, start = int(entry["pid"]), entry.get("start")
        if process_alive(pid, start):
            groups.add(int(entry.get("pgid") or pid))
    # Whatever escaped its group (setsid, double fork) still carries the sandbox marker.
    # Everything that carries the marker started after the sandbox's owner did.
    since = ledger.owner_start
    stray = pids_with_env(_ENV_MARKER, ledger.sandbox_id, started_since=since)
    groups.update(os.getpgid(p) for p in stray if process_alive(p))
    groups -= {0, 1, os.getpgrp()}  # never init, nor our own group
    stop_process_groups(groups)
    for pid in pids_with_env(_ENV_MARKER, ledger.sandbox_id, started_since=since):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    repo = root / "repo"
    for wt in ledger.worktrees:
        if Path(wt).exists() and (repo / ".git").exists():
            with contextlib.suppress(Exception):
                remove_worktree(repo, Path(wt), force=True)
    shutil.rmtree(root, ignore_errors=True)


def _leftovers(root: Path, ledger: Ledger) -> list[str]:
    found = []
    if tmux_server_running(ledger.tmux_socket):
        found.append(f"tmux server on socket {ledger.tmux_socket}")
    for entry in ledger.pids:
        if process_alive(int(entry["pid"]), entry.get("start")):
            found.append(f"process {entry['pid']} ({entry.get('what')})")
    for pid in pids_with_env(_ENV_MARKER, ledger.sandbox_id, started_since=ledger.owner_start):
        found.append(f"process {pid} carrying {_ENV_MARKER}={ledger.sandbox_id}")
    if root.exists():
        found.append(f"directory {root}")
    return found


def reap_stale(base_dir: Path | None = None) -> list[Path]:
    """Tear down every sandbox under ``base_dir`` whose owner process is gone (or whose pid
    now names a different process). Returns the roots removed."""
    base = default_base_dir() if base_dir is None else base_dir
    if not base.is_dir():
        return []
    reaped = []
    for root in sorted(p for p in base.iterdir() if p.is_dir()):
        ledger_path = root / LEDGER_NAME
        try:
            ledger = Ledger.load(ledger_path)
        except (OSError, ValueError):
            continue  # not a sandbox, or one mid-creation before its first ledger write
        if ledger.owner_alive() or ledger.kept:
            continue
        with _reap_claim(root) as claimed:
            if claimed and root.exists():
                _teardown_ledger(root, ledger)
                reaped.append(root)
    return reaped


@contextlib.contextmanager
def _reap_claim(root: Path) -> Iterator[bool]:
    """An exclusive, non-blocking claim so two reapers do not tear down the same sandbox."""
    try:
        fd = os.open(root / _REAP_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
