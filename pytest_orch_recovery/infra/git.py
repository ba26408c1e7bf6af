"""Git plumbing: run git in a controlled environment and read the few facts the engine needs.

Every call goes through :func:`run_git`, which pins the things that make git's behaviour and
messages vary between machines: the locale (``LC_ALL=C`` so errors are the English ones the
classifier matches), interactive prompts (off: a recovery engine must never hang on a password
prompt), the pager (off), and variables such as ``GIT_DIR`` leaking in from a surrounding
hook. When the caller passes an isolated ``HOME``, git reads neither ``/etc/gitconfig`` nor the
operator's own global config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidValue, OrchRecoveryError

# Variables that redirect git to another repository, index or object store. A recovery run
# started from inside a git hook inherits them; they would make every command below act on
# the wrong repository, so they are dropped unless the caller sets them on purpose.
_REDIRECTING_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)

# Identity for commits the engine itself makes (rescue snapshots, the initial commit of a
# sandbox repository), so they never depend on the operator's configuration.
ENGINE_AUTHOR = ("orch-recovery", "orch-recovery@localhost")

# Git writes paths in the bytes it finds on disk; surrogateescape lets a non-UTF-8 name make
# the round trip to a Path unchanged.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class GitError(OrchRecoveryError):
    """A git command failed (or timed out: ``returncode`` is None then)."""

    def __init__(self, args: Sequence[str], cwd: Path, returncode: int | None, stderr: str) -> None:
        self.args_ = tuple(args)
        self.cwd = cwd
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(str(self))

    def __str__(self) -> str:
        how = "timed out" if self.returncode is None else f"exited {self.returncode}"
        detail = self.stderr.strip() or "(no output on stderr)"
        return f"`git {' '.join(self.args_)}` in {self.cwd} {how}: {detail}"


def git_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment :func:`run_git` runs git with.

    >>> e = git_environment({"HOME": "/tmp/h", "GIT_DIR": "/elsewhere"})
    >>> e["LC_ALL"], e["GIT_TERMINAL_PROMPT"], e["GIT_CONFIG_NOSYSTEM"], e["GIT_DIR"]
    ('C', '0', '1', '/elsewhere')
    """
    base = {k: v for k, v in os.environ.items() if k not in _REDIRECTING_VARIABLES}
    if env is not None and "HOME" in env:
        # An isolated HOME means "not the operator's git": no system config, and the global
        # config is the one under that HOME, not one named by the inherited environment.
        for key in ("GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME", "GIT_CONFIG_SYSTEM"):
            base.pop(key, None)
        base["GIT_CONFIG_NOSYSTEM"] = "1"
    base.update(
        {
            "LC_ALL": "C",
            "LANGUAGE": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "GIT_OPTIONAL_LOCKS": "0",  # read-only commands must not contend for index.lock
        }
    )
    if env is not None:
        base.update(env)
    return base


def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 60,
    local: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``cwd``; raise :class:`GitError` on failure when ``check``.

    ``local``: the command only reads this machine's repository (no hook, no remote, nothing
    that could open a terminal), so it stays in this process's session, and with it in this
    process's CPU scheduling group (autogroup): a supervisor raised above its agents
    (``supervisor_nice``) reads their worktrees at its own weight, not at a new group's."""
    argv = ["git", "--no-pager", *args]
    try:
        # Its own process group, so a timeout also stops what git started (a hook, ssh, an
        # ext:: transport): killing git alone would leave them holding our pipes open. Its
        # own session too, unless local: no terminal for ssh or a credential helper to ask.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=git_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=not local,
            process_group=0 if local else None,
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise GitError(args, cwd, None, f"cannot run git there: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        raise GitError(args, cwd, None, f"no answer within {timeout:g} s") from None
    # Decoded by hand: text mode's universal newlines would turn a "\r" in a file name
    # into "\n" (found by the status_paths property test).
    done = subprocess.CompletedProcess(
        argv,
        proc.returncode,
        out.decode(_ENCODING, _ERRORS),
        err.decode(_ENCODING, _ERRORS),
    )
    if check and done.returncode != 0:
        # Some failures speak on stdout only ("nothing to commit, working tree clean").
        raise GitError(args, cwd, done.returncode, done.stderr.strip() or done.stdout)
    return done


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------- reading state


def is_work_tree(cwd: Path) -> bool:
    """True when ``cwd`` is inside a git working tree."""
    return worktree_top(cwd) is not None


def current_branch(cwd: Path) -> str | None:
    """The checked-out branch's short name; None on a detached HEAD."""
    proc = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=cwd, check=False, local=True)
    if proc.returncode == 0:
        return proc.stdout.strip()
    if proc.returncode == 1:  # --quiet: "HEAD is not a symbolic ref", i.e. detached
        return None
    raise GitError(
        ["symbolic-ref", "--quiet", "--short", "HEAD"], cwd, proc.returncode, proc.stderr
    )


