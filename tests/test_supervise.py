"""``orch-recovery supervise`` end to end, run as an operator runs it (docs/production.md).

A plain git repository with a bare origin, the forge's ``gh`` first on PATH, the sim agent
talking to the model double. The supervisor, ``submit``, ``release``, ``status``, ``failures``
and ``partial`` are subprocesses (``python -m pytest_orch_recovery ...``). Faults from the
catalogue are injected with the chaos tier's own mechanisms: the fault hook (SIGINT after a
file is written), the model double (quitting after the first file: partial files), the forge
(``gh pr create`` failing) and the fleet file (the permission flag left out).
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task
from pytest_orch_recovery.doubles.modeldouble.faults import ApiFaultKind, ApiFaultSpec
from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.infra.agents import claude_code_missing
from pytest_orch_recovery.infra.git import create_repo_with_origin, remote_sha
from pytest_orch_recovery.infra.processes import wait_gone
from pytest_orch_recovery.runtime.server import kill_tmux_server
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.journal import Journal

pytestmark = pytest.mark.slow

_BOUND = 240.0  # seconds for one awaited supervisor event; a hang, not slowness, beyond it

SIGINT_TASK = Task("t-sigint", "Create the fake3 command", ("fake3.md",))
PARTIAL_TASK = Task(
    "t-partial", "Add the four parser modules", ("lex.py", "parse.py", "emit.py", "cli.py")
)
PR_TASK = Task("t-pr", "Write the release notes", ("NOTES.md",))
PERM_TASK = Task("t-perm", "Document the permission flag", ("perm.md",))


def _toml(value: Any) -> str:
    if isinstance(value, dict):  # an inline table ([policy])
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


@dataclass
class Fleet:
    """The operator's world: repository, forge, model double, fleet file."""

    root: Path
    repo: Path
    origin: Path
    forge: Forge
    double: ModelDouble
    env: dict[str, str]
    socket: str
    settings: dict[str, Any] = field(default_factory=dict)
    # The agents' account: an API key, or a subscription's OAuth token (a plan's usage limit).
    account: dict[str, str] = field(
        default_factory=lambda: {"ANTHROPIC_API_KEY": "sk-ant-api03-double-not-a-real-key"}
    )

    @property
    def config(self) -> Path:
        return self.root / "fleet.toml"

    @property
    def journal(self) -> Path:
        return self.root / ".orch-fleet" / "journal.jsonl"

    def write_config(self, **changes: Any) -> None:
        """fleet.toml as docs/production.md shows it, plus the model double's variables."""
        self.settings.update(changes)
        lines = [f"{key} = {_toml(value)}" for key, value in self.settings.items()]
        lines += ["", "[env]"]
        lines += [
            f"{k} = {json.dumps(v)}"
            for k, v in {
                "ANTHROPIC_BASE_URL": self.double.url,
                **self.account,
                "IS_SANDBOX": "1",  # the CLI refuses the permission flag as root without it
            }.items()
        ]
        atomic.write_text(self.config, "\n".join(lines) + "\n")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_orch_recovery", *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=_BOUND, check=False,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def task_file(self, task: Task) -> str:
        path = self.root / f"{task.task_id}.toml"
        body = {"id": task.task_id, "title": task.title, "deliverables": list(task.deliverables)}
        if task.tests:
            body["tests"] = task.tests
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items()))
        return path.name

    def events(self, kind: str, task: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.journal.read_text().splitlines():
            event = json.loads(line)
            if event["kind"] == kind and (task is None or event.get("task_id") == task):
                out.append(event)
        return out

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            self.cli("status", "--journal", str(self.journal), "--format", "json").stdout
        )
        return doc


class Supervisor:
    """``orch-recovery supervise`` as a child process; its log lines arrive on a queue."""

    def __init__(self, fleet: Fleet, *options: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_orch_recovery", "supervise", "--config",
             str(fleet.config), *options],
            cwd=fleet.root, env=fleet.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, *words: str) -> str:
        """Block until a log line holds every word (the supervisor logs each journal event)."""
        for line in self.seen:
            if all(w in line for w in words):
                return line
        while True:
            try:
                got = self.lines.get(timeout=_BOUND)
            except queue.Empty:
                pytest.fail(f"no {words} in {_BOUND:.0f} s; log:\n" + "\n".join(self.seen))
            if got is None:
                pytest.fail(
                    f"supervisor exited {self.proc.wait()} before {words}; log:\n"
                    + "\n".join(self.seen)
                )
            self.seen.append(got)
            if all(w in got for w in words):
                return got

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=_BOUND)
        while (line := self.lines.get(timeout=_BOUND)) is not None:
            self.seen.append(line)  # drain, so the pump thread ends
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    repo, origin = create_repo_with_origin(tmp_path / "project")
    forge = Forge(tmp_path / "forge", origin=origin)
    install_gh_shim(tmp_path / "bin", tmp_path / "forge")
    home = tmp_path / "home"
    home.mkdir()
    socket = f"orch-e2e-{os.getpid()}-{tmp_path.name}"[:80]
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.pop("TMUX", None)
    plan = Plan(tuple(plan_for_task(t) for t in (SIGINT_TASK, PARTIAL_TASK, PR_TASK, PERM_TASK)))
    double = ModelDouble(plan, transcript_path=tmp_path / "transcript.jsonl").start()
    world = Fleet(tmp_path, repo, origin, forge, double, env, socket)
    world.settings.update(
        {
            "repository": "project/repo",
            "agent": "sim",
            "tmux_socket": socket,
            "attempt_timeout": 300,
            "intake_interval": 0.5,
            "incident_settle": 1,
            # The agents must import this checkout's package, as the test does.
            "env_allow": ["PATH", "HOME", "LANG", "LC_*", "TMPDIR", "PYTHONPATH", "GH_*"],
            "on_escalate": [
                sys.executable,
                "-c",
                "import sys; open(sys.argv[1], 'a').write(sys.stdin.read())",
                str(tmp_path / "escalations.jsonl"),
            ],
        }
    )
    world.write_config()
    try:
        yield world
    finally:
        double.stop()
        world.double.stop()  # a test may have replaced the double; stop() is idempotent
        kill_tmux_server(socket)  # the supervisor leaves agents running by design


