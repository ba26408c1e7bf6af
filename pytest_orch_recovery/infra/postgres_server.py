"""A private PostgreSQL server started from the installed binaries (``initdb``, ``pg_ctl``).

The test suite, and later the chaos plugin's multi-host campaigns, need a real server of their
own: never a shared one, never one listening on TCP. :class:`LocalPostgres` makes a cluster in a
fresh temporary folder, listens only on a unix socket in that folder, and removes everything on
:meth:`LocalPostgres.close`. :meth:`stop` and :meth:`start` in between model a store outage.
``pg_ctl start`` detaches the server, so a SIGKILLed owner would leave it running: the folder
names its owner process, and every new :class:`LocalPostgres` first stops and removes the
servers of owners that are gone (:func:`reap_stale`).

PostgreSQL refuses to run as root; run as root, the server is started as the ``postgres`` user
(``runuser -u postgres``), which owns the folder. Every value is an argv word, never shell text.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.infra.processes import process_alive, process_start_time

log = logging.getLogger(__name__)

SERVER_USER = "postgres"  # the OS user the server runs as when we are root (Debian's)
DATABASE = "postgres"
PORT = 5432  # only names the socket file: the server listens on no TCP address
START_TIMEOUT = 120  # seconds pg_ctl waits; a loaded 2-core runner can be slow
_PREFIX = "orch-pg-"
_OWNER = "owner"  # "<pid> <start time in clock ticks>" of the process that made the folder


class PostgresServerError(OrchRecoveryError):
    """The local server could not be found, created, started or stopped."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$PATH`` first (Debian only links some
    tools there), else the newest ``/usr/lib/postgresql/*/bin``."""
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        folder = Path(os.path.realpath(on_path)).parent
        if (folder / "initdb").exists():
            return folder
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PostgresServerError(
            "PostgreSQL server binaries not found (pg_ctl): install Debian's 'postgresql' "
            "package (.ci/run does)"
        )
    return Path(candidates[-1]).parent


def _run_tool(bin_dir: Path, as_root: bool, cwd: Path, tool: str, *args: str) -> str:
    argv = [str(bin_dir / tool), *args]
    if as_root:
        argv = ["runuser", "-u", SERVER_USER, "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PostgresServerError(
            f"{tool} exited {proc.returncode}: {detail[-1] if detail else 'no output'}"
            f" (log: {cwd / 'server.log'})"
        )
    return proc.stdout


def _owner_gone(root: Path) -> bool:
    """True when ``root``'s owner file names a process that no longer runs; False when it
    runs, or when the file is missing or unreadable (not ours to judge: a folder being made)."""
    try:
        pid_text, start_text = (root / _OWNER).read_text(encoding="ascii").split()
        pid, start = int(pid_text), int(start_text)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return not process_alive(pid, start)


def reap_stale(parent: Path | None = None, *, bin_dir: Path | None = None) -> list[Path]:
    """Stop (``-m immediate``) and remove every private server under ``parent`` (the temporary
    folder) whose owner process is gone; return their folders. A folder that is a symlink,
    or not a directory, is left alone."""
    base = Path(parent or tempfile.gettempdir())
    reaped: list[Path] = []
    for root in sorted(base.glob(f"{_PREFIX}*")):
        if root.is_symlink() or not root.is_dir() or not _owner_gone(root):
            continue
        data = root / "data"
        if (data / "postmaster.pid").exists():
            try:
                _run_tool(
                    bin_dir or find_bin_dir(),
                    os.geteuid() == 0,
                    root,
                    "pg_ctl",
                    *("-D", str(data), "-m", "immediate", "-t", str(START_TIMEOUT), "-w", "stop"),
                )
            except PostgresServerError as exc:  # already stopped, or a damaged cluster
                log.info("%s: stopping a stale server: %s", root, exc)
        shutil.rmtree(root, ignore_errors=True)
        log.warning("removed a private PostgreSQL server its owner left behind: %s", root)
        reaped.append(root)
    return reaped


class LocalPostgres:
    """One private PostgreSQL cluster; :attr:`url` connects to it as the superuser."""

    def __init__(self, *, bin_dir: Path | None = None, parent: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self._as_root = os.geteuid() == 0
        owner = pwd.getpwnam(SERVER_USER) if self._as_root else None
        reap_stale(parent, bin_dir=self.bin_dir)
        # Not under pytest's tmp_path: as root that is mode 0700 and the server user cannot
        # reach it. The socket path must also stay short (unix sockets: 107 bytes).
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=parent))
        me = os.getpid()
        (self.root / _OWNER).write_text(f"{me} {process_start_time(me)}\n", encoding="ascii")
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.socket_dir.mkdir()
        if owner is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.running = False
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SERVER_USER,
                "--auth=trust",  # reachable only through the private socket folder
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",  # a throw-away cluster; the server itself still fsyncs
            )
            self._configure()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """A libpq URL naming the socket folder (``host=``) and the database."""
        return f"postgresql://{SERVER_USER}@/{DATABASE}?host={self.socket_dir}&port={PORT}"

    def _run(self, tool: str, *args: str) -> str:
        return _run_tool(self.bin_dir, self._as_root, self.root, tool, *args)

    def _configure(self) -> None:
        """Socket only, in our folder. Written to postgresql.conf rather than passed with
        ``pg_ctl -o``, whose option string goes through a shell."""
        quoted = str(self.socket_dir).replace("'", "''")
        settings = (
            "\n# orch-recovery: a private server, reachable through its socket folder only\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{quoted}'\n"
            f"port = {PORT}\n"
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(settings)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-t",
            str(START_TIMEOUT),
            "-w",
            "start",
        )
        self.running = True
        log.info("local PostgreSQL started in %s", self.root)

    def stop(self) -> None:
        """Stop the server (``-m fast``: clients are disconnected, committed work is kept)."""
        if not self.running:
            return
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-t", str(START_TIMEOUT), "-w", "stop"
        )
        self.running = False
        log.info("local PostgreSQL stopped in %s", self.root)

    def close(self) -> None:
        """Stop the server and remove its folder. Safe to call twice."""
        try:
            if self.running and self.data.exists():
                self.stop()
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.root)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
