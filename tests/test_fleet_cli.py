"""``orch-recovery status``, ``failures`` and ``partial`` on journals, ``classify``'s worktree
flags, and ``report --results`` on the seed orchestrator's results files."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from events import JournalBuilder, seed_incident, sigint_resumed
from seedfleet import SeedFleet, completed_record, failed_record
from waiting import wait_until

from pytest_orch_recovery.cli.main import main
from pytest_orch_recovery.engine.events import AttemptLaunched, EventKind, TmuxTarget
from pytest_orch_recovery.engine.model import Checkpoint, ExitInfo, Reason
from pytest_orch_recovery.infra.checkpoint import save_checkpoint
from pytest_orch_recovery.runtime.server import kill_tmux_server


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    return seed_incident().write_jsonl(tmp_path / "journal.jsonl")


# --------------------------------------------------------------------------- status


def test_status_table_and_json(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", "--journal", str(incident))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:7] == [
        "TASK",
        "AGENT",
        "PHASE",
        "ATTEMPT",
        "ELAPSED",
        "REASON",
        "NEXT",
    ]
    fake3 = next(line for line in lines if line.startswith("fake3 "))
    assert "task-agent-5030" in fake3 and "succeeded" in fake3 and "2/4" in fake3
    assert "sigint (0.90)" in fake3 and "pane_dead_signal=2" in fake3
    code, out, _ = _run(
        capsys, "status", "--journal", str(incident), "--format", "json", "--budget", "6"
    )
    data = json.loads(out)
    assert data["schema_version"] == 1 and data["kind"] == "status" and data["live"] is False
    rows = {t["task_id"]: t for t in data["tasks"]}
    assert rows["fake3"]["attempt"] == 2 and rows["fake3"]["budget"] == 6
    assert rows["perm-0"]["reason"] == "permission"


def test_status_on_an_empty_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "j.jsonl"
    empty.write_text("")
    assert _run(capsys, "status", "--journal", str(empty))[1] == "no tasks in the journal\n"


@pytest.mark.parametrize("command", ["status", "failures", "partial"])
def test_a_bad_journal_line_is_one_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    journal = seed_incident().write_jsonl(tmp_path / "j.jsonl")
    lines = journal.read_text().splitlines(keepends=True)
    lines[2] = '{"seq": 3, "kind": "nope", "time": 1}\n'
    journal.write_text("".join(lines))
    code, out, err = _run(capsys, command, "--journal", str(journal))
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert f"{journal}:3:" in err
    code, _, err = _run(capsys, command, "--journal", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl: no such journal file" in err


def test_usage_errors_exit_2(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["status", "--journal", str(incident), "--watch", "0"],
        ["status", "--journal", str(incident), "--budget", "0"],
        ["status", "--journal", str(incident), "--format", "xml"],
        ["status"],
    ):
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        assert err.strip().splitlines()[-1].startswith("orch-recovery status: error:")


@pytest.fixture
def tmux_server() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    socket = f"orch-monitor-test-{uuid.uuid4().hex[:8]}"
    yield socket
    kill_tmux_server(socket)  # our own server only; its socket file goes too


def test_status_live_asks_tmux_and_reads_checkpoint_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tmux_server: str
) -> None:
    j = JournalBuilder(start=time.time() - 100)
    j.task("t1", "agent-live").launch()
    launched = j.events[-1]
    assert isinstance(launched.payload, AttemptLaunched)
    j.events[-1] = dataclasses.replace(
        launched,
        payload=dataclasses.replace(launched.payload, tmux=TmuxTarget(tmux_server, "agent-live")),
    )
    j.task("t2", "agent-unrecorded").launch()
    journal = j.write_jsonl(tmp_path / "j.jsonl")
    subprocess.run(
        ["tmux", "-L", tmux_server, "new-session", "-d", "-s", "agent-live", "sleep 600"],
        check=True,
    )
    checkpoints = tmp_path / "cp"
    path = save_checkpoint(checkpoints, Checkpoint("agent-live", "t1", next_actions=("push",)))
    stamp = time.time() - 30
    os.utime(path, (stamp, stamp))

    def live() -> dict[str, dict[str, object]]:
        code, out, _ = _run(
            capsys,
            "status",
            "--journal",
            str(journal),
            "--live",
            "--checkpoint-dir",
            str(checkpoints),
            "--format",
            "json",
        )
        assert code == 0
        return {t["task_id"]: t["live"] for t in json.loads(out)["tasks"]}

    rows = live()
    assert rows["t1"]["session"] == "alive" and rows["t1"]["checkpoint_at"] == stamp
    age = rows["t1"]["checkpoint_age"]
    assert isinstance(age, float) and age >= 30
    assert rows["t2"] == {"session": "unknown", "checkpoint_age": None, "checkpoint_at": None}
    code, out, _ = _run(
        capsys,
        "status",
        "--journal",
        str(journal),
        "--live",
        "--format",
        "json",
        "--tmux-socket",
        tmux_server,
    )
    unrecorded = json.loads(out)["tasks"][1]["live"]["session"]
    assert unrecorded == "dead"  # asked on the given socket: no session of that agent
    subprocess.run(
        [
            "tmux",
            "-L",
            tmux_server,
            "set-option",
            "-w",
            "-t",
            "=agent-live:",
            "remain-on-exit",
            "on",
        ],
        check=True,
    )
    subprocess.run(
        ["tmux", "-L", tmux_server, "respawn-pane", "-k", "-t", "=agent-live:", "true"], check=True
    )
    wait_until(lambda: live()["t1"]["session"] == "exited", "pane reporting its process gone")
    subprocess.run(["tmux", "-L", tmux_server, "kill-session", "-t", "=agent-live"], check=True)
    assert live()["t1"]["session"] == "dead"
    code, out, _ = _run(
        capsys, "status", "--journal", str(journal), "--live", "--checkpoint-dir", str(checkpoints)
    )
    assert code == 0
    assert "SESSION" in out.splitlines()[0] and " ago" in out


def test_views_take_their_defaults_from_a_fleet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tmux_server: str
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)  # the fleet file asks only that it is a repository
    state = tmp_path / "state"
    j = JournalBuilder(start=time.time() - 50)
    j.task("t1", "task-agent-1").launch()
    state.mkdir()
    j.write_jsonl(state / "journal.jsonl")
    save_checkpoint(state / "cp", Checkpoint("task-agent-1", "t1", next_actions=("push",)))
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'repository = "{repo}"\nstate_dir = "{state}"\n'
        f'checkpoint_dir = "{state / "cp"}"\ntmux_socket = "{tmux_server}"\n'
        'agent = "sim"\nmax_attempts = 3\n'
    )
    subprocess.run(
        ["tmux", "-L", tmux_server, "new-session", "-d", "-s", "task-agent-1", "sleep 600"],
        check=True,
    )
    code, out, err = _run(capsys, "status", "--config", str(fleet), "--live", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)["tasks"]
    assert row["budget"] == 3 and row["live"]["session"] == "alive"
    assert row["live"]["checkpoint_at"] is not None
    data = json.loads(_run(capsys, "partial", "--config", str(fleet), "--format", "json")[1])
    assert data["tasks"][0]["next_actions"] == ["push"]
    fleet.write_text(f'repository = "{repo}"\nagent = "sim"\nmax_attempts = "many"\n')
    code, _, err = _run(capsys, "failures", "--config", str(fleet))
    assert code == 2 and f"{fleet}:3:" in err and "max_attempts" in err
    code, _, err = _run(capsys, "failures")
    assert code == 2 and "--journal or --config" in err


def test_status_watch_redraws_until_ctrl_c(incident: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            "status",
            "--journal",
            str(incident),
            "--watch",
            "0.05",
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        seen = 0
        while seen < 2:  # two whole documents: it redrew
            line = proc.stdout.readline()
            assert line, "status --watch ended on its own"
            seen += line == "}\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# --------------------------------------------------------------------------- failures, partial


def test_failures_table_and_json(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "failures", "--journal", str(incident), "--evidence", "2")
    assert code == 0
    body = out.splitlines()[1:]
    assert sum("permission" in line and "escalate" in line for line in body) == 3
    sigint = next(line for line in body if "sigint" in line)
    assert "130 (SIGINT)" in sigint and "resume" in sigint
    assert any(line.strip() == "weak corroborating signal" for line in body)  # 2nd evidence
    data = json.loads(
        _run(
            capsys,
            "failures",
            "--journal",
            str(incident),
            "--format",
            "json",
            "--agent",
            "task-agent-5030",
        )[1]
    )
    assert data["schema_version"] == 1
    assert [f["reason"] for f in data["failures"]] == ["sigint"]
    assert data["failures"][0]["exit"]["signal"] == "SIGINT"


def test_partial_with_checkpoint_next_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    j = JournalBuilder()
    sigint_resumed(j)
    t = j.task("t2", "task-agent-7", deliverables=("a.py", "b.py")).launch()
    t.fail_with(Reason.TIMEOUT)
    journal = j.write_jsonl(tmp_path / "j.jsonl")
    cps = tmp_path / "cp"
    save_checkpoint(cps, Checkpoint("task-agent-7", "t2", next_actions=("write b.py",)))
    (cps / "task-agent-5030.json").write_text("{torn")
    code, out, _ = _run(capsys, "partial", "--journal", str(journal), "--checkpoint-dir", str(cps))
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("t2 "))
    assert "0/2 missing a.py, b.py" in row and "write b.py" in row
    fake3 = next(line for line in out.splitlines() if line.startswith("fake3 "))
    assert "#886" in fake3 and "checkpoint unusable" in fake3
    data = json.loads(
        _run(
            capsys,
            "partial",
            "--journal",
            str(journal),
            "--format",
            "json",
            "--agent",
            "task-agent-7",
            "--checkpoint-dir",
            str(cps),
        )[1]
    )
    (task,) = data["tasks"]
    assert task["next_actions"] == ["write b.py"]
    assert task["deliverables_missing"] == ["a.py", "b.py"]
    assert task["missing_work"][:2] == ["write a.py", "write b.py"]


# --------------------------------------------------------------------------- classify flags


def test_classify_pushed_and_pr_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    base = ["classify", "--exit-code", "0", "--workspace", str(tmp_path), "--deliverable", "a.py"]
    done = json.loads(_run(capsys, *base, "--pushed", "--pr-open")[1])
    assert done["confidence"] == 0.0  # looks successful
    out = json.loads(_run(capsys, *base, "--not-pushed")[1])
    assert out["reason"] == "incomplete" and "git push" in out["evidence"][0]["detail"]
    out = json.loads(_run(capsys, *base, "--pushed", "--no-pr")[1])
    assert out["reason"] == "incomplete" and "open the PR" in out["evidence"][0]["detail"]
    code, _, err = _run(capsys, *base, "--pushed", "--not-pushed")
    assert code == 2 and "not allowed with argument" in err


def test_classify_result_refuses_a_device_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "classify", "--result", "/dev/zero")
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert "/dev/zero" in last and "not a regular file" in last


def test_classify_seed_results_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "sigint": failed_record("a", 130),
        "api_error": failed_record("a", 1, rate_limited=True),
    }
    for reason, record in cases.items():
        path = tmp_path / f"a_results_1-{reason}.json"
        path.write_text(json.dumps(record) + "\n")
        out = json.loads(_run(capsys, "classify", "--result", str(path))[1])
        assert out["reason"] == reason


def test_classify_an_interrupted_stream_json_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "stream.jsonl"
    stream.write_text(
        '{"type":"system","subtype":"init","session_id":"s-1"}\n'
        '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text",'
        '"text":"Writing fake3.md"}]}}\n'
        '{"type":"assistant","message":{"role":"assi'  # killed mid-line: no result event
    )
    code, out, err = _run(capsys, "classify", "--result", str(stream), "--exit-code", "130")
    assert code == 0, err
    assert json.loads(out)["reason"] == "sigint"
    code, out, err = _run(capsys, "classify", "--result", str(stream))
    assert code == 0, err
    assert json.loads(out)["reason"] in {r.value for r in Reason}


# --------------------------------------------------------------------------- report --results


def test_report_reads_the_seed_results_files(
    tmp_path: Path, incident: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = SeedFleet(tmp_path / "orch")
    first, second, running = fleet.suffix(0), fleet.suffix(100), fleet.suffix(200)
    fleet.launch("task-agent-1", first)
    fleet.finish(
        "task-agent-1", first, failed_record("task-agent-1", 1, rate_limited=True), mtime_s=50
    )
    fleet.launch("task-agent-1", second)
    fleet.finish("task-agent-1", second, completed_record("task-agent-1"), mtime_s=150)
    fleet.launch("task-agent-2", running)  # its results symlink dangles
    code, out, err = _run(
        capsys,
        "report",
        "--journal",
        str(incident),
        "--results",
        str(fleet.results),
        "--format",
        "json",
    )
    assert code == 0, err
    attempts = json.loads(out)["attempts"]
    assert [
        (a["agent"], a["attempt"], a["status"], a["reason"], a["exit_code"]) for a in attempts
    ] == [("task-agent-1", 1, "failed", "api_error", 1), ("task-agent-1", 2, "success", None, 0)]
    assert attempts[0]["duration"] == 50.0


def test_journal_events_written_by_ingest_read_back(tmp_path: Path) -> None:
    # The views read what ingest writes: an exit followed by an attribution without decision.
    j = JournalBuilder()
    j.task("t", "a").launch().exit(ExitInfo(1)).attribute(Reason.API_ERROR)
    from pytest_orch_recovery.report.fleetview import FleetView

    (failure,) = FleetView(j.events).failures()
    assert failure.strategy is None and failure.exit == ExitInfo(1)
    assert [e.kind for e in j.events][-1] is EventKind.FAILURE_ATTRIBUTED