def _fault_plan(fleet: Fleet, faults: Sequence[FaultSpec]) -> Path:
    """The fault hook's plan, as the chaos harness writes it."""
    state = fleet.root / "fault-state"
    state.mkdir(exist_ok=True)
    path = fleet.root / "faults.json"
    atomic.write_json(
        path,
        {
            "faults": [f.to_json() for f in faults],
            "state_dir": str(state),
            "context": {
                "tmux_socket": fleet.socket,
                "checkpoint_dir": str(fleet.root / ".orch-fleet" / "checkpoints"),
            },
        },
    )
    return path


def _reasons(fleet: Fleet, task: str) -> list[str]:
    return [e["data"]["attribution"]["reason"] for e in fleet.events("failure_attributed", task)]


def _phases(fleet: Fleet) -> dict[str, str]:
    return {row["task_id"]: row["phase"] for row in fleet.status()["tasks"]}


def _pushed(fleet: Fleet, task: str) -> bool:
    agent = fleet.events("task_submitted", task)[0]["agent"]
    return remote_sha(fleet.repo, "origin", f"{agent}-work") is not None


def test_supervised_fleet_recovers_from_catalogue_faults(fleet: Fleet) -> None:
    sigint = FaultSpec(
        "sigint", Trigger("file_written", path="fake3.md"), task="t-sigint", fault_id="f1"
    )
    fleet.write_config(fault_plan=str(_fault_plan(fleet, [sigint])), remove_finished_worktrees=True)
    # Partial files: the model says "done" after the first of four files.
    fleet.double.add_fault(
        ApiFaultSpec(
            kind=ApiFaultKind.QUIT_EARLY,
            times=1,
            at_request=2,
            scope="task",
            task=PARTIAL_TASK.title,
        )
    )
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli(
            "submit",
            "--config",
            "fleet.toml",
            fleet.task_file(SIGINT_TASK),
            fleet.task_file(PARTIAL_TASK),
        )
        supervisor.wait_for("task_succeeded", "t-sigint")
        supervisor.wait_for("task_succeeded", "t-partial")
        # Intake while running: a PR failure for the next task only (the model tries
        # `gh pr create` once more before it gives up, so two calls fail).
        fleet.forge.inject("bad_credentials", times=2)
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PR_TASK))
        supervisor.wait_for("task_succeeded", "t-pr")
    finally:
        assert supervisor.stop() == 0  # SIGTERM: a clean stop
    assert _reasons(fleet, "t-sigint") == ["sigint"]
    assert _reasons(fleet, "t-partial") == ["incomplete"]
    assert _reasons(fleet, "t-pr") == ["github_error"]
    assert _phases(fleet) == {
        "t-sigint": "succeeded",
        "t-partial": "succeeded",
        "t-pr": "succeeded",
    }
    assert all(_pushed(fleet, t) for t in ("t-sigint", "t-partial", "t-pr"))
    # remove_finished_worktrees: each succeeded task's worktree went, journaled once.
    cleaned = fleet.events("workspace_cleaned")
    assert sorted(e["task_id"] for e in cleaned) == ["t-partial", "t-pr", "t-sigint"]
    assert not any(Path(e["data"]["path"]).exists() for e in cleaned)
    assert {pr.branch for pr in fleet.forge.pull_requests()} == {
        f"{fleet.events('task_submitted', t)[0]['agent']}-work"
        for t in ("t-sigint", "t-partial", "t-pr")
    }
    failures = fleet.cli("failures", "--journal", str(fleet.journal)).stdout
    assert "sigint" in failures and "incomplete" in failures and "github_error" in failures
    partial = fleet.cli("partial", "--journal", str(fleet.journal), "--format", "json")
    assert json.loads(partial.stdout)["schema_version"] >= 1
    live = fleet.cli("status", "--config", "fleet.toml", "--live", "--format", "json")
    assert {row["task_id"] for row in json.loads(live.stdout)["tasks"]} == {
        "t-sigint",
        "t-partial",
        "t-pr",
    }

    # The permission flag left out of the fleet file: escalated, on_escalate told, fixed in
    # the fleet file, released. The supervisor is restarted for it (a stop is not a loss).
    fleet.write_config(skip_permissions=False)
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("recovering")
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PERM_TASK))
        supervisor.wait_for("task_escalated", "t-perm")
        supervisor.wait_for("on_escalate ran for incident permission-1: t-perm")
        escalations = [
            json.loads(line) for line in (fleet.root / "escalations.jsonl").read_text().splitlines()
        ]
        assert [(e["kind"], e["task_id"]) for e in escalations] == [("task_escalated", "t-perm")]
        assert escalations[0]["data"]["reason"] == "permission"
        assert escalations[0]["incident"]["tasks"] == ["t-perm"]
        fleet.write_config(skip_permissions=True)
        fleet.cli(
            "release",
            "--config",
            "fleet.toml",
            "t-perm",
            "--note",
            "added --dangerously-skip-permissions to the fleet file",
        )
        supervisor.wait_for("task_succeeded", "t-perm")
    finally:
        assert supervisor.stop(signal.SIGINT) == 0
    assert _reasons(fleet, "t-perm") == ["permission"]
    actions = fleet.events("operator_action")
    assert [a["data"]["tasks"] for a in actions] == [["t-perm"]]
    assert _phases(fleet)["t-perm"] == "succeeded"


