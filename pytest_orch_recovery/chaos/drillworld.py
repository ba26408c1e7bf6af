"""What a drill (``orch-recovery drill``) runs on: its faults, its tasks, and the world it
builds for them -- a repository with a small codebase and its tests, a bare origin, the
``gh`` forge, the model double's plan, the fleet file -- all inside one sandbox.

The drill's faults are the catalogue's (:mod:`.faults`), injected by the same mechanisms the
chaos tiers use, under names an on-call team would use. One, ``push-rejected``, is not in the
catalogue: the origin's ``pre-receive`` hook declines the agent's pushes, as a protected branch
or a server-side check does. Faults that hit the whole fleet (GitHub down, the permission flag
off) each get a phase of their own, so that they hit their own task and nothing else.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.tmux import API_FAULTS, api_fault_spec, fill_template
from pytest_orch_recovery.doubles.modeldouble import ApiFaultSpec, Plan, plan_for_task
from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.model import Reason, Task
from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.runtime.host import DEFAULT_ENV_ALLOW
from pytest_orch_recovery.store import atomic


@dataclass(frozen=True)
class DrillFault:
    """One fault a drill can inject."""

    name: str
    kind: str | None  # the catalogue's kind; None: a drill's own (push-rejected)
    expected: Reason | None  # what the engine must blame; None: no failed attempt of its own
    description: str
    alone: bool = False  # fleet-wide: its task runs in a phase of its own
    release: bool = False  # the escalation it causes is fixed by the drill, then released


FAULTS: Mapping[str, DrillFault] = {
    f.name: f
    for f in (
        DrillFault(
            "sigint",
            "sigint_keys",
            Reason.SIGINT,
            "Ctrl-C typed into the agent's tmux pane after it wrote its first file",
        ),
        DrillFault(
            "kill-agent",
            "kill",
            Reason.KILLED,
            "kill -9 of the agent process after it wrote its first file",
        ),
        DrillFault(
            "kill-supervisor",
            "coordinator_crash",
            None,
            "kill -9 of the supervisor while the agent runs its tests; started again, it "
            "re-adopts the attempt (never launched twice)",
        ),
        DrillFault(
            "push-rejected",
            None,
            Reason.GIT_ERROR,
            "the origin's pre-receive hook declines the agent's pushes (twice: the agent "
            "retries once)",
        ),
        DrillFault(
            "partial-files",
            "quit_early",
            Reason.INCOMPLETE,
            "the model says it is done after the first of the task's files",
        ),
        DrillFault(
            "api-error",
            "api_overloaded",
            Reason.API_ERROR,
            "HTTP 529 overloaded_error from the API, more times than the agent retries",
        ),
        DrillFault(
            "gh-down",
            "pr_create_fails",
            Reason.GITHUB_ERROR,
            "GitHub unreachable when the agent opens its pull request",
            alone=True,
        ),
        DrillFault(
            "no-permission",
            "missing_permission_flag",
            Reason.PERMISSION,
            "the fleet file without the permission flag; the escalation is fixed in the "
            "fleet file and released",
            alone=True,
            release=True,
        ),
    )
}
DEFAULT_FAULTS = ("sigint", "kill-agent", "push-rejected")
DEFAULT_TASKS = 3

# The drill's timings: short backoffs, a quick intake, a generous attempt timeout.
_POLICY = {"backoff_base": 0.5, "backoff_cap": 4.0}
ATTEMPT_TIMEOUT = 180
GATE_AT = "drill-at-gate"  # the kill-supervisor task's agent signals it is in its tests
GATE_OPEN = "drill-gate"  # ... and waits for this one


class DrillError(UsageError):
    """Drill settings that cannot run (one line, exit 2)."""


def describe_faults() -> str:
    """The fault table for ``--help`` and the docs."""
    rows = []
    for f in FAULTS.values():
        kind = f"catalogue: {f.kind}" if f.kind else "drill only"
        rows.append(f"  {f.name:<16}{f.description} ({kind})")
    return "\n".join(rows)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class DrillTask:
    task: Task
    agent: str
    fault: DrillFault | None

    @property
    def label(self) -> str:
        return f"{self.task.task_id} ({self.fault.name if self.fault else 'no fault'})"


# (name, implementation, test body): small helpers the tasks add to the codebase.
_FEATURES = (
    ("slugify", "return '-'.join(text.lower().split())", "self.assertEqual(f('A b'), 'a-b')"),
    ("clamp", "return min(max(text, 0), 10)", "self.assertEqual(f(12), 10)"),
    ("initials", "return ''.join(w[0] for w in text.split())", "self.assertEqual(f('a b'), 'ab')"),
    ("shout", "return text.upper() + '!'", "self.assertEqual(f('hi'), 'HI!')"),
    ("halve", "return text // 2", "self.assertEqual(f(9), 4)"),
    ("words", "return len(text.split())", "self.assertEqual(f('a b c'), 3)"),
)
TESTS_COMMAND = "python3 -m unittest discover -q -s tests -t ."


def _feature(index: int) -> tuple[str, str, str]:
    name, body, check = _FEATURES[index % len(_FEATURES)]
    if index >= len(_FEATURES):
        name = f"{name}{index // len(_FEATURES) + 1}"
    return name, body, check


def plan_tasks(count: int, faults: Sequence[str]) -> list[DrillTask]:
    """``count`` tasks, the first ones each carrying one of ``faults`` (fleet-wide ones
    last, since each runs in a phase of its own)."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise DrillError(f"--fault: unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}")
    if count < 1:
        raise DrillError(f"--tasks: must be at least 1, got {count}")
    if count < len(faults):
        raise DrillError(
            f"--tasks: {len(faults)} faults need at least {len(faults)} tasks (one each), "
            f"got {count}"
        )
    ordered = sorted((FAULTS[f] for f in faults), key=lambda f: f.alone)
    out = []
    for i in range(count):
        fault = ordered[i] if i < len(ordered) else None
        name, _, _ = _feature(i)
        suffix = f"-{fault.name}" if fault else ""
        task = Task(
            f"t{i + 1}{suffix}",
            f"Add the {name} helper",
            (f"inventory/{name}.py", f"tests/test_{name}.py"),
            tests=TESTS_COMMAND,
        )
        out.append(DrillTask(task, f"agent-{i + 1}", fault))
    return out


