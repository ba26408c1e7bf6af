"""What an attacker controls never becomes something else: an agent's HEAD never becomes a gh
option, journal text never becomes a terminal escape or Markdown HTML, a stream never fills
memory, a file name from an outside orchestrator never becomes a path outside its folders, a
scenario name never becomes a line of pytest's summary, a report never replaces a file through
a link (tests/test_hostile_inputs.py), and ingest skips what it cannot use."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from events import JournalBuilder
from gitrepo import GitSandbox
from seedfleet import SeedFleet, completed_record, init_event, result_event, stream

from pytest_orch_recovery.chaos.scenario import ScenarioError, load_scenario
from pytest_orch_recovery.cli.main import main
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import (
    Checkpoint,
    PartialWork,
    PullRequest,
    Reason,
    Strategy,
    Task,
)
from pytest_orch_recovery.infra.checkpoint import save_checkpoint
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.infra.workspace import probe
from pytest_orch_recovery.report.dashboard import render_campaign_markdown
from pytest_orch_recovery.report.metrics import compute, evaluate
from pytest_orch_recovery.store.journal import replay

# What the attacker's probe put in agent output, titles, file names and checkpoint actions.
HOSTILE = (
    "\x1b]0;pwned title\x07",  # set-title
    "\x1b]52;c;cm0gLXJmIC8=\x07",  # clipboard write (OSC 52)
    "\x1b[2J\x1b[H",  # clear screen
    "fake\rREAL",  # overwritten line
    "abc\x08\x08\x08xyz",  # backspaces
    "\x9b2J",  # 8-bit CSI
    "\u202eevil\u202c",  # right-to-left override
)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- gh and git argv


def _fake_gh(tmp_path: Path, answer: dict[str, object]) -> Path:
    """A ``gh`` that records its argv and answers one PR, as gh does for ``--repo=x``."""
    script = tmp_path / "gh"
    calls = tmp_path / "gh-calls.jsonl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print({json.dumps(json.dumps(answer))})\n"
    )
    script.chmod(0o755)
    return script


def _gh_calls(tmp_path: Path) -> list[list[str]]:
    calls = tmp_path / "gh-calls.jsonl"
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_gh_is_never_asked_about_a_branch_that_reads_as_an_option(tmp_path: Path) -> None:
    evil = {"number": 666, "state": "OPEN", "url": "https://github.com/attacker/evil/pull/666",
            "title": "x", "headRefName": "main"}  # fmt: skip
    gh = GhPullRequests(tmp_path, gh=str(_fake_gh(tmp_path, evil)))
    assert gh.pull_request_for("--repo=attacker/evil") is None
    assert gh.pull_request_for("-R") is None
    assert _gh_calls(tmp_path) == []


def test_gh_answer_for_another_branch_is_not_the_tasks_pr(tmp_path: Path) -> None:
    other = {"number": 7, "state": "OPEN", "url": "https://x/pull/7", "title": "x",
             "headRefName": "someone-else"}  # fmt: skip
    gh = GhPullRequests(tmp_path, gh=str(_fake_gh(tmp_path, other)))
    assert gh.pull_request_for("7") is None  # gh reads "7" as PR number 7
    (call,) = _gh_calls(tmp_path)
    assert call[-2:] == ["--", "7"]  # the branch after "--": never a flag


def test_probe_of_a_head_pointed_at_an_option_asks_no_pull_request(tmp_path: Path) -> None:
    sandbox = GitSandbox.create(tmp_path / "git")
    wt = sandbox.worktree("a1", "a1-work")
    run_git(["update-ref", "refs/heads/--repo=attacker/evil", "HEAD"], cwd=wt)
    run_git(["symbolic-ref", "HEAD", "refs/heads/--repo=attacker/evil"], cwd=wt)
    asked: list[str] = []

    class Recording:
        def pull_request_for(self, branch: str) -> PullRequest | None:
            asked.append(branch)
            return PullRequest(666, branch, "https://github.com/attacker/evil/pull/666")

    partial = probe(wt, Task("t", "t"), prs=Recording())
    assert partial.pr is None and asked == []


def test_ingest_base_never_becomes_a_git_option(tmp_path: Path) -> None:
    fleet = SeedFleet(tmp_path / "orch")
    target = tmp_path / "pwned.txt"
    code, _, err = _cli(
        ["ingest", "--results", str(fleet.results), "--journal", str(tmp_path / "j.jsonl"),
         f"--base=--output={target}"]
    )  # fmt: skip
    assert code == 2 and "must not start with '-'" in err and not target.exists()


# --------------------------------------------------------------------------- terminal


def _hostile_journal(tmp_path: Path) -> Path:
    j = JournalBuilder()
    for n, text in enumerate(HOSTILE):
        script = j.task(f"t{n}", f"a{n}", title=f"Task {text}", deliverables=(f"d{n}{text}.md",))
        script.launch()
        script.fail_with(
            Reason.GIT_ERROR,
            detail=f"git push rejected {text}",
            partial=PartialWork(deliverables_missing=(f"d{n}{text}.md",)),
        )
        script.decide(Strategy.RESTART, lesson=f"lesson {text}")
    path = tmp_path / "journal.jsonl"
    j.write_jsonl(path)
    for n, text in enumerate(HOSTILE):
        save_checkpoint(tmp_path / "cp", Checkpoint(f"a{n}", f"t{n}", next_actions=(text,)))
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--format", "json"],
        ["failures", "--evidence", "3"],
        ["partial"],
        ["partial", "--format", "json"],
        ["report", "--format", "md"],
        ["report", "--format", "json"],
    ],
)
def test_views_print_no_control_character(tmp_path: Path, command: list[str]) -> None:
    journal = _hostile_journal(tmp_path)
    extra = ["--checkpoint-dir", str(tmp_path / "cp")] if command[0] == "partial" else []
    code, out, err = _cli([*command, "--journal", str(journal), *extra])
    assert code == 0, err
    assert not _UNSAFE.findall(out.replace("\n", "")), _UNSAFE.findall(out)
    assert "\r" not in out
    if "--format" not in command or "md" in command:
        assert "\\x1b]52;c;" in out or command[0] == "report"  # shown, escaped


def test_an_error_line_prints_no_control_character(tmp_path: Path) -> None:
    missing = tmp_path / "no\x1b]0;t\x07such.jsonl"
    code, _, err = _cli(["status", "--journal", str(missing)])
    assert code == 2 and not _UNSAFE.findall(err) and "\\x1b" in err


# --------------------------------------------------------------------------- Markdown

_MARKUP = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</details><details open>",
    "<style>body{display:none}</style>",
    "[click](javascript:alert(1))",
    "![t](https://tracker.example/p.gif)",
    "`code` ``",
)


def _no_markup(text: str) -> None:
    assert not re.search(r"<[A-Za-z/!?]", text), re.findall(r"<[A-Za-z/!?][^ ]*", text)
    assert not re.search(r"(?<!\\)[\[\]]", text), "an unescaped bracket makes a link"


def test_markdown_report_escapes_html_and_links(tmp_path: Path) -> None:
    j = JournalBuilder()
    for n, text in enumerate(_MARKUP):
        script = j.task(f"t{n}", f"a{n}", title=f"Task {text}")
        script.launch().fail_with(Reason.GIT_ERROR, detail=text)
        script.decide(Strategy.RESTART, lesson=text)
    path = j.write_jsonl(tmp_path / "journal.jsonl")
    code, out, err = _cli(["report", "--journal", str(path), "--format", "md"])
    assert code == 0, err
    _no_markup(out)
    assert "&lt;script&gt;" in out


def test_campaign_markdown_escapes_html_and_links(tmp_path: Path) -> None:
    metrics = compute(JournalBuilder().events)
    campaign = {
        "seed": "<b>1</b>",
        "tier": "sim",
        "agent": "<script>x</script>",
        "replay": "pytest --orch-seed=1 ` <img src=x onerror=alert(1)>",
        "fail_lines": ["FAIL x: `</details>` <script>"],
        "attribution": {"<i>git</i>": 1},
        "confusion_matrix": {"<b>kill</b>": {"[x](javascript:y)": 1}},
        "ledger": [
            {"scenario": "<s>", "id": "[a](javascript:b)", "kind": "<k>", "trigger": {},
             "task": "<t>", "attempt": 1, "status": "<st>", "hits": []}
        ],
    }  # fmt: skip
    text = render_campaign_markdown(metrics, evaluate(metrics), campaign)
    _no_markup(re.sub(r"(`+) .*? \1", "", text))  # code spans show their text verbatim
    assert "`` pytest --orch-seed=1 ` <img src=x onerror=alert(1)> ``" in text


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["checkpoint", "--from-hook", "--agent", "a1", "--dir", "cp"], 0),
        (["classify", "--log", "-"], 2),
    ],
)
def test_an_endless_stdin_is_refused_at_the_limit(
    tmp_path: Path, command: list[str], status: int
) -> None:
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    assert yes.stdout is not None
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", *command], stdin=yes.stdout,
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    yes.stdout.close()
    yes.kill()
    yes.wait()
    assert proc.returncode == status, proc.stderr
    assert "the limit is 16777216" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- ingest


def _adopt(tmp_path: Path, fleet: SeedFleet, *extra: str) -> tuple[int, str, str, Path]:
    journal = tmp_path / "journal.jsonl"
    code, out, err = _cli(
        ["ingest", "--results", str(fleet.results), "--logs", str(fleet.logs),
         "--journal", str(journal), *extra]
    )  # fmt: skip
    return code, out, err, journal


def _completed_run(fleet: SeedFleet, agent: str, suffix: str) -> None:
    fleet.launch(agent, suffix)
    fleet.claude_try(agent, suffix, 1, stream(init_event(), result_event()))
    fleet.claude_completed(agent, suffix)
    fleet.finish(agent, suffix, completed_record(agent))


@pytest.mark.parametrize("agent", ["..", ".", "-R", "--help", "a..b", "x.lock"])
def test_ingest_skips_agent_names_outside_the_alphabet(tmp_path: Path, agent: str) -> None:
    # The worktrees' parent is the operator's own checkout: ".." must never be probed as it.
    sandbox = GitSandbox.create(tmp_path / "checkout")
    worktrees = sandbox.repo / "worktrees"
    worktrees.mkdir()
    fleet = SeedFleet(tmp_path / "orch")
    suffix = fleet.suffix(0)
    (fleet.results / f"{agent}_results_{suffix}.json").write_text(
        json.dumps(completed_record(agent))
    )
    _completed_run(fleet, "task-agent-1", fleet.suffix(1))
    code, _, err, journal = _adopt(tmp_path, fleet, "--worktrees", str(worktrees))
    assert code == 0, err
    assert {e.task_id for e in replay(journal)} == {"task-agent-1"}
    assert f"{agent}_results_{suffix}.json: skipped: agent name" in err


def test_ingest_never_follows_a_log_link_out_of_the_logs_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("ghp_TOKEN0123456789 is the operator's token\n")
    fleet = SeedFleet(tmp_path / "orch")
    _completed_run(fleet, "task-agent-1", fleet.suffix(0))
    suffix = fleet.suffix(1)
    (fleet.results / f"task-agent-2_results_{suffix}.json").write_text(
        json.dumps({**completed_record("task-agent-2"), "status": "failed", "exit_code": 1})
    )
    (fleet.logs / f"task-agent-2_{suffix}.log").symlink_to(secret)
    code, _, err, journal = _adopt(tmp_path, fleet)
    assert code == 0, err
    assert "ghp_TOKEN" not in journal.read_text()
    assert "a symbolic link out of" in err
    # A link inside the folder (the seed's own latest-run pointers) is still read.
    assert any(e.kind is EventKind.TASK_SUCCEEDED for e in replay(journal))


def test_one_far_future_file_name_does_not_stop_ingest(tmp_path: Path) -> None:
    fleet = SeedFleet(tmp_path / "orch")
    _completed_run(fleet, "task-agent-1", fleet.suffix(0))
    (fleet.results / "zzz_results_99999999999999999-1.json").write_text(
        json.dumps(completed_record("zzz"))
    )
    future = fleet.finish("task-agent-2", fleet.suffix(2), completed_record("task-agent-2"))
    os.utime(future, (1e12, 1e12))  # a clock set wrong: the file's time is not used
    for _ in range(2):  # every pass, not only the first
        code, _, err, journal = _adopt(tmp_path, fleet)
        assert code == 0, err
    assert "past the journal's limit" in err
    assert {e.task_id for e in replay(journal)} == {"task-agent-1", "task-agent-2"}


# --------------------------------------------------------------------------- scenario names


@pytest.mark.parametrize(
    "name",
    ["x\nFAILED fake.toml::x - forged", "x\rFAILED", "bell\x07", "esc\x1b[31mred", "c1\x9b2J"],
)
def test_a_scenario_name_with_control_characters_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f"name = {json.dumps(name)}\n"
        '[[tasks]]\nid = "t1"\ntitle = "Docs"\ndeliverables = ["a.md"]\n'
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:1: name: must be one line without control")
    assert "\n" not in str(caught.value)


def test_status_watch_leaves_the_terminal_intact(tmp_path: Path) -> None:
    """``status --watch`` on a real pseudo-terminal, on a journal full of control characters:
    the only escape sequence the terminal receives is the redraw's own (home, clear)."""
    import pty
    import select
    import signal
    import time

    journal = _hostile_journal(tmp_path)
    controller, terminal_side = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_orch_recovery", "status", "--journal", str(journal),
         "--watch", "0.2"],
        stdin=terminal_side, stdout=terminal_side, stderr=terminal_side, close_fds=True,
    )  # fmt: skip
    os.close(terminal_side)
    received = b""
    deadline = time.monotonic() + 120
    try:
        while received.count(b"\x1b[H\x1b[2J") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                received += os.read(controller, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert received.count(b"\x1b[H\x1b[2J") >= 3, received[-2000:]  # it redrew, on a tty
    frames = received.replace(b"\x1b[H\x1b[2J", b"").decode("utf-8")
    # The pty turns "\n" into "\r\n" (onlcr); nothing else may be a control character.
    assert not _UNSAFE.findall(frames.replace("\r\n", "")), _UNSAFE.findall(frames)
    assert "\\x1b]52;c;" in frames and "\\x9b2J" in frames  # shown, escaped
