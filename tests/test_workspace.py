"""workspace.probe over real worktrees: each PartialWork field through an agent's progress."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest
from gitrepo import GitSandbox, isolate_git

from pytest_orch_recovery.engine import analyze
from pytest_orch_recovery.engine.model import Checkpoint, PullRequest, Task, WorkKind
from pytest_orch_recovery.infra import git
from pytest_orch_recovery.infra.workspace import (
    PullRequestsInMemory,
    WorkspaceError,
    deliverable_present,
    probe,
    run_task_tests,
)

TASK = Task(
    "t-5030",
    "Create /fake3 command",
    deliverables=("fake3.md", "fake3.py", "docs/fake3 usage.md", "tests/test_fake3.py"),
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitSandbox:
    isolate_git(monkeypatch, tmp_path)
    return GitSandbox.create(tmp_path / "sb")


def test_probe_follows_the_work_from_nothing_to_pr(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("task-agent-5030")
    prs = PullRequestsInMemory()

    fresh = probe(wt, TASK, prs=prs)
    assert fresh.deliverables_present == ()
    assert fresh.deliverables_missing == TASK.deliverables
    assert (fresh.uncommitted, fresh.commits_ahead, fresh.pushed, fresh.pr) == ((), 0, False, None)
    assert not fresh.any_progress

    # Interrupted after two of four files: the seed's "Partial File Creation".
    sandbox.write(wt, "fake3.md", "# /fake3\n")
    sandbox.write(wt, "docs/fake3 usage.md", "use it\n")
    partial = probe(wt, TASK, prs=prs)
    assert partial.deliverables_present == ("fake3.md", "docs/fake3 usage.md")
    assert partial.deliverables_missing == ("fake3.py", "tests/test_fake3.py")
    assert partial.uncommitted == ("docs/fake3 usage.md", "fake3.md")
    assert partial.commits_ahead == 0
    assert not partial.pushed
    work = analyze.missing_work(TASK, partial)
    assert [w.kind for w in work][:2] == [WorkKind.WRITE, WorkKind.WRITE]

    sandbox.commit_all(wt, "docs")
    committed = probe(wt, TASK, prs=prs)
    assert committed.uncommitted == ()
    assert committed.commits_ahead == 1
    assert not committed.pushed  # the branch is not on origin at all: no error

    sandbox.write(wt, "fake3.py", "print('fake3')\n")
    sandbox.write(wt, "tests/test_fake3.py", "def test_it():\n    pass\n")
    sandbox.commit_all(wt, "code")
    sandbox.push(wt)
    pushed = probe(wt, TASK, prs=prs)
    assert pushed.code_complete
    assert pushed.commits_ahead == 2
    assert pushed.pushed
    assert pushed.pr is None
    assert [w.kind for w in analyze.missing_work(TASK, pushed)] == [WorkKind.OPEN_PR]

    pr = prs.open("task-agent-5030", TASK.title)
    done = probe(wt, TASK, prs=prs)
    assert done.pr == pr
    assert analyze.missing_work(TASK, done) == ()

    # A commit after the push: origin's tip is no longer HEAD.
    sandbox.write(wt, "fake3.md", "# /fake3, revised\n")
    sandbox.commit_all(wt, "revise")
    assert not probe(wt, TASK, prs=prs).pushed


def test_probe_passes_the_checkpoint_through(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    cp = Checkpoint("agent", "t-5030", completed_subtasks=("wrote fake3.md",))
    got = probe(wt, TASK, checkpoint=cp, checkpoint_problem=None)
    assert got.checkpoint == cp and got.usable_checkpoint
    bad = probe(wt, TASK, checkpoint_problem="agent.json: line 1: invalid JSON")
    assert bad.checkpoint is None
    assert bad.checkpoint_problem == "agent.json: line 1: invalid JSON"


def test_unicode_and_space_names(sandbox: GitSandbox) -> None:
    task = Task("t", "unicode", deliverables=("docs/résumé final.md", "数据/表 1.csv"))
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "数据/表 1.csv", "a,b\n")
    got = probe(wt, task)
    assert got.deliverables_present == ("数据/表 1.csv",)
    assert got.deliverables_missing == ("docs/résumé final.md",)
    assert got.uncommitted == ("数据/表 1.csv",)


def test_empty_whitespace_and_in_flight_files_are_missing(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "empty.md", "")
    sandbox.write(wt, "blank.md", "  \n\n")
    sandbox.write(wt, "partial.md", "half of it")
    sandbox.write(wt, "partial.md.part", "the rest is still coming")
    sandbox.write(wt, "atomic.md", "old version\n")
    sandbox.write(wt, ".atomic.md.k3j2h1.tmp", "new version, not yet renamed\n")
    sandbox.write(wt, "good.md", "done\n")
    (wt / "a dir.md").mkdir()
    names = ("empty.md", "blank.md", "partial.md", "atomic.md", "good.md", "a dir.md")
    present = [n for n in names if deliverable_present(wt, n)]
    assert present == ["good.md"]


def test_symlink_out_of_the_worktree_is_not_a_deliverable(
    sandbox: GitSandbox, tmp_path: Path
) -> None:
    wt = sandbox.worktree("agent")
    outside = tmp_path / "outside.md"
    outside.write_text("not the agent's work\n", encoding="utf-8")
    os.symlink(outside, wt / "fake3.md")
    (wt / "inside.md").write_text("real\n", encoding="utf-8")
    os.symlink("inside.md", wt / "alias.md")
    os.symlink("loop.md", wt / "loop.md")
    assert not deliverable_present(wt, "fake3.md")
    assert deliverable_present(wt, "alias.md")
    assert not deliverable_present(wt, "loop.md")
    assert not deliverable_present(wt, "../outside.md")


def test_probe_on_a_plain_directory_names_it(tmp_path: Path) -> None:
    plain = tmp_path / "not a repo"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not a git worktree") as info:
        probe(plain, TASK)
    assert info.value.path == plain
    assert str(plain) in str(info.value)
    with pytest.raises(WorkspaceError, match="no such directory"):
        probe(tmp_path / "gone", TASK)


def test_probe_on_a_subdirectory_of_a_checkout_refuses(sandbox: GitSandbox) -> None:
    leftover = sandbox.repo / "agents" / "task-agent-5030"
    leftover.mkdir(parents=True)
    with pytest.raises(WorkspaceError, match="not the top of a git worktree") as info:
        probe(leftover, TASK)
    assert str(sandbox.repo) in str(info.value)


def test_probe_with_an_unreachable_remote_reports_not_pushed(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    git.run_git(["remote", "set-url", "origin", str(sandbox.root / "vanished.git")], cwd=wt)
    got = probe(wt, TASK)
    assert not got.pushed


def test_probe_counts_against_the_remote_base_when_no_local_one(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "fake3.md")
    sandbox.commit_all(wt)
    git.run_git(["fetch", "--quiet", "origin"], cwd=wt)
    assert probe(wt, TASK, base="main").commits_ahead == 1
    with pytest.raises(WorkspaceError, match="base 'develop'"):
        probe(wt, TASK, base="develop")


def test_pr_lookup_is_by_branch(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent-7", branch="task/fake3")
    prs = PullRequestsInMemory()
    prs.add(PullRequest(886, "task/fake3", "https://github.com/o/r/pull/886"))
    prs.open("other-branch")
    got = probe(wt, TASK, prs=prs)
    assert got.pr is not None and got.pr.number == 886
    prs.add(PullRequest(886, "task/fake3", "https://github.com/o/r/pull/886", state="CLOSED"))
    assert probe(wt, TASK, prs=prs).pr is None
    prs.add(PullRequest(886, "task/fake3", "https://github.com/o/r/pull/886", state="MERGED"))
    assert probe(wt, TASK, prs=prs).pr is not None


# --------------------------------------------------------------------------- tests command


def test_tests_command_pass_and_fail(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "check.sh", 'test -s fake3.py || { echo "fake3.py missing" >&2; exit 1; }\n')
    task = Task("t", "x", deliverables=("fake3.py",), tests="sh check.sh")
    assert probe(wt, task).tests_passed is None  # not asked to run them
    failing = probe(wt, task, run_tests=True)
    assert failing.tests_passed is False
    work = analyze.missing_work(task, failing)
    assert work[0].kind is WorkKind.WRITE
    sandbox.write(wt, "fake3.py", "print(3)\n")
    assert probe(wt, task, run_tests=True).tests_passed is True
    run = run_task_tests(wt, "sh check.sh; echo out; exit 3")
    assert run.returncode == 3 and not run.passed
    assert "out" in run.output


def test_tests_command_runs_with_the_given_environment(tmp_path: Path) -> None:
    cmd = 'test "$ONLY_HERE" = yes && test -z "$HOME"'
    assert run_task_tests(tmp_path, cmd, env={"ONLY_HERE": "yes", "PATH": os.defpath}).passed
    assert not run_task_tests(tmp_path, cmd).passed  # this process's own: no ONLY_HERE


def test_tests_command_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    # The command backgrounds a grandchild that would outlive a plain kill of the shell.
    cmd = "sleep 300 & echo $! > child.pid; wait"
    run = run_task_tests(tmp_path, cmd, timeout=2)
    assert run.timed_out and run.returncode is None and not run.passed
    pid = int((tmp_path / "child.pid").read_text().strip())
    assert _gone(pid)


def test_background_leftovers_are_killed_after_a_normal_exit(tmp_path: Path) -> None:
    run = run_task_tests(tmp_path, "sleep 300 >/dev/null 2>&1 & echo $! > child.pid")
    assert run.passed
    assert _gone(int((tmp_path / "child.pid").read_text().strip()))


def test_probe_with_timed_out_tests_reports_failure(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    task = Task("t", "x", tests="sleep 300")
    assert probe(wt, task, run_tests=True, test_timeout=0.3).tests_passed is False


def _gone(pid: int, timeout: float = 30) -> bool:
    """Wait (bounded, on the process's pidfd) until ``pid`` has exited; True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def _counting_git(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = git.run_git

    def counting(args: list[str], **kwargs: object) -> object:
        calls.append(args[0])
        return real(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(git, "run_git", counting)
    return calls


def test_probe_asks_git_four_times(sandbox: GitSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # The coordinator probes every attempt that ends: each git process there is a few ms of
    # a busy supervisor's time. One status gives branch, HEAD and changes; the agent's own
    # push moved the remote-tracking ref, so the remote is not asked.
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "fake3.md")
    sandbox.commit_all(wt)
    sandbox.push(wt)
    calls = _counting_git(monkeypatch)
    got = probe(wt, TASK)
    assert (got.commits_ahead, got.pushed, got.uncommitted) == (1, True, ())
    assert calls == ["rev-parse", "status", "rev-list", "rev-parse"]


def test_a_push_to_the_upstream_is_read_from_the_status_alone(
    sandbox: GitSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "git push -u origin HEAD", as agents push: the status's branch.ab says HEAD is on the
    # upstream, which is the remote-tracking ref: three git processes.
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "fake3.md")
    sandbox.commit_all(wt)
    git.run_git(["push", "--quiet", "-u", "origin", "HEAD"], cwd=wt)
    calls = _counting_git(monkeypatch)
    got = probe(wt, TASK)
    assert (got.commits_ahead, got.pushed, got.uncommitted) == (1, True, ())
    assert calls == ["rev-parse", "status", "rev-list"]
    sandbox.write(wt, "more.md")
    sandbox.commit_all(wt)  # ahead of its upstream: not pushed, and the status says why
    calls.clear()
    assert probe(wt, TASK).pushed is False
    assert calls[:3] == ["rev-parse", "status", "rev-list"] and "ls-remote" in calls
    # An upstream that is another branch (here main, on the same commit) proves nothing.
    git.run_git(["push", "--quiet", "origin", "HEAD:refs/heads/main"], cwd=wt)
    git.run_git(["fetch", "--quiet", "origin"], cwd=wt)
    git.run_git(["branch", "--quiet", "--set-upstream-to=origin/main"], cwd=wt)
    assert git.worktree_status(wt).ahead_behind == (0, 0)
    assert probe(wt, TASK).pushed is False


def test_a_push_the_tracking_ref_does_not_show_is_asked_of_the_remote(
    sandbox: GitSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "fake3.md")
    sandbox.commit_all(wt)
    sandbox.push(wt)
    branch = git.current_branch(wt)
    # As after a push from another clone, or with no fetch refspec: no tracking ref here.
    git.run_git(["update-ref", "-d", f"refs/remotes/origin/{branch}"], cwd=wt)
    calls = _counting_git(monkeypatch)
    assert probe(wt, TASK).pushed is True
    assert calls[-2:] == ["rev-parse", "ls-remote"]
    sandbox.write(wt, "more.md")
    sandbox.commit_all(wt)  # HEAD moves on: neither ref holds it
    assert probe(wt, TASK).pushed is False
