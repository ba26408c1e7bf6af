"""The real Claude Code CLI under the harness, pinned down (docs/claude-code.md).

Each behaviour is asserted for the real CLI and, where the sim agent claims to copy it, for
the sim agent too (the ``agent`` parameter): the sim agent is only worth its name if the same
test passes for both. The real-CLI cases skip with the reason when the CLI is not installed
(``tools/install-claude-code.sh``; CI installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_orch_recovery.chaos.faults import FaultSpec, FaultStatus, Trigger
from pytest_orch_recovery.chaos.tiers.tmux import run_tmux
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, TaskPlan, plan_for_task
from pytest_orch_recovery.doubles.modeldouble.faults import ApiFaultKind, ApiFaultSpec
from pytest_orch_recovery.doubles.modeldouble.plan import Step
from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Reason, SignalOrigin, Task
from pytest_orch_recovery.engine.ports import AttemptExit, LaunchSpec
from pytest_orch_recovery.infra.agents import (
    AgentConfig,
    AgentDriver,
    claude_code_driver,
    claude_code_missing,
    find_claude_code,
    sim_agent_driver,
)
from pytest_orch_recovery.infra.checkpoint import load_checkpoint
from pytest_orch_recovery.runtime.dispatch import SETTINGS_FILE, Dispatcher
from pytest_orch_recovery.runtime.tmux import TmuxRuntime, parse_result
from pytest_orch_recovery.store import atomic

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0
MISSING = claude_code_missing()
needs_claude = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
AGENTS = [
    pytest.param("sim", id="sim"),
    pytest.param("claude-code", id="claude-code", marks=needs_claude),
]

pytestmark = [pytest.mark.slow, pytest.mark.claude]

FOUR = Task("t-four", "Add the four parser modules", ("lex.py", "parse.py", "emit.py", "cli.py"))
PROBE = "Probe the interrupt"


def _driver(agent: str, config: AgentConfig) -> AgentDriver:
    return claude_code_driver(config) if agent == "claude-code" else sim_agent_driver(config)


@dataclass
class Lab:
    """One sandbox, model double and tmux runtime, with the dispatcher's checkpoint hook."""

    sandbox: Sandbox
    double: ModelDouble
    runtime: TmuxRuntime
    agent_kind: str

    def launch(
        self,
        task: Task,
        *,
        attempt: int = 1,
        prompt: str | None = None,
        resume: str | None = None,
        agent: str = "task-agent-1",
    ) -> None:
        self.runtime.launch(
            LaunchSpec(
                task=task,
                agent=agent,
                attempt=attempt,
                agent_type=self.agent_kind,
                strategy=None,
                prompt=prompt or task.title,
                work=(),
                key=f"{agent}:{attempt}",
                resume_session=resume,
            )
        )

    def next_exit(self) -> AttemptExit:
        exited = self.runtime.next_exit(self.runtime.clock.now() + WAIT)
        assert exited is not None, "the agent did not end in time"
        return exited


@contextmanager
def lab(tmp_path: Path, agent: str, plan: Plan) -> Iterator[Lab]:
    sandbox = Sandbox.create(base_dir=tmp_path, name="cc")
    double = ModelDouble(plan).start()
    runtime: TmuxRuntime | None = None
    try:
        sandbox.agent_env.update(
            {
                "ANTHROPIC_BASE_URL": double.url,
                "ANTHROPIC_API_KEY": "sk-ant-api03-double-not-a-real-key",
                "CLAUDE_CODE_MAX_RETRIES": "2",
                "ORCH_SIM_RETRY_BASE_MS": "50",
                "IS_SANDBOX": "1",
            }
        )
        # The harness's hook with no faults: it keeps the checkpoint exactly as
        # `orch-recovery checkpoint --from-hook` does. (The dispatcher's own checkpoint hook
        # command is mis-quoted at the moment; see the report of issue 4.)
        plan_file = sandbox.root / "faults.json"
        atomic.write_json(
            plan_file,
            {
                "faults": [],
                "state_dir": str(sandbox.root / "fs"),
                "context": {
                    "tmux_socket": sandbox.tmux_socket,
                    "checkpoint_dir": str(sandbox.checkpoints),
                },
            },
        )
        dispatcher = Dispatcher(
            sandbox, lambda c: _driver(agent, c), AgentConfig(), fault_plan=plan_file
        )
        runtime = TmuxRuntime(sandbox, dispatcher.command_for)
        yield Lab(sandbox, double, runtime, agent)
    finally:
        if runtime is not None:
            runtime.close()
        double.stop()
        sandbox.teardown()
    assert sandbox.leftovers() == []


