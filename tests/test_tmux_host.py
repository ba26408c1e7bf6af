"""The tmux runtime outside the sandbox: a plain repository, its own server, adoption after a
restart, and never touching a tmux server it did not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import next_exit

from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task
from pytest_orch_recovery.engine.analyze import initial_prompt
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.agents import sim_agent_driver
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.infra.git import create_repo_with_origin, head_sha, remote_sha, run_git
from pytest_orch_recovery.infra.processes import process_alive, wait_gone
from pytest_orch_recovery.runtime.host import RepositoryHost
from pytest_orch_recovery.runtime.server import kill_tmux_server, tmux_server_running
from pytest_orch_recovery.runtime.tmux import TmuxError, TmuxRuntime

pytestmark = pytest.mark.slow

_BOUND = 60.0
_TASK = Task("t-fake3", "Create /fake3 command", ("fake3.md",))


def _spec(agent: str, argv: list[str], *, attempt: int = 1) -> LaunchSpec:
    return LaunchSpec(
        task=_TASK, agent=agent, attempt=attempt, agent_type="command", strategy=None,
        prompt=json.dumps(argv), work=(), key=f"{_TASK.task_id}:{attempt}:initial",
    )  # fmt: skip


def _argv_from_prompt(spec: LaunchSpec) -> list[str]:
    argv: list[str] = json.loads(spec.prompt)
    return argv


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[RepositoryHost, Path]]:
    """A plain repository with a bare origin, the forge's gh on PATH, and a host over it."""
    repo, origin = create_repo_with_origin(tmp_path / "project")
    bin_dir = tmp_path / "bin"
    Forge(tmp_path / "forge", origin=origin)
    install_gh_shim(bin_dir, tmp_path / "forge")
    socket = f"orch-test-{os.getpid()}-{tmp_path.name}"[:60]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    host = RepositoryHost(
        repo, tmp_path / "worktrees", tmp_path / "state", tmux_socket=socket,
        prs=GhPullRequests(repo, env=env), source_env=env,
    )  # fmt: skip
    try:
        yield host, tmp_path
    finally:
        kill_tmux_server(socket)


def test_sim_agent_runs_in_a_plain_repository(world: tuple[RepositoryHost, Path]) -> None:
    host, _ = world
    driver = sim_agent_driver()
    with ModelDouble(Plan((plan_for_task(_TASK),))) as double:
        host.agent_env["ANTHROPIC_BASE_URL"] = double.url
        host.agent_env["ANTHROPIC_API_KEY"] = "sk-ant-api03-double-not-a-real-key"
        host.agent_env["IS_SANDBOX"] = "1"  # the CLI refuses the permission flag as root

        def command_for(spec: LaunchSpec) -> list[str]:
            prompt = host.results / f"{spec.agent}.{spec.attempt}.prompt.md"
            prompt.write_text(spec.prompt)
            return driver.argv(spec, prompt_file=prompt)

        spec = LaunchSpec(
            task=_TASK,
            agent="a1",
            attempt=1,
            agent_type="sim",
            strategy=None,
            prompt=initial_prompt(_TASK),
            work=(),
            key="t-fake3:1:initial",
        )
        with TmuxRuntime(host, command_for) as rt:
            rt.launch(spec)
            got = next_exit(rt)
            assert got.exit.clean, got.output
            worktree = host.workspace("a1")
            assert worktree == host.worktree_root / "a1"
            assert run_git(["branch", "--show-current"], cwd=worktree).stdout.strip() == "a1-work"
            partial = rt.partial_work(_TASK, "a1")
    assert partial.deliverables_present == ("fake3.md",)
    assert partial.pushed and partial.commits_ahead == 1
    assert partial.pr is not None and partial.pr.number == 1 and partial.pr.branch == "a1-work"
    assert remote_sha(worktree, "origin", "a1-work") == head_sha(worktree)


