"""``orch-recovery drill`` and the commands it is made of (``forge``, ``model-double`` without a
plan), run as an operator runs them; the documented fleet-by-hand example of
docs/production.md run line by line."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.drill import Drill
from pytest_orch_recovery.chaos.drillworld import (
    FAULTS,
    DrillError,
    fleet_file,
    plan_tasks,
    reject_pushes,
    task_file,
)
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.chaos.tiers.tmux import fill_template
from pytest_orch_recovery.cli.drill import _Progress
from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.analyze import initial_prompt, read_brief
from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched, Event, OperatorAction
from pytest_orch_recovery.engine.model import ExitInfo, Task
from pytest_orch_recovery.fleet.config import parse_fleet
from pytest_orch_recovery.fleet.intake import load_tasks
from pytest_orch_recovery.infra.agents import claude_code_missing
from pytest_orch_recovery.infra.git import create_repo_with_origin, run_git
from pytest_orch_recovery.runtime.server import kill_tmux_server, tmux_server_running
from pytest_orch_recovery.store.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
_BOUND = 300.0  # seconds for one drill or one awaited event: a hang, not slowness, beyond it


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=_BOUND, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- the brief


_line = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\x85\u2028\u2029"),
    min_size=1,
    max_size=40,
).filter(str.strip)


@given(
    title=_line,
    files=st.lists(_line, min_size=1, max_size=5),
    tests=st.none() | _line,
    wants_pr=st.booleans(),
    prompt=st.text(max_size=80),
)
def test_the_brief_reads_back_as_the_task_it_describes(
    title: str, files: list[str], tests: str | None, wants_pr: bool, prompt: str
) -> None:
    task = Task("t1", title, tuple(files), tests=tests, wants_pr=wants_pr, prompt=prompt)
    brief = read_brief(initial_prompt(task))
    assert brief is not None
    assert (brief.title, brief.deliverables, brief.tests, brief.wants_pr) == (
        title,
        tuple(files),
        tests,
        wants_pr,
    )


def test_a_prompt_that_is_no_brief_reads_as_none() -> None:
    assert read_brief("Create these files:\n- a.md\n") is None  # no title
    assert read_brief("Fix it\n\nCreate these files:\n\nThen commit.") is None  # no files
    assert read_brief("You are continuing the task: T\n") is None


# --------------------------------------------------------------------------- the drill's pieces


def test_faults_go_one_per_task_fleet_wide_ones_last() -> None:
    tasks = plan_tasks(5, ["no-permission", "sigint", "gh-down"])
    assert [t.fault.name if t.fault else None for t in tasks] == [
        "sigint",
        "no-permission",
        "gh-down",
        None,
        None,
    ]
    assert len({t.task.title for t in tasks}) == 5  # the double routes by title
    assert len({t.agent for t in tasks}) == 5


@pytest.mark.parametrize(
    ("count", "faults", "message"),
    [
        (0, [], "--tasks: must be at least 1, got 0"),
        (1, ["sigint", "kill-agent"], "--tasks: 2 faults need at least 2 tasks"),
        (3, ["sigkill"], "--fault: unknown fault 'sigkill'; known: sigint, kill-agent"),
    ],
)
def test_drill_settings_that_cannot_run_say_why(
    count: int, faults: list[str], message: str
) -> None:
    with pytest.raises(DrillError, match=re.escape(message)):
        plan_tasks(count, faults)


def test_the_drills_fleet_and_task_files_are_valid_as_written(tmp_path: Path) -> None:
    with Sandbox.create(base_dir=tmp_path / "boxes", name="drill") as box:
        text = fleet_file(
            box, agent="sim", env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}, fault_plan=None
        )
        config = parse_fleet(text, source=box.root / "fleet.toml")
        assert config.repository == box.repo and config.tmux_socket == box.tmux_socket
        assert config.env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
        assert config.policy.backoff_base == 0.5
        for t in plan_tasks(len(FAULTS), list(FAULTS)):
            path = tmp_path / f"{t.task.task_id}.toml"
            path.write_text(task_file(t))
            [submission] = load_tasks(path)
            assert (submission.task.task_id, submission.agent) == (t.task.task_id, t.agent)
            assert submission.task.deliverables == t.task.deliverables


def test_the_chaos_templates_are_found_as_package_data() -> None:
    text = fill_template("deliverables_exist", title="T", files=["a.py"])
    assert "def test_deliverables_exist" in text and "['a.py']" in text
    assert "def test_it" in fill_template("drill_helper_test", name="n", cls="N", check="pass")


def test_the_origin_declines_exactly_the_pushes_it_was_told_to(tmp_path: Path) -> None:
    repo, origin = create_repo_with_origin(tmp_path)
    run_git(["switch", "-q", "-c", "agent-1-work"], cwd=repo)
    reject_pushes(origin, "agent-1-work", times=2)
    for expected in (1, 1, 0):
        push = subprocess.run(
            ["git", "push", "origin", "agent-1-work"], cwd=repo, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert push.returncode == expected, push.stderr
        if expected:  # git's own words, which the classifier knows
            assert (
                "! [remote rejected] agent-1-work -> agent-1-work (pre-receive hook declined)"
                in (push.stderr)
            )
    assert run_git(["push", "origin", "main"], cwd=repo) is not None  # other branches pass


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "0"], "argument --tasks: 0 is not between 1 and 50"),
        (["--fault", "reboot"], "--fault: unknown fault 'reboot'; known: sigint"),
        (["--timeout", "nan"], "argument --timeout: 'nan' is not between 1 and 86400"),
        (
            ["--tasks", "1", "--fault", "sigint", "--fault", "gh-down"],
            "--tasks: 2 faults need at least 2 tasks (one each), got 1",
        ),
    ],
)
def test_bad_drill_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = _cli("drill", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"orch-recovery drill: error: {message}"[: len(proc.stderr)]
    ] or (len(proc.stderr.splitlines()) == 1 and message in proc.stderr), proc.stderr
    assert not (tmp_path / "orch-drill-report.html").exists()


def test_a_drill_with_claude_code_missing_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "ORCH_CLAUDE_CODE": str(tmp_path / "no-such-claude")}
    proc = _cli("drill", "--agent", "claude-code", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith("orch-recovery drill: error: --agent claude-code: Claude Code CLI")


# --------------------------------------------------------------------------- what it shows


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class _World:
    """What the progress view reads of a drill: its journal, checkpoints, tmux socket."""

    root: Path
    journal: Path
    tmux_socket: str = "orch-h21-no-such-server"
    sandbox: object = True


def _world(tmp_path: Path) -> _World:
    run = simulate([Task("t1", "Add it", ("a.py",))], [], seed=1)
    with Journal(tmp_path / "journal.jsonl") as journal:
        for event in run.events:
            journal.append(event)
    return _World(tmp_path, tmp_path / "journal.jsonl")


def test_a_terminal_sees_the_status_table_redrawn_under_the_lines(tmp_path: Path) -> None:
    out = _Terminal()
    view = _Progress(out, cast(Drill, _world(tmp_path)))
    view.say("first")
    view.say("second")
    text = out.getvalue()
    assert text.count("TASK ") == 2  # drawn after each line
    first = text[text.index("TASK") : text.index("\x1b[")]
    assert "t1" in first and "succeeded" in first
    # The table is erased (cursor up its rows, clear to the end) before the next line.
    rows = first.count("\n")
    assert text[text.index("\x1b[") :].startswith(f"\x1b[{rows}F\x1b[J")
    assert text.index("second") > text.index("\x1b[")


def test_a_pipe_gets_plain_lines_and_no_table(tmp_path: Path) -> None:
    out = io.StringIO()
    view = _Progress(out, cast(Drill, _world(tmp_path)))
    view.say("building")
    view.event(Event(AttemptLaunched(), 1.0, task_id="t1", attempt=1, agent="a-1"))
    view.event(Event(AttemptExited(exit=ExitInfo(status=0)), 2.0, task_id="t1", attempt=1))
    view.event(Event(AttemptExited(exit=ExitInfo(None, signal=2)), 3.0, task_id="t1", attempt=2))
    view.event(Event(OperatorAction(action="fixed", tasks=("t1",)), 4.0))
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "drill: building",
        "t1                     attempt 1 launched on a-1 (fresh)",
        "t1                     attempt 1 exited (exit 0)",
        "t1                     attempt 2 exited (signal SIGINT)",
        "t1                     operator: fixed",
    ]
    assert "\x1b" not in out.getvalue()


# --------------------------------------------------------------------------- the forge command


def test_the_forge_command_prints_the_path_line_for_a_working_gh(tmp_path: Path) -> None:
    repo, origin = create_repo_with_origin(tmp_path)
    made = _cli("forge", "--root", "forge", "--origin", str(origin), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f'export PATH={tmp_path / "forge" / "bin"}:"$PATH"\n'
    path = subprocess.run(
        ["bash", "-c", f"{made.stdout.strip()} && command -v gh && gh auth status"], cwd=repo,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert path.stdout.splitlines()[0] == str(tmp_path / "forge" / "bin" / "gh"), path.stderr
    assert path.returncode == 0, path.stderr
    down = _cli("forge", "--root", "forge", "--inject", "unreachable", cwd=tmp_path)
    assert down.stdout == "gh pr create: the next 1 call(s) fail with unreachable\n"
    run_git(["switch", "-q", "-c", "feature"], cwd=repo)
    run_git(["commit", "-q", "--allow-empty", "-m", "x"], cwd=repo)
    run_git(["push", "-q", "origin", "feature"], cwd=repo)
    create = subprocess.run(
        [str(tmp_path / "forge" / "bin" / "gh"), "pr", "create", "--title", "x", "--body", "y"],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert create.returncode == 1 and "error connecting to api.github.com" in create.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--origin", "nowhere"], "--origin: nowhere is not a bare git repository"),
        ([], "forge.json: no forge here (forge.json missing)"),
        (["--inject", "meteor"], "argument --inject: invalid choice: 'meteor'"),
        (["--origin", "origin.git", "--bin", "a:b"], "a:b: a PATH entry cannot hold ':'"),
    ],
)
def test_forge_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    run_git(["init", "-q", "--bare", "origin.git"], cwd=tmp_path)
    proc = _cli("forge", "--root", "forge", *args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- docs/production.md


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Background:
    """A documented `cmd &` line: started through bash, its stderr lines on a queue."""

    def __init__(self, line: str, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=_BOUND)
        self._pump_thread.join(timeout=_BOUND)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def wait_for(self, *words: str) -> str:
        while True:
            line = self.lines.get(timeout=_BOUND)
            if line is None:
                pytest.fail(f"{self.proc.args!r} exited before {words}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if all(w in line for w in words):
                return line


@pytest.mark.slow
def test_the_documented_fleet_by_hand_runs_as_written(tmp_path: Path) -> None:
    """docs/production.md's sim fleet, line by line through bash; only the port, the tmux
    socket and the program's name (``python -m`` of this checkout) are substituted."""
    section = _section((ROOT / "docs" / "production.md").read_text(), "### The same world by hand")
    port, socket_name = str(_free_port()), f"orch-doc-{os.getpid()}"

    def fill(text: str) -> str:
        text = text.replace("8765", port).replace("orch-fleet-by-hand", socket_name)
        return re.sub(r"\borch-recovery ", f"{sys.executable} -m pytest_orch_recovery ", text)

    setup, run = (fill(b) for b in _blocks(section, "sh"))
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "GIT_AUTHOR_NAME": "Doc Reader",
        "GIT_AUTHOR_EMAIL": "reader@example.invalid",
        "GIT_COMMITTER_NAME": "Doc Reader",
        "GIT_COMMITTER_EMAIL": "reader@example.invalid",
    }
    env.pop("TMUX", None)
    (tmp_path / "home").mkdir()
    cwd, jobs = tmp_path, []
    try:
        for line in [ln for ln in setup.splitlines() if ln.strip()]:
            if line.startswith("mkdir "):
                cwd = tmp_path / shlex.split(line)[1]
                cwd.mkdir()
            elif line.startswith("eval "):
                env["PATH"] = subprocess.run(
                    ["bash", "-c", f'{line.split("#")[0]} && printf %s "$PATH"'], cwd=cwd, env=env,
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
            elif line.rstrip().endswith("&"):
                jobs.append(_Background(line.rstrip().rstrip("&"), cwd, env))
                jobs[-1].wait_for(f"http://127.0.0.1:{port}")
            else:
                subprocess.run(["bash", "-c", line], cwd=cwd, env=env, check=True)
        for block in _blocks(section, "toml"):
            name = block.splitlines()[0].lstrip("# ").strip()
            (cwd / name).write_text(fill(block))
        for line in [ln.split("  #")[0].strip() for ln in run.splitlines() if ln.strip()]:
            if line.endswith("&"):
                jobs.append(_Background(line.rstrip("&"), cwd, env))
                jobs[-1].wait_for("supervising")
            elif "--watch" in line:  # the person's Ctrl-C: once the task has succeeded
                jobs[-1].wait_for("task_succeeded", "task-1")
                shown = subprocess.run(
                    ["bash", "-c", line.replace(" --watch 2", "")], cwd=cwd, env=env,
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                assert re.search(r"task-1\s+\S+\s+succeeded", shown), shown
            elif line.startswith("kill %2 %1"):
                for job in reversed(jobs):
                    job.proc.send_signal(signal.SIGTERM)
                    assert job.proc.wait(timeout=_BOUND) == 0
            else:
                out = subprocess.run(
                    ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                    check=True,
                ).stdout  # fmt: skip
                if "gh pr list" in line:
                    assert "Write the changelog" in out and "OPEN" in out, out
    finally:
        for job in jobs:
            job.close()
        kill_tmux_server(socket_name)
    assert not tmux_server_running(socket_name)


# --------------------------------------------------------------------------- the drill, end to end


def _journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _processes_of(marker: str) -> list[int]:
    """Processes whose environment carries the drill's sandbox marker (``ORCH_SANDBOX_ID``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"ORCH_SANDBOX_ID={marker}".encode() in environ:
            found.append(int(proc.name))
    return found


@pytest.fixture
def drill_tmp(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The drill's environment: its worlds under ``tmp_path`` (TMPDIR), so what is left is
    what this test's drill left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("TMUX", None)
    yield env


def _check_drill(
    proc: subprocess.CompletedProcess[str], journal: Path, drill_tmp: dict[str, str]
) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = _journal(journal)
    launched = Counter(
        (e["task_id"], e["attempt"]) for e in events if e["kind"] == "attempt_launched"
    )
    assert launched and max(launched.values()) == 1, "an attempt was launched twice"
    assert "PASS:" in proc.stdout
    # Nothing left behind: no world, no tmux server, no process.
    drills = Path(drill_tmp["TMPDIR"]) / "orch-drills"
    assert not drills.exists() or not any(p.is_dir() for p in drills.iterdir())
    sockets = {e["data"]["tmux"]["socket"] for e in events if e["kind"] == "attempt_launched"}
    assert sockets and not any(tmux_server_running(s) for s in sockets)
    record = next(e["data"]["launch_record"] for e in events if e["kind"] == "attempt_launched")
    world = Path(record).parents[2].name  # <world>/fleet/results/<record>
    assert not _processes_of(world)
    return events


def _first_reason(events: list[dict[str, Any]], task_id: str) -> str | None:
    return next(
        (
            e["data"]["attribution"]["reason"]
            for e in events
            if e["kind"] == "failure_attributed" and e["task_id"] == task_id
        ),
        None,
    )


@pytest.mark.slow
def test_the_drill_recovers_each_fault_and_leaves_nothing_behind(
    tmp_path: Path, drill_tmp: dict[str, str]
) -> None:
    journal, report = tmp_path / "journal.jsonl", tmp_path / "report.html"
    faults = ["sigint", "kill-supervisor", "push-rejected", "no-permission"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", "drill",
         *(w for f in faults for w in ("--fault", f)),
         "--save-journal", str(journal), "--report", str(report)],
        cwd=tmp_path, env=drill_tmp, capture_output=True, text=True, timeout=_BOUND * 2,
        check=False,
    )  # fmt: skip
    events = _check_drill(proc, journal, drill_tmp)
    tasks = {e["task_id"]: e for e in events if e["kind"] == "task_submitted"}
    assert sorted(tasks) == [
        "t1-sigint",
        "t2-kill-supervisor",
        "t3-push-rejected",
        "t4-no-permission",
    ]
    # Every injected fault attributed to its cause, and recovered.
    assert _first_reason(events, "t1-sigint") == "sigint"
    assert _first_reason(events, "t3-push-rejected") == "git_error"
    assert _first_reason(events, "t4-no-permission") == "permission"
    assert _first_reason(events, "t2-kill-supervisor") is None  # re-adopted, not failed
    succeeded = {e["task_id"] for e in events if e["kind"] == "task_succeeded"}
    assert succeeded == set(tasks)
    released = [e for e in events if e["kind"] == "operator_action"]
    assert [e["data"]["tasks"] for e in released] == [["t4-no-permission"]]
    assert [
        e["attempt"]
        for e in events
        if e["kind"] == "attempt_launched" and e["task_id"] == "t2-kill-supervisor"
    ] == [1]
    for name in faults:
        assert re.search(rf"ok\s+{name}\s", proc.stdout), proc.stdout
    assert "kill -9 while agent-2 works" in proc.stdout
    assert "## Recovery Metrics Dashboard" in proc.stdout  # the report, in Markdown
    assert f"HTML report: {report}" in proc.stdout and report.read_text().startswith("<!")


@pytest.mark.slow
def test_the_drill_blames_the_other_faults_on_their_causes(
    tmp_path: Path, drill_tmp: dict[str, str]
) -> None:
    journal = tmp_path / "journal.jsonl"
    expected = {
        "t1-kill-agent": "killed",
        "t2-partial-files": "incomplete",
        "t3-api-error": "api_error",
        "t4-gh-down": "github_error",
    }
    faults = [task.split("-", 1)[1] for task in expected]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", "drill",
         *(w for f in faults for w in ("--fault", f)), "--tasks", "5",
         "--save-journal", str(journal), "--report", str(tmp_path / "r.html")],
        cwd=tmp_path, env=drill_tmp, capture_output=True, text=True, timeout=_BOUND * 2,
        check=False,
    )  # fmt: skip
    events = _check_drill(proc, journal, drill_tmp)
    for task_id, reason in expected.items():
        assert _first_reason(events, task_id) == reason, task_id
    assert _first_reason(events, "t5") is None  # the task without a fault: first try
    assert {e["task_id"] for e in events if e["kind"] == "task_succeeded"} == {*expected, "t5"}


@pytest.mark.slow
def test_a_kept_drill_world_stays_for_a_person(tmp_path: Path, drill_tmp: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", "drill", "--tasks", "1", "--fault",
         "partial-files", "--keep", "--report", str(tmp_path / "r.html")],
        cwd=tmp_path, env=drill_tmp, capture_output=True, text=True, timeout=_BOUND, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [world] = (Path(drill_tmp["TMPDIR"]) / "orch-drills").iterdir()
    socket_name = json.loads((world / "ledger.json").read_text())["tmux_socket"]
    try:
        assert f"cd {world}" in proc.stdout
        assert f"rm -rf {world}   # when done" in proc.stdout
        assert (world / "fleet" / "journal.jsonl").exists()
        # Another drill's start reaps stale worlds, never a kept one.
        from pytest_orch_recovery.doubles.sandbox import reap_stale

        assert reap_stale(world.parent) == [] and world.exists()
        status = _cli("status", "--config", str(world / "fleet.toml"), cwd=tmp_path)
        assert status.returncode == 0 and "succeeded" in status.stdout, status.stderr
    finally:
        kill_tmux_server(socket_name)


@pytest.mark.slow
@pytest.mark.claude
@pytest.mark.skipif(claude_code_missing() is not None, reason=str(claude_code_missing()))
def test_the_drill_with_the_real_claude_code(tmp_path: Path, drill_tmp: dict[str, str]) -> None:
    journal = tmp_path / "journal.jsonl"
    faults = ["sigint", "kill-supervisor", "push-rejected", "no-permission"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", "drill", "--agent", "claude-code",
         *(w for f in faults for w in ("--fault", f)), "--save-journal", str(journal),
         "--report", str(tmp_path / "r.html")],
        cwd=tmp_path, env=drill_tmp, capture_output=True, text=True, timeout=_BOUND * 3,
        check=False,
    )  # fmt: skip
    events = _check_drill(proc, journal, drill_tmp)
    assert _first_reason(events, "t1-sigint") == "sigint"
    assert _first_reason(events, "t3-push-rejected") == "git_error"
    assert _first_reason(events, "t4-no-permission") == "permission"
