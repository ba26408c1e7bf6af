"""Who sent the signal: the launch wrapper's siginfo, checked with real senders.

Each sender is a real process: keys typed into a tmux pane (``send-keys C-c``, with and
without a person's client attached), ``kill`` from another process, a ``timeout``-style
parent, and the kernel's OOM killer in a memory cgroup of our own. The exit record the
wrapper writes is then classified, decided on, and rendered as the seed's root-cause theory.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orch_recovery.engine.classify import Observation, classify
from pytest_orch_recovery.engine.model import (
    Attribution,
    ExitInfo,
    Reason,
    SignalOrigin,
    SignalSender,
    signal_number,
)
from pytest_orch_recovery.report.rootcause import theory
from pytest_orch_recovery.runtime import senders
from pytest_orch_recovery.runtime.server import kill_tmux_server
from pytest_orch_recovery.runtime.wrapper import WrapperSpec

WAIT = 60.0  # generous bound for any one event on a loaded 2-core machine


# --------------------------------------------------------------------------- pure parts


def test_si_code_names_the_origin() -> None:
    assert senders.origin_of(2, senders.SI_KERNEL, 0) is SignalOrigin.TTY
    assert senders.origin_of(9, senders.SI_KERNEL, 0) is SignalOrigin.KERNEL
    assert senders.origin_of(2, senders.SI_USER, 10) is SignalOrigin.PROCESS
    assert senders.origin_of(2, senders.SI_QUEUE, 10) is SignalOrigin.QUEUE
    assert senders.origin_of(2, senders.SI_TKILL, 10) is SignalOrigin.THREAD
    assert senders.origin_of(2, 42, 10) is SignalOrigin.UNKNOWN


def test_sender_read_from_a_proc_tree(tmp_path: Path) -> None:
    for pid, cmd, comm, ppid in (
        (4242, b"timeout\x00900\x00claude\x00-p\x00", b"timeout\n", 1),
        (4300, b"", b"kill\n", 4242),
    ):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(cmd)
        (d / "comm").write_bytes(comm)
        (d / "stat").write_text(f"{pid} ({comm.decode().strip()}) S {ppid} {pid} 0 0 -1\n")
    sender = senders.sender_of(2, 0, 4242, 0, proc=tmp_path)
    assert sender.command == "timeout 900 claude -p" and sender.from_timeout
    assert sender.describe() == "SIGINT from pid 4242 `timeout 900 claude -p`"
    zombie = senders.sender_of(15, 0, 4300, 0, proc=tmp_path)  # exited before we looked
    assert zombie.command == "" and zombie.name == "kill" and zombie.parent_pid == 4242
    assert zombie.describe() == (
        "SIGTERM from pid 4300 `[kill]`, child of pid 4242 `timeout 900 claude -p`"
    )
    gone = senders.sender_of(2, 0, 99999, 0, proc=tmp_path)
    assert gone.describe() == "SIGINT from pid 99999 `exited at once`"


def test_oom_counter_read_from_v1_and_v2_files(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text("4:memory:/jobs/a\n0::/\n")
    v1 = tmp_path / "cg"
    (v1 / "memory" / "jobs" / "a").mkdir(parents=True)
    (v1 / "memory" / "jobs" / "a" / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    )
    cgroup = senders.memory_cgroup(7, proc=proc, root=v1)
    assert cgroup == v1 / "memory" / "jobs" / "a" and senders.oom_kills(cgroup) == 3
    (proc / "7" / "cgroup").write_text("0::/jobs/b\n")
    v2 = tmp_path / "cg2"
    (v2 / "jobs" / "b").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("memory\n")
    (v2 / "jobs" / "b" / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
    cgroup = senders.memory_cgroup(7, proc=proc, root=v2)
    assert cgroup == v2 / "jobs" / "b" and senders.oom_kills(cgroup) == 1
    assert senders.oom_kills(None) is None


def test_sender_json_round_trip_through_the_exit() -> None:
    sender = SignalSender(
        2,
        SignalOrigin.PROCESS,
        0,
        pid=7,
        uid=0,
        command="kill -INT 9",
        name="kill",
        parent_pid=1,
        parent_command="init",
    )
    info = ExitInfo.from_returncode(0).with_evidence((sender,))
    again = ExitInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info and again.with_timeout().senders == (sender,)
    attribution = Attribution(Reason.SIGINT, 0.9, sender=sender)
    assert Attribution.from_json(attribution.to_json()) == attribution
    assert "senders" not in ExitInfo.from_returncode(0).to_json(), "old records stay as they were"


# --------------------------------------------------------------------------- real senders


def _spec(tmp_path: Path, argv: list[str], name: str = "a1") -> tuple[Path, WrapperSpec]:
    fifo = tmp_path / f"{name}.fifo"
    os.mkfifo(fifo)
    spec = WrapperSpec(
        agent=name,
        attempt=1,
        key=f"k-{name}",
        argv=tuple(argv),
        env=dict(os.environ),
        cwd=str(tmp_path),
        exit_file=str(tmp_path / f"{name}.exit.json"),
        fifo=str(fifo),
    )
    path = tmp_path / f"{name}.launch.json"
    path.write_text(json.dumps(spec.to_json()))
    return path, spec


@contextlib.contextmanager
def _fifo(spec: WrapperSpec) -> Iterator[int]:
    assert spec.fifo is not None
    fd = os.open(spec.fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def _wait_line(fd: int, prefix: bytes, timeout: float = WAIT) -> bytes:
    """Block (select) until a line starting with ``prefix`` arrives on the FIFO."""
    buffer = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {prefix!r} line within {timeout} s"
        buffer += os.read(fd, 4096)
        for line in buffer.split(b"\n"):
            if line.startswith(prefix):
                return line


def _agent() -> list[str]:
    """An agent that says it is ready on the FIFO, then waits to be signalled."""
    script = (
        "import os, time; fd = os.open(os.environ['READY_FIFO'], os.O_WRONLY); "
        "os.write(fd, b'ready\\n'); os.close(fd); time.sleep(600)"
    )
    return [sys.executable, "-c", script]


def _record(spec: WrapperSpec) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(spec.exit_file).read_text())
    return data


def _observation(record: dict[str, Any]) -> Observation:
    return Observation(
        exit=ExitInfo.from_json(record["exit"]),
        signals_delivered=tuple(signal_number(s) for s in record["signals_delivered"]),
        deliverables_missing=("fake3.md",),
    )


def _wrapper(spec_file: Path) -> list[str]:
    return [sys.executable, "-m", "pytest_orch_recovery.runtime.wrapper", str(spec_file)]


def _ready_env(spec: WrapperSpec) -> None:
    """The agent announces itself on the wrapper's own FIFO (``READY_FIFO``)."""
    assert spec.fifo is not None and isinstance(spec.env, dict)
    spec.env["READY_FIFO"] = spec.fifo