def test_the_probe_runs_the_tasks_tests_in_the_agents_environment(
    world: tuple[RepositoryHost, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The supervisor's own environment is not the agent's: a test that passed for the agent
    # must pass for the probe, and the supervisor's variables must not leak into it.
    host, _ = world
    monkeypatch.setenv("ORCH_SUPERVISOR_ONLY", "1")
    task = Task("t-env", "x", tests='test "$ORCH_AGENT" = a1 && test -z "$ORCH_SUPERVISOR_ONLY"')
    host.add_workspace("a1")
    with TmuxRuntime(host, _argv_from_prompt) as rt:
        assert rt.partial_work(task, "a1").tests_passed is True
        host.agent_env["ORCH_SUPERVISOR_ONLY"] = "1"  # now the agent has it too
        assert rt.partial_work(task, "a1").tests_passed is False


def _counting(world: tuple[RepositoryHost, Path], channel: str, status: int) -> list[str]:
    """argv: note a start in starts.txt, say so on ``started-<channel>``, wait for
    ``channel``, exit ``status``."""
    host, tmp = world
    tmux = f"tmux -L {host.tmux_socket}"
    script = (
        f"echo start >> {tmp}/starts.txt; {tmux} wait-for -S started-{channel}; "
        f"{tmux} wait-for {channel}; exit {status}"
    )
    return ["sh", "-c", script]


def _starts(tmp: Path) -> int:
    path = tmp / "starts.txt"
    return path.read_text().count("start") if path.exists() else 0


def _signal(host: RepositoryHost, channel: str) -> None:
    subprocess.run(
        ["tmux", "-L", host.tmux_socket, "wait-for", "-S", channel], check=True, timeout=_BOUND
    )


def _await_start(host: RepositoryHost, channel: str) -> None:
    subprocess.run(
        ["tmux", "-L", host.tmux_socket, "wait-for", f"started-{channel}"],
        check=True,
        timeout=_BOUND,
    )


def test_a_restarted_runtime_adopts_a_live_attempt(world: tuple[RepositoryHost, Path]) -> None:
    host, tmp = world
    spec = _spec("a1", _counting(world, "go-a1", 7))
    first = TmuxRuntime(host, _argv_from_prompt)
    first.launch(spec)
    _await_start(host, "go-a1")
    pane_id = first.pane_id("a1")
    first.detach()  # the supervisor stops: the agent keeps running
    assert tmux_server_running(host.tmux_socket)
    record = json.loads((host.results / "a1.1.pane.json").read_text())
    assert record["key"] == spec.key and record["pane_id"] == pane_id
    assert process_alive(record["pane_pid"], record["pane_start"])

    second = TmuxRuntime(host, _argv_from_prompt)
    try:
        assert not second.created_server
        second.launch(spec)  # the restarted coordinator re-issues the same key
        second.launch(spec)
        assert second.live() == {"a1"}
        assert second.next_exit(second.clock.now()) is None  # still running
        _signal(host, "go-a1")
        got = next_exit(second)
        assert (got.agent, got.attempt, got.exit.status) == ("a1", 1, 7)
        assert got.exit.source == "wrapper"
        assert got.started_at == record["started_at"]
    finally:
        second.close()
    assert _starts(tmp) == 1
    assert tmux_server_running(host.tmux_socket)  # `second` did not start it: left running


def test_an_attempt_that_ended_unwatched_is_read_from_its_exit_file(
    world: tuple[RepositoryHost, Path],
) -> None:
    host, tmp = world
    spec = _spec("a1", _counting(world, "go-a1", 3))
    first = TmuxRuntime(host, _argv_from_prompt)
    first.launch(spec)
    _await_start(host, "go-a1")
    first.detach()
    record = json.loads((host.results / "a1.1.pane.json").read_text())
    _signal(host, "go-a1")  # it ends while no runtime watches
    assert wait_gone([record["pane_pid"]], _BOUND) == []
    second = TmuxRuntime(host, _argv_from_prompt)
    try:
        second.launch(spec)
        got = next_exit(second)
        assert (got.attempt, got.exit.status) == (1, 3)
        # The session is gone too (cleaned up by someone): the record still answers.
        third_spec = spec
        second.detach()
        subprocess.run(["tmux", "-L", host.tmux_socket, "kill-session", "-t", "=a1"], check=True)
        third = TmuxRuntime(host, _argv_from_prompt)
        try:
            third.launch(third_spec)
            again = next_exit(third)
            assert (again.attempt, again.exit.status) == (1, 3)
        finally:
            third.close()
    finally:
        second.detach()
    assert _starts(tmp) == 1


def test_the_same_key_while_running_never_kills_the_session(
    world: tuple[RepositoryHost, Path],
) -> None:
    host, tmp = world
    rt = TmuxRuntime(host, _argv_from_prompt)
    try:
        rt.launch(_spec("a1", _counting(world, "go-a1", 0)))
        _await_start(host, "go-a1")
        other = TmuxRuntime(host, _argv_from_prompt)  # a second process on the same host
        try:
            with pytest.raises(RuntimeError, match="t-fake3:1:initial"):
                other.launch(_spec("a1", ["true"], attempt=2))
        finally:
            other.detach()
        _signal(host, "go-a1")
        assert next_exit(rt).exit.status == 0
    finally:
        rt.close()
    assert _starts(tmp) == 1


def test_a_server_it_did_not_start_is_refused_and_left_alone(
    world: tuple[RepositoryHost, Path],
) -> None:
    host, _ = world
    subprocess.run(
        [
            "tmux",
            "-L",
            host.tmux_socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "orchestrator-agent",
            "sleep 600",
        ],
        check=True,
    )
    with pytest.raises(TmuxError, match="did not start"):
        TmuxRuntime(host, _argv_from_prompt)
    listed = subprocess.run(
        ["tmux", "-L", host.tmux_socket, "list-sessions", "-F", "#{session_name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == ["orchestrator-agent"]
    hooks = subprocess.run(
        ["tmux", "-L", host.tmux_socket, "show-hooks", "-g", "pane-died"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "pane-died.sh" not in hooks.stdout


def test_close_kills_the_server_only_when_it_started_it(
    world: tuple[RepositoryHost, Path],
) -> None:
    host, _ = world
    first = TmuxRuntime(host, _argv_from_prompt)
    assert first.created_server
    # A session on it (an agent of a stopped supervisor): the next runtime takes it over.
    subprocess.run(
        ["tmux", "-L", host.tmux_socket, "new-session", "-d", "-s", "left", "sleep 600"],
        check=True,
    )
    first.detach()
    second = TmuxRuntime(host, _argv_from_prompt)
    assert not second.created_server
    second.close()
    assert tmux_server_running(host.tmux_socket)
    third = TmuxRuntime(host, _argv_from_prompt)
    assert not third.created_server
    third.close()
    assert tmux_server_running(host.tmux_socket)


def test_an_empty_server_a_dead_runtime_left_is_reaped(
    world: tuple[RepositoryHost, Path],
) -> None:
    host, _ = world
    first = TmuxRuntime(host, _argv_from_prompt)
    pid = first._tmux("display-message", "-p", "#{pid}")[0]
    first._release()  # as a supervisor killed with SIGKILL leaves it: running, no session
    assert tmux_server_running(host.tmux_socket)
    second = TmuxRuntime(host, _argv_from_prompt)
    assert second.created_server  # the empty one was reaped, this one is its own
    assert second._tmux("display-message", "-p", "#{pid}")[0] != pid
    second.detach()  # a supervisor's stop: nothing left to keep, so the server goes too
    assert not tmux_server_running(host.tmux_socket)


def test_importing_the_runtime_registers_nothing(tmp_path: Path) -> None:
    code = (
        "import atexit, logging, signal\n"  # logging registers its own shutdown hook
        "import libtmux\n"
        "before = atexit._ncallbacks()\n"
        "import pytest_orch_recovery.runtime.tmux, pytest_orch_recovery.doubles.sandbox\n"
        "import pytest_orch_recovery.runtime.host\n"
        "assert atexit._ncallbacks() == before, (before, atexit._ncallbacks())\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "import sys, pathlib\n"
        "from pytest_orch_recovery.doubles.sandbox import Sandbox\n"
        "with Sandbox.create(base_dir=pathlib.Path(sys.argv[1])):\n"
        "    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # only when asked\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=_BOUND)


def test_agents_run_at_the_runtime_s_lower_priority(world: tuple[RepositoryHost, Path]) -> None:
    # agent_nice lowers the agent's own nice value and, where the kernel schedules by session
    # (autogroup), its pane's group: there the process's own nice value alone changes nothing.
    host, tmp = world
    report = tmp / "priority.txt"
    script = f"cut -d' ' -f19 /proc/self/stat > {report}; cat /proc/self/autogroup >> {report} || :"
    with TmuxRuntime(host, _argv_from_prompt, agent_nice=7) as rt:
        rt.launch(_spec("a1", ["sh", "-c", script]))
        assert next_exit(rt).exit.clean
    nice, *group = report.read_text().splitlines()
    assert nice == "7"
    if Path("/proc/self/autogroup").exists():
        assert group and group[0].endswith(" nice 7"), group
    with pytest.raises(ValueError, match=r"agent_nice: an integer 0\.\.19, got 20"):
        TmuxRuntime(host, _argv_from_prompt, agent_nice=20)