def _fifo_reader(fifo: Path) -> threading.Event:
    """Set once a process has written a line to ``fifo`` (a Bash step announcing itself)."""
    os.mkfifo(fifo)
    started = threading.Event()

    def _read() -> None:
        with open(fifo) as handle:
            if handle.readline():
                started.set()

    threading.Thread(target=_read, daemon=True).start()
    return started


def _blocking_plan(fifo: Path) -> Plan:
    return Plan(
        (
            TaskPlan(
                PROBE,
                (
                    Step("write", "a.md", "write", content="# a\n"),
                    # Blocks the first time only: a resumed run that repeats it goes straight on.
                    Step(
                        "bash",
                        f"if [ ! -e {fifo}.done ]; then touch {fifo}.done; echo go > {fifo}; "
                        "exec sleep 120; fi",
                        "free",
                    ),
                    Step("write", "b.md", "write", content="# b\n"),
                ),
            ),
        )
    )


def _observation(exited: AttemptExit, signals: tuple[int, ...] = ()) -> Observation:
    return Observation(
        exit=exited.exit,
        result=exited.result,
        logs=(LogText("output", exited.output),),
        signals_delivered=signals,
    )


# ----------------------------------------------------------------------------- install


@needs_claude
def test_installed_cli_is_the_pinned_version() -> None:
    script = (ROOT / "tools" / "install-claude-code.sh").read_text()
    pinned = next(
        line.split('"')[1] for line in script.splitlines() if line.startswith("PINNED_VERSION=")
    )
    path = find_claude_code()
    assert path is not None
    version = subprocess.run(
        [str(path), "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "DISABLE_AUTOUPDATER": "1"},
    )
    if os.environ.get("ORCH_CLAUDE_CODE"):
        assert version.returncode == 0  # a user-chosen binary may be another version
    else:
        assert version.stdout.split()[0] == pinned


@pytest.mark.skipif(
    os.uname().sysname != "Linux" or os.uname().machine != "x86_64",
    reason="the libc check is Linux's; the expected names are x86-64's",
)
@pytest.mark.parametrize(
    ("banner", "package"),
    [
        # glibc's ldd prints its banner, then more: a reader that stops at the match must not
        # turn ldd's SIGPIPE into "not glibc" (it did, in ~7% of runs, under pipefail).
        ('echo "ldd (Debian GLIBC 2.36-9) 2.36"; sleep 0.2; seq 1 20000', "linux-x64"),
        ('echo "musl libc (x86_64)" >&2; echo "Version 1.2.4" >&2; exit 1', "linux-x64-musl"),
    ],
)
def test_the_installer_picks_the_build_for_this_libc(
    tmp_path: Path, banner: str, package: str
) -> None:
    fake = tmp_path / "ldd"
    fake.write_text(f"#!/bin/sh\n{banner}\n")
    fake.chmod(0o755)
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "install-claude-code.sh"), "--print-package"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
    )
    assert (out.returncode, out.stdout.strip()) == (0, f"@anthropic-ai/claude-code-{package}")


def test_the_driver_carries_what_the_real_cli_needs(tmp_path: Path) -> None:
    fake = tmp_path / "claude"
    driver = claude_code_driver(AgentConfig(model="claude-sonnet-4-5"), executable=fake)
    spec = LaunchSpec(
        FOUR, "task-agent-1", 2, "claude-code", None, "go", (), "k", resume_session="sid-1"
    )
    command = driver.argv(spec, prompt_file=tmp_path / "p.md")[2]
    assert command.startswith("exec env ")
    for word in (
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "DISABLE_TELEMETRY=1",
        f"{fake} -p --output-format json --dangerously-skip-permissions",
        "--resume sid-1",
        "--model claude-sonnet-4-5",
        f"< {tmp_path / 'p.md'}",
    ):
        assert word in command
    assert ("IS_SANDBOX=1" in command) == (os.geteuid() == 0)
    forgot = claude_code_driver(AgentConfig(skip_permissions=False), executable=fake)
    assert "--dangerously-skip-permissions" not in forgot.argv(spec, prompt_file=fake)[2]


