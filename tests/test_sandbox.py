"""The sandbox: isolation, the ledger, teardown from any state, reaping after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_orch_recovery.doubles import sandbox as sandbox_mod
from pytest_orch_recovery.doubles.sandbox import LEDGER_NAME, Ledger, Sandbox, reap_stale
from pytest_orch_recovery.infra.git import current_branch, run_git
from pytest_orch_recovery.infra.processes import process_alive, process_start_time


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


@pytest.fixture
def box(base: Path) -> Iterator[Sandbox]:
    sb = Sandbox.create(base_dir=base, name="unit")
    try:
        yield sb
    finally:
        sb.teardown()
        assert sb.leftovers() == []


def _sleeper(
    env: dict[str, str] | None = None, *, new_session: bool = True
) -> subprocess.Popen[bytes]:
    # The process blocks on a pipe nobody writes: it lives until it is killed. It says so on
    # stdout once it runs, and we wait for that: before its exec, /proc shows the parent's
    # environment, so a sandbox scanning for its marker would not see it yet (a loaded
    # machine made that window long enough to turn the expected SIGTERM into the later SIGKILL).
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdout.write('up'); sys.stdout.flush(); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=new_session,
    )
    assert proc.stdout is not None and proc.stdout.read(2) == b"up"
    return proc


def _reap_child(proc: subprocess.Popen[bytes]) -> int:
    code = proc.wait(timeout=30)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()
    return code


def test_create_builds_repo_origin_and_directories(box: Sandbox) -> None:
    for d in (box.home, box.bin_dir, box.checkpoints, box.results, box.logs, box.worktrees):
        assert d.is_dir()
    assert box.name.startswith("unit-")
    heads = run_git(["ls-remote", "--heads", str(box.origin)], cwd=box.repo).stdout
    assert "refs/heads/main" in heads
    assert (box.home / ".gitconfig").read_text().count("Sandbox Agent") == 1


def test_socket_names_do_not_come_from_random(base: Path) -> None:
    names = []
    for _ in range(2):
        random.seed(1234)  # what Hypothesis does before each example
        with Sandbox.create(base_dir=base) as sb:
            names.append(sb.tmux_socket)
    assert names[0] != names[1]


def test_env_isolates_the_agent(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-real")
    env = box.env("task-agent-5030")
    assert env["HOME"] == str(box.home)
    assert env["PATH"].split(os.pathsep)[0] == str(box.bin_dir)
    assert env["LC_ALL"] == "C"
    assert env["ORCH_CHECKPOINT_DIR"] == str(box.checkpoints)
    assert env["ORCH_AGENT"] == "task-agent-5030"
    assert env["GIT_CONFIG_GLOBAL"] == str(box.home / ".gitconfig")
    for gone in ("TMUX", "GIT_DIR", "ANTHROPIC_API_KEY"):
        assert gone not in env
    box.agent_env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
    assert box.env("a")["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"


def test_a_fleet_file_s_environment_stays_below_the_sandbox_s(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-ci-job")
    monkeypatch.setenv("LANGUAGE_TOOL_URL", "http://x")
    monkeypatch.setenv("PYTHONPATH", "/harness")
    box.env_allow = ("LANGUAGE_*", "HOME")
    box.fleet_env = {"MY_FLAG": "1", "HOME": "/root", "TMUX": "/tmp/tmux-0/default,1,0"}
    box.agent_env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
    env = box.env("task-agent-1")
    assert "AWS_SECRET_ACCESS_KEY" not in env  # not in env_allow
    assert env["LANGUAGE_TOOL_URL"] == "http://x"  # allowed
    assert env["PYTHONPATH"] == "/harness"  # the harness's own processes need it
    assert env["MY_FLAG"] == "1"  # [env]
    assert env["HOME"] == str(box.home)  # the sandbox's own variable wins over [env]
    assert "TMUX" not in env
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"


def test_workspace_is_a_worktree_on_the_agents_branch(box: Sandbox) -> None:
    ws = box.add_workspace("task-agent-1813")
    assert ws == box.worktrees / "task-agent-1813"
    assert current_branch(ws) == "task-agent-1813"
    other = box.add_workspace("task-agent-3403", branch="feature/x")
    assert current_branch(other) == "feature/x"
    assert box.add_workspace("task-agent-1813") == ws  # second call: the same worktree
    ledger = json.loads(box.ledger_path.read_text())
    assert ledger["worktrees"] == [str(ws), str(other)]


def test_agent_git_reads_only_the_sandbox_config(box: Sandbox) -> None:
    ws = box.add_workspace("a1")
    env = box.env("a1")
    origins = run_git(["config", "--show-origin", "--list"], cwd=ws, env=env).stdout
    files = {line.split("\t")[0] for line in origins.splitlines()}
    assert f"file:{box.home / '.gitconfig'}" in files
    assert all(str(box.root) in f for f in files), files
    (ws / "fake3.md").write_text("# fake3\n")
    run_git(["add", "fake3.md"], cwd=ws, env=env)
    run_git(["commit", "-q", "-m", "docs"], cwd=ws, env=env)
    assert run_git(["rev-list", "--count", "main..HEAD"], cwd=ws, env=env).stdout.strip() == "1"


def test_bad_agent_names_are_refused(box: Sandbox) -> None:
    for bad in ("", "-x", "a b", "a:b", "a.b", "../x"):
        with pytest.raises(ValueError, match="agent name"):
            box.add_workspace(bad)


def test_ledger_records_owner_and_resources(box: Sandbox) -> None:
    proc = _sleeper()
    try:
        box.record_pid(proc.pid, what="model double")
        box.record_port(8123, what="model double")
        data = json.loads(box.ledger_path.read_text())
        assert data["schema_version"] == 1
        assert data["owner_pid"] == os.getpid()
        assert data["owner_start"] == process_start_time(os.getpid())
        assert data["tmux_socket"] == box.tmux_socket
        assert data["pids"] == [
            {"pid": proc.pid, "pgid": proc.pid, "start": process_start_time(proc.pid),
             "what": "model double"}
        ]  # fmt: skip
        assert data["ports"] == [{"port": 8123, "what": "model double"}]
        assert str(box.root) in data["dirs"] and str(box.home) in data["dirs"]
    finally:
        box.teardown()
        assert _reap_child(proc) == -signal.SIGTERM


def test_teardown_is_idempotent_and_kills_escaped_processes(box: Sandbox) -> None:
    recorded = _sleeper()
    box.record_pid(recorded.pid, what="recorded")
    # Started in a session of its own and never recorded: found by the sandbox marker.
    escaped = _sleeper(box.env("a1"))
    box.teardown()
    box.teardown()
    assert _reap_child(recorded) == -signal.SIGTERM
    assert _reap_child(escaped) == -signal.SIGTERM
    assert not box.root.exists()
    assert box.leftovers() == []


def test_teardown_after_partial_creation(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def _broken(root: Path) -> tuple[Path, Path]:
        raise RuntimeError("git exploded")

    monkeypatch.setattr(sandbox_mod, "create_repo_with_origin", _broken)
    with pytest.raises(RuntimeError, match="git exploded"):
        Sandbox.create(base_dir=base)
    assert list(base.iterdir()) == []


def test_exit_tears_down_on_error(base: Path) -> None:
    with pytest.raises(KeyError), Sandbox.create(base_dir=base) as sb:
        sb.add_workspace("a1")
        raise KeyError("boom")
    assert sb.leftovers() == []


def test_ledger_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_NAME
    path.write_text('{"schema_version": 1, "owner_pid": 1}')
    with pytest.raises(ValueError, match=rf"{LEDGER_NAME}: field created_at: missing"):
        Ledger.load(path)
    path.write_text('{"schema_version": 1,\n oops}')
    with pytest.raises(ValueError, match=rf"{LEDGER_NAME}:2: not JSON"):
        Ledger.load(path)
    path.write_text('{"schema_version": 1, "owner_pid": 1, "owner_start": "soon"}')
    with pytest.raises(ValueError, match=rf"{LEDGER_NAME}: field owner_start: expected"):
        Ledger.load(path)


def test_live_owner_is_not_reaped_but_reused_pid_is(base: Path) -> None:
    with Sandbox.create(base_dir=base) as mine:
        assert reap_stale(base) == []
        assert mine.root.exists()
        # Same pid, different start time: the pid was reused by another process.
        mine.ledger.owner_start = (mine.ledger.owner_start or 0) + 1
        mine.ledger.save()
        assert reap_stale(base) == [mine.root]
        assert mine.leftovers() == []


_OWNER = textwrap.dedent(
    """
    import subprocess, sys
    from pathlib import Path
    from pytest_orch_recovery.doubles.sandbox import Sandbox
    box = Sandbox.create(base_dir=Path(sys.argv[1]))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, start_new_session=True)
    box.record_pid(child.pid, what="agent")
    print(box.root, child.pid, flush=True)
    sys.stdin.read()
    """
)


def _start_owner(base: Path) -> tuple[subprocess.Popen[str], Path, int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    root, pid = owner.stdout.readline().split()  # the owner's "ready" event
    return owner, Path(root), int(pid)


def test_sandbox_of_a_sigkilled_owner_is_reaped_by_the_next_create(base: Path) -> None:
    owner, root, child = _start_owner(base)
    start = process_start_time(child)
    owner.kill()
    assert owner.wait(timeout=30) == -signal.SIGKILL
    for stream in (owner.stdin, owner.stdout):
        assert stream is not None
        stream.close()
    assert root.exists() and process_alive(child, start)
    with Sandbox.create(base_dir=base) as fresh:
        assert not root.exists()
        assert not process_alive(child, start)
        assert [p.name for p in base.iterdir()] == [fresh.name]


def test_sigterm_unwinds_through_exit(base: Path) -> None:
    # The child dumps its stacks on SIGUSR1, so a hang shows where it hangs (CI saw one hang
    # once, in a full run only: the child outlived SIGTERM by 30 s).
    script = textwrap.dedent(
        """
        import faulthandler, signal, sys
        from pathlib import Path
        from pytest_orch_recovery.doubles.sandbox import Sandbox
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        with Sandbox.create(base_dir=Path(sys.argv[1]), unwind_on_sigterm=True) as box:
            print(box.root, flush=True)
            sys.stdin.read()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        root = Path(proc.stdout.readline().strip())
        assert root.is_dir()
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the sandbox's owner outlived SIGTERM by 60 s; its stacks:\n{err}")
        assert status == 128 + signal.SIGTERM, proc.stderr.read()
    assert not root.exists()
