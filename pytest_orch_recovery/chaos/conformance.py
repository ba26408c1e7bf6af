"""Conformance: every case below, run with the sim agent and with the real Claude Code CLI.

Both agents run under the same harness (:func:`~pytest_orch_recovery.chaos.tiers.tmux.run_tmux`:
sandbox,
model double, forge, tmux, dispatcher, coordinator), and the comparison covers only what an
orchestrator can observe of a run:

- per attempt: exit code and signal, the result JSON's keys (those of :data:`RESULT_KEYS`
  present), ``subtype``, ``is_error``, how many ``permission_denials``;
- per task: deliverables in the worktree, commits on the bare origin, the PR in the forge, the
  attributed reasons, the chosen strategies, the final outcome.

A difference fails unless :data:`KNOWN_DIFFERENCES` lists it with its cause (the same table is
in ``docs/claude-code.md``). A known difference is allowed, not required: when its cause is
fixed, the row simply matches again.

``python -m pytest_orch_recovery.chaos.conformance [CASE ...]`` prints the table and exits 1 on an
unexplained difference (2 when the real CLI is not installed).
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.tmux import TmuxOutcome, run_tmux
from pytest_orch_recovery.engine.events import AttemptExited, DecisionMade, FailureAttributed
from pytest_orch_recovery.engine.model import ExitInfo, Task
from pytest_orch_recovery.infra.agents import (
    AgentConfig,
    AgentDriver,
    claude_code_driver,
    claude_code_missing,
)

# Result JSON keys an orchestrator reads; which of them are present is compared.
RESULT_KEYS = (
    "type",
    "subtype",
    "is_error",
    "result",
    "session_id",
    "num_turns",
    "permission_denials",
    "api_error_status",
    "terminal_reason",
    "errors",
    "stop_reason",
    "duration_ms",
    "total_cost_usd",
    "usage",
)

FAKE3 = Task("task-5030", "Create /fake3 command", ("fake3.md",))
FOUR = Task("t-four", "Add the four parser modules", ("lex.py", "parse.py", "emit.py", "cli.py"))


@dataclass(frozen=True)
class ConformanceCase:
    """One run both agents make: tasks, faults and operator actions for :func:`run_tmux`."""

    name: str
    tasks: tuple[Task, ...]
    faults: tuple[FaultSpec, ...] = ()
    agents: tuple[str, ...] | None = None
    operator_actions: tuple[str, ...] = ()
    attempt_timeout: float = 60.0


_PERMISSION_NUMBERS = (1813, 3403, 3532)

CASES: tuple[ConformanceCase, ...] = (
    # The documented incident (task-agent-5030): SIGINT right after fake3.md is written. Typed
    # into the pane, as the recovery design's first hypothesis ("tmux keyboard input
    # interference") has it.
    ConformanceCase(
        "task-agent-5030-sigint",
        (FAKE3,),
        (FaultSpec("sigint_keys", Trigger("file_written", path="fake3.md"), task="task-5030"),),
        agents=("task-agent-5030",),
    ),
    # The same, as a SIGINT to the pane's foreground process group.
    ConformanceCase(
        "task-agent-5030-sigint-group",
        (FAKE3,),
        (FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030"),),
        agents=("task-agent-5030",),
    ),
    ConformanceCase(
        "missing-permission-flag",
        tuple(Task(f"t{n}", f"Write notes {n}", (f"notes{n}.md",)) for n in _PERMISSION_NUMBERS),
        (FaultSpec("missing_permission_flag"),),
        agents=tuple(f"task-agent-{n}" for n in _PERMISSION_NUMBERS),
        operator_actions=("fix_permission_flag",),
    ),
    ConformanceCase(
        "pr-creation-fails",
        (Task("t-pr", "Document the retry policy", ("docs/retry.md",)),),
        (FaultSpec("pr_create_fails", task="t-pr"),),
    ),
    ConformanceCase(
        "partial-files", (FOUR,), (FaultSpec("kill", Trigger("file_written", n=2), task="t-four"),)
    ),
    ConformanceCase(
        "api-529-burst",
        (FOUR,),
        (FaultSpec("api_overloaded", Trigger("api_request", n=2), task="t-four"),),
    ),
    ConformanceCase(
        "stall-past-timeout",
        (FAKE3,),
        (FaultSpec("stall", Trigger("tool_call", n=1), task="task-5030"),),
        # the real CLI's resumed attempt needs ~3 s, more on a loaded 2-core machine
        attempt_timeout=20.0,
    ),
    ConformanceCase(
        "stale-index-lock", (FAKE3,), (FaultSpec("stale_index_lock", task="task-5030"),)
    ),
)
BY_NAME: Mapping[str, ConformanceCase] = {c.name: c for c in CASES}


@dataclass(frozen=True)
class KnownDifference:
    """An allowed difference: ``field`` is a glob over observation names; ``sim`` / ``real``
    are the values seen (``*``: any)."""

    case: str
    field: str
    sim: str
    real: str
    cause: str

    def covers(self, case: str, field: str, sim: str, real: str) -> bool:
        return (
            fnmatch.fnmatchcase(case, self.case)
            and fnmatch.fnmatchcase(field, self.field)
            and self.sim in ("*", sim)
            and self.real in ("*", real)
        )


# Differences between the sim agent and the real CLI that are understood and accepted, each
# with its cause. Empty since the fault hook reaches agents whose hooks run without a terminal
# (the two rows it once held; see docs/claude-code.md, "Known differences").
KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = ()


def _exit_text(exited: AttemptExited) -> str:
    info = exited.exit or ExitInfo(None)
    text = f"signal {info.signal}" if info.signal is not None else f"exit {info.status}"
    return text + (" (timed out)" if info.timed_out else "")


def observe(out: TmuxOutcome) -> dict[str, str]:
    """What an orchestrator can see of a run, as ``{name: value}`` strings."""
    seen: dict[str, str] = {}
    for task_id, phase in sorted(out.outcomes.items()):
        events = [e for e in out.events if e.task_id == task_id]
        exits = [(e, e.payload) for e in events if isinstance(e.payload, AttemptExited)]
        seen[f"{task_id}.attempts"] = str(len(exits))
        for event, exited in exits:
            prefix = f"{task_id}.a{event.attempt}"
            seen[f"{prefix}.exit"] = _exit_text(exited)
            result = exited.result
            if not isinstance(result, Mapping):
                seen[f"{prefix}.result_keys"] = "no result JSON"
                continue
            seen[f"{prefix}.result_keys"] = " ".join(k for k in RESULT_KEYS if k in result)
            seen[f"{prefix}.subtype"] = str(result.get("subtype"))
            seen[f"{prefix}.is_error"] = str(result.get("is_error"))
            denials = result.get("permission_denials")
            seen[f"{prefix}.permission_denials"] = str(
                len(denials) if isinstance(denials, list) else denials
            )
        reasons = [
            str(e.payload.attribution.reason)
            for e in events
            if isinstance(e.payload, FailureAttributed)
        ]
        strategies = [
            str(e.payload.decision.strategy)
            for e in events
            if isinstance(e.payload, DecisionMade) and e.payload.decision is not None
        ]
        seen[f"{task_id}.reasons"] = ",".join(reasons) or "-"
        seen[f"{task_id}.strategies"] = ",".join(strategies) or "-"
        repo = out.repo[task_id]
        seen[f"{task_id}.files"] = ",".join(repo.files) or "-"
        seen[f"{task_id}.origin_commits"] = str(repo.commits)
        seen[f"{task_id}.pr"] = "-" if repo.pr is None else "open"
        seen[f"{task_id}.outcome"] = str(phase)
    seen["leftovers"] = str(len(out.leftovers))
    return seen


@dataclass(frozen=True)
class Row:
    field: str
    sim: str
    real: str
    status: str  # "same", "known", "DIFF"
    cause: str = ""


@dataclass(frozen=True)
class Comparison:
    case: str
    rows: tuple[Row, ...]
    seconds: Mapping[str, float]

    @property
    def unexplained(self) -> list[Row]:
        return [r for r in self.rows if r.status == "DIFF"]

    def table(self) -> str:
        width = max([len(r.field) for r in self.rows] + [5])
        lines = [
            f"## {self.case}  (sim {self.seconds.get('sim', 0):.1f} s, "
            f"claude-code {self.seconds.get('claude-code', 0):.1f} s)",
            f"| {'field':<{width}} | sim | claude-code | |",
            f"|{'-' * (width + 2)}|-----|-------------|-|",
        ]
        for r in self.rows:
            mark = {"same": "=", "known": "known", "DIFF": "**DIFF**"}[r.status]
            lines.append(f"| {r.field:<{width}} | {r.sim} | {r.real} | {mark} |")
        causes = sorted({r.cause for r in self.rows if r.cause})
        lines += [f"known: {c}" for c in causes]
        return "\n".join(lines)


def compare(
    case: str,
    sim: Mapping[str, str],
    real: Mapping[str, str],
    seconds: Mapping[str, float] | None = None,
    known_differences: Sequence[KnownDifference] | None = None,
) -> Comparison:
    table = KNOWN_DIFFERENCES if known_differences is None else known_differences
    rows = []
    for name in sorted(set(sim) | set(real), key=_field_order):
        a, b = sim.get(name, "(absent)"), real.get(name, "(absent)")
        if a == b:
            rows.append(Row(name, a, b, "same"))
            continue
        known = next((k for k in table if k.covers(case, name, a, b)), None)
        if known is not None:
            rows.append(Row(name, a, b, "known", known.cause))
        else:
            rows.append(Row(name, a, b, "DIFF"))
    return Comparison(case, tuple(rows), dict(seconds or {}))


def _field_order(name: str) -> tuple[str, int, str]:
    task, _, rest = name.partition(".")
    return (task, 0 if rest.startswith("a") and rest[1:2].isdigit() else 1, rest)


def run_case(
    case: ConformanceCase,
    driver_factory: Callable[[AgentConfig], AgentDriver] | None,
    *,
    base_dir: Path | None = None,
    seed: int = 0,
) -> TmuxOutcome:
    """One run of ``case`` (``driver_factory`` None: the bundled sim agent)."""
    return run_tmux(
        list(case.tasks),
        list(case.faults),
        agents=None if case.agents is None else list(case.agents),
        operator_actions=list(case.operator_actions),
        attempt_timeout=case.attempt_timeout,
        base_dir=base_dir,
        seed=seed,
        driver_factory=driver_factory,
    )


def real_driver(config: AgentConfig) -> AgentDriver:
    return claude_code_driver(config)


def run_both(
    case: ConformanceCase, *, base_dir: Path | None = None
) -> tuple[Comparison, dict[str, TmuxOutcome]]:
    """Run ``case`` with the sim agent, then with the real CLI, and compare."""
    import time

    outcomes: dict[str, TmuxOutcome] = {}
    seconds: dict[str, float] = {}
    for label, factory in (("sim", None), ("claude-code", real_driver)):
        started = time.monotonic()
        where = None if base_dir is None else base_dir / label
        if where is not None:
            where.mkdir(parents=True, exist_ok=True)
        outcomes[label] = run_case(case, factory, base_dir=where)
        seconds[label] = time.monotonic() - started
    comparison = compare(
        case.name, observe(outcomes["sim"]), observe(outcomes["claude-code"]), seconds
    )
    return comparison, outcomes


def main(argv: Sequence[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or [c.name for c in CASES]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(
            f"unknown case(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr
        )
        return 2
    missing = claude_code_missing()
    if missing is not None:
        print(f"conformance: {missing}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        comparison, _ = run_both(BY_NAME[name])
        print(comparison.table(), end="\n\n", flush=True)
        failed += bool(comparison.unexplained)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
