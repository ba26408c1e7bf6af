"""Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader sees either the old content or the new, never a torn file, whatever instant the
writer dies at.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.store.validation import file_kind

# typing weighs on each hook and wrapper process's start-up (docs/performance.md): for the
# type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    write_chunks(path, (data,), mode=mode)


def write_chunks(
    path: str | os.PathLike[str], chunks: Iterable[bytes], *, mode: int = 0o644
) -> None:
    """:func:`write_bytes` of the concatenated ``chunks``, without holding them all in
    memory (a snapshot of a large journal)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def _new_temp(target: Path) -> tuple[int, str]:
    """A new, empty, private file beside ``target`` (``.<name>.<random>.tmp``), as
    ``tempfile.mkstemp`` makes one, without importing tempfile (shutil, random, weakref
    weigh on each hook process's start-up, docs/performance.md)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no unused temporary name for {target.name}")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def append_line(path: str | os.PathLike[str], line: str, *, mode: int = 0o644) -> None:
    """Append ``line`` and a newline durably (fsync), in one write on an ``O_APPEND``
    descriptor: a crash leaves whole lines plus at most a torn last one, which line readers
    skip. The parent directory is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is edited or replaced (an editor's or an atomic writer's
    rename-over): inode, size, mtime; None when it is absent."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputError(OrchRecoveryError, OSError):
    """An output path the package will not write to, and why (one line)."""


def output_target(
    path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None
) -> Path:
    """The regular file a report for ``path`` goes to, or :class:`OutputError`.

    An existing ``path`` must be a regular file the user may write; a symbolic link is
    refused whatever it names (a report replaces only the file it was asked to write, never
    one a link leads to), and so are devices, FIFOs, sockets and directories, so
    ``--output /dev/null`` never replaces the device. A missing parent directory is created
    only under ``base`` (default: the working directory).
    """
    given = Path(path)
    if not str(given) or "\x00" in str(given):
        raise OutputError(f"{str(given)!r}: not a file name")
    try:
        info = os.lstat(given)  # the name itself: a link is not followed
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"{given}: cannot write here: {exc.strerror or exc}") from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise OutputError(
                f"{given}: a symbolic link; reports are not written through links "
                "(name the file itself)"
            )
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(
                f"{given}: not a regular file ({file_kind(info.st_mode)}); "
                "reports are written to regular files only"
            )
        if not info.st_mode & 0o222 or not os.access(given, os.W_OK):  # root may write 0444
            raise OutputError(f"{given}: read-only; a report does not replace it")
        return given.absolute()
    parent = given.absolute().parent
    if parent.is_dir():
        return given.absolute()
    root = Path(base if base is not None else os.getcwd()).resolve()
    if not parent.resolve().is_relative_to(root):
        raise OutputError(
            f"{given}: directory {parent} does not exist (only missing "
            f"directories under the working directory {root} are created)"
        )
    return given.absolute()


def write_output(
    path: str | os.PathLike[str], text: str, *, base: str | os.PathLike[str] | None = None
) -> Path:
    """Write a report atomically to the regular file :func:`output_target` allows."""
    target = output_target(path, base=base)
    write_text(target, text)
    return target