_COUNTING_AGENT = """#!/bin/sh
# The sim agent, counting its starts: one line per process start.
echo "start $ORCH_AGENT attempt $ORCH_ATTEMPT" >> "$ORCH_RESULTS_DIR/starts.log"
exec "{python}" -P -m pytest_orch_recovery.doubles.simagent -p --output-format json \\
    --dangerously-skip-permissions < "$1"
"""


def test_supervisor_killed_mid_attempt_never_starts_it_twice(fleet: Fleet) -> None:
    agent_script = fleet.root / "counting-agent.sh"
    agent_script.write_text(_COUNTING_AGENT.replace("{python}", sys.executable))
    agent_script.chmod(0o755)
    gate = fleet.root / "gate-open"
    tmux = f"tmux -L {fleet.socket}"
    # The task's tests hold the attempt until the test opens the gate (and pass after).
    tests = f"test -e {gate} || {{ {tmux} wait-for -S at-gate; {tmux} wait-for gate; }}"
    task = Task("t-held", "Create the held file", ("held.md",), tests=tests)
    fleet.double.stop()
    fleet.double = ModelDouble(Plan((plan_for_task(task),))).start()
    fleet.write_config(agent=f"{agent_script} {{prompt_file}}")

    first = Supervisor(fleet)
    first.wait_for("supervising")
    fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(task))
    first.wait_for("attempt_launched", "t-held")
    subprocess.run(
        ["tmux", "-L", fleet.socket, "wait-for", "at-gate"], check=True, timeout=_BOUND
    )  # the agent is mid-attempt, inside its test step
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    starts = fleet.root / ".orch-fleet" / "results" / "starts.log"
    assert starts.read_text().splitlines() == [
        f"start {fleet.events('task_submitted', 't-held')[0]['agent']} attempt 1"
    ]

    second = Supervisor(fleet)
    try:
        second.wait_for("recovering")
        gate.touch()
        subprocess.run(
            ["tmux", "-L", fleet.socket, "wait-for", "-S", "gate"], check=True, timeout=_BOUND
        )
        second.wait_for("task_succeeded", "t-held")
    finally:
        assert second.stop() == 0
    assert len(starts.read_text().splitlines()) == 1, "attempt 1 was started again"
    assert len(fleet.events("attempt_launched", "t-held")) == 1
    succeeded = fleet.events("task_succeeded", "t-held")
    assert succeeded[0]["data"]["first_try"] is True
    assert _pushed(fleet, "t-held")


def test_an_escalation_journaled_just_before_a_crash_is_still_notified(fleet: Fleet) -> None:
    # A supervisor that dies after journaling an escalation and before running on_escalate:
    # its journal ends in task_escalated, and on_escalate never ran. Built here from a
    # simulated run (killed at every start: escalated after the budget), appended to the
    # journal of a fleet whose first supervisor had started and stopped.
    first = Supervisor(fleet)
    first.wait_for("supervising")
    assert first.stop() == 0
    doomed = Task("t-doomed", "Migrate the schema", ("m.py",))
    run = simulate(
        [doomed], [FaultSpec("kill", Trigger("start"), task="t-doomed", attempt=None)], seed=4
    )
    with Journal(fleet.journal) as journal:
        for event in run.events:
            journal.append(event)
    escalated = [e.seq for e in run.events if e.kind is EventKind.TASK_ESCALATED]
    notes = fleet.root / "escalations.jsonl"
    assert len(escalated) == 1 and not notes.exists()

    for n in range(2):  # the next supervisor runs it once; the one after, not again
        again = Supervisor(fleet)
        try:
            if n == 0:
                again.wait_for("on_escalate for t-doomed", "running it now")
            again.wait_for("supervising")
        finally:
            assert again.stop() == 0
        delivered = [json.loads(line) for line in notes.read_text().splitlines()]
        assert [(d["kind"], d["seq"], d["task_id"]) for d in delivered] == [
            ("task_escalated", escalated[0], "t-doomed")
        ]
    assert not any("on_escalate for" in line for line in again.seen)


