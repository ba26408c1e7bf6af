"""Work in progress on the origin (fleet/rescue.py), with real git and a bare origin: pushed
at each checkpoint without touching the worktree, and taken up by another clone -- the
snapshot's files back as uncommitted changes on the branch's parent, or the pushed branch
when the agent pushed after its last checkpoint."""

from __future__ import annotations

from pathlib import Path

from pytest_orch_recovery.fleet.rescue import RescuePusher, drop, rescue_ref, restore, take_up
from pytest_orch_recovery.infra.checkpoint_file import checkpoint_path
from pytest_orch_recovery.infra.git import (
    add_worktree,
    create_repo_with_origin,
    head_sha,
    remote_sha,
    run_git,
    status_paths,
)

BRANCH = "task-agent-1-work"


def _world(tmp_path: Path) -> tuple[Path, Path, Path, RescuePusher]:
    repo, origin = create_repo_with_origin(tmp_path / "alpha")
    worktree = add_worktree(repo, tmp_path / "alpha-wt" / "task-agent-1", BRANCH)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    return repo, origin, worktree, RescuePusher(checkpoints)


def _checkpoint(pusher: RescuePusher, text: str) -> None:
    checkpoint_path(pusher.checkpoints, "task-agent-1").write_text(text)


def _clone(origin: Path, tmp_path: Path) -> Path:
    beta = tmp_path / "beta"
    run_git(["clone", "--quiet", str(origin), str(beta)], cwd=tmp_path)
    return beta


def _origin_ref(origin: Path, ref: str) -> str | None:
    out = run_git(["for-each-ref", "--format=%(objectname)", ref], cwd=origin).stdout.strip()
    return out or None


def test_each_checkpoint_pushes_the_worktree_as_it_is_and_another_host_takes_it_up(
    tmp_path: Path,
) -> None:
    _, origin, worktree, pusher = _world(tmp_path)
    (worktree / "a.md").write_text("first file\n")
    assert pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH) is None  # none yet
    _checkpoint(pusher, '{"n": 1}')
    head = head_sha(worktree)
    pushed = pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH)
    assert pushed is not None and _origin_ref(origin, rescue_ref(BRANCH)) == pushed
    assert head_sha(worktree) == head and status_paths(worktree) == ("a.md",)  # untouched
    assert pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH) is None  # same stamp
    (worktree / "b.md").write_text("second file\n")
    assert pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH) is None  # no checkpoint
    _checkpoint(pusher, '{"n": 2}')
    second = pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH)
    assert second not in (None, pushed)

    beta = _clone(origin, tmp_path)
    assert take_up(beta, BRANCH) == (second, True)
    taken = add_worktree(beta, tmp_path / "beta-wt" / "task-agent-1", BRANCH)
    assert second is not None
    restore(taken, second)
    assert head_sha(taken) == head  # the branch where the agent left it, not the snapshot
    assert sorted(status_paths(taken)) == ["a.md", "b.md"]
    assert (taken / "b.md").read_text() == "second file\n"


def test_a_branch_pushed_after_the_last_checkpoint_wins(tmp_path: Path) -> None:
    _, origin, worktree, pusher = _world(tmp_path)
    (worktree / "a.md").write_text("first file\n")
    _checkpoint(pusher, '{"n": 1}')
    assert pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH) is not None
    run_git(["add", "a.md"], cwd=worktree)
    run_git(["commit", "--quiet", "-m", "a"], cwd=worktree)
    run_git(["push", "--quiet", "origin", BRANCH], cwd=worktree)
    beta = _clone(origin, tmp_path)
    assert take_up(beta, BRANCH) == (remote_sha(beta, "origin", BRANCH), False)


def test_nothing_on_the_origin_takes_up_nothing_and_a_dropped_ref_is_gone(
    tmp_path: Path,
) -> None:
    repo, origin, worktree, pusher = _world(tmp_path)
    assert take_up(_clone(origin, tmp_path), BRANCH) is None
    (worktree / "a.md").write_text("first file\n")
    _checkpoint(pusher, '{"n": 1}')
    assert pusher.push_if_checkpointed("task-agent-1", worktree, BRANCH) is not None
    assert drop(repo, BRANCH) is True
    assert _origin_ref(origin, rescue_ref(BRANCH)) is None
    assert drop(repo, BRANCH) is False
