"""Remedies the policy may order before the next attempt, carried out on a real worktree.

``remove_stale_index_lock``: git leaves ``index.lock`` behind when it is killed mid-operation,
and every later ``git add`` / ``git commit`` then fails with "Unable to create
'.../index.lock': File exists." The lock is stale only if no git process is still running in
that repository, which is checked in ``/proc`` before the file is removed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pytest_orch_recovery.engine.policy import REMEDY_STALE_INDEX_LOCK
from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.infra.processes import pids_named, process_cwd


def _git_processes_in(git_dir: Path, worktree: Path) -> list[int]:
    """Pids of git processes whose working directory is inside ``worktree`` or ``git_dir``."""
    roots = [worktree.resolve(), git_dir.resolve()]
    pids = []
    for pid in pids_named("git"):
        cwd = process_cwd(pid)
        if cwd is not None and any(cwd == r or cwd.is_relative_to(r) for r in roots):
            pids.append(pid)
    return pids


def remove_stale_index_lock(worktree: Path) -> str:
    git_dir = Path(run_git(["rev-parse", "--absolute-git-dir"], cwd=worktree).stdout.strip())
    lock = git_dir / "index.lock"
    if not lock.exists():
        return "no index.lock present"
    busy = _git_processes_in(git_dir, worktree)
    if busy:
        return f"index.lock kept: git still running (pids {', '.join(map(str, busy))})"
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()
    return f"removed stale {lock} (no git process held it)"


def apply_remedy(worktree: Path, remedy: str) -> str:
    """Carry out ``remedy`` in ``worktree``; return what was done, for the journal."""
    if remedy == REMEDY_STALE_INDEX_LOCK:
        return remove_stale_index_lock(worktree)
    return f"unknown remedy {remedy!r}: nothing done"
