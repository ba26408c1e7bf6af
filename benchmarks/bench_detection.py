"""Time from a permission dialog on screen to the engine's decision, against the attempt timeout.

Run ``python benchmarks/bench_detection.py [--agent sim|claude-code]``; prints one JSON object
(times in seconds), one run each:

- ``direct``: a tmux attempt prints Claude Code's Write dialog (the words the sim agent and
  the CLI draw) and records the wall-clock instant it flushed it; the runtime's screen watch
  sees it and ends the attempt; the attempt is classified and the policy decides. ``latency``
  is dialog flushed -> decision; ``ratio`` is that over the ``permission-prompt`` scenario's
  attempt timeout (what detection cost before: the whole timeout, ratio 1.0).
- ``scenario``: the bundled ``permission-prompt`` scenario run for real with ``--agent``;
  from its journal, watcher saw the dialog -> attempt exit -> decision. The dialog itself
  appeared at most one watch interval (0.25 s) plus one ``capture-pane`` before ``seen_at``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.scenario import load_scenario
from pytest_orch_recovery.chaos.tiers.tmux import run_tmux
from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.analyze import missing_work
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import PartialWork, Task
from pytest_orch_recovery.engine.policy import PastAttempt, Policy, Situation
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.runtime.tmux import TmuxRuntime

SCHEMA_VERSION = 1
_SCENARIO = BUNDLED_SCENARIOS / "permission-prompt.toml"
_TASK = Task("bench", "Add the audit log", ("audit/log.py",), wants_pr=False)
_AGENT = """\
import sys, time
from pathlib import Path
from pytest_orch_recovery.doubles.simagent.interactive import dialog
text = dialog("Write", {"file_path": "audit/log.py", "content": "x"}, Path("."))
print("working", flush=True)
time.sleep(0.5)
sys.stdout.write(text)
sys.stdout.flush()
Path(sys.argv[1]).write_text(repr(time.time()))
time.sleep(600)
"""


def _direct(timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        shown = Path(tmp) / "shown"
        box = Sandbox.create(base_dir=Path(tmp) / "sb")
        try:
            argv = [sys.executable, "-c", _AGENT, str(shown)]
            with TmuxRuntime(box, lambda _spec: argv, kill_grace=1.0) as rt:
                rt.launch(LaunchSpec(_TASK, "bench-1", 1, "command", None, "", (), "bench#1"))
                exited = rt.next_exit(rt.clock.now() + timeout)
                reported = time.time()
                if exited is None:
                    return {"detected": False}
                attribution = classify(
                    Observation(
                        exit=exited.exit,
                        logs=(LogText("pane", exited.output),),
                        deliverables_missing=_TASK.deliverables,
                    )
                )
                partial = PartialWork(deliverables_missing=_TASK.deliverables)
                decision = Policy().decide(
                    Situation(
                        task=_TASK,
                        agent="bench-1",
                        agent_type="command",
                        attribution=attribution,
                        partial=partial,
                        missing=missing_work(_TASK, partial),
                        history=(PastAttempt(1, "command", attribution.reason, None),),
                        breaker_open=False,
                        max_attempts=4,
                    )
                )
                decided = time.time()
        finally:
            box.teardown()
        shown_at = float(shown.read_text())
        screen = exited.exit.screen
        return {
            "detected": screen is not None and screen.kind == "dialog",
            "dialog": None if screen is None else screen.detail,
            "seen_after": None if screen is None else round(screen.seen_at - shown_at, 3),
            "exit_reported_after": round(reported - shown_at, 3),
            "latency": round(decided - shown_at, 3),
            "reason": str(attribution.reason),
            "strategy": str(decision.strategy),
            "attempt_timeout": timeout,
            "ratio": round((decided - shown_at) / timeout, 4),
        }


def _scenario(agent: str, timeout: float) -> dict[str, Any]:
    scenario = load_scenario(_SCENARIO)
    with tempfile.TemporaryDirectory() as tmp:
        out = run_tmux(
            [t.task for t in scenario.tasks],
            scenario.faults,
            agent=agent,
            agents=[t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks],
            operator_actions=scenario.operator_actions,
            attempt_timeout=timeout,
            base_dir=Path(tmp),
        )
    exited = next(e for e in out.events if e.kind is EventKind.ATTEMPT_EXITED)
    screen = exited.payload.to_json()["exit"].get("screen")
    decided = next(e for e in out.events if e.kind is EventKind.DECISION)
    attributed = next(e for e in out.events if e.kind is EventKind.FAILURE_ATTRIBUTED)
    if screen is None:
        return {
            "agent": agent,
            "detected": False,
            "reason": attributed.payload.to_json()["attribution"]["reason"],
        }
    seen = float(screen["seen_at"])
    return {
        "agent": agent,
        "detected": True,
        "dialog": screen["detail"],
        "attempt_started_to_seen": round(seen - float(exited.payload.to_json()["started_at"]), 3),
        "seen_to_exit": round(float(exited.payload.to_json()["ended_at"]) - seen, 3),
        "seen_to_decision": round(decided.time - seen, 3),
        "reason": attributed.payload.to_json()["attribution"]["reason"],
        "strategy": decided.payload.to_json()["decision"]["strategy"],
        "attempt_timeout": timeout,
        "ratio": round((decided.time - seen) / timeout, 4),
        "outcome": {k: str(v) for k, v in out.outcomes.items()},
        "leftovers": out.leftovers,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="sim", choices=("sim", "claude-code"))
    parser.add_argument("--no-scenario", action="store_true", help="only the direct run")
    args = parser.parse_args(argv)
    timeout = load_scenario(_SCENARIO).attempt_timeout or 15.0
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "detection",
        "watch_interval": 0.25,
        "direct": _direct(timeout),
    }
    if not args.no_scenario:
        report["scenario"] = _scenario(args.agent, timeout)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
