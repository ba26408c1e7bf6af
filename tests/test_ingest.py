"""``orch-recovery ingest`` on a tree in the seed orchestrator's exact format (tests/seedfleet.py),
with real git worktrees: every failed attempt is attributed, and ingesting twice changes
nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gitrepo import GitSandbox, isolate_git
from seedfleet import (
    SeedFleet,
    assistant_text,
    completed_record,
    failed_record,
    init_event,
    result_event,
    stream,
)

from pytest_orch_recovery.cli.main import main
from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim
from pytest_orch_recovery.engine.events import Event, EventKind
from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.infra.workspace import PullRequestsInMemory
from pytest_orch_recovery.ingest.adoption import AdoptionSource, adopt
from pytest_orch_recovery.ingest.results import ResultsError, find_runs, parse_log, read_bounded
from pytest_orch_recovery.report.metrics import compute
from pytest_orch_recovery.store.journal import Journal, replay

RATE = "task-agent-1111"  # rate limited
SIGINT = "task-agent-2222"  # interrupted: trap, no results file, a cut-off stream line
TIMEOUT = "task-agent-3333"  # killed by the wrapper's timeout (reported as exit 1)
DONE = "task-agent-4444"  # completed, pushed
PERM = "task-agent-5555"  # exit 0 with permission denials, nothing done; then completed
RUNNING = "task-agent-6666"  # still running


def _fleet(root: Path) -> tuple[SeedFleet, GitSandbox]:
    sandbox = GitSandbox.create(root / "git")
    fleet = SeedFleet(root / "orch")
    for agent in (RATE, SIGINT, TIMEOUT, DONE, PERM, RUNNING):
        sandbox.worktree(agent, f"{agent}-work")

    s = fleet.suffix(0)
    fleet.launch(RATE, s)
    fleet.claude_try(
        RATE,
        s,
        1,
        stream(
            init_event(),
            result_event(
                subtype="success",
                is_error=True,
                result='API Error: 429 {"type":"error",'
                '"error":{"type":"rate_limit_error","message":"This request would exceed '
                "your account's rate limit. Please try again later.\"}}",
            ),
        ),
    )
    fleet.claude_failed(RATE, s, 1, rate_limited=True)
    fleet.finish(RATE, s, failed_record(RATE, 1, rate_limited=True), mtime_s=40)

    s = fleet.suffix(5)
    fleet.launch(SIGINT, s)
    sandbox.write(sandbox.worktrees[SIGINT], "half.md", "# half\n")
    fleet.claude_try(
        SIGINT,
        s,
        1,
        stream(init_event(), assistant_text("Writing half.md")),
        unfinished='{"type":"assistant","message":{"role":"assi',
    )
    fleet.interrupted(SIGINT, s)

    s = fleet.suffix(10)
    fleet.launch(TIMEOUT, s)
    fleet.claude_try(TIMEOUT, s, 1, stream(init_event(), assistant_text("Running the suite")))
    fleet.claude_failed(TIMEOUT, s, 1, timed_out=True)
    fleet.finish(TIMEOUT, s, failed_record(TIMEOUT, 1), mtime_s=950)

    s = fleet.suffix(15)
    fleet.launch(DONE, s)
    wt = sandbox.worktrees[DONE]
    sandbox.write(wt, "docs/done.md")
    sandbox.commit_all(wt, "done")
    sandbox.push(wt)
    fleet.claude_try(DONE, s, 1, stream(init_event(), result_event()))
    fleet.claude_completed(DONE, s)
    fleet.finish(DONE, s, completed_record(DONE), mtime_s=300)

    s = fleet.suffix(20)
    fleet.launch(PERM, s)
    denial = {
        "tool_name": "Write",
        "tool_use_id": "toolu_01",
        "tool_input": {"file_path": "/tmp/wt/perm.md", "content": "x"},
    }
    fleet.claude_try(
        PERM,
        s,
        1,
        stream(
            init_event(),
            result_event(result="I need permission to write perm.md.", permission_denials=[denial]),
        ),
    )
    fleet.claude_completed(PERM, s)
    fleet.finish(PERM, s, completed_record(PERM), mtime_s=80)

    s = fleet.suffix(25)
    fleet.launch(RUNNING, s)
    fleet.claude_try(RUNNING, s, 1, stream(init_event(), assistant_text("Working")))
    return fleet, sandbox


def _second_perm_run(fleet: SeedFleet, sandbox: GitSandbox) -> None:
    s = fleet.suffix(200)
    fleet.launch(PERM, s)
    wt = sandbox.worktrees[PERM]
    sandbox.write(wt, "perm.md")
    sandbox.commit_all(wt, "perm")
    sandbox.push(wt)
    fleet.claude_try(PERM, s, 1, stream(init_event(), result_event()))
    fleet.claude_completed(PERM, s)
    fleet.finish(PERM, s, completed_record(PERM), mtime_s=400)


def _ingest_argv(fleet: SeedFleet, sandbox: GitSandbox, journal: Path, *extra: str) -> list[str]:
    """``ingest``'s words for this fleet's results, logs and worktrees, then ``extra``."""
    return [
        "ingest",
        "--results",
        str(fleet.results),
        "--logs",
        str(fleet.logs),
        "--worktrees",
        str(sandbox.agents),
        "--journal",
        str(journal),
        *extra,
    ]


def _ingest(fleet: SeedFleet, sandbox: GitSandbox, journal: Path, *extra: str) -> int:
    return main(_ingest_argv(fleet, sandbox, journal, *extra))


@pytest.fixture
def seed_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SeedFleet, GitSandbox]:
    isolate_git(monkeypatch, tmp_path)
    return _fleet(tmp_path)


def test_ingest_attributes_every_failed_attempt_and_is_idempotent(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, sandbox = seed_tree
    journal = tmp_path / "journal.jsonl"
    assert _ingest(fleet, sandbox, journal) == 0
    first = journal.read_bytes()
    assert _ingest(fleet, sandbox, journal) == 0
    assert journal.read_bytes() == first  # run twice: byte-identical
    assert "nothing new" in capsys.readouterr().out

    events = replay(journal)
    reasons = {
        e.agent: e.payload.to_json()["attribution"]["reason"]
        for e in events
        if e.kind is EventKind.FAILURE_ATTRIBUTED
    }
    assert reasons == {RATE: "api_error", SIGINT: "sigint", TIMEOUT: "timeout", PERM: "permission"}
    succeeded = [e.agent for e in events if e.kind is EventKind.TASK_SUCCEEDED]
    assert succeeded == [DONE]
    launched = [e.agent or "" for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert sorted(launched) == sorted([RATE, SIGINT, TIMEOUT, DONE, PERM, RUNNING])
    exited = {e.agent for e in events if e.kind is EventKind.ATTEMPT_EXITED}
    assert RUNNING not in exited  # its results symlink still dangles
    sigint_exit = next(
        e for e in events if e.kind is EventKind.ATTEMPT_EXITED and e.agent == SIGINT
    )
    assert sigint_exit.payload.to_json()["exit"]["code"] == 130
    perm = next(e for e in events if e.kind is EventKind.FAILURE_ATTRIBUTED and e.agent == PERM)
    assert perm.payload.to_json()["partial"]["pushed"] is False  # the probe saw nothing done
    assert [w["kind"] for w in perm.payload.to_json()["missing_work"]] == ["push"]
    rate = next(e for e in events if e.kind is EventKind.FAILURE_ATTRIBUTED and e.agent == RATE)
    top = rate.payload.to_json()["attribution"]["evidence"][0]
    # Evidence quotes the words of the stream-json event, at its line in the log.
    assert "API Error: 429" in top["detail"] and '"type":"result"' not in top["detail"]
    sig = next(e for e in events if e.kind is EventKind.FAILURE_ATTRIBUTED and e.agent == SIGINT)
    assert sig.payload.to_json()["partial"]["uncommitted"] == ["half.md"]

    metrics = compute(events)
    assert metrics.failures == 4 and metrics.unattributed_failures == 0
    assert metrics.total_tasks == 6 and metrics.first_try == 1


def test_ingest_appends_later_runs_once_and_counts_the_recovery(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path
) -> None:
    fleet, sandbox = seed_tree
    journal = tmp_path / "journal.jsonl"
    assert _ingest(fleet, sandbox, journal) == 0
    before = journal.read_bytes()
    _second_perm_run(fleet, sandbox)
    assert _ingest(fleet, sandbox, journal) == 0
    after = journal.read_bytes()
    assert after.startswith(before)  # appended, nothing rewritten
    assert _ingest(fleet, sandbox, journal) == 0
    assert journal.read_bytes() == after
    events = replay(journal)
    perm = [e for e in events if e.task_id == PERM]
    assert [e.kind for e in perm] == [
        EventKind.TASK_SUBMITTED,
        EventKind.ATTEMPT_LAUNCHED,
        EventKind.ATTEMPT_EXITED,
        EventKind.FAILURE_ATTRIBUTED,
        EventKind.ATTEMPT_LAUNCHED,
        EventKind.ATTEMPT_EXITED,
        EventKind.TASK_SUCCEEDED,
    ]
    assert [e.attempt for e in perm if e.kind is EventKind.ATTEMPT_LAUNCHED] == [1, 2]
    assert (
        perm[-1].payload.to_json()["first_try"] is False
        and perm[-1].payload.to_json()["recovery_time"] == 320.0
    )
    assert compute(events).recovered == 1


def test_a_run_superseded_by_a_later_one_is_ended_and_attributed(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path
) -> None:
    fleet, sandbox = seed_tree
    s = fleet.suffix(600)  # the orchestrator relaunched RUNNING: its old session was killed
    fleet.launch(RUNNING, s)
    fleet.claude_try(RUNNING, s, 1, stream(init_event(), result_event()))
    fleet.claude_failed(RUNNING, s, 1, rate_limited=True)
    fleet.finish(RUNNING, s, failed_record(RUNNING, 1, rate_limited=True), mtime_s=700)
    journal = tmp_path / "journal.jsonl"
    assert _ingest(fleet, sandbox, journal) == 0
    runs = [e for e in replay(journal) if e.task_id == RUNNING]
    exits = [e for e in runs if e.kind is EventKind.ATTEMPT_EXITED]
    assert [e.payload.to_json()["superseded"] for e in exits] == [True, False]
    assert exits[0].time == fleet_time(600)
    assert len([e for e in runs if e.kind is EventKind.FAILURE_ATTRIBUTED]) == 2


def fleet_time(offset_s: int) -> float:
    from seedfleet import START_MS

    return START_MS / 1000 + offset_s


def test_pr_lookup_makes_a_missing_pr_undone_work(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path
) -> None:
    fleet, sandbox = seed_tree
    prs = PullRequestsInMemory()
    with Journal(tmp_path / "j.jsonl") as journal:
        report = adopt(journal, AdoptionSource(fleet.results, fleet.logs, sandbox.agents, prs=prs))
        events = journal.events()
    assert report.running == 1 and report.problems == []
    done = [e for e in events if e.agent == DONE and e.kind is EventKind.FAILURE_ATTRIBUTED]
    assert len(done) == 1  # pushed, but no PR: not finished
    assert done[0].payload.to_json()["attribution"]["reason"] == str(Reason.INCOMPLETE)
    assert [w["kind"] for w in done[0].payload.to_json()["missing_work"]] == ["open_pr"]


def test_gh_repo_asks_gh_for_each_branchs_pull_request(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forge's gh stand-in first on PATH: `gh pr view <branch> --json ...` as GitHub answers.
    fleet, sandbox = seed_tree
    forge = Forge(tmp_path / "forge", origin=sandbox.origin)
    install_gh_shim(tmp_path / "bin", tmp_path / "forge")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def done_events(journal: Path) -> list[Event]:
        assert _ingest(fleet, sandbox, journal, "--gh-repo", str(sandbox.repo)) == 0
        with Journal(journal) as j:
            return [e for e in j.events() if e.agent == DONE]

    no_pr = done_events(tmp_path / "before.jsonl")
    failed = [e for e in no_pr if e.kind is EventKind.FAILURE_ATTRIBUTED]
    assert [w["kind"] for w in failed[0].payload.to_json()["missing_work"]] == ["open_pr"]
    pr = forge.open_pull_request(head=f"{DONE}-work", base="main", title="done")
    with_pr = done_events(tmp_path / "after.jsonl")
    succeeded = [e for e in with_pr if e.kind is EventKind.TASK_SUCCEEDED]
    assert [e.payload.to_json()["pr"] for e in succeeded] == [pr.number]
    assert ["pr", "view", "--json", "number,state,url,title,headRefName", "--", f"{DONE}-work"] in [
        c["argv"] for c in forge.calls()
    ]


def test_ingest_reports_a_worktree_on_another_branch(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, sandbox = seed_tree
    journal = tmp_path / "journal.jsonl"
    assert _ingest(fleet, sandbox, journal, "--branch", "work/{agent}") == 0
    err = capsys.readouterr().err
    assert f"on branch '{RATE}-work', expected 'work/{RATE}'" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--results", "nope"], "nope: no such results directory"),
        (["--results", "{results}", "--logs", "nope"], "nope: no such logs directory"),
        (["--results", "{results}", "--branch", "{name}-work"], "--branch"),
        (["--results", "{results}", "--interval", "0"], "--interval"),
        (["--results", "{results}", "--gh-repo", "/dev/null"], "/dev/null: not a directory"),
    ],
)
def test_ingest_usage_errors_exit_2(
    seed_tree: tuple[SeedFleet, GitSandbox],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    fleet, _ = seed_tree
    argv = [
        "ingest",
        *[a.format(results=fleet.results) if a == "{results}" else a for a in args],
        "--journal",
        str(tmp_path / "j.jsonl"),
    ]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err.strip().splitlines()[-1]  # the error is one line (after usage)


def test_a_held_journal_is_refused_in_one_line(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.store.journal import Journal

    fleet, sandbox = seed_tree
    path = tmp_path / "journal.jsonl"
    with Journal(path):
        assert _ingest(fleet, sandbox, path) == 2
    err = capsys.readouterr().err.strip()
    assert "locked by another process" in err and str(path) in err


def test_a_bad_results_file_is_reported_and_skipped(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, sandbox = seed_tree
    bad = fleet.results / f"{TIMEOUT}_results_{fleet.suffix(10)}.json"
    bad.write_text('{"agent": "x", "status": "crashed"}\n')
    assert _ingest(fleet, sandbox, tmp_path / "j.jsonl") == 0
    err = capsys.readouterr().err
    assert f"{bad}: field status" in err


def test_reader_refuses_non_regular_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not a regular file"):
        read_bounded(Path("/dev/zero"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ResultsError, match="not a regular file"):
        read_bounded(fifo)  # opened non-blocking: no writer, no hang
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(ResultsError, match=r"big.log: is 2048 bytes; the limit is 1024"):
        read_bounded(big, limit=1024)
    link = tmp_path / "a_results.json"
    link.symlink_to(tmp_path / "a_results_1-2.json")
    with pytest.raises(ResultsError, match="dangling symlink"):
        read_bounded(link)


def test_a_wrapper_line_glued_to_a_cut_off_stream_line_is_read() -> None:
    # As observed running the seed's wrapper: the CLI died mid-line, the next line was glued.
    text = (
        '{"type":"system","subtype":"init","session_id":"s-1"}\n'
        '{"type":"assistant","message":{"role":"assi[Tue Dec  1 04:30:03 UTC 2026] Claude '
        "exit code: 0\n"
        "[Tue Dec  1 04:30:03 UTC 2026] ✅ Agent completed successfully via Claude\n"
    )
    log = parse_log("x.log", text)
    assert log.bad_json_lines == (2,) and log.json_lines == 1
    assert [(t.cli, t.exit_code) for t in log.tries] == [("Claude", 0)]
    assert log.completed_via == "Claude"


def test_a_log_with_every_wrapper_line_twice_reads_as_one_run() -> None:
    # The seed's no-tmux launch sends the wrapper's stdout to the log its `tee -a` writes too.
    lines = [
        "🔁 Attempt 1: Claude",
        "Claude exit code: 1",
        "❌ Attempt failed via Claude (exit=1 rate_limited=0)",
        "🔁 Attempt 2: Codex",
        "Codex exit code: 0",
        "✅ Agent completed successfully via Codex",
    ]
    text = "".join(f"[Tue Dec  1 04:30:03 UTC 2026] {line}\n" * 2 for line in lines)
    log = parse_log("x.log", text)
    assert [(t.cli, t.exit_code, t.failed) for t in log.tries] == [
        ("Claude", 1, True),
        ("Codex", 0, False),
    ]
    assert log.completed_via == "Codex"


def test_find_runs_pairs_results_and_logs_and_skips_the_latest_pointer(
    seed_tree: tuple[SeedFleet, GitSandbox],
) -> None:
    fleet, _ = seed_tree
    runs = find_runs(fleet.results, fleet.logs)
    assert [r.agent for r in runs] == [RATE, SIGINT, TIMEOUT, DONE, PERM, RUNNING]
    assert [r.results is None for r in runs] == [False, True, False, False, False, True]
    assert all(r.log is not None for r in runs)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_follow_adopts_new_runs_and_stops_cleanly_on_a_signal(
    seed_tree: tuple[SeedFleet, GitSandbox], tmp_path: Path, stop: signal.Signals
) -> None:
    fleet, sandbox = seed_tree
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            *_ingest_argv(fleet, sandbox, journal, "--follow", "--interval", "0.1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first pass's summary
        assert "appended" in first and "1 still running" in first
        _second_perm_run(fleet, sandbox)
        # A pass may see the new log before its results file: launched first, ended later.
        later = [proc.stdout.readline()]  # each blocks until a pass appends something
        while "1 succeeded" not in later[-1] and len(later) < 3:
            later.append(proc.stdout.readline())
        assert "1 succeeded" in later[-1]
        assert sum("1 attempt(s) launched" in line for line in later) == 1
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    kinds = [e.kind for e in replay(journal) if e.task_id == PERM]
    assert kinds.count(EventKind.ATTEMPT_LAUNCHED) == 2


def test_classify_attributes_seed_results_and_logs(
    seed_tree: tuple[SeedFleet, GitSandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, _ = seed_tree
    cases = {
        fleet.results / f"{RATE}_results_{fleet.suffix(0)}.json": "api_error",
        fleet.logs / f"{SIGINT}_{fleet.suffix(5)}.log": "sigint",  # cut-off stream line
        fleet.logs / f"{TIMEOUT}_{fleet.suffix(10)}.log": "timeout",
    }
    for path, reason in cases.items():
        assert main(["classify", "--result", str(path)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["reason"] == reason, (path.name, out)


@pytest.mark.parametrize(
    ("record", "output", "expected"),
    [
        (  # exit 0, is_error false, the deliverables' writes denied
            "completed",
            [
                result_event(
                    result="I need permission to write docs/a.md.",
                    permission_denials=[
                        {"tool_name": "Write", "tool_use_id": "toolu_1",
                         "tool_input": {"file_path": "/w/docs/a.md", "content": "x"}}
                    ],
                )
            ],
            "permission",
        ),
        (  # is_error true, then gh's own words
            "failed",
            [
                result_event(is_error=True, result="Done, but the PR could not be opened."),
                "HTTP 401: Bad credentials (https://api.github.com/graphql)",
                "Try authenticating with:  gh auth login",
            ],
            "github_error",
        ),
    ],
)  # fmt: skip
def test_ingest_and_classify_weigh_the_whole_log_alike(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record: str,
    output: list[object],
    expected: str,
) -> None:
    fleet = SeedFleet(tmp_path / "orch")
    agent, suffix = "task-agent-7", fleet.suffix(0)
    fleet.launch(agent, suffix)
    lines = [json.dumps(o) if isinstance(o, dict) else str(o) for o in output]
    fleet.claude_try(agent, suffix, 1, [json.dumps(init_event()), *lines])
    if record == "completed":
        fleet.claude_completed(agent, suffix)
        fleet.finish(agent, suffix, completed_record(agent))
    else:
        fleet.claude_failed(agent, suffix, 1)
        fleet.finish(agent, suffix, failed_record(agent, 1))
    journal = tmp_path / "j.jsonl"  # no worktree to probe: the log is all there is
    assert main(["ingest", "--results", str(fleet.results), "--logs", str(fleet.logs),
                 "--journal", str(journal)]) == 0  # fmt: skip
    (judged,) = [e for e in replay(journal) if e.key and e.key.endswith(":judged")]
    assert judged.kind is EventKind.FAILURE_ATTRIBUTED
    capsys.readouterr()
    log = fleet.logs / f"{agent}_{suffix}.log"
    assert main(["classify", "--result", str(log)]) == 0
    said = json.loads(capsys.readouterr().out)
    assert judged.payload.to_json()["attribution"]["reason"] == said["reason"] == expected