def test_restarts_start_from_the_coordinator_snapshot_and_fold_only_the_tail(
    fleet: Fleet,
) -> None:
    # A clean stop leaves the coordinator's state beside the journal; the next supervisor
    # starts from it. One killed later (no snapshot of what it did) leaves a tail, which
    # the one after folds onto the snapshot: nothing launched twice, nothing forgotten.
    snapshot = fleet.journal.with_name(fleet.journal.name + ".coordinator")
    first = Supervisor(fleet)
    try:
        first.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PERM_TASK))
        first.wait_for("task_succeeded", "t-perm")
    finally:
        assert first.stop() == 0
    events = len(fleet.journal.read_text().splitlines())
    assert json.loads(snapshot.read_text().splitlines()[0])["seq"] == events

    second = Supervisor(fleet)
    second.wait_for("recovering", f"({events} events, 0 after its snapshot)")
    second.wait_for("supervising")
    fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PR_TASK))
    second.wait_for("task_succeeded", "t-pr")
    assert second.stop(signal.SIGKILL) == -signal.SIGKILL
    tail = len(fleet.journal.read_text().splitlines()) - events
    assert tail > 0

    third = Supervisor(fleet)
    try:
        third.wait_for("recovering", "after its snapshot", f", {tail} after")
        third.wait_for("supervising")
        # Both tasks are known to it, the settled one too: submitted again, nothing runs.
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PERM_TASK))
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PR_TASK))
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(SIGINT_TASK))
        third.wait_for("task_succeeded", "t-sigint")
    finally:
        assert third.stop() == 0
    for task in ("t-perm", "t-pr", "t-sigint"):
        assert len(fleet.events("task_submitted", task)) == 1, task
        assert len(fleet.events("attempt_launched", task)) == 1, task
    assert _phases(fleet) == {"t-perm": "succeeded", "t-pr": "succeeded", "t-sigint": "succeeded"}


def test_a_delivery_record_that_is_not_a_file_is_refused_in_one_line(fleet: Fleet) -> None:
    record = fleet.root / ".orch-fleet" / "on_escalate.delivered"
    record.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(record)  # reading it would block the supervisor's start for ever
    proc = fleet.cli("supervise", "--config", "fleet.toml", check=False)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1].endswith(f"{record}: not a regular file (a FIFO)")
    ), proc.stderr


def test_a_second_supervisor_on_the_same_journal_is_refused(fleet: Fleet) -> None:
    first = Supervisor(fleet)
    try:
        first.wait_for("supervising")
        second = fleet.cli("supervise", "--config", "fleet.toml", check=False)
        assert second.returncode == 2
        assert "locked by another process" in second.stderr
    finally:
        assert first.stop() == 0


def _bad(fleet: Fleet, text: str) -> str:
    (fleet.root / "bad.toml").write_text(text)
    proc = fleet.cli("supervise", "--config", "bad.toml", check=False)
    assert proc.returncode == 2
    return proc.stderr.strip()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'repository = "project/repo"\nagent = "gpt-pilot"\n',
            "bad.toml:2: agent: unknown agent 'gpt-pilot'",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\non_escalate = "mail -s x ops"\n',
            "bad.toml:3: on_escalate: must be a list of words (argv), never a shell string",
        ),
        ('repository = "nowhere"\n', "bad.toml:1: repository:"),
        (
            'repository = "project/repo"\nbranch_pattern = "work"\n',
            "bad.toml:2: branch_pattern: must contain {agent}",
        ),
        (
            'repository = "project/repo"\nbase = "--output=pwned"\n',
            "bad.toml:2: base: base '--output=pwned' must not start with '-'",
        ),
        (
            'repository = "project/repo"\nbase = "no-such-branch"\n',
            "bad.toml:2: base: 'no-such-branch' names no branch or commit",
        ),
        (
            'repository = "project/repo"\nbranch_pattern = "-{agent}"\n',
            "bad.toml:2: branch_pattern: branch '-a' must not start with '-'",
        ),
        (
            'repository = "project/repo"\nbranch_pattern = "{agent}..x"\n',
            "bad.toml:2: branch_pattern: branch 'a..x' must not hold '..'",
        ),
        (
            'repository = "project/repo"\nagent = "sim"\n[policy]\nbackoff_cap = -1\n',
            "bad.toml:4: policy.backoff_cap:",
        ),
        (
            'repository = "project/repo"\nattempt_timeout = 30\nreposit = 1\n',
            "bad.toml:3: reposit: unknown key",
        ),
    ],
)
def test_fleet_file_errors_name_file_line_and_key(fleet: Fleet, text: str, expected: str) -> None:
    assert expected in _bad(fleet, text)


def test_submit_refuses_a_bad_task_file_before_spooling_anything(fleet: Fleet) -> None:
    good = fleet.task_file(SIGINT_TASK)
    (fleet.root / "bad-task.toml").write_text('id = "t2"\ntitle = "x"\ndeliverables = []\n')
    proc = fleet.cli("submit", "--config", "fleet.toml", good, "bad-task.toml", check=False)
    assert proc.returncode == 2
    assert "bad-task.toml:3: deliverables: must list at least one file" in proc.stderr
    spool = fleet.root / ".orch-fleet" / "spool"
    assert not spool.exists() or list(spool.glob("*.json")) == []


