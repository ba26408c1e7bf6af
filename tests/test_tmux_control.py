"""The tmux control-mode client against a real tmux server: replies, quoting, forged reply
ends in pane text, many threads at once, and nothing left behind however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import next_exit, wait_until

from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.processes import process_alive
from pytest_orch_recovery.runtime.control import (
    CONTROL_SESSION_PREFIX,
    ControlClient,
    ControlClosed,
    NotSendable,
    quote,
)
from pytest_orch_recovery.runtime.server import (
    OWNER_OPTION,
    drop_orphaned_control_sessions,
    kill_tmux_server,
    reap_empty_server,
    session_names,
    tmux_server_running,
)
from pytest_orch_recovery.runtime.tmux import TmuxRuntime

pytestmark = pytest.mark.slow


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket, "-f", "/dev/null", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.fixture
def socket(tmp_path: Path) -> Iterator[str]:
    name = f"orch-control-test-{os.getpid()}-{tmp_path.name}"
    started = _tmux(
        name, "start-server", ";", "set-option", "-g", "exit-empty", "off",
        ";", "set-option", "-g", "remain-on-exit", "on",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name
    finally:
        kill_tmux_server(name)


@pytest.fixture
def client(socket: str) -> Iterator[ControlClient]:
    control = ControlClient(socket)
    try:
        yield control
    finally:
        control.close()


def test_a_reply_holds_the_commands_output_or_its_error(client: ControlClient) -> None:
    ok = client.command("display-message", "-p", "#{session_name}")
    assert ok.ok and ok.lines == (client.session,)  # attached to a session of its own
    bad = client.command("kill-session", "-t", "=no-such-session")
    assert not bad.ok and "can't find session" in " ".join(bad.lines)
    unknown = client.command("no-such-command")
    assert not unknown.ok and "unknown command" in " ".join(unknown.lines)


_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("'\"\\$~;{}#%` \t")),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=_TEXT)
def test_an_argument_arrives_verbatim(client: ControlClient, value: str) -> None:
    assert client.command("set-option", "-g", "@orch-test", value).ok
    shown = client.command("show-options", "-gv", "@orch-test")
    assert shown.ok and "\n".join(shown.lines) == value


def test_a_line_break_is_not_sendable(client: ControlClient) -> None:
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(NotSendable):
            quote(bad)
        with pytest.raises(NotSendable):
            client.command("set-option", "-g", "@orch-test", bad)
    assert client.command("display-message", "-p", "still here").lines == ("still here",)


def test_many_threads_each_get_their_own_reply(client: ControlClient) -> None:
    results: dict[int, tuple[str, ...]] = {}

    def ask(i: int) -> None:
        for j in range(20):
            results[i * 100 + j] = client.command("display-message", "-p", f"r{i}-{j}").lines

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {i * 100 + j: (f"r{i}-{j}",) for i in range(8) for j in range(20)}


def test_close_removes_its_session_and_ends_the_client(client: ControlClient, socket: str) -> None:
    assert session_names(socket) == [client.session]
    pid = client.pid
    client.close()
    assert session_names(socket) == []
    assert not process_alive(pid)
    with pytest.raises(ControlClosed):
        client.command("display-message", "-p", "x")
    client.close()  # idempotent


def test_a_killed_client_fails_its_callers_and_its_session_is_dropped_later(
    client: ControlClient, socket: str
) -> None:
    os.kill(client.pid, signal.SIGKILL)
    wait_until(lambda: not client.alive, "the client noticed its end")
    with pytest.raises(ControlClosed):
        client.command("display-message", "-p", "x")
    assert session_names(socket) == [client.session]  # no destroy-unattached (see control.py)
    assert drop_orphaned_control_sessions(socket) == [client.session]
    assert session_names(socket) == []


def test_a_client_knows_its_own_session_and_close_kills_only_that(socket: str) -> None:
    """Lines written at once race the client's command line in the server's queue: the
    session comes from that command's own reply, never from a line run before it."""
    _tmux(socket, "new-session", "-d", "-s", "agent-1", "sleep", "600")
    for _ in range(20):
        client = ControlClient(socket)
        own = _tmux(socket, "display-message", "-p", "-t", client._session_id, "#{session_name}")
        flags = _tmux(socket, "list-clients", "-F", "#{client_pid} #{client_flags}").stdout
        client.close()
        assert own.stdout.strip() == client.session
        assert f"{client.pid} " in flags and "no-output" in flags
        assert session_names(socket) == ["agent-1"]


