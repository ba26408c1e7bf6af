"""Where the tmux runtime runs attempts: the :class:`Host` protocol and the production host.

A host owns the repository and the worktree root (one worktree per agent), the directories
the runtime writes (results: exit and launch records; logs: pane logs; checkpoints), the
environment each agent gets, and the name of the runtime's own tmux socket. The chaos tier's
``doubles.sandbox.Sandbox`` is one host; :class:`RepositoryHost` is the other: any plain git
repository with a worktree directory, as an operator's fleet has.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.infra.git import add_worktree, is_work_tree
from pytest_orch_recovery.infra.workspace import PullRequestLookup

# Passed through from the supervisor's environment unless the fleet file says otherwise:
# what a real agent CLI, git, gh and ssh need to run as the operator (credentials included).
DEFAULT_ENV_ALLOW: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LC_*",
    "TZ",
    "TMPDIR",
    "CLAUDE_CONFIG_DIR",
    "ANTHROPIC_*",
    "CLAUDE_CODE_*",
    "GH_*",
    "GITHUB_TOKEN",
    "SSH_AUTH_SOCK",
    "GIT_AUTHOR_*",
    "GIT_COMMITTER_*",
    "GIT_SSH_COMMAND",
)
# Never passed, whatever the allow-list says: they would point an agent at the operator's
# own tmux server instead of the runtime's.
_NEVER = frozenset({"TMUX", "TMUX_PANE"})


class Host(Protocol):
    """What :class:`~pytest_orch_recovery.runtime.tmux.TmuxRuntime` needs from its world."""

    @property
    def repo(self) -> Path:
        """The main checkout; every agent worktree belongs to it."""

    @property
    def tmux_socket(self) -> str:
        """``tmux -L`` name of the runtime's own server."""

    @property
    def state_dir(self) -> Path:
        """The runtime's event FIFO and pane-died hook script live here."""

    @property
    def results(self) -> Path:
        """Per attempt: the launch record and the wrapper's exit file."""

    @property
    def logs(self) -> Path:
        """Per attempt: the pane's output as piped by tmux."""

    @property
    def checkpoints(self) -> Path:
        """Agents' checkpoint files (``<agent>.json``)."""

    @property
    def prs(self) -> PullRequestLookup | None:
        """Who knows each branch's pull request; None: nobody (no PR is ever seen)."""

    def workspace(self, agent: str) -> Path:
        """The agent's worktree path (it may not exist yet)."""

    def add_workspace(self, agent: str) -> Path:
        """The agent's worktree, created (on the agent's branch) if missing."""

    def env(self, agent: str) -> dict[str, str]:
        """The complete environment of the agent's processes."""

    def record_pid(self, pid: int, *, what: str, pgid: int | None = None) -> None:
        """Note a process the runtime started (the sandbox's teardown stops them)."""


def check_agent_name(agent: str) -> None:
    """Agent names become tmux session names, branch names and file names."""
    ok = agent and all(c.isalnum() or c in "-_" for c in agent) and not agent.startswith("-")
    if not ok:
        raise InvalidValue(
            f"agent name {agent!r}: use letters, digits, '-' and '_' (not leading '-')"
        )


def allowed_env(source: Mapping[str, str], allow: Sequence[str]) -> dict[str, str]:
    """The variables of ``source`` whose names match a pattern of ``allow`` (``fnmatch``,
    case-sensitive), never ``TMUX``/``TMUX_PANE``.

    >>> allowed_env({"GH_TOKEN": "t", "AWS_KEY": "k", "TMUX": "x"}, ["GH_*", "TMUX"])
    {'GH_TOKEN': 't'}
    """
    return {
        name: value
        for name, value in source.items()
        if name not in _NEVER and any(fnmatch.fnmatchcase(name, p) for p in allow)
    }


class RepositoryHost:
    """A :class:`Host` over an existing repository: worktrees ``<worktree_root>/<agent>`` on
    branch ``branch_pattern.format(agent=agent)`` from ``base``; everything the runtime
    writes under ``state_dir`` (checkpoints where the caller says)."""

    def __init__(
        self,
        repo: Path,
        worktree_root: Path,
        state_dir: Path,
        *,
        tmux_socket: str,
        branch_pattern: str = "{agent}-work",
        base: str = "main",
        env_allow: Sequence[str] = DEFAULT_ENV_ALLOW,
        agent_env: Mapping[str, str] | None = None,
        checkpoints: Path | None = None,
        prs: PullRequestLookup | None = None,
        source_env: Mapping[str, str] | None = None,
    ) -> None:
        if not is_work_tree(repo):
            raise InvalidValue(f"{repo}: not a git repository")
        self._repo = repo.resolve()
        self.worktree_root = worktree_root
        self._state_dir = state_dir
        self._tmux_socket = tmux_socket
        self.branch_pattern = branch_pattern
        self.base = base
        self.env_allow = tuple(env_allow)
        self.agent_env = dict(agent_env or {})
        self._checkpoints = checkpoints if checkpoints is not None else state_dir / "checkpoints"
        self._prs = prs
        self._source_env = source_env
        # git worktree add is not safe to run concurrently on one repository (measured, git
        # 2.39: "failed to read .git/worktrees/<other>/commondir" while another is being
        # made); the runtime's workers launch in parallel, so one at a time here.
        self._worktree_lock = threading.Lock()
        for d in (worktree_root, state_dir, self.results, self.logs, self._checkpoints):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def repo(self) -> Path:
        return self._repo

    @property
    def tmux_socket(self) -> str:
        return self._tmux_socket

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def results(self) -> Path:
        return self._state_dir / "results"

    @property
    def logs(self) -> Path:
        return self._state_dir / "logs"

    @property
    def checkpoints(self) -> Path:
        return self._checkpoints

    @property
    def prs(self) -> PullRequestLookup | None:
        return self._prs

    def set_prs(self, prs: PullRequestLookup | None) -> None:
        """Who answers PR state (built after the host, when it needs the agents' env)."""
        self._prs = prs

    def branch(self, agent: str) -> str:
        return self.branch_pattern.format(agent=agent)

    def workspace(self, agent: str) -> Path:
        return self.worktree_root / agent

    def add_workspace(self, agent: str) -> Path:
        check_agent_name(agent)
        path = self.workspace(agent)
        if path.exists():
            # A worktree git made has a .git file (one stat, not a git process per launch).
            if not (path / ".git").is_file() and not is_work_tree(path):
                raise InvalidValue(f"{path}: exists and is not a git worktree")
            return path
        with self._worktree_lock:
            add_worktree(self._repo, path, self.branch(agent), self.base)
        return path

    def env(self, agent: str) -> dict[str, str]:
        source = os.environ if self._source_env is None else self._source_env
        env = allowed_env(source, self.env_allow)
        env.setdefault("PATH", os.defpath)
        env.update(self.agent_env)
        env.update(
            {
                "ORCH_CHECKPOINT_DIR": str(self._checkpoints),
                "ORCH_RESULTS_DIR": str(self.results),
                "ORCH_AGENT": agent,
            }
        )
        return env

    def record_pid(self, pid: int, *, what: str, pgid: int | None = None) -> None:
        """Nothing to do: the runtime's launch records are what a restart reads."""