def test_kill_from_another_process_names_that_process(tmp_path: Path) -> None:
    spec_file, spec = _spec(tmp_path, _agent())
    _ready_env(spec)
    spec_file.write_text(json.dumps(spec.to_json()))
    with _fifo(spec) as fd:
        wrapper = subprocess.Popen(_wrapper(spec_file), start_new_session=True)
        _wait_line(fd, b"ready")
        marker = f"sender-{uuid.uuid4().hex[:8]}"
        # The sender signals the wrapper's group (as a supervisor does) and stays alive, so
        # its command line is there to read; it is killed when the test is done with it.
        sender = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, signal, sys, time; "
                "os.killpg(int(sys.argv[1]), signal.SIGINT); time.sleep(60)",
                str(wrapper.pid),
                marker,
            ]
        )
        try:
            _wait_line(fd, b"exit")
            assert wrapper.wait(WAIT) == -signal.SIGINT, "ends the way its agent ended"
        finally:
            sender.kill()
            sender.wait()
    record = _record(spec)
    (first,) = ExitInfo.from_json(record["exit"]).senders
    assert first.origin is SignalOrigin.PROCESS and first.code == senders.SI_USER
    assert first.pid == sender.pid and first.uid == os.getuid()
    assert marker in first.command and first.describe().startswith(f"SIGINT from pid {sender.pid}")
    attribution = classify(_observation(record))
    assert attribution.reason is Reason.SIGINT and attribution.sender == first
    assert any(f"from pid {sender.pid}" in e.detail for e in attribution.evidence)
    assert theory(attribution).startswith(
        "hypothesis 2 (System signal during resource pressure) held in part"
    )


