"""Read a real git worktree into :class:`~pytest_orch_recovery.engine.model.PartialWork`.

What counts as a delivered file (the rule the recovery design's "Partial File Creation" pattern
needs): a deliverable is *present* when its path, inside the worktree, is a regular file (a
symlink leading out of the worktree does not count) holding something other than whitespace, and
no half-finished write of it is lying beside it. A half-finished write is recognised by the
names writers leave while a file is in flight: ``atomic.py``'s ``.<name>.<random>.tmp`` and the
common ``<name>.tmp`` / ``<name>.part`` / ``<name>.partial``. A file with such a sibling may be
an old or truncated version, so the next attempt is asked to write it again. Anything else is
*missing*. Truncation that leaves no trace cannot be told from a short file; the task's tests
are what catch that."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import Checkpoint, PartialWork, PullRequest, Task
from pytest_orch_recovery.infra import git
from pytest_orch_recovery.store import validation

_log = logging.getLogger(__name__)

# Sibling names that say "this file is still being written"; see the module docstring.
IN_FLIGHT_SUFFIXES = (".tmp", ".part", ".partial")

# Test output kept for a fix-focused agent's prompt; the tail is where the failures are.
_OUTPUT_TAIL = 64 * 1024


class WorkspaceError(OrchRecoveryError):
    """The workspace cannot be read (not a git worktree, no such directory, ...)."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class PullRequestLookup(Protocol):
    """Whatever knows the open pull requests (the forge, a ``gh`` wrapper)."""

    def pull_request_for(self, branch: str) -> PullRequest | None: ...


class PullRequestsInMemory:
    """A :class:`PullRequestLookup` over a dict, for tests and the simulation.

    >>> prs = PullRequestsInMemory()
    >>> prs.open("task-1", "Create /fake3 command").number
    1
    >>> prs.pull_request_for("task-1").url
    'https://github.com/example/repo/pull/1'
    >>> prs.pull_request_for("task-2") is None
    True
    """

    def __init__(self, base_url: str = "https://github.com/example/repo") -> None:
        self._base_url = base_url.rstrip("/")
        self._by_branch: dict[str, PullRequest] = {}

    def open(self, branch: str, title: str = "") -> PullRequest:
        number = len(self._by_branch) + 1
        pr = PullRequest(number, branch, f"{self._base_url}/pull/{number}", title)
        self._by_branch[branch] = pr
        return pr

    def add(self, pr: PullRequest) -> None:
        self._by_branch[pr.branch] = pr

    def pull_request_for(self, branch: str) -> PullRequest | None:
        return self._by_branch.get(branch)


# --------------------------------------------------------------------------- deliverables


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _in_flight(target: Path) -> bool:
    parent, name = target.parent, target.name
    if any((parent / f"{name}{suffix}").exists() for suffix in IN_FLIGHT_SUFFIXES):
        return True
    # atomic.write_bytes: mkstemp(prefix=f".{name}.", suffix=".tmp")
    return any(True for _ in parent.glob(f".{_glob_escape(name)}.*.tmp"))


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def deliverable_present(worktree: Path, relpath: str) -> bool:
    """The module docstring's rule for one deliverable path (relative to ``worktree``)."""
    root = worktree.resolve()
    target = worktree / relpath
    try:
        real = target.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    if not _inside(real, root) or not real.is_file():
        return False
    try:
        with real.open("rb") as handle:
            if not handle.read(1 << 20).strip():
                return False
    except OSError:
        return False
    return not _in_flight(target)


