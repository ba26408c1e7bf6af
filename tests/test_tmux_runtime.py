"""The tmux runtime against a real private tmux server: exits, signals, output, cleanup."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from waiting import next_exit, wait_until

from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.infra.processes import pids_in_group, process_alive
from pytest_orch_recovery.runtime.server import (
    command_quoted,
    format_literal,
    kill_tmux_server,
    tmux_server_running,
)
from pytest_orch_recovery.runtime.tmux import TmuxRuntime, clean_log, parse_result

pytestmark = pytest.mark.slow

_BOUND = 60.0  # generous: an exit that takes this long is a hang, not slowness
_TASK = Task("t-fake3", "Create /fake3 command", ("fake3.md",), wants_pr=False)


def _spec(
    agent: str, argv: Sequence[str], *, attempt: int = 1, key: str | None = None
) -> LaunchSpec:
    return LaunchSpec(
        task=_TASK,
        agent=agent,
        attempt=attempt,
        agent_type="command",
        strategy=None,
        prompt=json.dumps(list(argv)),  # the test's command_for reads the argv from here
        work=(),
        key=key or f"{agent}#{attempt}",
    )


def _argv_from_prompt(spec: LaunchSpec) -> list[str]:
    argv: list[str] = json.loads(spec.prompt)
    return argv


@pytest.fixture(params=[False, True], ids=["processes", "control"])
def rt(box: Sandbox, request: pytest.FixtureRequest) -> Iterator[TmuxRuntime]:
    """Each behaviour with a tmux process per command, and through a control-mode client."""
    runtime = TmuxRuntime(box, _argv_from_prompt, kill_grace=1.0, control=request.param)
    try:
        yield runtime
    finally:
        runtime.close()
        assert not tmux_server_running(box.tmux_socket)


def _ready_gate(box: Sandbox, channel: str) -> list[str]:
    """argv that announces the agent is running (tmux wait-for -S) before it goes on."""
    return ["tmux", "-L", box.tmux_socket, "wait-for", "-S", channel]


def _await_ready(box: Sandbox, channel: str) -> None:
    subprocess.run(["tmux", "-L", box.tmux_socket, "wait-for", channel], check=True, timeout=_BOUND)


def _py_sleeper(box: Sandbox, channel: str) -> list[str]:
    # Default SIGINT disposition (not KeyboardInterrupt): dies *by* the signal.
    code = textwrap.dedent(
        f"""
        import signal, subprocess
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        subprocess.run({_ready_gate(box, channel)!r}, check=True)
        signal.pause()
        """
    )
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- pure helpers


def test_parse_result_takes_the_last_result_object() -> None:
    text = '{"type": "result", "session_id": "old"}\nnoise {\n{"type":"result","session_id":"s2"}\n'
    assert parse_result(text) == {"type": "result", "session_id": "s2"}
    assert parse_result('{"type": "assistant"}\n[1, 2]\nplain\n') is None


def test_clean_log_drops_terminal_escapes() -> None:
    raw = b"\x1b]0;title\x07\x1b[31mError:\x1b[0m 529\r\nok\r\n"
    assert clean_log(raw) == "Error: 529\nok\n"


# --------------------------------------------------------------------------- exits


@pytest.mark.parametrize(("script", "status"), [("exit 0", 0), ("echo failing >&2; exit 3", 3)])
def test_exit_status_is_reported(rt: TmuxRuntime, script: str, status: int) -> None:
    rt.launch(_spec("a1", ["sh", "-c", script]))
    assert rt.live() == {"a1"}
    got = next_exit(rt)
    assert (got.agent, got.attempt) == ("a1", 1)
    assert got.exit.status == status and got.exit.signal is None
    assert got.extra["pane_dead_status"] == str(status)
    assert got.extra["signals_delivered"] == []
    assert rt.live() == frozenset()
    assert rt.next_exit(None) is None  # nothing live, no deadline: at once


def test_sigkilled_agent_is_reported_by_signal(rt: TmuxRuntime) -> None:
    rt.launch(_spec("a1", ["sh", "-c", "kill -KILL $$"]))
    got = next_exit(rt)
    assert got.exit.signal == signal.SIGKILL and got.exit.status is None
    assert got.extra["pane_dead_signal"] == str(int(signal.SIGKILL))


def test_output_and_result_json_are_captured(rt: TmuxRuntime, box: Sandbox) -> None:
    long_text = "x" * 600  # wider than the pane: capture must join wrapped lines
    result = {"type": "result", "subtype": "success", "session_id": "sess-1", "result": long_text}
    script = f"echo working on fake3.md; echo '{json.dumps(result)}'"
    rt.launch(_spec("a1", ["sh", "-c", script]))
    got = next_exit(rt)
    assert "working on fake3.md" in got.output
    assert got.result == result
    assert got.session_id == "sess-1"
    assert rt.output("a1") == got.output
    log = box.logs / "a1.1.log"
    assert got.extra["log"] == str(log)
    assert "working on fake3.md" in clean_log(log.read_bytes())


@pytest.mark.parametrize("control", [False, True], ids=["processes", "control"])
def test_a_path_with_tmux_format_syntax_stays_a_path(tmp_path: Path, control: bool) -> None:
    # tmux expands formats in -c, pipe-pane's command, run-shell and save-buffer's path: a
    # directory named like #(command) must not run that command, nor #{...} be replaced;
    # and the pane-died hook is a command string tmux parses: a quote, a backslash or a
    # $NAME in the path must neither break it nor expand.
    ran = tmp_path / "ran"
    box = Sandbox.create(base_dir=tmp_path / f"s#(touch {ran})#{{pane_id}}$HOME\"q\\'")
    try:
        runtime = TmuxRuntime(box, _argv_from_prompt, kill_grace=1.0, control=control)
        try:
            result = {"type": "result", "session_id": "s1"}
            script = f"echo \"$PWD\" > where.txt; echo '{json.dumps(result)}'"
            runtime.launch(_spec("a1", ["sh", "-c", script]))
            got = next_exit(runtime)
            assert got.result == result
            assert json.dumps(result) in clean_log((box.logs / "a1.1.log").read_bytes())
            where = (box.workspace("a1") / "where.txt").read_text().strip()
            assert where == str(box.workspace("a1"))
        finally:
            runtime.close()
    finally:
        box.teardown()
    assert not ran.exists()


def test_a_quoted_hook_command_reaches_the_shell_verbatim(tmp_path: Path) -> None:
    # command_quoted + format_literal + shlex.quote, the layers the pane-died hook's path
    # passes through (tmux's command parser, its format expansion, sh): a hook writes a
    # hostile word to a file when a pane dies; the file must hold exactly that word.
    word = str(tmp_path / "o$HOME\"q\\'#(id)#{pane_id};`id`")
    Path(word).parent.mkdir(parents=True, exist_ok=True)
    socket = f"orch-test-quote-{os.getpid()}"
    command = command_quoted(format_literal(f"printf %s {shlex.quote(word)} > {shlex.quote(word)}"))
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "keep", "sleep 60", ";",
             "set-option", "-g", "remain-on-exit", "on", ";",
             "set-hook", "-g", "pane-died", f"run-shell -b {command}", ";",
             "new-session", "-d", "-s", "dies", "true"],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: Path(word).is_file() and Path(word).stat().st_size > 0, "hook's file")
        assert Path(word).read_text() == word
    finally:
        kill_tmux_server(socket)  # and its socket file, which tmux leaves behind


def test_agent_runs_in_its_worktree_with_the_sandbox_env(rt: TmuxRuntime, box: Sandbox) -> None:
    script = 'echo "$PWD|$HOME|$ORCH_AGENT|$ORCH_ATTEMPT|${TMUX-unset}" > where.txt'
    rt.launch(_spec("a1", ["sh", "-c", script]))
    assert next_exit(rt).exit.clean
    seen = (box.workspace("a1") / "where.txt").read_text().strip()
    assert seen == f"{box.workspace('a1')}|{box.home}|a1|1|unset"


def test_command_not_found_is_127(rt: TmuxRuntime) -> None:
    rt.launch(_spec("a1", ["no-such-agent-binary"]))
    got = next_exit(rt)
    assert got.exit.status == 127
    assert "no-such-agent-binary: command not found" in got.output


# --------------------------------------------------------------------------- signals


def test_interrupt_kills_an_agent_with_default_sigint(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", _py_sleeper(box, "ready-a1")))
    _await_ready(box, "ready-a1")
    rt.interrupt("a1")
    got = next_exit(rt)
    assert got.exit.signal == signal.SIGINT
    assert got.extra["signals_delivered"] == ["SIGINT"]
    assert got.extra["pane_dead_signal"] == str(int(signal.SIGINT))


def test_interrupt_evidence_survives_an_agent_that_exits_0(rt: TmuxRuntime, box: Sandbox) -> None:
    # Like the real Claude Code on SIGINT: the agent shrugs it off and exits 0.
    gate = " ".join(_ready_gate(box, "ready-a1"))
    script = f"trap '' INT; {gate}; tmux -L {box.tmux_socket} wait-for go-a1; exit 0"
    rt.launch(_spec("a1", ["bash", "-c", script]))
    _await_ready(box, "ready-a1")
    rt.interrupt("a1")
    subprocess.run(["tmux", "-L", box.tmux_socket, "wait-for", "-S", "go-a1"], check=True)
    got = next_exit(rt)
    assert got.exit.status == 0 and got.exit.signal is None
    assert got.extra["signals_delivered"] == ["SIGINT"]


def test_ctrl_c_through_the_tty(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", _py_sleeper(box, "ready-a1")))
    _await_ready(box, "ready-a1")
    rt.send_ctrl_c("a1")
    got = next_exit(rt)
    assert got.exit.signal == signal.SIGINT
    assert got.extra["signals_delivered"] == ["SIGINT"]


def test_kill_escalates_and_leaves_no_process(rt: TmuxRuntime, box: Sandbox) -> None:
    # Ignores SIGTERM and has a background child: only SIGKILL ends the group.
    gate = " ".join(_ready_gate(box, "ready-a1"))
    script = f"trap '' TERM; sleep 1000 & {gate}; wait"
    rt.launch(_spec("a1", ["bash", "-c", script]))
    _await_ready(box, "ready-a1")
    pane_pid = int(json.loads(box.ledger_path.read_text())["pids"][-1]["pid"])
    members = pids_in_group(pane_pid)
    assert len(members) >= 3  # wrapper, bash, sleep
    rt.kill("a1")
    assert pids_in_group(pane_pid) == []
    assert not any(process_alive(p) for p in members)
    got = next_exit(rt)
    assert got.exit.signal == signal.SIGKILL
    assert got.exit.source == "tmux"  # the wrapper was killed too: tmux had the last word


# --------------------------------------------------------------------------- waiting


def test_next_exit_returns_none_at_the_deadline(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", _py_sleeper(box, "ready-a1")))
    _await_ready(box, "ready-a1")
    assert rt.next_exit(rt.clock.now()) is None
    assert rt.live() == {"a1"}
    rt.kill("a1")
    assert next_exit(rt).agent == "a1"


def test_several_agents_each_reported_once(rt: TmuxRuntime) -> None:
    for n in range(3):
        rt.launch(_spec(f"a{n}", ["sh", "-c", f"exit {n}"]))
    got = sorted((e.agent, e.exit.status) for e in (next_exit(rt) for _ in range(3)))
    assert got == [("a0", 0), ("a1", 1), ("a2", 2)]
    assert rt.next_exit(rt.clock.now()) is None


# --------------------------------------------------------------------------- lifecycle


def test_launch_is_idempotent_on_key(rt: TmuxRuntime, box: Sandbox) -> None:
    spec = _spec("a1", _py_sleeper(box, "ready-a1"))
    rt.launch(spec)
    rt.launch(spec)
    panes = [e for e in json.loads(box.ledger_path.read_text())["pids"] if "pane" in e["what"]]
    assert len(panes) == 1
    with pytest.raises(RuntimeError, match="still running"):
        rt.launch(_spec("a1", ["true"], attempt=2))
    rt.kill("a1")
    next_exit(rt)
    rt.launch(_spec("a1", ["sh", "-c", "exit 5"], attempt=2))
    second = next_exit(rt)
    assert (second.attempt, second.exit.status) == (2, 5)


def test_cleanup_removes_the_session(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", _py_sleeper(box, "ready-a1")))
    _await_ready(box, "ready-a1")
    rt.cleanup("a1")
    sessions = subprocess.run(
        ["tmux", "-L", box.tmux_socket, "list-sessions", "-F", "#{session_name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert "a1" not in sessions


def test_partial_work_reads_the_worktree(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", ["sh", "-c", "echo '# fake3' > fake3.md"]))
    assert next_exit(rt).exit.clean
    partial = rt.partial_work(_TASK, "a1")
    assert partial.deliverables_present == ("fake3.md",)
    assert partial.uncommitted == ("fake3.md",)
    assert partial.commits_ahead == 0 and not partial.pushed


def test_remedy_removes_a_stale_index_lock(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", ["true"]))
    next_exit(rt)
    ws = box.workspace("a1")
    lock = Path(run_git(["rev-parse", "--git-path", "index.lock"], cwd=ws).stdout.strip())
    lock = lock if lock.is_absolute() else ws / lock
    lock.write_text("")  # what a git killed mid-commit leaves behind
    done = rt.apply_remedy("a1", "remove_stale_index_lock")
    assert not lock.exists(), done
    assert "unknown remedy" in rt.apply_remedy("a1", "reboot")


def test_ledger_lists_server_panes_and_worktrees(rt: TmuxRuntime, box: Sandbox) -> None:
    rt.launch(_spec("a1", ["true"]))
    next_exit(rt)
    ledger = json.loads(box.ledger_path.read_text())
    whats = [e["what"] for e in ledger["pids"]]
    assert whats == ["tmux server", "pane a1 attempt 1"]
    assert ledger["worktrees"] == [str(box.workspace("a1"))]
    assert ledger["tmux_socket"] == box.tmux_socket


def test_teardown_after_a_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), Sandbox.create(base_dir=tmp_path) as sb:
        runtime = TmuxRuntime(sb, _argv_from_prompt)
        runtime.launch(_spec("a1", _py_sleeper(sb, "ready-a1")))
        _await_ready(sb, "ready-a1")
        pane_pid = int(sb.ledger.pids[-1]["pid"])
        _ = 1 / 0
    assert not process_alive(pane_pid)
    assert sb.leftovers() == []


_OWNER = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    from pytest_orch_recovery.doubles.sandbox import Sandbox
    from pytest_orch_recovery.runtime.tmux import TmuxRuntime
    sys.path.insert(0, sys.argv[2])
    from test_tmux_runtime import _spec, _py_sleeper, _await_ready, _argv_from_prompt
    box = Sandbox.create(base_dir=Path(sys.argv[1]))
    rt = TmuxRuntime(box, _argv_from_prompt)
    rt.launch(_spec("a1", _py_sleeper(box, "ready-a1")))
    _await_ready(box, "ready-a1")
    print(box.root, flush=True)
    sys.stdin.read()
    """
)


def test_stale_sandbox_with_tmux_is_reaped(tmp_path: Path) -> None:
    base = tmp_path / "sandboxes"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(base), str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdin is not None
    root = Path(owner.stdout.readline().strip())
    ledger = json.loads((root / "ledger.json").read_text())
    owner.kill()
    owner.wait(timeout=30)
    owner.stdout.close()
    owner.stdin.close()
    assert tmux_server_running(ledger["tmux_socket"])
    with Sandbox.create(base_dir=base):
        assert not root.exists()
        assert not tmux_server_running(ledger["tmux_socket"])
        for entry in ledger["pids"]:
            assert not process_alive(entry["pid"], entry["start"]), entry
    assert os.listdir(base) == []