@pytest.mark.claude
@pytest.mark.skipif(claude_code_missing() is not None, reason=str(claude_code_missing()))
def test_supervised_real_claude_code_recovers_from_sigint(fleet: Fleet) -> None:
    """The same fleet file and commands with ``agent = "claude-code"``: the real CLI, SIGINT
    after its first file, resumed to success."""
    sigint = FaultSpec(
        "sigint", Trigger("file_written", path="fake3.md"), task="t-sigint", fault_id="f1"
    )
    fleet.write_config(agent="claude-code", fault_plan=str(_fault_plan(fleet, [sigint])))
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(SIGINT_TASK))
        supervisor.wait_for("task_succeeded", "t-sigint")
    finally:
        assert supervisor.stop() == 0
    assert _reasons(fleet, "t-sigint") == ["sigint"]
    assert _pushed(fleet, "t-sigint")
    assert [pr.number for pr in fleet.forge.pull_requests()] == [1]


def test_a_fleet_file_edit_reaches_the_next_submitted_task(fleet: Fleet) -> None:
    # The permission flag left out, then put back while the supervisor runs: the next task
    # submitted is launched with it, without a restart or a release.
    fleet.write_config(skip_permissions=False)
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.write_config(skip_permissions=True)
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PERM_TASK))
        supervisor.wait_for("agent configuration reloaded")
        supervisor.wait_for("task_succeeded", "t-perm")
    finally:
        assert supervisor.stop() == 0
    assert _reasons(fleet, "t-perm") == []
    assert fleet.events("task_succeeded", "t-perm")[0]["data"]["first_try"] is True


def test_the_server_of_a_killed_supervisor_is_reaped(fleet: Fleet) -> None:
    from pytest_orch_recovery.runtime.server import tmux_server_running

    first = Supervisor(fleet)
    first.wait_for("supervising")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert tmux_server_running(fleet.socket)  # running on, with no session
    # The operator's command removes it ...
    proc = fleet.cli("reap", "--config", "fleet.toml")
    assert "removed the empty tmux server" in proc.stdout
    assert not tmux_server_running(fleet.socket)
    assert "no tmux server runs" in fleet.cli("reap", "--config", "fleet.toml").stdout
    # ... and so does the next supervisor, whose own stop leaves none behind either.
    second = Supervisor(fleet)
    second.wait_for("supervising")
    assert second.stop(signal.SIGKILL) == -signal.SIGKILL
    third = Supervisor(fleet)
    try:
        third.wait_for("supervising")
        refused = fleet.cli("reap", "--config", "fleet.toml", check=False)
        assert refused.returncode == 2 and "a supervisor is running" in refused.stderr
    finally:
        assert third.stop() == 0
    assert not tmux_server_running(fleet.socket)


def test_supervise_with_tmux_tmpdir_set(fleet: Fleet, tmp_path: Path) -> None:
    from pytest_orch_recovery.runtime.server import tmux_socket_path

    sockets = Path("/tmp") / f"orch-tmpdir-{os.getpid()}"  # short: a socket path is <108 bytes
    sockets.mkdir(exist_ok=True)
    fleet.env["TMUX_TMPDIR"] = str(sockets)
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PR_TASK))
        supervisor.wait_for("task_succeeded", "t-pr")
        where = subprocess.run(
            ["tmux", "-L", fleet.socket, "display-message", "-p", "#{socket_path}"],
            env=fleet.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert where == str(sockets / f"tmux-{os.getuid()}" / fleet.socket)
    finally:
        assert supervisor.stop() == 0
        subprocess.run(
            ["tmux", "-L", fleet.socket, "kill-server"], env=fleet.env, capture_output=True,
            check=False,
        )  # fmt: skip
        subprocess.run(["rm", "-rf", str(sockets)], check=False)
    assert not tmux_socket_path(fleet.socket).exists()  # nothing in the default place


LIMITED = (SIGINT_TASK, PR_TASK, PERM_TASK)  # one file each: the wait is the reset's


def _launches(fleet: Fleet, task: str) -> list[dict[str, Any]]:
    return fleet.events("attempt_launched", task)


def test_a_usage_limit_holds_the_fleet_until_the_reset(fleet: Fleet) -> None:
    """Three agents on one subscription hit its usage limit: one condition, one notice, no
    escalation, no attempt charged, and every task resumes after the reset."""
    # A plan's limit is a subscription's: on an API key Claude Code waits out a reset this
    # close instead (docs/claude-code.md).
    fleet.account = {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-double-not-a-real-token"}
    fleet.write_config()
    # The account's limit lifts on the next whole minute at least 5 s away (the double).
    fleet.double.add_fault(
        ApiFaultSpec(kind=ApiFaultKind.USAGE_LIMIT, times=1, at_request=2, scope="task", seconds=5)
    )
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in LIMITED))
        notice = supervisor.wait_for("usage_limited")
        assert "waiting for the quota reset at" in notice
        status = fleet.cli("status", "--config", "fleet.toml").stdout
        held = fleet.status()["usage_limits"]
        for task in LIMITED:
            supervisor.wait_for("task_succeeded", task.task_id)
    finally:
        assert supervisor.stop() == 0
    conditions = fleet.events("usage_limited")
    assert len(conditions) == 1, conditions
    condition = conditions[0]["data"]
    assert "You've hit your 5-hour limit · resets" in condition["said"]
    if held:  # status ran before the reset (it is at least 5 s away, usually more)
        assert status.startswith("waiting for the quota reset at"), status
        assert held[0]["agent_type"] == "claude-code"
    assert not fleet.events("task_escalated")
    assert sum("usage_limited" in line for line in supervisor.seen) == 1  # one notice
    for task in LIMITED:
        launches = _launches(fleet, task.task_id)
        limited = [
            e
            for e in fleet.events("failure_attributed", task.task_id)
            if e["data"]["attribution"].get("usage_limit")
        ]
        # Each failed attempt was the limit's, and each relaunch waited for the reset.
        assert len(limited) == len(launches) - 1 >= 1, task.task_id
        assert all(e["time"] >= condition["until"] for e in launches[1:]), task.task_id
        decisions = fleet.events("decision", task.task_id)
        assert {d["data"]["decision"]["rule"] for d in decisions} == {"usage_limit_wait"}
    assert _phases(fleet) == {t.task_id: "succeeded" for t in LIMITED}


