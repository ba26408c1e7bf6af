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
from pytest_orch_recovery.runtime.server import kill_tmux_server, tmux_server_running
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


def _sessions(socket: str) -> list[str]:
    return _tmux(socket, "list-sessions", "-F", "#{session_name}").stdout.split()


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
    assert _sessions(socket) == [client.session]
    pid = client.pid
    client.close()
    assert _sessions(socket) == []
    assert not process_alive(pid)
    with pytest.raises(ControlClosed):
        client.command("display-message", "-p", "x")
    client.close()  # idempotent


def test_a_killed_client_fails_its_callers_and_leaves_no_session(
    client: ControlClient, socket: str
) -> None:
    os.kill(client.pid, signal.SIGKILL)
    wait_until(lambda: not client.alive, "the client noticed its end")
    with pytest.raises(ControlClosed):
        client.command("display-message", "-p", "x")
    wait_until(lambda: _sessions(socket) == [], "its session destroyed (destroy-unattached)")


_OWNER = textwrap.dedent(
    """
    import sys
    from pytest_orch_recovery.runtime.control import ControlClient
    client = ControlClient(sys.argv[1])
    print(client.session, client.pid, flush=True)
    sys.stdin.read()
    """
)


def test_when_its_owner_is_killed_the_client_and_its_session_go(socket: str) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, socket],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdin is not None
    session, pid = owner.stdout.readline().split()
    assert session.startswith(CONTROL_SESSION_PREFIX) and _sessions(socket) == [session]
    owner.kill()
    owner.wait(timeout=30)
    owner.stdout.close()
    owner.stdin.close()
    wait_until(lambda: not process_alive(int(pid)), "the client ended on EOF of its stdin")
    wait_until(lambda: _sessions(socket) == [], "its session destroyed with it")


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


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sb = Sandbox.create(base_dir=tmp_path / "sandboxes")
    try:
        yield sb
    finally:
        sb.teardown()
        assert sb.leftovers() == []


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
