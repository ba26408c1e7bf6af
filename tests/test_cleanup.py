"""cleanup.py against real worktrees: containment, symlinks, rescue refs, orphans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gitrepo import GitSandbox, isolate_git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.infra import git
from pytest_orch_recovery.infra.cleanup import (
    RESCUE_NAMESPACE,
    cleanup_workspace,
    find_orphans,
    reap_orphans,
    rescue_refs,
    snapshot_commit,
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitSandbox:
    isolate_git(monkeypatch, tmp_path)
    return GitSandbox.create(tmp_path / "sb")


def _show(repo: Path, rev: str) -> str:
    return git.run_git(["show", rev], cwd=repo).stdout


def _registered(repo: Path) -> list[Path]:
    return [r.path for r in git.list_worktrees(repo)]


# --------------------------------------------------------------------------- refusals


def test_refuses_a_path_outside_the_managed_roots(sandbox: GitSandbox, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    wt = git.add_worktree(sandbox.repo, elsewhere / "agent", "agent")
    sandbox.write(wt, "work.md")
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert not result.removed and result.rescue_ref is None
    assert "outside the managed roots" in result.reason
    assert (wt / "work.md").exists()
    assert wt in _registered(sandbox.repo)


def test_refuses_the_root_itself_and_a_dotdot_escape(sandbox: GitSandbox) -> None:
    roots = [sandbox.agents]
    assert not cleanup_workspace(sandbox.agents, repo=sandbox.repo, managed_roots=roots).removed
    escape = sandbox.agents / ".." / "repo"
    result = cleanup_workspace(escape, repo=sandbox.repo, managed_roots=roots)
    assert not result.removed and "outside" in result.reason
    assert (sandbox.repo / ".git").is_dir()


def test_refuses_the_main_worktree_even_inside_a_root(sandbox: GitSandbox) -> None:
    result = cleanup_workspace(sandbox.repo, repo=sandbox.repo, managed_roots=[sandbox.root])
    assert not result.removed and "main worktree" in result.reason
    assert (sandbox.repo / "README.md").exists()


def test_main_worktree_is_known_when_asked_through_another_worktree(sandbox: GitSandbox) -> None:
    other = sandbox.worktree("agent")
    result = cleanup_workspace(sandbox.repo, repo=other, managed_roots=[sandbox.root])
    assert not result.removed and "main worktree" in result.reason


def test_refuses_a_symlinked_workspace_path(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    link = sandbox.agents / "alias"
    os.symlink(wt, link)
    result = cleanup_workspace(link, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert not result.removed and "symlink" in result.reason
    assert wt.is_dir()


def test_refuses_a_directory_that_is_not_a_worktree(sandbox: GitSandbox) -> None:
    stray = sandbox.agents / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("someone's\n", encoding="utf-8")
    result = cleanup_workspace(stray, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert not result.removed and "not a worktree of" in result.reason
    assert (stray / "notes.txt").exists()


def test_refuses_a_locked_worktree(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    git.run_git(["worktree", "lock", str(wt)], cwd=sandbox.repo)
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert not result.removed and "locked" in result.reason
    assert wt.is_dir()


def test_absent_directory_is_pruned_not_an_error(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    git.run_git(["worktree", "remove", str(wt)], cwd=sandbox.repo)
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert not result.removed and "nothing to clean" in result.reason


# --------------------------------------------------------------------------- symlinks


def test_symlinks_out_of_the_workspace_lose_the_link_not_the_target(
    sandbox: GitSandbox, tmp_path: Path
) -> None:
    outside_file = tmp_path / "precious.txt"
    outside_file.write_text("keep me\n", encoding="utf-8")
    outside_dir = tmp_path / "precious-dir"
    outside_dir.mkdir()
    (outside_dir / "inner.txt").write_text("keep me too\n", encoding="utf-8")
    wt = sandbox.worktree("agent")
    os.symlink(outside_file, wt / "link-to-file")
    os.symlink(outside_dir, wt / "link-to-dir")
    (wt / "sub").mkdir()
    os.symlink(outside_dir, wt / "sub" / "deeper-link")

    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])

    assert result.removed
    assert not wt.exists() and not (wt / "link-to-file").is_symlink()
    assert outside_file.read_text(encoding="utf-8") == "keep me\n"
    assert (outside_dir / "inner.txt").read_text(encoding="utf-8") == "keep me too\n"
    # The links were uncommitted work: the rescue commit holds them as links.
    assert result.rescue_ref is not None
    tree = git.run_git(["ls-tree", "-r", result.rescue_ref], cwd=sandbox.repo).stdout
    assert "120000 blob" in tree and "link-to-file" in tree


# --------------------------------------------------------------------------- rescue


def test_rescue_ref_holds_unpushed_commits_and_uncommitted_changes(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("task-agent-5030")
    sandbox.write(wt, "fake3.md", "# /fake3\n")
    committed = sandbox.commit_all(wt, "Add fake3.md")
    sandbox.write(wt, "fake3.md", "# /fake3\nedited after the commit\n")
    sandbox.write(wt, "new dir/fake3 é.py", "print('untracked')\n")
    sandbox.write(wt, "staged.txt", "staged only\n")
    git.run_git(["add", "staged.txt"], cwd=wt)

    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])

    assert result.removed and not wt.exists()
    assert wt not in _registered(sandbox.repo)
    ref = result.rescue_ref
    assert ref is not None and ref.startswith(f"{RESCUE_NAMESPACE}/task-agent-5030/")
    assert rescue_refs(sandbox.repo) == (ref,)
    repo = sandbox.repo
    assert git.run_git(["rev-parse", f"{ref}^"], cwd=repo).stdout.strip() == committed
    assert "Add fake3.md" in _show(repo, f"{ref}^")
    assert _show(repo, f"{ref}:fake3.md") == "# /fake3\nedited after the commit\n"
    assert _show(repo, f"{ref}:new dir/fake3 é.py") == "print('untracked')\n"
    assert _show(repo, f"{ref}:staged.txt") == "staged only\n"
    assert "orch-recovery rescue" in _show(repo, ref)


def test_rescue_of_committed_work_points_at_the_commit_itself(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "a.md")
    head = sandbox.commit_all(wt)
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert result.rescue_ref is not None
    assert git.resolve(sandbox.repo, result.rescue_ref) == head


def test_pushed_branch_is_removed_without_a_rescue_ref(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "a.md")
    sandbox.commit_all(wt)
    sandbox.push(wt)
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert result.removed and result.rescue_ref is None
    assert "nothing unpushed" in result.reason
    assert rescue_refs(sandbox.repo) == ()
    assert not wt.exists()


def test_remote_branches_this_repository_never_saw_do_not_hide_the_answer(
    sandbox: GitSandbox, tmp_path: Path
) -> None:
    # Another clone pushes a branch whose commits this repository has never fetched: the
    # remote's heads then include objects unknown here, which must neither count as holding
    # our work nor break the check.
    other = tmp_path / "other"
    git.run_git(["clone", "--quiet", str(sandbox.origin), str(other)], cwd=tmp_path)
    git.run_git(["checkout", "--quiet", "-b", "elsewhere"], cwd=other)
    git.run_git(["config", "user.name", "Other"], cwd=other)
    git.run_git(["config", "user.email", "other@example.com"], cwd=other)
    sandbox.write(other, "theirs.md")
    sandbox.commit_all(other)
    sandbox.push(other)
    assert git.resolve(sandbox.repo, sandbox.origin_sha("elsewhere") or "") is None
    pushed, unpushed = sandbox.worktree("pushed"), sandbox.worktree("unpushed")
    for wt in (pushed, unpushed):
        sandbox.write(wt, "a.md", f"{wt.name}\n")  # distinct commits
        sandbox.commit_all(wt)
    sandbox.push(pushed)
    kept = cleanup_workspace(pushed, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert kept.removed and kept.rescue_ref is None
    rescued = cleanup_workspace(unpushed, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert rescued.removed and rescued.rescue_ref is not None


def test_settling_one_workspace_does_not_ask_git_once_per_remote_branch(
    sandbox: GitSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The campaign settles every workspace of a scenario; one git process per remote branch per
    # workspace made that quadratic (812 rev-parse calls for 28 agents).
    calls: list[str] = []
    real = git.run_git

    def counting(args: list[str], **kwargs: object) -> object:
        calls.append(args[0])
        return real(args, **kwargs)  # type: ignore[arg-type]

    def git_calls_to_clean(agent: str) -> int:
        wt = sandbox.worktree(agent)
        sandbox.write(wt, "a.md", f"{agent}\n")
        sandbox.commit_all(wt)
        sandbox.push(wt)
        calls.clear()
        monkeypatch.setattr(git, "run_git", counting)
        assert cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents]).removed
        monkeypatch.setattr(git, "run_git", real)
        return len(calls)

    first = git_calls_to_clean("a0")
    # A clean, pushed worktree: one status stands for the snapshot's temporary index.
    assert calls == ["worktree", "status", "ls-remote", "rev-list", "worktree"]
    for n in range(1, 9):
        wt = sandbox.worktree(f"b{n}")
        sandbox.write(wt, "b.md", f"{n}\n")
        sandbox.commit_all(wt)
        sandbox.push(wt)
    assert git_calls_to_clean("a9") == first


def test_clean_worktree_at_base_needs_no_rescue(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert result.removed and result.rescue_ref is None


def test_pushed_then_edited_is_rescued(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "a.md")
    sandbox.commit_all(wt)
    sandbox.push(wt)
    sandbox.write(wt, "a.md", "changed after push\n")
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert result.rescue_ref is not None
    assert _show(sandbox.repo, f"{result.rescue_ref}:a.md") == "changed after push\n"


def test_unreachable_remote_rescues_anyway(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    git.run_git(["remote", "set-url", "origin", str(sandbox.root / "gone.git")], cwd=wt)
    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
    assert result.removed and result.rescue_ref is not None


def test_two_cleanups_of_one_branch_get_distinct_refs(sandbox: GitSandbox) -> None:
    refs = []
    for agent in ("agent-1", "agent-2"):
        wt = sandbox.worktree(agent, branch="task-1")
        sandbox.write(wt, f"{agent}.md")
        result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])
        assert result.rescue_ref is not None
        refs.append(result.rescue_ref)
    assert len(set(refs)) == 2
    assert rescue_refs(sandbox.repo, "task-1") == tuple(sorted(refs))


def test_snapshot_leaves_the_worktree_and_its_index_alone(sandbox: GitSandbox) -> None:
    wt = sandbox.worktree("agent")
    sandbox.write(wt, "untracked.md")
    sandbox.write(wt, "README.md", "modified\n")
    before = git.status_entries(wt)
    snap = snapshot_commit(wt)
    assert snap is not None and snap != git.head_sha(wt)
    assert git.status_entries(wt) == before
    assert snapshot_commit(sandbox.repo) == git.head_sha(sandbox.repo)  # clean: HEAD itself


def test_snapshot_of_an_unborn_empty_repo_is_none(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git.run_git(["init", "--quiet", str(repo)], cwd=tmp_path)
    assert snapshot_commit(repo) is None
    (repo / "first.md").write_text("x\n", encoding="utf-8")
    snap = snapshot_commit(repo)
    assert snap is not None
    assert git.run_git(["show", f"{snap}:first.md"], cwd=repo).stdout == "x\n"


# --------------------------------------------------------------------------- orphans


def test_find_and_reap_orphans(sandbox: GitSandbox, tmp_path: Path) -> None:
    live = sandbox.worktree("task-agent-1813")
    pushed = sandbox.worktree("task-agent-3403")
    sandbox.write(pushed, "done.md")
    sandbox.commit_all(pushed)
    sandbox.push(pushed)
    dirty = sandbox.worktree("task-agent-5030")
    sandbox.write(dirty, "fake3.md")
    unmanaged = git.add_worktree(sandbox.repo, tmp_path / "mine" / "task-agent-9", "t9")

    roots = [sandbox.agents]
    orphans = find_orphans(sandbox.repo, roots, {"task-agent-1813"})
    assert orphans == [pushed, dirty]

    results = reap_orphans(sandbox.repo, roots, {"task-agent-1813"})
    by_path = {r.path: r for r in results}
    assert set(by_path) == {pushed, dirty}
    assert all(r.removed for r in results)
    assert by_path[pushed].rescue_ref is None
    rescued = by_path[dirty].rescue_ref
    assert rescued is not None
    assert _show(sandbox.repo, f"{rescued}:fake3.md") == "content\n"
    assert live.is_dir() and unmanaged.is_dir()
    left = _registered(sandbox.repo)
    assert left[0] == sandbox.repo and set(left[1:]) == {live, unmanaged}
    assert find_orphans(sandbox.repo, roots, {"task-agent-1813"}) == []


# --------------------------------------------------------------------------- nothing is lost

_file_names = st.sampled_from(["a.md", "b c.py", "dir/d.txt", "dir/é f.md", "g"])
_contents = st.text(st.characters(codec="utf-8"), max_size=20)
# Each step: (name, content, then: "commit" | "stage" | "leave").
_steps = st.lists(
    st.tuples(_file_names, _contents, st.sampled_from(["commit", "stage", "leave"])),
    max_size=6,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps, push_first=st.booleans())
def test_cleanup_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[str, str, str]],
    push_first: bool,
) -> None:
    root = tmp_path_factory.mktemp("lossless")
    isolate_git(monkeypatch, root)
    sandbox = GitSandbox.create(root / "sb")
    wt = sandbox.worktree("agent")
    expected = {"README.md": "# sandbox\n"}
    for name, content, then in steps:
        sandbox.write(wt, name, content)
        expected[name] = content
        if then == "commit":
            sandbox.commit_all(wt)
        elif then == "stage":
            git.run_git(["add", "--", name], cwd=wt)
    if push_first:
        sandbox.push(wt)

    result = cleanup_workspace(wt, repo=sandbox.repo, managed_roots=[sandbox.agents])

    assert result.removed and not wt.exists()
    if result.rescue_ref is None:
        # Only when everything on disk was already on origin.
        ref = "refs/heads/agent" if push_first else "main"
        assert git.resolve(sandbox.origin, ref) is not None
        source = ref
    else:
        source = result.rescue_ref
    listed = git.run_git(["ls-tree", "-r", "-z", "--name-only", source], cwd=sandbox.repo)
    names = {n for n in listed.stdout.split("\0") if n}
    assert names == set(expected)
    for name, content in expected.items():
        assert _show(sandbox.repo, f"{source}:{name}") == content