def test_a_fallback_agent_finishes_before_the_reset(fleet: Fleet) -> None:
    """With fallback_agents the same fleet moves to the next agent (here the sim agent on
    another account, as a command template) and finishes long before the reset."""
    # The primary agents on a subscription (a plan's limit: on an API key Claude Code gives
    # up on an hour's reset with a plain 429); the fallback on an API key of its own.
    fleet.account = {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-double-not-a-real-token"}
    fallback = (
        "env ANTHROPIC_API_KEY=sk-ant-api03-fallback-account-key "
        f"{sys.executable} -m pytest_orch_recovery.doubles.simagent -p --output-format json "
        "--dangerously-skip-permissions {prompt}"
    )
    fleet.write_config(fallback_agents=[fallback])
    fleet.double.add_fault(
        ApiFaultSpec(
            kind=ApiFaultKind.USAGE_LIMIT, times=1, at_request=2, scope="task", seconds=3600
        )
    )
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in LIMITED))
        for task in LIMITED:
            supervisor.wait_for("task_succeeded", task.task_id)
    finally:
        assert supervisor.stop() == 0
    condition = fleet.events("usage_limited")[0]["data"]
    succeeded = fleet.events("task_succeeded")
    assert len(succeeded) == len(LIMITED)
    assert all(e["time"] < condition["resets_at"] for e in succeeded)
    assert not fleet.events("task_escalated")
    for task in LIMITED:
        last = _launches(fleet, task.task_id)[-1]
        assert last["data"]["agent_type"] == fallback, task.task_id
    # The tasks that hit the limit were reassigned, with what is left to do.
    reassigned = [
        d
        for d in fleet.events("decision")
        if d["data"]["decision"]["rule"] == "usage_limit_fallback"
    ]
    assert reassigned and all(d["data"]["decision"]["strategy"] == "reassign" for d in reassigned)
    assert all(_pushed(fleet, t.task_id) for t in LIMITED)


_HELD_AGENT = """#!/bin/sh
# Attempt 1 holds (its pid in the results dir) until something ends it; later attempts are
# the sim agent.
if [ "$ORCH_ATTEMPT" = 1 ]; then
    echo $$ > "$ORCH_RESULTS_DIR/$ORCH_AGENT.held"
    exec sleep 600
fi
exec "{python}" -P -m pytest_orch_recovery.doubles.simagent -p --output-format json \\
    --dangerously-skip-permissions < "$1"
"""


def _held_fleet(fleet: Fleet, tasks: Sequence[Task], **settings: Any) -> Path:
    """The fleet with an agent whose first attempts hold, and a model double for ``tasks``;
    returns the task file."""
    script = fleet.root / "held-agent.sh"
    script.write_text(_HELD_AGENT.replace("{python}", sys.executable))
    script.chmod(0o755)
    fleet.double.stop()
    fleet.double = ModelDouble(Plan(tuple(plan_for_task(t) for t in tasks))).start()
    fleet.write_config(agent=f"{script} {{prompt_file}}", **settings)
    path = fleet.root / "tasks.toml"
    path.write_text(
        "".join(
            f'[[tasks]]\nid = "{t.task_id}"\ntitle = "{t.title}"\n'
            f"deliverables = {json.dumps(list(t.deliverables))}\n"
            for t in tasks
        )
    )
    return path


def _held_pids(fleet: Fleet, count: int) -> dict[str, int]:
    """agent -> pid of its holding first attempt, once ``count`` of them are holding."""
    results = fleet.root / ".orch-fleet" / "results"
    deadline = time.monotonic() + _BOUND
    while time.monotonic() < deadline:
        held = {p.name.removesuffix(".held"): p.read_text().strip() for p in results.glob("*.held")}
        if len(held) >= count and all(v.isdigit() for v in held.values()):
            return {agent: int(pid) for agent, pid in held.items()}
        time.sleep(0.1)
    pytest.fail(f"{count} held attempts not running after {_BOUND:.0f} s")