@pytest.mark.skipif(shutil.which("timeout") is None, reason="coreutils timeout not installed")
def test_a_timeout_parent_sending_sigint_is_a_timeout(tmp_path: Path) -> None:
    spec_file, spec = _spec(tmp_path, _agent())
    _ready_env(spec)
    spec_file.write_text(json.dumps(spec.to_json()))
    with _fifo(spec) as fd:
        parent = subprocess.Popen(
            ["timeout", "-s", "INT", "2", *_wrapper(spec_file)], start_new_session=True
        )
        _wait_line(fd, b"exit")
        parent.wait(WAIT)
    record = _record(spec)
    first = ExitInfo.from_json(record["exit"]).senders[0]
    assert first.origin is SignalOrigin.PROCESS and first.pid == parent.pid
    assert first.command.startswith("timeout -s INT 2 ") and first.from_timeout
    attribution = classify(_observation(record))
    assert attribution.reason is Reason.TIMEOUT, attribution
    assert "a time limit ended the attempt" in attribution.evidence[0].detail
    assert theory(attribution).startswith("hypothesis 3 (Timeout mechanism sending wrong signal)")


class _Tmux:
    """A private tmux server running the wrapper in one pane."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"orch-senders-{uuid.uuid4().hex[:10]}"
        self.base = ["tmux", "-L", self.socket, "-f", "/dev/null"]

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], check=True, capture_output=True, text=True
        ).stdout

    def close(self) -> None:
        kill_tmux_server(self.socket)  # and its socket file


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[_Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    server = _Tmux(tmp_path)
    try:
        yield server
    finally:
        server.close()


def _typed_ctrl_c(tmp_path: Path, tmux: _Tmux, *, attach: bool) -> dict[str, Any]:
    spec_file, spec = _spec(tmp_path, _agent())
    _ready_env(spec)
    spec_file.write_text(json.dumps(spec.to_json()))
    client: subprocess.Popen[bytes] | None = None
    primary = -1
    with _fifo(spec) as fd:
        tmux.run(
            "new-session", "-d", "-s", "agent", "-x", "120", "-y", "30", "--", *_wrapper(spec_file)
        )
        _wait_line(fd, b"ready")
        try:
            if attach:  # a person's terminal: a tmux client on a pseudo-terminal of its own
                primary, secondary = os.openpty()
                client = subprocess.Popen(
                    [*tmux.base, "attach", "-t", "agent"],
                    stdin=secondary,
                    stdout=secondary,
                    stderr=secondary,
                    start_new_session=True,
                    env={**os.environ, "TERM": "xterm"},
                )
                os.close(secondary)
                # The server draws the session on the client's terminal once it is attached.
                ready, _, _ = select.select([primary], [], [], WAIT)
                assert ready, "the tmux client never drew the session"
                assert tmux.run("list-clients", "-t", "agent").strip()
            tmux.run("send-keys", "-t", "agent", "C-c")
            _wait_line(fd, b"exit")
        finally:
            if client is not None:
                client.kill()
                client.wait()
                os.close(primary)
    return _record(spec)


def test_ctrl_c_typed_into_the_pane_is_tty_generated(tmp_path: Path, tmux: _Tmux) -> None:
    record = _typed_ctrl_c(tmp_path, tmux, attach=False)
    (first,) = ExitInfo.from_json(record["exit"]).senders
    assert first.origin is SignalOrigin.TTY and first.code == senders.SI_KERNEL
    assert first.pid is None and first.clients == 0
    assert first.describe() == (
        "SIGINT typed in the pane (tty; no client attached: keys sent by a program)"
    )
    attribution = classify(_observation(record))
    assert attribution.reason is Reason.SIGINT and attribution.sender == first
    assert theory(attribution).startswith(
        "hypothesis 1 (Manual Ctrl-C in tmux session) held in part"
    )


def test_ctrl_c_typed_with_a_person_attached_waits_for_the_operator(
    tmp_path: Path, tmux: _Tmux
) -> None:
    from pytest_orch_recovery.engine.model import PartialWork, Strategy, Task
    from pytest_orch_recovery.engine.policy import PastAttempt, Policy, Situation

    record = _typed_ctrl_c(tmp_path, tmux, attach=True)
    (first,) = ExitInfo.from_json(record["exit"]).senders
    assert first.origin is SignalOrigin.TTY and first.clients == 1 and first.typed_by_person
    attribution = classify(_observation(record))
    assert attribution.reason is Reason.SIGINT and attribution.sender == first
    assert theory(attribution).startswith("hypothesis 1 (Manual Ctrl-C in tmux session) held:")
    task = Task("task-5030", "Create /fake3 command", ("fake3.md",))
    partial = PartialWork(deliverables_missing=("fake3.md",))
    decision = Policy().decide(
        Situation(
            task=task,
            agent="task-agent-5030",
            agent_type="sim",
            attribution=attribution,
            partial=partial,
            missing=(),
            history=(PastAttempt(1, "sim", Reason.SIGINT, None),),
            breaker_open=False,
            max_attempts=4,
        )
    )
    assert decision.rule == "sigint_typed_by_person"
    assert decision.strategy is Strategy.ESCALATE


def _memory_cgroup_of_our_own(name: str) -> Path | None:
    """A child memory cgroup with a small limit, when this process may create one."""
    parent = senders.memory_cgroup()
    if parent is None or os.geteuid() != 0:
        return None
    child = parent / name
    try:
        child.mkdir()
        limit = (
            "memory.limit_in_bytes" if (child / "memory.limit_in_bytes").exists() else "memory.max"
        )
        (child / limit).write_text(str(64 * 1024 * 1024))
    except OSError:
        with contextlib.suppress(OSError):
            child.rmdir()
        return None
    return child


def test_a_sigkill_from_the_oom_killer_is_named_from_the_cgroup_counter(tmp_path: Path) -> None:
    cgroup = _memory_cgroup_of_our_own(f"orch-oom-{uuid.uuid4().hex[:8]}")
    if cgroup is None:
        pytest.skip("cannot create a memory cgroup here (needs root and a writable cgroupfs)")
    try:
        # The agent allocates far past the cgroup's 64 MiB: the kernel OOM-kills it (the
        # biggest process in the cgroup), and the wrapper, which it never told, survives.
        spec_file, spec = _spec(
            tmp_path, [sys.executable, "-c", "x = bytearray(512 * 1024 * 1024); print('alive')"]
        )
        with _fifo(spec) as fd:
            procs = str(cgroup / "cgroup.procs")
            wrapper = subprocess.Popen(
                ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *_wrapper(spec_file)],
                start_new_session=True,
            )
            _wait_line(fd, b"exit")
            assert wrapper.wait(WAIT) == -signal.SIGKILL
        record = _record(spec)
        info = ExitInfo.from_json(record["exit"])
        assert info.signal == signal.SIGKILL and info.oom_killed, record
        assert record["oom_kill"]["after"] > record["oom_kill"]["before"]
        assert record["signals_delivered"] == [], "the wrapper itself was sent nothing"
        attribution = classify(Observation(exit=info, deliverables_missing=("fake3.md",)))
        assert attribution.reason is Reason.KILLED and attribution.oom_killed
        assert "killed by the OOM killer" in attribution.evidence[0].detail
        assert theory(attribution).startswith("hypothesis 2 (System signal during resource")
    finally:
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def test_a_wrapper_killed_outright_is_read_from_tmux_and_not_blamed_on_oom(tmp_path: Path) -> None:
    """SIGKILL to the wrapper itself: no exit file, tmux's pane_dead_signal says 9; the pane's
    cgroup counted no OOM kill, so the exit does not claim one."""
    from pytest_orch_recovery.doubles.sandbox import Sandbox
    from pytest_orch_recovery.engine.model import Task
    from pytest_orch_recovery.engine.ports import LaunchSpec
    from pytest_orch_recovery.runtime.tmux import TmuxRuntime

    script = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    box = Sandbox.create(base_dir=tmp_path / "sb")
    try:
        with TmuxRuntime(box, lambda _s: [sys.executable, "-c", script], kill_grace=1.0) as rt:
            rt.launch(
                LaunchSpec(
                    Task("t", "t", ("x.md",), wants_pr=False),
                    "a-1",
                    1,
                    "command",
                    None,
                    "",
                    (),
                    "a-1#1",
                )
            )
            exited = rt.next_exit(rt.clock.now() + WAIT)
    finally:
        box.teardown()
    assert exited is not None
    assert exited.exit.signal == signal.SIGKILL and exited.exit.source == "tmux"
    assert not exited.exit.oom_killed and exited.exit.senders == ()


@pytest.mark.parametrize("nice", [-1, 20, 1.5, "3", True])
def test_a_launch_spec_with_a_bad_nice_names_the_file_and_field(
    tmp_path: Path, nice: object
) -> None:
    path, spec = _spec(tmp_path, ["true"])
    path.write_text(json.dumps({**spec.to_json(), "nice": nice}))
    with pytest.raises(ValueError, match=r"launch\.json: field nice: an integer 0\.\.19, got"):
        WrapperSpec.load(path)
    path.write_text(json.dumps({**spec.to_json(), "nice": 19}))
    assert WrapperSpec.load(path).nice == 19
