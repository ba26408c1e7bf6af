"""Screen-aware detection: dialogs read from pane text, and the tmux runtime's watcher that
ends an attempt on a dialog or a stall (and leaves a long but talking one alone)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.doubles.simagent.interactive import dialog
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.model import Reason, Task
from pytest_orch_recovery.engine.ports import AttemptExit, LaunchSpec
from pytest_orch_recovery.runtime.screen import DETECTORS, ScreenWatch, find_dialog
from pytest_orch_recovery.runtime.tmux import TmuxRuntime

# Real samples, one per detector family (sources in runtime/screen.py's docstring).
SAMPLES = {
    "claude-code": dialog("Write", {"file_path": "/w/fake3.md", "content": "# x\n"}, Path("/w")),
    "codex": (
        "\u2022 Running git commit -m wip\n\n"
        "  Would you like to run the following command?\n\n"
        "  Reason: commit the work\n\n  $ git commit -m wip\n\n"
        "\u203a 1. Yes, proceed (y)\n"
        "  2. Yes, and don't ask again for commands that start with `git commit` (p)\n"
        "  3. No, and tell Codex what to do differently (esc)\n\n"
        "  Press enter to confirm or esc to cancel\n"
    ),
    "gemini": (
        "\u256d\u2500\u2500\u2500\u2500\n"
        "\u2502 ?  Shell git commit -m wip\n\u2502\n"
        "\u2502 Allow execution of: 'git'?\n\u2502\n"
        "\u2502 \u25cf 1. Yes, allow once\n\u2502   2. Yes, allow always ...\n"
        "\u2502   3. No, suggest changes (esc)\n\u2570\u2500\u2500\u2500\u2500\n"
    ),
    "aider": ("src/utils/mongodbUtility.ts\nCreate new file? (Y)es/(N)o [Yes]: \n"),
}


@pytest.mark.parametrize("cli", sorted(SAMPLES))
def test_each_clis_dialog_is_found_with_its_question_line(cli: str) -> None:
    found = find_dialog(SAMPLES[cli])
    assert found is not None and found.cli == cli, SAMPLES[cli]
    assert "?" in found.line


def test_gemini_box_drawing_does_not_hide_the_question() -> None:
    found = find_dialog(SAMPLES["gemini"])
    assert found is not None and found.line.endswith("Allow execution of: 'git'?")


@pytest.mark.parametrize(
    "text",
    [
        "The model wrote: Do you want to create fake3.md? I will.\n",  # prose, no choice below
        " Do you want to create fake3.md?\n and then it went on working\n",
        "Create new file? (Y)es/(N)o [Yes]: y\nApplied edit to a.py\nCommit 93e32a1 feat\n",
        "",
    ],
)
def test_prose_and_answered_dialogs_are_not_dialogs(text: str) -> None:
    assert find_dialog(text) is None


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400))
def test_find_dialog_never_raises_and_names_a_known_cli(text: str) -> None:
    found = find_dialog(text)
    assert found is None or found.cli in {d.cli for d in DETECTORS}


def test_a_dialog_scrolled_far_up_no_longer_waits() -> None:
    screen = SAMPLES["claude-code"] + "".join(f"line {n}\n" for n in range(30))
    assert find_dialog(screen) is None


@given(
    st.lists(st.tuples(st.floats(0.01, 3.0), st.booleans(), st.booleans()), max_size=60),
    st.floats(0.5, 10.0),
)
def test_a_stall_is_only_declared_after_a_full_silent_window(
    steps: list[tuple[float, bool, bool]], window: float
) -> None:
    watch = ScreenWatch(started=0.0, stall_window=window)
    now, size, ticks, last_activity = 0.0, 0, 0, 0.0
    for gap, output, cpu in steps:
        now += gap
        size += output
        ticks += cpu
        finding = watch.observe(now, output_size=size, cpu_ticks=ticks, screen=lambda: "")
        if output or cpu or now == gap:  # the first look sets the baseline
            last_activity = now
        if finding is not None:
            assert finding.kind == "stall"
            assert finding.silent_for is not None and finding.silent_for > window
            assert now - last_activity > window
            return
        assert now - last_activity <= window


# --------------------------------------------------------------------------- real tmux

_BOUND = 120.0
_TASK = Task("t-screen", "Watch the screen", ("never.md",), wants_pr=False)


def _spec(agent: str, argv: Sequence[str]) -> LaunchSpec:
    return LaunchSpec(
        task=_TASK,
        agent=agent,
        attempt=1,
        agent_type="command",
        strategy=None,
        prompt=json.dumps(list(argv)),
        work=(),
        key=f"{agent}#1",
    )


def _argv(spec: LaunchSpec) -> list[str]:
    argv: list[str] = json.loads(spec.prompt)
    return argv


def _run(
    box: Sandbox, argv: list[str], *, stall_window: float | None, timeout: float = _BOUND
) -> tuple[AttemptExit, float]:
    with TmuxRuntime(box, _argv, kill_grace=1.0, stall_window=stall_window) as rt:
        started = rt.clock.now()
        rt.launch(_spec("agent-1", argv))
        exited = rt.next_exit(started + timeout)
        assert exited is not None, "no exit before the bound"
        return exited, started


_DIALOG_AFTER_WORK = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from pytest_orch_recovery.doubles.simagent.interactive import dialog\n"
    "print('working', flush=True)\n"
    "sys.stdout.write(dialog('Write', {'file_path': 'fake3.md', 'content': 'x'}, Path('.')))\n"
    "sys.stdout.flush()\n"
    "time.sleep(600)\n"
)


@pytest.mark.slow
def test_a_dialog_on_screen_ends_the_attempt_as_permission(box: Sandbox) -> None:
    exited, _ = _run(box, [sys.executable, "-c", _DIALOG_AFTER_WORK], stall_window=None)
    screen = exited.exit.screen
    assert screen is not None and screen.kind == "dialog"
    assert screen.detail == "Do you want to create fake3.md?"
    assert not exited.exit.timed_out
    attribution = classify(
        Observation(
            exit=exited.exit,
            logs=(LogText("pane", exited.output),),
            deliverables_missing=("never.md",),
        )
    )
    assert attribution.reason is Reason.PERMISSION
    assert attribution.evidence[0].kind == "screen"


@pytest.mark.slow
def test_silence_past_the_stall_window_is_a_stall(box: Sandbox) -> None:
    script = "import time; print('started', flush=True); time.sleep(600)"
    exited, _ = _run(box, [sys.executable, "-c", script], stall_window=1.0)
    screen = exited.exit.screen
    assert screen is not None and screen.kind == "stall"
    assert screen.silent_for is not None and screen.silent_for > 1.0
    attribution = classify(Observation(exit=exited.exit, deliverables_missing=("never.md",)))
    assert attribution.reason is Reason.TIMEOUT
    assert attribution.evidence[0].detail.startswith("stalled: no output and no CPU for ")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["prints", "computes"])
def test_a_long_but_talking_call_is_not_a_stall(box: Sandbox, how: str) -> None:
    # Four stall windows long; it either prints every 0.2 s or burns CPU without a word
    # (a -p mode CLI prints nothing while its tool runs), then ends on its own with 0.
    if how == "prints":
        body = "for n in range(20): print('step', n, flush=True); time.sleep(0.2)"
    else:
        body = "end = time.monotonic() + 4.0\nwhile time.monotonic() < end: sum(range(1000))"
    script = f"import time\n{body}\n"
    exited, _ = _run(box, [sys.executable, "-c", script], stall_window=1.0)
    assert exited.exit.screen is None
    assert exited.exit.status == 0


# --------------------------------------------------------------------------- first run


def test_first_run_state_is_left_as_a_person_leaves_it(tmp_path: Path) -> None:
    from pytest_orch_recovery.infra.agents import accept_claude_code_first_run

    config = tmp_path / ".claude"
    config.mkdir()
    (config / ".claude.json").write_text(
        json.dumps({"userID": "u1", "projects": {"/elsewhere": {"hasTrustDialogAccepted": False}}})
    )
    workspace = tmp_path / "worktrees" / "task-agent-1"
    workspace.mkdir(parents=True)
    key = "sk-ant-api03-double-not-a-real-key"
    for _ in range(2):  # idempotent: a second attempt in the same worktree changes nothing
        path = accept_claude_code_first_run(config, workspace, key)
    state = json.loads(path.read_text())
    assert state["userID"] == "u1" and state["hasCompletedOnboarding"] is True
    assert state["customApiKeyResponses"]["approved"] == [key[-20:]]
    assert state["projects"][str(workspace)]["hasTrustDialogAccepted"] is True
    assert state["projects"]["/elsewhere"] == {"hasTrustDialogAccepted": False}