# ----------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("agent", AGENTS)
def test_checkpoint_hook_in_settings_local_runs_after_every_tool_call(
    tmp_path: Path, agent: str
) -> None:
    with lab(tmp_path, agent, Plan((plan_for_task(FOUR),))) as lb:
        lb.launch(FOUR, prompt=f"{FOUR.title}\nCreate the four files, commit, push, open a PR.")
        exited = lb.next_exit()
        workspace = lb.sandbox.workspace("task-agent-1")
        assert (workspace / SETTINGS_FILE).is_file()
        checkpoint = load_checkpoint(lb.sandbox.checkpoints, "task-agent-1", workspace=workspace)
    assert exited.exit.status == 0 and exited.result is not None
    assert exited.result["subtype"] == "success", exited.output[-2000:]
    assert checkpoint is not None
    assert sorted(checkpoint.created_files) == sorted(FOUR.deliverables)
    done = " ".join(checkpoint.completed_subtasks)
    for step in ("git commit", "git push", "gh pr create"):
        assert step in done, checkpoint.completed_subtasks
    assert checkpoint.session_id == exited.session_id


# ----------------------------------------------------------------------------- SIGINT


@pytest.mark.parametrize("how", ["process-group", "send-keys"])
@pytest.mark.parametrize("agent", AGENTS)
def test_sigint_during_a_tool_ends_with_an_aborted_result_and_resume_redoes_the_tool(
    tmp_path: Path, agent: str, how: str
) -> None:
    fifo = tmp_path / "started.fifo"
    started = _fifo_reader(fifo)
    task = Task("t-int", PROBE, ("a.md", "b.md"))
    with lab(tmp_path, agent, _blocking_plan(fifo)) as lb:
        lb.launch(task)
        assert started.wait(WAIT), "the Bash step never started"
        if how == "process-group":
            lb.runtime.interrupt("task-agent-1")
        else:
            lb.runtime.send_ctrl_c("task-agent-1")
        exited = lb.next_exit()
        signals = tuple(exited.extra.get("signals_delivered", ()))
        # Measured with 2.1.328: exit 0 and a result JSON that says the tools were aborted.
        assert exited.exit.status == 0 and exited.exit.signal is None
        result = exited.result
        if how == "send-keys":
            # The tty echoes the typed C-c as "^C" right before the JSON, on the same line:
            # runtime.tmux.parse_result (line must start with "{") misses it - reported.
            assert "^C{" in exited.output
            result = result or parse_result(exited.output.replace("^C{", "{"))
        assert result is not None, exited.output[-1500:]
        assert (result["subtype"], result["is_error"], result["terminal_reason"]) == (
            "error_during_execution",
            True,
            "aborted_tools",
        )
        assert "result" not in result and "api_error_status" not in result
        assert result["permission_denials"] == []
        seen = _observation(exited)
        assert (
            classify(Observation(exit=seen.exit, result=result, logs=seen.logs)).reason
            is Reason.SIGINT
        )
        # Who sent it, from the launch wrapper's siginfo: this test process's killpg, or the
        # tty line discipline for the typed key (si_code SI_KERNEL, no pid, no client).
        assert signals == ("SIGINT",)
        (sender,) = exited.exit.senders
        if how == "process-group":
            assert sender.origin is SignalOrigin.PROCESS and sender.pid == os.getpid()
            assert sender.describe().startswith(f"SIGINT from pid {os.getpid()} `")
        else:
            assert sender.origin is SignalOrigin.TTY and sender.pid is None
            assert sender.clients == 0
        # --resume: the interrupted Bash call comes back as an error result; the model (the
        # double) runs it again (this time it returns at once) and carries on.
        before = len(lb.double.transcript)
        lb.launch(
            task,
            attempt=2,
            resume=str(result["session_id"]),
            prompt=f"{PROBE}: continue where you stopped.",
        )
        resumed = lb.next_exit()
        workspace = lb.sandbox.workspace("task-agent-1")
        assert (workspace / "b.md").is_file()
    assert resumed.exit.status == 0 and resumed.result is not None
    assert resumed.result["subtype"] == "success"
    assert resumed.result["session_id"] == result["session_id"]
    first = next(t for t in lb.double.transcript[before:] if not t.get("side"))
    assert first["history"][:2] == [["Write", "ok"], ["Bash", "error"]], first
    assert first["action"]["target"].startswith("if [ ! -e")


def test_sigint_while_waiting_on_the_api_exits_0_with_no_output_real(tmp_path: Path) -> None:
    _interrupt_while_waiting_on_the_api(
        tmp_path, "claude-code"
    ) if MISSING is None else pytest.skip(str(MISSING))


def test_sigint_while_waiting_on_the_api_exits_0_with_no_output_sim(tmp_path: Path) -> None:
    _interrupt_while_waiting_on_the_api(tmp_path, "sim")