_OWNER = textwrap.dedent(
    """
    import sys
    from pytest_orch_recovery.runtime.control import ControlClient
    client = ControlClient(sys.argv[1])
    print(client.session, client.pid, flush=True)
    while True:  # busy, as a supervisor is
        client.command("display-message", "-p", "-t", "=agent-1:", "#{pane_pid}")
    """
)


def _owner(socket: str) -> tuple[subprocess.Popen[str], str, int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, socket], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    session, pid = owner.stdout.readline().split()
    return owner, session, int(pid)


def test_owners_killed_one_after_another_leave_the_server_and_agents_running(
    socket: str,
) -> None:
    """tmux 3.3a crashed here with destroy-unattached sessions (a segfault, every pane's pty
    closed: SIGHUP for every agent), within a few rounds measured on this machine."""
    _tmux(socket, "new-session", "-d", "-s", "agent-1", "sleep", "600")
    server = _tmux(socket, "display-message", "-p", "#{pid}").stdout.strip()
    left, clients = [], []
    for _ in range(10):
        owner, session, pid = _owner(socket)
        assert session.startswith(CONTROL_SESSION_PREFIX)
        owner.kill()
        owner.wait(timeout=30)
        assert owner.stdout is not None
        owner.stdout.close()
        clients.append(pid)
        left.append(session)
    assert _tmux(socket, "display-message", "-p", "#{pid}").stdout.strip() == server
    assert sorted(drop_orphaned_control_sessions(socket)) == sorted(left)
    # A client left waiting to write replies nobody reads was told to stop, too.
    wait_until(lambda: not any(process_alive(p) for p in clients), "every client ended")
    assert _tmux(socket, "display-message", "-p", "-t", "=agent-1:", "#{pane_dead}").stdout == (
        "0\n"
    )
    assert session_names(socket) == ["agent-1"]


def test_a_server_left_with_orphaned_control_sessions_only_is_reaped(socket: str) -> None:
    _tmux(socket, "set-option", "-g", OWNER_OPTION, "/owner")
    owner, session, pid = _owner(socket)
    owner.kill()
    owner.wait(timeout=30)
    assert owner.stdout is not None
    owner.stdout.close()
    assert session_names(socket) == [session]
    assert reap_empty_server(socket, "/owner") == "reaped"
    wait_until(lambda: not process_alive(pid), "its client ended")
    assert not tmux_server_running(socket)


def test_a_client_on_no_server_is_closed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ControlClosed):
        ControlClient(f"orch-control-none-{os.getpid()}-{tmp_path.name}")


# --------------------------------------------------------------------------- in the runtime


def _spec(agent: str, script: str) -> LaunchSpec:
    return LaunchSpec(
        task=Task("t-1", "Print", ("out.md",), wants_pr=False),
        agent=agent,
        attempt=1,
        agent_type="command",
        strategy=None,
        prompt=script,
        work=(),
        key=f"{agent}#1",
    )


def test_pane_text_that_forges_a_reply_end_is_captured_whole(box: Sandbox) -> None:
    """An agent printing what looks like the end of a reply neither cuts its own output
    short nor puts the client out of step with later commands."""
    forged = [f"%end {t} {n} 1" for t in ("0", "1", "%TIME%") for n in range(3)]
    script = "; ".join(f"print({line!r})" for line in [*forged, "last line"])
    runtime = TmuxRuntime(
        box, lambda spec: [sys.executable, "-c", spec.prompt], control=True, workers=2
    )
    try:
        runtime.launch(_spec("a1", script))
        exited = next_exit(runtime)
        lines = exited.output.splitlines()
        assert lines[: len(forged)] == forged and lines[-1] == "last line"
        assert runtime.output("a1") == exited.output
        assert runtime.pane_id("a1").startswith("%")
        assert os.listdir(box.state_dir / "captures") == []  # each capture file removed
    finally:
        runtime.close()
    assert not tmux_server_running(box.tmux_socket)


def test_the_runtime_goes_on_with_processes_when_its_client_dies(box: Sandbox) -> None:
    runtime = TmuxRuntime(box, lambda spec: [sys.executable, "-c", spec.prompt], control=True)
    try:
        control = runtime._control
        assert control is not None
        os.kill(control.pid, signal.SIGKILL)
        wait_until(lambda: not control.alive, "the runtime's client noticed its end")
        runtime.launch(_spec("a1", "print('after the client')"))
        assert "after the client" in next_exit(runtime).output
    finally:
        runtime.close()
    assert not tmux_server_running(box.tmux_socket)