def _pages(fleet: Fleet) -> list[dict[str, Any]]:
    path = fleet.root / "escalations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_ten_outside_kills_are_one_incident_one_page_one_release(fleet: Fleet) -> None:
    tasks = [Task(f"t-kill{i}", f"Write kill note {i}", (f"kill{i}.md",)) for i in range(10)]
    task_file = _held_fleet(fleet, tasks, incident_settle=30)
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", task_file.name)
        for pid in _held_pids(fleet, len(tasks)).values():
            os.kill(pid, signal.SIGKILL)  # ten kills from outside, within a second
        supervisor.wait_for("on_escalate ran for incident killed-1")
        escalated = sorted(e["task_id"] for e in fleet.events("task_escalated"))
        # The breaker (threshold 3) opens at the third kill: the first two are restarted.
        assert len(escalated) == len(tasks) - 2
        assert {e["data"]["incident"] for e in fleet.events("task_escalated")} == {"killed-1"}
        pages = _pages(fleet)
        assert len(pages) == 1
        assert sorted(pages[0]["incident"]["tasks"]) == escalated
        assert pages[0]["incident"]["reason"] == "killed"
        released = fleet.cli("release", "--config", "fleet.toml", escalated[-1], "--note", "fixed")
        assert released.stdout.startswith("release of incident killed-1 (killed) requested")
        assert all(t in released.stdout for t in escalated)
        for task in tasks:
            supervisor.wait_for("task_succeeded", task.task_id)
        freed = supervisor.wait_for("release of incident killed-1 frees ")
        assert sorted(freed.partition(" frees ")[2].split(", ")) == escalated
    finally:
        assert supervisor.stop() == 0
    actions = fleet.events("operator_action")
    assert [(a["data"]["incident"], sorted(a["data"]["tasks"])) for a in actions] == [
        ("killed-1", escalated)
    ]
    assert len(_pages(fleet)) == 1
    assert _phases(fleet) == dict.fromkeys((t.task_id for t in tasks), "succeeded")
    # Releasing what is not escalated is an error, and nothing is spooled.
    spooled = sorted((fleet.root / ".orch-fleet" / "spool" / "done").iterdir())
    for target, why in (
        (escalated[0], "not escalated (nothing to release)"),
        ("killed-1", "incident released already"),
        ("t-nope", "no such task or incident"),
    ):
        proc = fleet.cli("release", "--config", "fleet.toml", target, check=False)
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [f"orch-recovery release: error: {target}: {why}"]
    assert sorted((fleet.root / ".orch-fleet" / "spool" / "done").iterdir()) == spooled
    assert not list((fleet.root / ".orch-fleet" / "spool").glob("*.json"))


def test_escalated_tasks_kept_compact_in_the_snapshot_are_released_after_a_restart(
    fleet: Fleet,
) -> None:
    # A clean stop keeps the incident's escalated tasks in the coordinator snapshot as the
    # state a replay holds (not their events); the next supervisor starts from it, does
    # not page the incident again, and an operator's release frees every task it holds.
    tasks = [Task(f"t-esc{i}", f"Write escalation note {i}", (f"esc{i}.md",)) for i in range(5)]
    task_file = _held_fleet(fleet, tasks, incident_settle=3)
    snapshot = fleet.journal.with_name(fleet.journal.name + ".coordinator")
    first = Supervisor(fleet)
    try:
        first.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", task_file.name)
        for pid in _held_pids(fleet, len(tasks)).values():
            os.kill(pid, signal.SIGKILL)
        first.wait_for("on_escalate ran for incident killed-1")
        escalated = sorted(e["task_id"] for e in fleet.events("task_escalated"))
        assert len(escalated) == len(tasks) - 2  # the breaker opens at the third kill
        for task in sorted({t.task_id for t in tasks} - set(escalated)):
            first.wait_for("task_succeeded", task)
    finally:
        assert first.stop() == 0
    events = len(fleet.journal.read_text().splitlines())
    header = json.loads(snapshot.read_text().splitlines()[0])
    assert (header["seq"], header["compact"], header["settled"]) == (events, len(escalated), 2)
    assert len(_pages(fleet)) == 1

    second = Supervisor(fleet)
    try:
        second.wait_for("recovering", f"({events} events, 0 after its snapshot)")
        second.wait_for("supervising")
        released = fleet.cli("release", "--config", "fleet.toml", escalated[-1], "--note", "fixed")
        assert released.stdout.startswith("release of incident killed-1 (killed) requested")
        freed = second.wait_for("release of incident killed-1 frees ")
        assert sorted(freed.partition(" frees ")[2].split(", ")) == escalated
        for task in escalated:
            second.wait_for("task_succeeded", task)
    finally:
        assert second.stop() == 0
    assert not any("on_escalate for" in line for line in second.seen)
    assert len(_pages(fleet)) == 1
    actions = fleet.events("operator_action")
    assert [(a["data"]["incident"], sorted(a["data"]["tasks"])) for a in actions] == [
        ("killed-1", escalated)
    ]
    assert _phases(fleet) == dict.fromkeys((t.task_id for t in tasks), "succeeded")


