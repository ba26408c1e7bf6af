"""git.py against real git: environment control, status parsing, remote and worktree facts."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest
from gitrepo import AUTHOR, GitSandbox, isolate_git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.infra import git


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitSandbox:
    isolate_git(monkeypatch, tmp_path)
    return GitSandbox.create(tmp_path / "sb")


# --------------------------------------------------------------------------- environment


def test_environment_pins_locale_prompt_and_pager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("GIT_DIR", "/somewhere/else/.git")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/operator/.gitconfig")
    env = git.git_environment(None)
    assert env["LC_ALL"] == "C"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_PAGER"] == "cat"
    assert "GIT_DIR" not in env  # leaked from a surrounding hook
    assert env["GIT_CONFIG_GLOBAL"] == "/operator/.gitconfig"  # no isolated HOME: kept
    assert "GIT_CONFIG_NOSYSTEM" not in env or os.environ.get("GIT_CONFIG_NOSYSTEM")


def test_isolated_home_drops_global_and_system_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/operator/.gitconfig")
    monkeypatch.delenv("GIT_CONFIG_NOSYSTEM", raising=False)
    env = git.git_environment({"HOME": "/tmp/isolated"})
    assert env["HOME"] == "/tmp/isolated"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert "GIT_CONFIG_GLOBAL" not in env


def test_isolated_home_config_is_what_git_reads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[orch]\n\tprobe = isolated\n", encoding="utf-8")
    proc = git.run_git(["config", "--global", "orch.probe"], cwd=tmp_path, env={"HOME": str(home)})
    assert proc.stdout.strip() == "isolated"


def test_git_error_names_command_directory_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(git.GitError) as info:
        git.run_git(["rev-parse", "HEAD"], cwd=tmp_path)
    err = info.value
    assert err.returncode == 128
    text = str(err)
    assert "`git rev-parse HEAD`" in text
    assert str(tmp_path) in text
    # LC_ALL=C: git's English message, the one the classifier matches.
    assert "not a git repository" in text


def test_git_error_falls_back_to_stdout(sandbox: GitSandbox) -> None:
    with pytest.raises(git.GitError, match="nothing to commit"):
        git.run_git(["commit", "-m", "empty"], cwd=sandbox.repo)


def test_check_false_returns_the_failure(tmp_path: Path) -> None:
    proc = git.run_git(["rev-parse", "HEAD"], cwd=tmp_path, check=False)
    assert proc.returncode == 128
    assert "fatal:" in proc.stderr


def test_timeout_is_a_git_error_and_stops_what_git_started(tmp_path: Path) -> None:
    # The ext:: transport runs a command for git; this one never answers and, as a grandchild
    # holding git's stderr, would keep a plain subprocess.run waiting after git was killed.
    script = tmp_path / "helper.sh"
    script.write_text(f"echo $$ > {tmp_path / 'helper.pid'}\nexec sleep 300\n", encoding="utf-8")
    hang = f"ext::sh {script}"
    with pytest.raises(git.GitError) as info:
        git.run_git(["-c", "protocol.ext.allow=always", "ls-remote", hang], cwd=tmp_path, timeout=2)
    assert info.value.returncode is None
    assert "no answer within 2 s" in str(info.value)
    # The helper ran (git waited on it) and went down with git's process group.
    assert _gone(int((tmp_path / "helper.pid").read_text().strip()))


def _gone(pid: int, timeout: float = 30) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_missing_directory_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(git.GitError, match="cannot run git there"):
        git.run_git(["status"], cwd=tmp_path / "absent")


# --------------------------------------------------------------------------- repository facts


def test_create_repo_with_origin(sandbox: GitSandbox) -> None:
    assert git.current_branch(sandbox.repo) == "main"
    head = git.head_sha(sandbox.repo)
    assert head is not None and len(head) == 40
    assert sandbox.origin_sha("main") == head
    assert git.remote_sha(sandbox.repo, "origin", "main") == head
    name = git.run_git(["config", "user.name"], cwd=sandbox.repo).stdout.strip()
    assert name == AUTHOR[0]
    assert git.status_paths(sandbox.repo) == ()


def test_worktree_branch_counts_and_remote(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("task-agent-5030")
    assert git.current_branch(wt) == "task-agent-5030"
    assert git.rev_count(wt, "main") == 0
    sandbox.write(wt, "fake3.md")
    sandbox.commit_all(wt, "one")
    sandbox.write(wt, "fake3.py")
    head = sandbox.commit_all(wt, "two")
    assert git.rev_count(wt, "main", "HEAD") == 2
    assert git.remote_sha(wt, "origin", "task-agent-5030") is None
    sandbox.push(wt)
    assert git.remote_sha(wt, "origin", "task-agent-5030") == head
    assert git.remote_heads(wt, "origin") == {
        "main": git.head_sha(sandbox.repo),
        "task-agent-5030": head,
    }


def test_remote_sha_matches_the_exact_branch_only(sandbox: GitSandbox) -> None:
    # ls-remote's pattern "refs/heads/x" also matches "refs/heads/feature/refs/heads/x".
    wt = sandbox.worktree("a", branch="feature/refs/heads/x")
    sandbox.push(wt)
    assert git.remote_sha(wt, "origin", "x") is None
    assert git.remote_sha(wt, "origin", "feature/refs/heads/x") == git.head_sha(wt)


def test_remote_sha_on_unknown_remote_raises(sandbox: GitSandbox) -> None:
    with pytest.raises(git.GitError, match="does not appear to be a git repository"):
        git.remote_sha(sandbox.repo, "nowhere", "main")


def test_detached_head_has_no_branch(sandbox: GitSandbox) -> None:
    head = git.head_sha(sandbox.repo)
    assert head is not None
    git.run_git(["checkout", "--quiet", "--detach"], cwd=sandbox.repo)
    assert git.current_branch(sandbox.repo) is None
    assert git.head_sha(sandbox.repo) == head


def test_unborn_repository_has_no_head(tmp_path: Path) -> None:
    git.run_git(["init", "--quiet", "--initial-branch=main", str(tmp_path / "r")], cwd=tmp_path)
    assert git.head_sha(tmp_path / "r") is None
    assert git.current_branch(tmp_path / "r") == "main"
    assert git.is_work_tree(tmp_path / "r")
    assert not git.is_work_tree(tmp_path)


def test_add_worktree_reuses_an_existing_branch(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent-a", branch="task-1")
    sandbox.write(wt, "a.txt")
    head = sandbox.commit_all(wt)
    git.remove_worktree(sandbox.repo, wt, force=False)
    assert not wt.exists()
    again = git.add_worktree(sandbox.repo, sandbox.agents / "agent-b", "task-1")
    assert git.head_sha(again) == head
    assert (again / "a.txt").read_text(encoding="utf-8") == "content\n"


def test_remove_worktree_without_force_refuses_dirty(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent-a")
    sandbox.write(wt, "dirty.txt")
    with pytest.raises(git.GitError, match="contains modified or untracked files"):
        git.remove_worktree(sandbox.repo, wt, force=False)
    git.remove_worktree(sandbox.repo, wt, force=True)
    assert not wt.exists()
    assert [r.path for r in git.list_worktrees(sandbox.repo)] == [sandbox.repo]


def test_list_worktrees_reports_branch_and_lock(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent with space", branch="agent-with-space")
    git.run_git(["worktree", "lock", "--reason", "busy", str(wt)], cwd=sandbox.repo)
    records = git.list_worktrees(sandbox.repo)
    assert [(r.path, r.branch, r.locked) for r in records] == [
        (sandbox.repo, "main", False),
        (wt, "agent-with-space", True),
    ]


# --------------------------------------------------------------------------- status


def test_status_paths_rename_space_unicode_and_untracked_dirs(sandbox: GitSandbox) -> None:
    repo = sandbox.repo
    sandbox.write(repo, "old name.txt", "a fairly long body so rename detection holds\n" * 4)
    sandbox.commit_all(repo)
    git.run_git(["mv", "old name.txt", "nouveau é.txt"], cwd=repo)
    sandbox.write(repo, "deep/dir/ü ñ.md")
    sandbox.write(repo, "README.md", "changed\n")
    entries = git.status_entries(repo)
    renamed = [e for e in entries if e.orig_path is not None]
    assert renamed == [git.StatusEntry("R ", "nouveau é.txt", "old name.txt")]
    assert git.status_paths(repo) == (
        "README.md",
        "deep/dir/ü ñ.md",
        "nouveau é.txt",
        "old name.txt",
    )


def test_parse_status_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="malformed record 1"):
        git.parse_status_z("XYZ\0")
    with pytest.raises(ValueError, match="malformed record 2"):
        git.parse_status_z("# branch.head main\x001 .M N... 100644\0")
    with pytest.raises(ValueError, match="lacks its source"):
        git.parse_status_z("2 R. N... 100644 100644 100644 a b R100 new\0")


# Any name a file can have: no NUL or "/", not "." / "..", not ".git"; newlines, tabs,
# leading spaces and non-ASCII included (-z output is verbatim, never quoted).
_NAME_ALPHABET = st.characters(codec="utf-8", exclude_characters="\0/", min_codepoint=1)
_names = st.text(_NAME_ALPHABET, min_size=1, max_size=12).filter(
    lambda n: n not in {".", ".."} and n.lower() != ".git"
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.sets(_names, min_size=1, max_size=6), nested=st.booleans())
def test_status_paths_roundtrips_any_filenames(
    tmp_path_factory: pytest.TempPathFactory, names: set[str], nested: bool
) -> None:
    repo = tmp_path_factory.mktemp("prop")
    git.run_git(["init", "--quiet", "--initial-branch=main", str(repo)], cwd=repo)
    prefix = "sub dir/" if nested else ""
    for name in names:
        (repo / prefix).mkdir(exist_ok=True)
        (repo / prefix / name).write_text(name, encoding="utf-8")
    expected = tuple(sorted(prefix + n for n in names))
    assert git.status_paths(repo) == expected
    git.run_git(["add", "--all"], cwd=repo)
    assert git.status_paths(repo) == expected  # staged (A) records parse the same


def test_worktree_status_reads_branch_head_and_changes_in_one_call(sandbox: GitSandbox) -> None:
    repo = sandbox.repo
    before = git.worktree_status(repo)
    # main was pushed with --set-upstream: the status also says it is level with origin/main.
    assert before == git.WorktreeStatus("main", git.head_sha(repo), (), "origin/main", (0, 0))
    sandbox.write(repo, "new file.txt")
    git.run_git(["checkout", "--quiet", "--detach"], cwd=repo)
    after = git.worktree_status(repo)
    assert (after.branch, after.head, after.paths) == (None, before.head, ("new file.txt",))
    assert after.entries == (git.StatusEntry("??", "new file.txt"),)


def test_worktree_top_names_the_top_or_nothing(sandbox: GitSandbox, tmp_path: Path) -> None:
    sub = sandbox.repo / "a dir"
    sub.mkdir()
    assert git.worktree_top(sub) == sandbox.repo.resolve()
    assert git.worktree_top(sandbox.repo / ".git") is None  # inside the repository, no tree
    assert git.worktree_top(tmp_path / "absent") is None
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git.worktree_top(outside) is None


def test_a_local_read_stays_in_this_session_and_others_get_their_own(tmp_path: Path) -> None:
    # The session decides the CPU scheduling group (autogroup): a supervisor's reads of its
    # agents' worktrees keep its weight; what may talk to a remote gets no terminal.
    git.run_git(["init", "--quiet", str(tmp_path)], cwd=tmp_path)
    sid = ["-c", "alias.sid=!ps -o sid= -o pgid= -p $$", "sid"]
    local = git.run_git(sid, cwd=tmp_path, local=True).stdout.split()
    other = git.run_git(sid, cwd=tmp_path).stdout.split()
    assert int(local[0]) == os.getsid(0) and int(local[1]) != os.getpgid(0)
    assert int(other[0]) != os.getsid(0)
