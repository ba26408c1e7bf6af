"""Work in progress on the origin, for a fleet over several hosts.

At each checkpoint of a running agent (its checkpoint file changed), the supervisor snapshots
the agent's worktree as it is on disk -- uncommitted files included, the worktree and its
index untouched (:func:`~pytest_orch_recovery.infra.cleanup.snapshot_commit`) -- and pushes
that commit to the origin as ``refs/orch/rescue/<branch>``, one moving ref per branch. A host
that takes the task over when this one is lost starts its workspace from the newer of that
ref and the branch the agent pushed itself (:func:`take_up`): a host loss then costs at most
the work since the agent's last checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pytest_orch_recovery.infra import git
from pytest_orch_recovery.infra.checkpoint_file import checkpoint_path
from pytest_orch_recovery.infra.cleanup import snapshot_commit
from pytest_orch_recovery.store.atomic import file_stamp

_LOG = logging.getLogger(__name__)

RESCUE_PREFIX = "refs/orch/rescue/"
SNAPSHOT_SUBJECT = "orch-recovery rescue: "  # snapshot_commit's subject for uncommitted work
REMOTE = "origin"


def rescue_ref(branch: str) -> str:
    return f"{RESCUE_PREFIX}{branch}"


@dataclass
class RescuePusher:
    """Pushes each agent's snapshot at its checkpoints (see the module doc)."""

    checkpoints: Path
    # agent -> (checkpoint file stamp, commit pushed for it)
    _seen: dict[str, tuple[tuple[int, int, int] | None, str | None]] = field(default_factory=dict)

    def push_if_checkpointed(self, agent: str, worktree: Path, branch: str) -> str | None:
        """Push ``agent``'s worktree when its checkpoint changed since the last push; returns
        the commit pushed, or None (nothing new, no worktree, or the push failed: logged, the
        next checkpoint tries again)."""
        stamp = file_stamp(checkpoint_path(self.checkpoints, agent))
        last_stamp, last_commit = self._seen.get(agent, (None, None))
        if stamp is None or stamp == last_stamp or not worktree.is_dir():
            return None
        try:
            commit = snapshot_commit(worktree)
            if commit is None or commit == last_commit:
                self._seen[agent] = (stamp, last_commit)
                return None
            git.run_git(
                ["push", "--quiet", "--force", REMOTE, f"{commit}:{rescue_ref(branch)}"],
                cwd=worktree,
            )
        except (git.GitError, OSError) as exc:
            _LOG.warning("rescue push of %s failed: %s", agent, exc)
            return None
        self._seen[agent] = (stamp, commit)
        return commit

    def forget(self, agent: str) -> None:
        self._seen.pop(agent, None)


def drop(repo: Path, branch: str) -> bool:
    """Delete the origin's rescue ref of ``branch`` (its task is finished: the work is on the
    branch or no longer wanted); returns whether there was one."""
    ref = rescue_ref(branch)
    if ref not in git.run_git(["ls-remote", REMOTE, ref], cwd=repo).stdout.split():
        return False
    git.run_git(["push", "--quiet", REMOTE, "--delete", ref], cwd=repo)
    return True


def take_up(repo: Path, branch: str) -> tuple[str, bool] | None:
    """Prepare ``repo``'s ``branch`` for a workspace that goes on with another host's work:
    the branch as the origin has it, or the rescue snapshot when that is newer. Returns the
    commit taken and whether it is a snapshot of uncommitted files (the branch is then set
    to its parent, and :func:`restore` puts its files back uncommitted), or None when the
    origin holds nothing of it."""
    pushed = git.fetch_branch(repo, REMOTE, branch)
    ref = rescue_ref(branch)
    heads = git.run_git(["ls-remote", REMOTE, ref], cwd=repo).stdout.split()
    if ref not in heads:
        return None if pushed is None else (pushed, False)
    git.run_git(["fetch", "--quiet", REMOTE, f"+{ref}:{ref}"], cwd=repo)
    snapshot = git.run_git(["rev-parse", ref], cwd=repo).stdout.strip()
    if pushed is not None and not _is_ancestor(repo, pushed, snapshot):
        return (pushed, False)  # the agent pushed after its last checkpoint: newer
    message = git.run_git(["log", "-1", "--format=%s", snapshot], cwd=repo).stdout
    parent = git.resolve(repo, f"{snapshot}^")
    if parent is not None and message.startswith(SNAPSHOT_SUBJECT):
        git.run_git(["branch", "--force", "--", branch, parent], cwd=repo)
        return (snapshot, True)
    git.run_git(["branch", "--force", "--", branch, snapshot], cwd=repo)
    return (snapshot, False)


def restore(worktree: Path, snapshot: str) -> None:
    """Put the snapshot's files into a worktree checked out at its parent, as uncommitted
    changes: the next attempt sees them as work done and not yet committed."""
    git.run_git(["checkout", "--quiet", snapshot, "--", "."], cwd=worktree)
    git.run_git(["reset", "--quiet"], cwd=worktree)


def _is_ancestor(repo: Path, older: str | None, newer: str) -> bool:
    if older is None:
        return False
    found = git.run_git(
        ["merge-base", "--is-ancestor", older, newer], cwd=repo, check=False
    ).returncode
    return found == 0