def split_deliverables(
    worktree: Path, deliverables: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(present, missing)``, each in the task's order."""
    present = tuple(p for p in deliverables if deliverable_present(worktree, p))
    missing = tuple(p for p in deliverables if p not in present)
    return present, missing


# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class SuiteRun:
    """One run of a task's test suite (its ``tests`` command)."""

    command: str
    returncode: int | None  # None when it timed out
    timed_out: bool
    output: str  # stdout and stderr interleaved, the last 64 KiB

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_task_tests(
    worktree: Path, command: str, *, timeout: float = 300, env: Mapping[str, str] | None = None
) -> SuiteRun:
    """Run ``command`` through the shell in ``worktree``, in its own process group, with
    ``env`` (None: this process's environment).

    On timeout the whole group is killed (a test runner's children included); after a normal
    exit any background process the command left in its group is killed too, so a probe never
    leaves processes behind.
    """
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=worktree,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        raw, _ = proc.communicate()
    finally:
        _kill_group(proc.pid)
    text = raw.decode("utf-8", errors="replace")[-_OUTPUT_TAIL:]
    return SuiteRun(command, None if timed_out else proc.returncode, timed_out, text)


# --------------------------------------------------------------------------- probe


def _commits_ahead(worktree: Path, head: str | None, base: str, remote: str) -> int:
    if head is None:
        return 0
    for candidate in (base, f"refs/remotes/{remote}/{base}"):
        # One git process when the base exists (the usual case); why it failed is asked only
        # when it did: a base that names nothing moves on to the next candidate, anything
        # else is the repository's failure and is raised.
        proc = git.run_git(
            ["rev-list", "--count", "--end-of-options", f"{candidate}..{head}", "--"],
            cwd=worktree,
            check=False,
            local=True,
        )
        if proc.returncode == 0:
            return int(proc.stdout.strip())
        if git.resolve(worktree, candidate) is not None:
            raise git.GitError(
                ["rev-list", "--count", f"{candidate}..{head}"],
                worktree,
                proc.returncode,
                proc.stderr.strip(),
            )
    raise WorkspaceError(worktree, f"base {base!r} is neither a local nor a {remote} branch")


def _asked_about(branch: str) -> bool:
    """Whether a branch the agent's HEAD names may be asked about: the agent chooses it, and
    ``--repo=attacker/evil`` would make ``gh pr view`` answer about something else."""
    try:
        validation.ref_name(branch)
    except validation.RuleError as exc:
        _log.warning("not asking for a pull request: %s", exc)
        return False
    return True


def _pushed(worktree: Path, status: git.WorktreeStatus, remote: str) -> bool:
    branch, head = status.branch, status.head
    if branch is None or head is None:
        return False
    # git moves the remote-tracking ref only when a push (or fetch) of that commit succeeded:
    # when it is HEAD, the push is known without asking the remote (an ls-remote is a
    # connection, for GitHub a network round trip, at every exit). Otherwise the remote
    # answers: the push may have come from elsewhere, or the tracking ref may not be kept.
    # When that ref is the branch's upstream (``git push -u``), the status already says
    # whether HEAD is on it (nothing ahead, nothing behind), without another git process.
    if status.upstream == f"{remote}/{branch}" and status.ahead_behind == (0, 0):
        return True
    if git.resolve(worktree, f"refs/remotes/{remote}/{branch}") == head:
        return True
    try:
        return git.remote_sha(worktree, remote, branch) == head
    except git.GitError as exc:
        # An unreachable remote cannot confirm the push; "not pushed" makes the next attempt
        # push, which is harmless when it was pushed after all.
        _log.warning("%s: cannot ask %s about %s: %s", worktree, remote, branch, exc)
        return False


def probe(
    worktree: Path,
    task: Task,
    *,
    base: str = "main",
    remote: str = "origin",
    prs: PullRequestLookup | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_problem: str | None = None,
    run_tests: bool = False,
    test_timeout: float = 300,
    test_env: Mapping[str, str] | None = None,
) -> PartialWork:
    """Take stock of what an attempt left in ``worktree`` (see the module docstring).

    An absent branch on the remote is "not pushed", never an error, and so is a remote that
    cannot be reached (logged). A pull request closed without merging counts as none. The
    task's tests run with ``test_env`` (the agent's own environment, so they pass or fail as
    they did for the agent). A
    directory that is not the top of a git worktree raises :class:`WorkspaceError` naming it.
    """
    if not worktree.is_dir():
        raise WorkspaceError(worktree, "no such directory")
    top = git.worktree_top(worktree)
    if top is None:
        raise WorkspaceError(worktree, "not a git worktree")
    if top.resolve() != worktree.resolve():
        # e.g. a leftover directory under a root that lies inside the main checkout: reading
        # it would report the main checkout's state as the agent's.
        raise WorkspaceError(worktree, f"not the top of a git worktree (it lies inside {top})")
    try:
        present, missing = split_deliverables(worktree, task.deliverables)
        status = git.worktree_status(worktree)
        branch = status.branch
        uncommitted = status.paths
        ahead = _commits_ahead(worktree, status.head, base, remote)
        pushed = _pushed(worktree, status, remote)
    except git.GitError as exc:
        raise WorkspaceError(worktree, str(exc)) from exc
    pr = None
    if prs is not None and branch is not None and _asked_about(branch):
        pr = prs.pull_request_for(branch)
    if pr is not None and pr.state.upper() == "CLOSED":
        pr = None  # closed without merging: the work still needs an open PR
    tests_passed: bool | None = None
    test_output: str | None = None
    if run_tests and task.tests:
        test_run = run_task_tests(worktree, task.tests, timeout=test_timeout, env=test_env)
        tests_passed = test_run.passed
        test_output = None if test_run.passed else test_run.output
    return PartialWork(
        deliverables_present=present,
        deliverables_missing=missing,
        uncommitted=uncommitted,
        commits_ahead=ahead,
        pushed=pushed,
        pr=pr,
        checkpoint=checkpoint,
        checkpoint_problem=checkpoint_problem,
        tests_passed=tests_passed,
        test_output=test_output,
    )
