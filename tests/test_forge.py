"""The forge and its ``gh``: real git (a bare origin in tmp_path), the real shim via subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.doubles import forge_cli
from pytest_orch_recovery.doubles.forge import (
    COMMANDS,
    FAULT_KINDS,
    Forge,
    ForgeError,
    GhOutcome,
    install_gh_shim,
)
from pytest_orch_recovery.engine.model import PullRequest
from pytest_orch_recovery.infra.git import run_git

MUST_PUSH = "aborted: you must first push the current branch to a remote, or use the --head flag"
URL = "https://github.com/acme/agent-project/pull/{}"


@dataclass
class Sandbox:
    origin: Path
    work: Path
    forge: Forge
    env: dict[str, str]

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return run_git(list(args), cwd=cwd or self.work, env=self.env).stdout

    def commit(self, name: str, text: str = "x\n") -> None:
        (self.work / name).write_text(text)
        self.git("add", name)
        self.git("commit", "-q", "-m", f"add {name}")

    def gh(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gh", *args],
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run(self, *args: str) -> tuple[GhOutcome, str | None]:
        """The gh program in-process (same code as the shim runs, no interpreter start-up)."""
        return forge_cli.run(self.forge, list(args), self.work)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "agent",
        "GIT_AUTHOR_EMAIL": "agent@localhost",
        "GIT_COMMITTER_NAME": "agent",
        "GIT_COMMITTER_EMAIL": "agent@localhost",
    }
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, env[key])  # for the in-process runs' git commits too
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    run_git(["init", "-q", "--bare", "-b", "main", str(origin)], cwd=tmp_path, env=env)
    run_git(["init", "-q", "-b", "main", str(work)], cwd=tmp_path, env=env)
    forge = Forge(tmp_path / "forge", origin=origin, first_number=886)
    bin_dir = tmp_path / "bin"
    install_gh_shim(bin_dir, forge.root)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    box = Sandbox(origin, work, forge, env)
    box.git("remote", "add", "origin", str(origin))
    box.commit("README.md")
    box.git("push", "-q", "origin", "main")
    box.git("checkout", "-q", "-b", "task-agent-5030")
    return box


# ------------------------------------------------------------------ pr create, end to end


def test_create_before_push_aborts_then_after_push_prints_the_url(sandbox: Sandbox) -> None:
    sandbox.commit("fake3.md")
    before = sandbox.gh("pr", "create", "--title", "Add /fake3", "--body", "docs")
    assert (before.returncode, before.stdout, before.stderr) == (1, "", MUST_PUSH)
    assert sandbox.forge.pull_requests() == []

    sandbox.git("push", "-q", "origin", "task-agent-5030")
    after = sandbox.gh("pr", "create", "--title", "Add /fake3", "--body", "docs")
    assert (after.returncode, after.stdout, after.stderr) == (0, URL.format(886) + "\n", "")
    assert sandbox.forge.pull_request_for("task-agent-5030") == PullRequest(
        886, "task-agent-5030", URL.format(886), "Add /fake3", "OPEN"
    )
    assert sandbox.forge.pull_request_for("main") is None
    record = sandbox.forge.record(886)
    assert record is not None
    assert (record.base, record.body, record.head_oid) == (
        "main",
        "docs",
        sandbox.git("rev-parse", "HEAD").strip(),
    )


def test_commits_ahead_of_origin_count_as_unpushed_and_dirty_tree_warns(sandbox: Sandbox) -> None:
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    sandbox.commit("b.py")  # local branch now ahead of its copy on the origin
    (sandbox.work / "scratch.txt").write_text("half written")
    outcome, fault = sandbox.run("pr", "create", "--fill")
    assert fault is None
    assert outcome.exit_code == 1
    assert outcome.stderr == "Warning: 1 uncommitted change\n" + MUST_PUSH


def test_head_flag_skips_the_push_check(sandbox: Sandbox) -> None:
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    sandbox.commit("b.py")
    sandbox.forge.inject("must_push")  # --head never reaches the stage that could abort
    outcome, fault = sandbox.run("pr", "create", "-H", "task-agent-5030", "-t", "T", "-b", "B")
    assert (outcome.exit_code, outcome.stdout, fault) == (0, URL.format(886) + "\n", None)
    assert sandbox.forge.faults_remaining() == 1


def test_duplicate_create_names_the_existing_pr(sandbox: Sandbox) -> None:
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    first = sandbox.gh("pr", "create", "--fill")
    assert first.returncode == 0
    again = sandbox.gh("pr", "create", "--title", "T", "--body", "B")
    assert again.returncode == 1
    assert again.stdout == ""
    assert again.stderr == (
        'a pull request for branch "task-agent-5030" into branch "main" already exists:\n'
        + URL.format(886)
        + "\n"
    )
    assert len(sandbox.forge.pull_requests()) == 1
    sandbox.forge.set_state(886, "CLOSED")  # a closed PR no longer blocks a new one
    outcome, _ = sandbox.run("pr", "create", "--title", "T", "--body", "B")
    assert outcome.stdout == URL.format(887) + "\n"


def test_no_commits_between_base_and_head(sandbox: Sandbox) -> None:
    sandbox.git("push", "-q", "origin", "task-agent-5030")  # same commit as main
    done = sandbox.gh("pr", "create", "--title", "Add /fake3", "--body", "docs")
    assert done.returncode == 1
    assert done.stderr == (
        "pull request create failed: GraphQL: No commits between main and task-agent-5030 "
        "(createPullRequest)\n"
    )
    assert sandbox.forge.pull_requests() == []


def test_head_missing_on_origin_draws_githubs_longer_error(sandbox: Sandbox) -> None:
    outcome, _ = sandbox.run("pr", "create", "--head", "never-pushed", "-t", "T", "-b", "B")
    assert outcome.exit_code == 1
    assert "Head sha can't be blank" in outcome.stderr
    assert "No commits between main and never-pushed" in outcome.stderr


def test_fill_titles_from_the_branch_and_lists_commits(sandbox: Sandbox) -> None:
    sandbox.commit("a.py")
    sandbox.commit("b.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    outcome, _ = sandbox.run("pr", "create", "--fill", "--draft")
    assert outcome.exit_code == 0, outcome.stderr
    record = sandbox.forge.record(886)
    assert record is not None
    assert record.title == "task agent 5030"
    assert record.body == "- **add a.py**\n- **add b.py**\n"
    assert record.draft


def test_non_interactive_create_needs_title_and_body(sandbox: Sandbox) -> None:
    outcome, _ = sandbox.run("pr", "create", "--title", "only a title")
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith(
        "must provide `--title` and `--body` (or `--fill` or `fill-first` or `--fillverbose`) "
        "when not running interactively\n\nUsage:  gh pr create [flags]"
    )


def test_unknown_flags_and_commands_fail_like_cobra(sandbox: Sandbox) -> None:
    outcome, _ = sandbox.run("pr", "create", "--bogus")
    assert (outcome.exit_code, outcome.stderr.splitlines()[0]) == (1, "unknown flag: --bogus")
    outcome, _ = sandbox.run("pr", "create", "-t")
    assert outcome.stderr.splitlines()[0] == "flag needs an argument: 't' in -t"
    outcome, _ = sandbox.run("pr", "frobnicate")
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith('unknown command "frobnicate" for "gh pr"\n')
    done = sandbox.gh("frobnicate")
    assert done.returncode == 1
    assert done.stderr.startswith('unknown command "frobnicate" for "gh"\n\nUsage:')
    version = sandbox.gh("--version")
    assert version.returncode == 0
    assert version.stdout.startswith(f"gh version {forge_cli.GH_VERSION} (")


# ------------------------------------------------------------------ injected faults

_EXPECTED: dict[str, tuple[int, str]] = {
    "bad_credentials": (
        1,
        "HTTP 401: Bad credentials (https://api.github.com/graphql)\n"
        "Try authenticating with:  gh auth login\n",
    ),
    "unreachable": (
        1,
        "error connecting to api.github.com\n"
        "check your internet connection or https://githubstatus.com\n",
    ),
    "logged_out": (
        4,
        "To get started with GitHub CLI, please run:  gh auth login\nAlternatively, populate "
        "the GH_TOKEN environment variable with a GitHub API authentication token.\n",
    ),
    "must_push": (1, MUST_PUSH),
    "already_exists": (
        1,
        'a pull request for branch "task-agent-5030" into branch "main" already exists:\n'
        + URL.format(886)
        + "\n",
    ),
    "no_commits": (
        1,
        "pull request create failed: GraphQL: No commits between main and task-agent-5030 "
        "(createPullRequest)\n",
    ),
}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_fires_exactly_times_then_create_succeeds(sandbox: Sandbox, kind: str) -> None:
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    sandbox.forge.inject(kind, times=2)
    assert sandbox.forge.faults_remaining(kind) == 2
    for left in (1, 0):
        outcome, fault = sandbox.run("pr", "create", "--title", "T", "--body", "B")
        assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (
            *_EXPECTED[kind][:1],
            "",
            _EXPECTED[kind][1],
        )
        assert fault == kind
        assert sandbox.forge.faults_remaining() == left
        assert sandbox.forge.pull_requests() == []
    outcome, fault = sandbox.run("pr", "create", "--title", "T", "--body", "B")
    assert (outcome.exit_code, outcome.stdout, fault) == (0, URL.format(886) + "\n", None)


def test_fault_through_the_shim_is_logged_and_used_up(sandbox: Sandbox) -> None:
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    sandbox.forge.inject("bad_credentials")
    failed = sandbox.gh("pr", "create", "--fill")
    assert (failed.returncode, failed.stderr) == (1, _EXPECTED["bad_credentials"][1])
    worked = sandbox.gh("pr", "create", "--fill")
    assert worked.returncode == 0
    calls = sandbox.forge.calls()
    assert [(c["argv"], c["exit_code"], c["fault"]) for c in calls] == [
        (["pr", "create", "--fill"], 1, "bad_credentials"),
        (["pr", "create", "--fill"], 0, None),
    ]
    assert all(c["cwd"] == str(sandbox.work) and c["ended"] >= c["started"] for c in calls)


def test_faults_wait_for_their_command(sandbox: Sandbox) -> None:
    sandbox.forge.inject("unreachable", command="pr view")
    listed, fault = sandbox.run("pr", "list", "--json", "number")
    assert (listed.exit_code, listed.stdout, fault) == (0, "[]\n", None)
    viewed, fault = sandbox.run("pr", "view")
    assert (viewed.exit_code, viewed.stderr, fault) == (
        1,
        _EXPECTED["unreachable"][1],
        "unreachable",
    )
    assert sandbox.forge.faults_remaining() == 0


def test_flag_errors_do_not_use_up_a_fault(sandbox: Sandbox) -> None:
    sandbox.forge.inject("bad_credentials")
    outcome, fault = sandbox.run("pr", "create", "--nope")
    assert (outcome.exit_code, fault) == (1, None)
    assert sandbox.forge.faults_remaining() == 1
    sandbox.forge.clear_faults()
    assert sandbox.forge.faults_remaining() == 0


def test_inject_rejects_what_gh_cannot_meet(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sandbox.forge.inject("gremlins")
    with pytest.raises(ValueError, match="only happens on 'pr create'"):
        sandbox.forge.inject("no_commits", command="pr view")
    with pytest.raises(ValueError, match="times must be at least 1"):
        sandbox.forge.inject("unreachable", times=0)


# ------------------------------------------------------------------ view, list, auth


def test_view_and_list_json(sandbox: Sandbox) -> None:
    missing = sandbox.gh("pr", "view")
    assert (missing.returncode, missing.stderr) == (
        1,
        'no pull requests found for branch "task-agent-5030"\n',
    )
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    assert sandbox.gh("pr", "create", "-t", "Add a", "-b", "B").returncode == 0

    viewed = sandbox.gh("pr", "view", "--json", "number,url,state,headRefName")
    assert viewed.returncode == 0
    assert json.loads(viewed.stdout) == {
        "number": 886,
        "url": URL.format(886),
        "state": "OPEN",
        "headRefName": "task-agent-5030",
    }
    listed = sandbox.gh(
        "pr",
        "list",
        "--head",
        "task-agent-5030",
        "--state",
        "all",
        "--json",
        "number,title,baseRefName,isDraft",
    )
    assert json.loads(listed.stdout) == [
        {"number": 886, "title": "Add a", "baseRefName": "main", "isDraft": False}
    ]
    by_number, _ = sandbox.run("pr", "view", "886", "--json", "title")
    assert json.loads(by_number.stdout) == {"title": "Add a"}
    absent, _ = sandbox.run("pr", "view", "#9")
    assert absent.stderr == (
        "GraphQL: Could not resolve to a PullRequest with the number of 9. "
        "(repository.pullRequest)\n"
    )
    sandbox.forge.set_state(886, "MERGED")
    open_now, _ = sandbox.run("pr", "list", "--json", "number")
    merged, _ = sandbox.run("pr", "list", "-s", "merged", "--json", "number,state")
    assert json.loads(open_now.stdout) == []
    assert json.loads(merged.stdout) == [{"number": 886, "state": "MERGED"}]


def test_unknown_json_field_lists_the_available_ones(sandbox: Sandbox) -> None:
    outcome, _ = sandbox.run("pr", "list", "--json", "number,mergeable")
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith('Unknown JSON field: "mergeable"\nAvailable fields:\n  ')
    assert "\n  headRefName\n" in outcome.stderr


def test_auth_status(sandbox: Sandbox) -> None:
    ok = sandbox.gh("auth", "status")
    assert ok.returncode == 0
    assert "\u2713 Logged in to github.com account agent-bot (GH_TOKEN)" in ok.stdout
    sandbox.forge.inject("bad_credentials", command="auth status")
    bad = sandbox.gh("auth", "status")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert "X Failed to log in to github.com account agent-bot (GH_TOKEN)" in bad.stderr
    assert "The token in GH_TOKEN is invalid." in bad.stderr
    assert sandbox.gh("auth", "status").returncode == 0


# ------------------------------------------------------------------ concurrency, store


def test_concurrent_creates_from_two_processes_get_distinct_numbers(sandbox: Sandbox) -> None:
    other = sandbox.work.parent / "other"
    sandbox.git("worktree", "add", "-q", "-b", "task-agent-3403", str(other), "main")
    sandbox.commit("a.py")
    sandbox.git("push", "-q", "origin", "task-agent-5030")
    (other / "b.py").write_text("b\n")
    sandbox.git("add", "b.py", cwd=other)
    sandbox.git("commit", "-q", "-m", "add b", cwd=other)
    sandbox.git("push", "-q", "origin", "task-agent-3403", cwd=other)

    procs = [
        subprocess.Popen(
            ["gh", "pr", "create", "--fill"],
            cwd=cwd,
            env=sandbox.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd in (sandbox.work, other)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(out for out, _ in results) == [URL.format(886) + "\n", URL.format(887) + "\n"]
    heads = {pr.branch: pr.number for pr in sandbox.forge.pull_requests()}
    assert set(heads) == {"task-agent-5030", "task-agent-3403"}
    assert len(sandbox.forge.calls()) == 2


def test_lock_serialises_many_writers(sandbox: Sandbox) -> None:
    branches = [f"b{i}" for i in range(8)]
    sandbox.commit("a.py")
    for branch in branches:
        sandbox.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    errors: list[BaseException] = []

    def _open(branch: str) -> None:
        try:
            sandbox.forge.open_pull_request(head=branch, base="main", title=branch)
        except BaseException as exc:  # re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=_open, args=(b,)) for b in branches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(pr.number for pr in sandbox.forge.pull_requests()) == list(range(886, 894))


def test_corrupt_store_names_file_and_line(sandbox: Sandbox) -> None:
    sandbox.forge.prs_path.write_text('{\n  "schema_version": 1,\n  "pull_requests": [\n')
    with pytest.raises(ForgeError, match=r"prs\.json:4: not JSON"):
        sandbox.forge.pull_requests()
    sandbox.forge.prs_path.write_text('{"schema_version": 1, "pull_requests": [{"head": "x"}]}')
    with pytest.raises(ForgeError, match=r"pull_requests\[0\]: bad field 'number'"):
        sandbox.forge.pull_requests()


def test_reopened_forge_and_shim_need_forge_json(tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match=r"forge\.json"):
        install_gh_shim(tmp_path / "bin", tmp_path / "nowhere")
    made = Forge(tmp_path / "f", origin=tmp_path / "o.git", owner_repo="org/repo", first_number=7)
    again = Forge.open(made.root)
    assert (again.owner_repo, again.first_number, again.pr_url(7)) == (
        "org/repo",
        7,
        "https://github.com/org/repo/pull/7",
    )
    assert again.next_number() == 7
    with pytest.raises(ValueError, match="OWNER/REPO"):
        Forge(tmp_path / "g", origin=tmp_path, owner_repo="no-slash")


# ------------------------------------------------------------------ property: the fault queue

_faults = st.lists(
    st.tuples(
        st.sampled_from(("bad_credentials", "unreachable", "logged_out")),
        st.sampled_from(COMMANDS),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(injected=_faults, asks=st.lists(st.sampled_from(COMMANDS), max_size=20))
def test_fault_queue_fires_each_fault_exactly_times_in_order(
    injected: list[tuple[str, str, int]], asks: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        forge = Forge(Path(tmp), origin=Path(tmp))
        for kind, command, times in injected:
            forge.inject(kind, command=command, times=times)
        expected: dict[str, list[str]] = {c: [] for c in COMMANDS}
        for kind, command, times in injected:
            expected[command] += [kind] * times
        fired: dict[str, list[str]] = {c: [] for c in COMMANDS}
        for command in asks + [c for c in COMMANDS for _ in range(20)]:
            taken = forge.take_fault(command)
            if taken is not None:
                fired[command].append(taken)
        assert fired == expected
        assert forge.faults_remaining() == 0
