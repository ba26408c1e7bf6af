"""The push fence (fleet/pushfence.py) with real git: an agent's push goes through while its
host's lease is live, and is refused once it ran out or was revoked; the repository's own
``pre-push`` hook still runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from pytest_orch_recovery.fleet.pushfence import PushFence
from pytest_orch_recovery.infra.git import create_repo_with_origin, run_git

AGENT = "task-agent-7"


def _push(
    repo: Path, fence: PushFence, *, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (repo / "work.md").write_text(f"{time.monotonic()}\n")
    run_git(["add", "work.md"], cwd=repo)
    run_git(["commit", "--quiet", "-m", "work"], cwd=repo)
    base = {**os.environ, "ORCH_AGENT": AGENT, **(extra or {})}
    env = base | fence.env(base)
    return subprocess.run(
        ["git", "push", "--quiet", "origin", f"HEAD:refs/heads/{AGENT}-work"],
        cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_a_push_needs_a_live_lease(tmp_path: Path) -> None:
    repo, origin = create_repo_with_origin(tmp_path / "project")
    fence = PushFence(tmp_path / "state")
    refused = _push(repo, fence)  # never granted
    assert refused.returncode != 0
    assert "orch-recovery: push refused: the lease of task-agent-7's task ran out" in (
        refused.stderr
    )
    fence.grant(AGENT, time.time() + 30, lease=30)
    assert _push(repo, fence).returncode == 0
    head = run_git(["rev-parse", "HEAD"], cwd=repo).stdout
    assert run_git(["rev-parse", f"refs/heads/{AGENT}-work"], cwd=origin).stdout == head
    fence.revoke(AGENT)
    assert _push(repo, fence).returncode != 0
    fence.grant(AGENT, time.time() - 1, lease=30)  # ran out: the host was frozen past it
    assert _push(repo, fence).returncode != 0
    assert run_git(["rev-parse", f"refs/heads/{AGENT}-work"], cwd=origin).stdout == head


def test_the_repository_s_own_pre_push_hook_still_runs(tmp_path: Path) -> None:
    repo, _ = create_repo_with_origin(tmp_path / "project")
    own = repo / ".git" / "hooks" / "pre-push"
    own.write_text('#!/bin/sh\necho "own hook saw $1" >&2\nexit 3\n')
    own.chmod(0o755)
    fence = PushFence(tmp_path / "state")
    fence.grant(AGENT, time.time() + 30, lease=30)
    pushed = _push(repo, fence)
    assert pushed.returncode != 0 and "own hook saw origin" in pushed.stderr
    # An agent's own GIT_CONFIG_* entries are kept, the hook path added after them.
    kept = fence.env({"GIT_CONFIG_COUNT": "1"})
    assert kept["GIT_CONFIG_COUNT"] == "2" and kept["GIT_CONFIG_KEY_1"] == "core.hooksPath"


def test_gh_pr_create_needs_a_live_lease_and_everything_else_passes_through(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real-bin"
    real.mkdir()
    (real / "gh").write_text('#!/bin/sh\necho "real gh: $*"\n')
    (real / "gh").chmod(0o755)
    fence = PushFence(tmp_path / "state")
    base = {"PATH": f"{real}{os.pathsep}{os.environ['PATH']}", "ORCH_AGENT": AGENT}
    env = {**os.environ, **base, **fence.env(base)}

    def gh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gh", *args], env=env, capture_output=True, text=True, check=False, timeout=60
        )

    refused = gh("pr", "create", "--title", "x y")
    assert refused.returncode == 1 and "real gh" not in refused.stdout
    assert "orch-recovery: gh pr create refused: the lease of task-agent-7's task" in (
        refused.stderr
    )
    assert gh("pr", "list", "--json", "number").stdout == "real gh: pr list --json number\n"
    fence.grant(AGENT, time.time() + 30, lease=30)
    assert gh("pr", "create", "--title", "x y").stdout == "real gh: pr create --title x y\n"