def gated_tests(root: Path, socket: str) -> str:
    """The kill-supervisor task's tests: the first run waits at a tmux gate, so the drill
    kills the supervisor while the attempt is certainly in flight."""
    gate, tmux = shlex.quote(str(root / "gate-open")), f"tmux -L {shlex.quote(socket)}"
    return (
        f"{{ test -e {gate} || {{ {tmux} wait-for -S {GATE_AT}; {tmux} wait-for {GATE_OPEN}; }}; }}"
        f" && {TESTS_COMMAND}"
    )


# --------------------------------------------------------------------------- the world


def _codebase() -> dict[str, str]:
    return {
        "README.md": "# inventory\n\nA small codebase the drill's agents add helpers to.\n\n"
        f"    {TESTS_COMMAND}\n",
        "inventory/__init__.py": '"""Stock keeping."""\n',
        "inventory/stock.py": "def total(counts):\n    return sum(counts.values())\n",
        "tests/__init__.py": "",
        "tests/test_stock.py": fill_template("drill_stock_test"),
    }


def seed_codebase(repo: Path) -> None:
    """The small codebase and its tests, committed and pushed to origin's main."""
    for name, text in _codebase().items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    run_git(["add", "-A"], cwd=repo)
    run_git(["commit", "--quiet", "--no-verify", "-m", "The inventory codebase"], cwd=repo)
    run_git(["push", "--quiet", "origin", "main"], cwd=repo)


def _contents(index: int, task: Task) -> dict[str, str]:
    name, body, check = _feature(index)
    impl, test = task.deliverables
    return {
        impl: f'"""{task.title}."""\n\n\ndef {name}(text):\n    {body}\n',
        test: fill_template("drill_helper_test", name=name, cls=name.title(), check=check),
    }


def model_plan(tasks: Sequence[DrillTask]) -> Plan:
    """The model double's plan: each task's standard plan, its files real code and tests."""
    return Plan(
        tuple(plan_for_task(t.task, contents=_contents(i, t.task)) for i, t in enumerate(tasks))
    )