def resolve(cwd: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names nothing (e.g. an unborn branch)."""
    proc = run_git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=cwd,
        check=False,
        local=True,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def head_sha(cwd: Path) -> str | None:
    """HEAD's commit, or None before the first commit."""
    return resolve(cwd, "HEAD")


def rev_count(cwd: Path, base: str, head: str = "HEAD") -> int:
    """Number of commits reachable from ``head`` and not from ``base``."""
    out = run_git(
        ["rev-list", "--count", "--end-of-options", f"{base}..{head}"], cwd=cwd, local=True
    ).stdout
    return int(out.strip())


@dataclass(frozen=True)
class StatusEntry:
    """One changed, staged or untracked path, as ``git status`` reports it."""

    code: str  # the two status letters XY as porcelain v1 prints them, e.g. "??", " M", "R "
    path: str  # the path as it is now (the destination of a rename or copy)
    orig_path: str | None = None  # the source of a rename or copy


@dataclass(frozen=True)
class WorktreeStatus:
    """What one ``git status`` says of a worktree: its branch, its commit, its changes."""

    branch: str | None  # the checked-out branch's short name; None on a detached HEAD
    head: str | None  # HEAD's commit; None before the first commit
    entries: tuple[StatusEntry, ...]
    # The branch's upstream as git shortens it unambiguously (e.g. "origin/b" names
    # refs/remotes/origin/b), when one is configured; and the commits HEAD is ahead of it and
    # behind it, when that ref exists.
    upstream: str | None = None
    ahead_behind: tuple[int, int] | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        """Paths with uncommitted changes, sorted; a rename gives both its destination and
        its source (both differ from the last commit)."""
        paths: set[str] = set()
        for entry in self.entries:
            paths.add(entry.path)
            if entry.orig_path is not None:
                paths.add(entry.orig_path)
        return tuple(sorted(paths))


# Porcelain v2 record kind -> fields before the path ("2": then the source path, NUL-separated).
_V2_FIELDS = {"1": 8, "2": 9, "u": 10, "?": 1, "!": 1}


def parse_status_z(text: str) -> WorktreeStatus:
    """Parse ``git status --porcelain=v2 -z --branch``.

    With ``-z`` paths are verbatim (no quoting) and each record ends in NUL; a rename or copy
    (``2``) record is followed by one more NUL-terminated field, the original path. The
    ``# branch.oid`` and ``# branch.head`` headers give HEAD (``(initial)`` before the first
    commit) and the branch (``(detached)``), ``# branch.upstream`` and ``# branch.ab +A -B``
    the upstream and how far HEAD is ahead of / behind it (no ``branch.ab`` when the upstream
    ref is gone) (git-status(1), "Porcelain Format Version 2"; confirmed against git 2.39's
    output). Status letters are returned as v1 writes them (``.`` for "unmodified" becomes a
    space; untracked is ``??``).

    >>> st = parse_status_z("# branch.oid (initial)\\0# branch.head main\\0"
    ...     "2 R. N... 100644 100644 100644 a b R100 new name\\0old name\\0? d/x\\0")
    >>> st.branch, st.head, st.paths, st.upstream, st.ahead_behind
    ('main', None, ('d/x', 'new name', 'old name'), None, None)
    >>> st.entries[0]
    StatusEntry(code='R ', path='new name', orig_path='old name')
    >>> st = parse_status_z("# branch.oid 1f\\0# branch.head b\\0# branch.upstream origin/b\\0"
    ...     "# branch.ab +2 -0\\0")
    >>> st.upstream, st.ahead_behind
    ('origin/b', (2, 0))
    """
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    branch: str | None = None
    head: str | None = None
    upstream: str | None = None
    ahead_behind: tuple[int, int] | None = None
    entries: list[StatusEntry] = []
    i = 0
    while i < len(fields):
        record = fields[i]
        if record.startswith("# "):
            key, _, value = record[2:].partition(" ")
            if key == "branch.oid":
                head = None if value == "(initial)" else value
            elif key == "branch.head":
                branch = None if value == "(detached)" else value
            elif key == "branch.upstream":
                upstream = value
            elif key == "branch.ab":
                ahead_behind = _ahead_behind(value)
            i += 1
            continue
        count = _V2_FIELDS.get(record[:1])
        parts = record.split(" ", count) if count is not None else []
        if count is None or len(parts) != count + 1 or not parts[-1]:
            raise InvalidValue(
                f"git status --porcelain=v2 -z: malformed record {i + 1}: {record!r}"
            )
        kind, path = parts[0], parts[-1]
        code = kind * 2 if kind in "?!" else parts[1].replace(".", " ")
        orig: str | None = None
        if kind == "2":
            i += 1
            if i >= len(fields):
                raise InvalidValue(
                    f"git status --porcelain=v2 -z: rename {path!r} lacks its source"
                )
            orig = fields[i]
        entries.append(StatusEntry(code, path, orig))
        i += 1
    return WorktreeStatus(branch, head, tuple(entries), upstream, ahead_behind)


def _ahead_behind(value: str) -> tuple[int, int] | None:
    """``+A -B`` -> (A, B); None for anything else."""
    ahead, _, behind = value.partition(" ")
    if ahead[:1] != "+" or behind[:1] != "-" or not (ahead[1:].isdigit() and behind[1:].isdigit()):
        return None
    return int(ahead[1:]), int(behind[1:])


def worktree_status(cwd: Path) -> WorktreeStatus:
    """Branch, HEAD and every changed, staged or untracked (not ignored) path, untracked files
    listed one by one: one ``git status`` instead of one git process for each fact."""
    out = run_git(
        [
            "status",
            "--porcelain=v2",
            "-z",
            "--branch",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ],
        cwd=cwd,
        local=True,
    ).stdout
    return parse_status_z(out)


def status_entries(cwd: Path) -> tuple[StatusEntry, ...]:
    """Every changed, staged or untracked (not ignored) path, untracked files listed one by one."""
    return worktree_status(cwd).entries


def status_paths(cwd: Path) -> tuple[str, ...]:
    """Paths with uncommitted changes, relative to the top of the worktree, sorted."""
    return worktree_status(cwd).paths


def remote_heads(cwd: Path, remote: str) -> dict[str, str]:
    """Branch name -> commit for every branch on ``remote`` (asks the remote, not the cache)."""
    out = run_git(["ls-remote", "--heads", remote], cwd=cwd).stdout
    heads: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def remote_sha(cwd: Path, remote: str, branch: str) -> str | None:
    """The commit ``branch`` points at on ``remote``; None when the remote has no such branch.

    ls-remote's pattern matches any ref *ending* in the pattern, so the answer is filtered for
    the exact ref name.
    """
    ref = f"refs/heads/{branch}"
    out = run_git(["ls-remote", remote, ref], cwd=cwd).stdout
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None


def fetch_branch(repo: Path, remote: str, branch: str) -> str | None:
    """Set ``repo``'s ``branch`` to the commit ``remote`` holds for it (created, or moved even
    when that is not a fast-forward: the remote's is the newer work); return that commit, or
    None when the remote has no such branch. Git refuses when ``branch`` is checked out."""
    if remote_sha(repo, remote, branch) is None:
        return None
    run_git(["fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/heads/{branch}"], cwd=repo)
    return resolve(repo, f"refs/heads/{branch}")


def git_common_dir(cwd: Path) -> Path:
    """The shared ``.git`` directory of the repository ``cwd`` belongs to (absolute)."""
    out = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=cwd).stdout
    return Path(out.strip())