def _interrupt_while_waiting_on_the_api(tmp_path: Path, agent: str) -> None:
    task = Task("t-api", PROBE, ("a.md",))
    plan = Plan((TaskPlan(PROBE, (Step("write", "a.md", "write", content="# a\n"),)),))
    with lab(tmp_path, agent, plan) as lb:
        lb.double.add_fault(
            ApiFaultSpec(ApiFaultKind.STALL, at_request=2, scope="task", seconds=600)
        )
        lb.launch(task)
        assert lb.double.wait_until(lambda d: d.stalled > 0, WAIT)
        lb.runtime.interrupt("task-agent-1")
        exited = lb.next_exit()
    assert (exited.exit.status, exited.result) == (0, None)
    assert "{" not in exited.output  # nothing printed at all
    signals = tuple(int(s) for s in (2,) if "SIGINT" in exited.extra["signals_delivered"])
    attribution = classify(_observation(exited, signals))
    assert attribution.reason is Reason.SIGINT


# ----------------------------------------------------------------------------- API errors


API_KEY = {"ANTHROPIC_API_KEY": "sk-ant-x"}
SUBSCRIPTION = {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-double-not-a-real-token"}


def _headless(
    tmp_path: Path,
    agent: str,
    fault: ApiFaultSpec | None,
    account: dict[str, str] = API_KEY,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``agent -p`` outside tmux against the double, with the harness's environment, on an
    API key or a subscription (``account``)."""
    task = Task("t", "Create /fake3 command", ("fake3.md",))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    with ModelDouble(Plan((plan_for_task(task),))) as double:
        if fault is not None:
            double.add_fault(fault)
        driver = _driver(agent, AgentConfig())
        spec = LaunchSpec(task, "a", 1, agent, None, task.title, (), "k")
        prompt = tmp_path / "prompt.md"
        prompt.write_text(task.title + "\nCreate fake3.md.")
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "ANTHROPIC_BASE_URL": double.url,
            **account,
            "CLAUDE_CODE_MAX_RETRIES": "2",
            "ORCH_SIM_RETRY_BASE_MS": "500",
            "IS_SANDBOX": "1",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        proc = subprocess.run(
            driver.argv(spec, prompt_file=prompt),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT * 2,
        )
        return proc, double.transcript


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize(
    ("kind", "status", "text"),
    [
        (ApiFaultKind.OVERLOADED, 529, "API Error: 529 Overloaded. This is a server-side issue"),
        (ApiFaultKind.RATE_LIMIT, 429, "API Error: Request rejected (429) · This request would"),
    ],
)
def test_api_errors_are_retried_then_reported(
    tmp_path: Path, agent: str, kind: ApiFaultKind, status: int, text: str
) -> None:

    fault = ApiFaultSpec(kind, times=3, at_request=2, scope="task", seconds=1)
    proc, transcript = _headless(tmp_path, agent, fault)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert (
        result["subtype"],
        result["is_error"],
        result["api_error_status"],
        result["terminal_reason"],
    ) == ("success", True, status, "api_error")
    assert result["result"].startswith(text)
    # 1 request + CLAUDE_CODE_MAX_RETRIES=2 retries, all answered with the fault
    assert [t["status"] for t in transcript if not t.get("side")][1:] == [status] * 3
    attribution = classify(Observation(result=result))
    assert (attribution.reason, attribution.api_status) == (Reason.API_ERROR, status)


def _refusals(transcript: list[dict[str, Any]]) -> list[Any]:
    return [t["status"] for t in transcript if not t.get("side") and t.get("usage_limit")]


@pytest.mark.parametrize("agent", AGENTS)
def test_a_plans_usage_limit_on_a_subscription_is_said_at_once_with_its_reset(
    tmp_path: Path, agent: str
) -> None:
    """Even with the reset under a minute away: no retry, exit 1, the reset in the text."""
    fault = ApiFaultSpec(ApiFaultKind.USAGE_LIMIT, at_request=2, scope="task", seconds=5)
    proc, transcript = _headless(tmp_path, agent, fault, SUBSCRIPTION)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["api_error_status"], result["terminal_reason"]) == (429, "api_error")
    assert result["result"].startswith("You've hit your 5-hour limit · resets "), result
    assert _refusals(transcript) == [429]
    attribution = classify(Observation(result=result, observed_at=time.time()))
    assert attribution.reason is Reason.API_ERROR and attribution.usage_limit
    assert attribution.resets_at is not None


@pytest.mark.parametrize("agent", AGENTS)
def test_the_limiters_refusal_on_an_api_key_is_a_429_without_a_reset(
    tmp_path: Path, agent: str
) -> None:
    """The same 429 with the reset minutes away: given up at once, worded as any 429."""
    fault = ApiFaultSpec(ApiFaultKind.USAGE_LIMIT, at_request=2, scope="task", seconds=300)
    proc, transcript = _headless(tmp_path, agent, fault)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["api_error_status"] == 429
    assert result["result"].startswith(
        "API Error: Request rejected (429) · This request would exceed your account's"
    )
    assert _refusals(transcript) == [429]
    attribution = classify(Observation(result=result, observed_at=time.time()))
    assert attribution.reason is Reason.API_ERROR and not attribution.usage_limit


@pytest.mark.parametrize("agent", AGENTS)
def test_the_limiters_refusal_on_an_api_key_is_waited_out_when_the_reset_is_near(
    tmp_path: Path, agent: str
) -> None:
    """A reset at most a minute away (the retry-after it comes with): waited, then the run
    goes on and succeeds; the limit never reaches the orchestrator."""
    # seconds=0: the reset is the next whole minute, so its retry-after is at most 60 s (the
    # longest the CLI waits; a longer one is given up at once, as in the test above).
    fault = ApiFaultSpec(ApiFaultKind.USAGE_LIMIT, at_request=2, scope="task", seconds=0)
    proc, transcript = _headless(tmp_path, agent, fault)
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["is_error"] is False
    assert _refusals(transcript) == [429]
    after = [t for t in transcript if not t.get("side")]
    refused = next(i for i, t in enumerate(after) if t.get("usage_limit"))
    assert after[refused + 1]["time"] >= after[refused]["usage_limit"]  # waited for the reset


@pytest.mark.parametrize("agent", AGENTS)
def test_dropped_streams_are_retried_then_fall_back_to_one_plain_request(
    tmp_path: Path, agent: str
) -> None:

    fault = ApiFaultSpec(ApiFaultKind.DROP_STREAM, times=3, at_request=2, scope="task")
    proc, transcript = _headless(tmp_path, agent, fault)
    assert proc.returncode == 0 and json.loads(proc.stdout)["is_error"] is False
    mine = [(t["stream"], t["fault"]) for t in transcript if not t.get("side")]
    assert mine[1:5] == [(True, "drop_stream")] * 3 + [(False, None)]
    assert all(stream for stream, _ in mine[5:])


@pytest.mark.parametrize("agent", AGENTS)
def test_an_error_event_mid_stream_falls_back_to_a_plain_request_at_once(
    tmp_path: Path, agent: str
) -> None:
    fault = ApiFaultSpec(ApiFaultKind.STREAM_ERROR, times=1, at_request=2, scope="task")
    proc, transcript = _headless(tmp_path, agent, fault)
    assert proc.returncode == 0
    mine = [(t["stream"], t["fault"]) for t in transcript if not t.get("side")]
    assert mine[1:3] == [(True, "stream_error"), (False, None)]


# ----------------------------------------------------------------------------- screen


@pytest.mark.parametrize(
    ("trigger", "dialog"),
    [
        (Trigger("start"), "Do you want to create notes.md?"),
        (Trigger("tool_call", 1), "Do you want to proceed?"),
    ],
)
@pytest.mark.parametrize("agent", AGENTS)
def test_interactive_permission_dialog_is_seen_on_screen_and_escalated(
    tmp_path: Path, agent: str, trigger: Trigger, dialog: str
) -> None:
    # The real CLI, launched interactive in a fresh sandbox HOME the harness left as a
    # person's after the first run, parks at its dialog; the runtime reads it off the pane.
    task = Task("t-notes", "Write the notes", ("notes.md",))
    fault = FaultSpec("permission_prompt", trigger, task="t-notes")
    out = run_tmux([task], [fault], agent=agent, attempt_timeout=600.0, base_dir=tmp_path)
    exited = [e.payload.to_json() for e in out.events if e.kind is EventKind.ATTEMPT_EXITED]
    assert len(exited) == 1, [e["exit"] for e in exited]
    screen = exited[0]["exit"].get("screen")
    assert screen is not None, exited[0]["output_tail"][-1500:]
    assert (screen["kind"], screen["detail"], screen["cli"]) == ("dialog", dialog, "claude-code")
    assert exited[0]["exit"]["timed_out"] is False
    attributed = [
        e.payload.to_json()["attribution"]
        for e in out.events
        if e.kind is EventKind.FAILURE_ATTRIBUTED
    ]
    assert [a["reason"] for a in attributed] == ["permission"]
    assert attributed[0]["evidence"][0]["kind"] == "screen"
    assert out.ledger.statuses() == {"f1": FaultStatus.EXERCISED}
    assert out.leftovers == []