def api_faults(tasks: Sequence[DrillTask]) -> list[ApiFaultSpec]:
    """The model double's faults: partial files and API errors, each on its task."""
    out = []
    for t in tasks:
        if t.fault is not None and t.fault.kind in API_FAULTS:
            trigger = Trigger("tool_call") if t.fault.kind == "quit_early" else None
            out.append(
                api_fault_spec(FaultSpec(t.fault.kind, trigger, task=t.task.task_id), t.task)
            )
    return out


def hook_faults(tasks: Sequence[DrillTask]) -> list[FaultSpec]:
    """The fault hook's faults: a signal after the task's first file is written."""
    return [
        FaultSpec(
            t.fault.kind,
            Trigger("file_written", path=t.task.deliverables[0]),
            task=t.task.task_id,
            fault_id=t.fault.name,
        )
        for t in tasks
        if t.fault is not None and t.fault.kind in ("sigint_keys", "kill")
    ]


_PRE_RECEIVE = """#!/bin/sh
# orch-recovery drill, push-rejected: declines a push to a branch while its counter file
# (drill-reject/<branch>) holds a number above 0, and counts it down.
dir="$(dirname "$0")/drill-reject"
status=0
while read -r old new ref; do
    branch="${ref#refs/heads/}"
    count="$dir/$branch"
    [ -f "$count" ] || continue
    left="$(cat "$count")"
    if [ "$left" -gt 0 ]; then
        echo $((left - 1)) > "$count"
        echo "drill: pushes to $branch are declined (a protected branch)" >&2
        status=1
    fi
done
exit $status
"""


def reject_pushes(origin: Path, branch: str, times: int) -> None:
    """Make the origin decline the next ``times`` pushes to ``branch``."""
    hooks = origin / "hooks"
    atomic.write_bytes(hooks / "pre-receive", _PRE_RECEIVE.encode(), mode=0o755)
    (hooks / "drill-reject").mkdir(exist_ok=True)
    atomic.write_text(hooks / "drill-reject" / branch, f"{times}\n")


def _toml(value: object) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are TOML's too."""
    return json.dumps(value)


def fleet_file(
    sandbox: Sandbox,
    *,
    agent: str,
    env: Mapping[str, str],
    fault_plan: Path | None,
    skip_permissions: bool = True,
    settings_over: Mapping[str, object] | None = None,
) -> str:
    """The fleet file the drill's supervisor runs (docs/production.md), paths relative to it;
    ``settings_over``: keys that replace or join the drill's (one host of several: its own
    repository, state, tmux server, and the fleet store)."""
    settings: dict[str, object] = {
        "repository": "repo",
        "state_dir": "fleet",
        "worktree_root": "worktrees",
        "checkpoint_dir": "checkpoints",
        "agent": agent,
        "skip_permissions": skip_permissions,
        "tmux_socket": sandbox.tmux_socket,
        "attempt_timeout": ATTEMPT_TIMEOUT,
        "intake_interval": 0.25,
        # The agents' tests and the fault hook reach the drill's tmux server through
        # TMUX_TMPDIR when it is set; the sandbox marker lets the teardown find every process.
        "env_allow": [*DEFAULT_ENV_ALLOW, "TMUX_TMPDIR", "ORCH_SANDBOX_ID"],
    }
    if fault_plan is not None:
        settings["fault_plan"] = str(fault_plan.relative_to(sandbox.root))
    settings.update(settings_over or {})
    lines = ["# orch-recovery drill: the fleet file of this drill's supervisor"]
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    lines += ["", "[env]  # the model double for an API (no account), few retries"]
    lines += [f"{key} = {_toml(value)}" for key, value in env.items()]
    lines += ["", "[policy]  # short backoffs: a drill, not a fleet"]
    lines += [f"{key} = {_toml(value)}" for key, value in _POLICY.items()]
    return "\n".join(lines) + "\n"


def task_file(t: DrillTask) -> str:
    """A task file for ``orch-recovery submit`` (the scenarios' task schema)."""
    body: dict[str, object] = {
        "id": t.task.task_id,
        "title": t.task.title,
        "deliverables": list(t.task.deliverables),
        "agent": t.agent,
    }
    if t.task.tests:
        body["tests"] = t.task.tests
    return "".join(f"{k} = {_toml(v)}\n" for k, v in body.items())