def test_a_planned_stop_of_the_agents_neither_opens_the_breaker_nor_pages(fleet: Fleet) -> None:
    tasks = [Task(f"t-stop{i}", f"Write stop note {i}", (f"stop{i}.md",)) for i in range(2)]
    # Two agents killed within the window would open the breaker: if the supervisor's own
    # stop counted, the second task would escalate as "systematic killed".
    task_file = _held_fleet(fleet, tasks, policy={"breaker_threshold": 2})
    first = Supervisor(fleet, "--stop-agents")
    first.wait_for("supervising")
    fleet.cli("submit", "--config", "fleet.toml", task_file.name)
    held = _held_pids(fleet, len(tasks))
    assert first.stop() == 0
    assert any("SIGTERM: stopping (stopping the agents too)" in line for line in first.seen)
    assert not any("agents keep running" in line for line in first.seen)
    assert "supervise: stopping 2 running agent(s)" in first.seen
    assert wait_gone(list(held.values()), _BOUND) == []
    stop = fleet.events("operator_action")
    assert [len(a["data"]["stopped"]) for a in stop] == [2]

    second = Supervisor(fleet)
    try:
        second.wait_for("recovering")
        for task in tasks:
            second.wait_for("task_succeeded", task.task_id)
    finally:
        assert second.stop() == 0
    assert fleet.events("task_escalated") == []
    assert _pages(fleet) == []
    exits = fleet.events("attempt_exited")
    assert [e["data"]["exit"]["signal"] for e in exits if e["attempt"] == 1] == ["SIGTERM"] * 2


def test_recovery_time_counts_from_the_agents_exit_not_from_a_late_supervisor(
    fleet: Fleet,
) -> None:
    task = Task("t-late", "Write the late note", ("late.md",))
    task_file = _held_fleet(fleet, [task])
    first = Supervisor(fleet)
    first.wait_for("supervising")
    fleet.cli("submit", "--config", "fleet.toml", task_file.name)
    ((agent, pid),) = _held_pids(fleet, 1).items()
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # nobody watches now
    os.kill(pid, signal.SIGKILL)  # the agent dies while no supervisor runs
    exit_file = fleet.root / ".orch-fleet" / "results" / f"{agent}.1.exit.json"
    deadline = time.monotonic() + _BOUND
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    ended = json.loads(exit_file.read_text())["ended_at"]
    time.sleep(3.0)  # the delay under test: the next supervisor starts this much later

    second = Supervisor(fleet)
    try:
        second.wait_for("task_succeeded", "t-late")
    finally:
        assert second.stop() == 0
    exited = fleet.events("attempt_exited", "t-late")[0]
    assert exited["data"]["ended_at"] == ended  # the agent's own end, journaled
    assert exited["time"] - ended >= 3.0  # noticed later: the detection delay is visible
    succeeded = fleet.events("task_succeeded", "t-late")[0]
    assert succeeded["data"]["recovery_time"] == pytest.approx(succeeded["time"] - ended, abs=0.01)
    report = json.loads(
        fleet.cli("report", "--journal", str(fleet.journal), "--format", "json").stdout
    )
    assert report["metrics"]["recovery_times"] == [succeeded["data"]["recovery_time"]]


def test_an_agent_s_pr_is_looked_up_while_it_finishes_not_after(fleet: Fleet) -> None:
    # The agents' gh tells the supervisor when it opened the PR; the supervisor's listing
    # starts then, and answers the exit: no listing or view is needed after the agent's end.
    # The agent waits (bounded) for that listing to be logged before it ends.
    task = Task("t-early", "Write the early note", ("early.md",))
    standard = plan_for_task(task)
    calls = fleet.forge.calls_path
    wait = (
        f'for i in $(seq 600); do grep -q \'"pr", "list"\' {shlex.quote(str(calls))} && '
        "exit 0; sleep 0.1; done; exit 1"
    )
    listed = Step("bash", wait, "free", description="Wait for the supervisor's listing")
    fleet.double.stop()
    fleet.double = ModelDouble(
        Plan((TaskPlan(standard.match, (*standard.steps, listed), standard.final),))
    ).start()
    fleet.write_config()  # the new double's address; default workers (a pool)
    supervisor = Supervisor(fleet)
    try:
        supervisor.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(task))
        supervisor.wait_for("task_succeeded", "t-early")
    finally:
        assert supervisor.stop() == 0
    succeeded = fleet.events("task_succeeded", "t-early")[0]
    assert succeeded["data"]["first_try"] is True
    ended = fleet.events("attempt_exited", "t-early")[0]["data"]["ended_at"]
    reads = [c for c in fleet.forge.calls() if c["argv"][:2] in (["pr", "list"], ["pr", "view"])]
    created = [c for c in fleet.forge.calls() if c["argv"][:2] == ["pr", "create"]]
    assert len(created) == 1 and created[0]["exit_code"] == 0
    assert reads and all(c["argv"][:2] == ["pr", "list"] for c in reads)
    assert all(created[0]["ended"] <= c["started"] < ended for c in reads)
