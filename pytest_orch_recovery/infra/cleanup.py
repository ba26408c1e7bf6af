"""Remove agent worktrees without losing work and without touching anything outside the fleet.

Rules, in the order :func:`cleanup_workspace` applies them:

1. Only a path that resolves inside one of the managed roots (and is not a root itself) is
   touched; a path that is itself a symlink is refused, so a link cannot steer removal.
2. Only a registered, unlocked, non-main worktree of ``repo`` is removed: a stray directory
   could be anybody's, and ``git worktree lock`` is an explicit "keep out".
3. Nothing unpushed is lost. The worktree's whole state -- HEAD plus every uncommitted change,
   untracked files included -- becomes one commit: when the tree differs from HEAD, a snapshot
   commit made with ``commit-tree`` from a *temporary index* (``git stash create`` would leave
   untracked files out, and the worktree's own index is not disturbed). If that commit is not
   already reachable from a branch on the remote, it is kept under
   ``refs/rescue/<branch>/<UTC timestamp>`` in the main repository (``-<n>`` is appended on a
   clash). A remote that cannot be asked counts as holding nothing: rescue refs are cheap.
4. ``git worktree remove --force``, ``git worktree prune``, then the directory itself if git
   left it (``shutil.rmtree`` never follows symlinks: a link to a file outside the worktree
   loses the link, not the file).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pytest_orch_recovery.infra import git

_log = logging.getLogger(__name__)

RESCUE_NAMESPACE = "refs/rescue"

_RESCUE_ENV = {
    "GIT_AUTHOR_NAME": git.ENGINE_AUTHOR[0],
    "GIT_AUTHOR_EMAIL": git.ENGINE_AUTHOR[1],
    "GIT_COMMITTER_NAME": git.ENGINE_AUTHOR[0],
    "GIT_COMMITTER_EMAIL": git.ENGINE_AUTHOR[1],
}


@dataclass(frozen=True)
class CleanupResult:
    path: Path
    removed: bool
    rescue_ref: str | None
    reason: str


# --------------------------------------------------------------------------- containment


def _managed_root(path: Path, managed_roots: Sequence[Path]) -> Path | None:
    """The managed root ``path`` (resolved) lies strictly inside, if any."""
    real = path.resolve()
    for root in managed_roots:
        real_root = root.resolve()
        if real != real_root and real_root in real.parents:
            return real_root
    return None


def _main_worktree(records: Sequence[git.WorktreeRecord]) -> Path:
    # `git worktree list` names the main worktree first, whichever worktree asks.
    return records[0].path.resolve()


def _registered(records: Sequence[git.WorktreeRecord], path: Path) -> git.WorktreeRecord | None:
    real = path.resolve()
    for record in records:
        if record.path.resolve() == real:
            return record
    return None


# --------------------------------------------------------------------------- rescue


def snapshot_commit(worktree: Path, status: git.WorktreeStatus | None = None) -> str | None:
    """A commit holding the worktree exactly as it is on disk, untracked files included.

    Returns HEAD itself when nothing is uncommitted, a new commit on top of HEAD otherwise, and
    None for an empty worktree with no commits. Neither the worktree's index nor its files
    change. ``status`` (the worktree's, just read) spares a clean worktree the temporary index:
    ``git status`` listing nothing, untracked files included, means the tree on disk is HEAD's.
    """
    if status is not None and not status.entries:
        return status.head
    head = status.head if status is not None else git.head_sha(worktree)
    with tempfile.TemporaryDirectory(prefix="orch-rescue-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index"), **_RESCUE_ENV}
        if head is not None:
            git.run_git(["read-tree", head], cwd=worktree, env=env)
        # Ignored files stay out, as in any commit: dependencies and secrets are not work.
        git.run_git(["add", "--all", "--", "."], cwd=worktree, env=env)
        tree = git.run_git(["write-tree"], cwd=worktree, env=env).stdout.strip()
    if head is not None:
        head_tree = git.run_git(["rev-parse", f"{head}^{{tree}}"], cwd=worktree).stdout.strip()
        if head_tree == tree:
            return head
    if head is None and not _tree_has_entries(worktree, tree):
        return None
    message = f"orch-recovery rescue: uncommitted changes in {worktree}"
    parents = ["-p", head] if head is not None else []
    return git.run_git(
        ["commit-tree", tree, *parents, "-m", message], cwd=worktree, env=_RESCUE_ENV
    ).stdout.strip()


def _tree_has_entries(cwd: Path, tree: str) -> bool:
    return bool(git.run_git(["ls-tree", tree], cwd=cwd).stdout.strip())


def on_remote(repo: Path, commit: str, remote: str) -> bool:
    """Whether every commit reachable from ``commit`` is reachable from a branch on ``remote``
    as the remote reports it now (not from possibly stale remote-tracking refs)."""
    try:
        heads = git.remote_heads(repo, remote)
    except git.GitError as exc:
        _log.warning("%s: cannot list %s's branches, rescuing anyway: %s", repo, remote, exc)
        return False
    if not heads:
        return False
    # One rev-list for every head: --ignore-missing skips the heads this repository has never
    # seen (they cannot hold our commit), instead of one rev-parse per remote branch, which
    # made settling N workspaces cost N * N git processes.
    out = git.run_git(
        ["rev-list", "--count", "--ignore-missing", commit, "--not", *sorted(set(heads.values()))],
        cwd=repo,
    ).stdout
    return int(out.strip()) == 0


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def save_rescue_ref(repo: Path, branch: str, commit: str) -> str:
    """Point a new ``refs/rescue/<branch>/<timestamp>[-n]`` at ``commit``; return its name."""
    stem = f"{RESCUE_NAMESPACE}/{branch}/{_timestamp()}"
    for n in range(1, 1000):
        ref = stem if n == 1 else f"{stem}-{n}"
        # An empty <old-value> means "must not exist yet": two cleanups never share a ref.
        proc = git.run_git(["update-ref", "--no-deref", ref, commit, ""], cwd=repo, check=False)
        if proc.returncode == 0:
            return ref
        if "reference already exists" not in proc.stderr and git.resolve(repo, ref) is None:
            raise git.GitError(["update-ref", ref, commit], repo, proc.returncode, proc.stderr)
    raise git.GitError(["update-ref", stem], repo, None, "no free rescue ref name")


def rescue_refs(repo: Path, branch: str | None = None) -> tuple[str, ...]:
    """Names of the rescue refs (of one branch, or all), oldest name first."""
    prefix = RESCUE_NAMESPACE if branch is None else f"{RESCUE_NAMESPACE}/{branch}"
    out = git.run_git(["for-each-ref", "--format=%(refname)", prefix + "/"], cwd=repo).stdout
    return tuple(sorted(out.split()))


# --------------------------------------------------------------------------- cleanup


def _refuse(path: Path, reason: str) -> CleanupResult:
    _log.info("not cleaning %s: %s", path, reason)
    return CleanupResult(path, False, None, reason)


def cleanup_workspace(
    worktree: Path, *, repo: Path, managed_roots: Sequence[Path], remote: str = "origin"
) -> CleanupResult:
    """Rescue what is unpushed, then remove ``worktree`` (see the module docstring's rules)."""
    if worktree.is_symlink():
        return _refuse(worktree, "the workspace path is a symlink; refusing to follow it")
    if _managed_root(worktree, managed_roots) is None:
        roots = ", ".join(str(r) for r in managed_roots) or "(none)"
        return _refuse(worktree, f"outside the managed roots {roots}")
    records = git.list_worktrees(repo)
    record = _registered(records, worktree)
    if record is None:
        if not worktree.exists():
            git.run_git(["worktree", "prune"], cwd=repo)
            return CleanupResult(worktree, False, None, "nothing to clean: no such directory")
        return _refuse(worktree, f"not a worktree of {repo}")
    if record.path.resolve() == _main_worktree(records):
        return _refuse(worktree, "the main worktree is never removed")
    if record.locked:
        return _refuse(worktree, "worktree is locked (git worktree lock)")

    if not worktree.is_dir():
        git.run_git(["worktree", "prune"], cwd=repo)
        return CleanupResult(worktree, False, None, "directory already gone; record pruned")

    rescue_ref: str | None = None
    status: git.WorktreeStatus | None
    try:
        status = git.worktree_status(worktree)
        branch = status.branch
    except git.GitError as exc:  # e.g. a corrupt index: the snapshot does not read it
        _log.warning("%s: git status failed, snapshotting without it: %s", worktree, exc)
        status, branch = None, git.current_branch(worktree)
    branch = branch or f"detached/{worktree.name}"
    tip = snapshot_commit(worktree, status)
    if tip is not None and not on_remote(repo, tip, remote):
        rescue_ref = save_rescue_ref(repo, branch, tip)
    proc = git.run_git(["worktree", "remove", "--force", str(worktree)], cwd=repo, check=False)
    if proc.returncode != 0:
        _log.warning("git worktree remove %s failed, deleting it: %s", worktree, proc.stderr)
    if worktree.exists():
        if (worktree / ".git").is_dir():  # a repository of its own, never a linked worktree
            reason = f"git left a directory holding a repository: {proc.stderr.strip()}"
            return CleanupResult(worktree, False, rescue_ref, reason)
        shutil.rmtree(worktree)
    if proc.returncode != 0:  # a removal git did not finish leaves its record behind
        git.run_git(["worktree", "prune"], cwd=repo)
    saved = f"; unpushed work saved to {rescue_ref}" if rescue_ref else "; nothing unpushed"
    return CleanupResult(worktree, True, rescue_ref, "removed" + saved)


def find_orphans(repo: Path, managed_roots: Sequence[Path], live_agents: set[str]) -> list[Path]:
    """Registered worktrees under the managed roots that no live agent owns.

    Convention: an agent's worktree directory is named after the agent (``task-agent-5030``).
    Worktrees whose directory is gone are pruned records, not orphans, and are not listed.
    """
    records = git.list_worktrees(repo)
    main = _main_worktree(records)
    orphans: list[Path] = []
    for record in records:
        if record.bare or record.path.resolve() == main or not record.path.is_dir():
            continue
        if _managed_root(record.path, managed_roots) is None:
            continue
        if record.path.name not in live_agents:
            orphans.append(record.path)
    return sorted(orphans)


def reap_orphans(
    repo: Path,
    managed_roots: Sequence[Path],
    live_agents: set[str],
    *,
    remote: str = "origin",
) -> list[CleanupResult]:
    """Clean every orphan :func:`find_orphans` lists, by :func:`cleanup_workspace`'s rules."""
    results = [
        cleanup_workspace(path, repo=repo, managed_roots=managed_roots, remote=remote)
        for path in find_orphans(repo, managed_roots, live_agents)
    ]
    git.run_git(["worktree", "prune"], cwd=repo)
    return results