def worktree_top(cwd: Path) -> Path | None:
    """The top directory of the worktree containing ``cwd``; None when ``cwd`` is not inside
    a working tree (outside any repository, or in a ``.git`` directory). One git process."""
    if not cwd.is_dir():
        return None
    proc = run_git(
        ["rev-parse", "--is-inside-work-tree", "--show-toplevel"], cwd=cwd, check=False, local=True
    )
    inside, _, top = proc.stdout.partition("\n")
    if proc.returncode != 0 or inside != "true" or not top.endswith("\n"):
        return None
    return Path(top[:-1])  # verbatim: a directory name may hold a newline


@dataclass(frozen=True)
class WorktreeRecord:
    """One entry of ``git worktree list --porcelain -z``."""

    path: Path
    head: str | None
    branch: str | None  # short name; None when detached or bare
    locked: bool = False
    prunable: bool = False
    bare: bool = False


def list_worktrees(repo: Path) -> tuple[WorktreeRecord, ...]:
    """Every worktree the repository knows, the main one first."""
    out = run_git(["worktree", "list", "--porcelain", "-z"], cwd=repo).stdout
    records: list[WorktreeRecord] = []
    for block in out.split("\0\0"):
        attrs: dict[str, str] = {}
        for item in block.split("\0"):
            if item:
                key, _, value = item.partition(" ")
                attrs[key] = value
        if "worktree" not in attrs:
            continue
        branch = attrs.get("branch")
        records.append(
            WorktreeRecord(
                path=Path(attrs["worktree"]),
                head=attrs.get("HEAD"),
                branch=None if branch is None else branch.removeprefix("refs/heads/"),
                locked="locked" in attrs,
                prunable="prunable" in attrs,
                bare="bare" in attrs,
            )
        )
    return tuple(records)


