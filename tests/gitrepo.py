"""Test helper: a real repository, a local bare ``origin`` and agent worktrees, quickly.

Import it from a test module in ``tests/`` (``from gitrepo import GitSandbox``). Everything
lives under the test's ``tmp_path``; :func:`isolate_git` points ``HOME`` at an empty directory
so the operator's ``~/.gitconfig`` cannot change what git does in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_orch_recovery.infra import git

AUTHOR = ("Test Agent", "agent@example.invalid")


def isolate_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give git an empty HOME and no system config for the rest of the test."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    return home


@dataclass
class GitSandbox:
    """``root/repo`` (main, one commit), ``root/origin.git`` and worktrees in ``root/agents``."""

    root: Path
    repo: Path
    origin: Path
    agents: Path
    worktrees: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> GitSandbox:
        repo, origin = git.create_repo_with_origin(root, author=AUTHOR)
        agents = root / "agents"
        agents.mkdir()
        return cls(root, repo, origin, agents)

    def worktree(self, agent: str, branch: str | None = None) -> Path:
        """A worktree for ``agent`` at ``agents/<agent>`` on ``branch`` (default: the agent)."""
        path = git.add_worktree(self.repo, self.agents / agent, branch or agent)
        self.worktrees[agent] = path
        return path

    @staticmethod
    def write(worktree: Path, relpath: str, text: str = "content\n") -> Path:
        path = worktree / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    @staticmethod
    def commit_all(worktree: Path, message: str = "work") -> str:
        git.run_git(["add", "--all"], cwd=worktree)
        # --allow-empty: a generated sequence may "commit" what is already committed.
        git.run_git(
            ["commit", "--quiet", "--no-verify", "--allow-empty", "-m", message], cwd=worktree
        )
        sha = git.head_sha(worktree)
        assert sha is not None
        return sha

    @staticmethod
    def push(worktree: Path, remote: str = "origin") -> None:
        branch = git.current_branch(worktree)
        assert branch is not None
        git.run_git(["push", "--quiet", remote, f"HEAD:refs/heads/{branch}"], cwd=worktree)

    def origin_sha(self, branch: str) -> str | None:
        return git.resolve(self.origin, f"refs/heads/{branch}")