# --------------------------------------------------------------------------- making state


def _config_identity(repo: Path, author: tuple[str, str]) -> None:
    run_git(["config", "user.name", author[0]], cwd=repo)
    run_git(["config", "user.email", author[1]], cwd=repo)


def create_repo_with_origin(
    root: Path, *, author: tuple[str, str] = ENGINE_AUTHOR
) -> tuple[Path, Path]:
    """Make ``root/repo`` (one commit on ``main``) and a bare ``root/origin.git`` holding main.

    The repository's own config names ``author``, so commits never depend on a global config.
    Returns ``(repo, origin)``.
    """
    repo, origin = root / "repo", root / "origin.git"
    root.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", "--initial-branch=main", str(origin)], cwd=root)
    run_git(["init", "--quiet", "--initial-branch=main", str(repo)], cwd=root)
    _config_identity(repo, author)
    (repo / "README.md").write_text("# sandbox\n", encoding="utf-8")
    run_git(["add", "README.md"], cwd=repo)
    run_git(["commit", "--quiet", "--no-verify", "-m", "Initial commit"], cwd=repo)
    run_git(["remote", "add", "origin", str(origin)], cwd=repo)
    run_git(["push", "--quiet", "--set-upstream", "origin", "main"], cwd=repo)
    return repo, origin


def branch_exists(repo: Path, branch: str) -> bool:
    return resolve(repo, f"refs/heads/{branch}") is not None


def add_worktree(repo: Path, path: Path, branch: str, base: str = "main") -> Path:
    """Check ``branch`` out at ``path``, creating it from ``base`` when it does not exist yet
    (a restarted attempt reuses the branch its predecessor left)."""
    if branch_exists(repo, branch):
        run_git(["worktree", "add", "--quiet", "--", str(path), branch], cwd=repo)
    else:
        run_git(["worktree", "add", "--quiet", "-b", branch, "--", str(path), base], cwd=repo)
    return path


def remove_worktree(repo: Path, path: Path, *, force: bool) -> None:
    """``git worktree remove`` (``--force`` discards uncommitted changes) then prune."""
    args = ["worktree", "remove", *(["--force"] if force else []), "--", str(path)]
    run_git(args, cwd=repo)
    run_git(["worktree", "prune"], cwd=repo)
