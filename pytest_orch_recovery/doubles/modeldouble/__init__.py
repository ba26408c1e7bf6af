"""The model double: a scripted Anthropic Messages API on loopback.

Agents under test (the real Claude Code CLI via ``ANTHROPIC_BASE_URL``, or the bundled sim
agent) talk to it as to the real API. It holds a plan per task (``plan.py``), answers each
request with the next tool call chosen from the conversation history it is sent
(``conversation.py``) so ``--resume`` continues, and injects API faults (``faults.py``).

>>> from pytest_orch_recovery.engine.model import Task
>>> with ModelDouble(Plan((plan_for_task(Task("t1", "Demo", ("a.md",))),))) as double:
...     double.url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

from pytest_orch_recovery.doubles.modeldouble.conversation import (
    Conversation,
    Reply,
    decide,
    read_conversation,
)
from pytest_orch_recovery.doubles.modeldouble.faults import ApiFaultKind, ApiFaultSpec
from pytest_orch_recovery.doubles.modeldouble.plan import (
    Plan,
    PlanError,
    Step,
    TaskPlan,
    load_plan,
    parse_plan,
    plan_for_task,
)
from pytest_orch_recovery.doubles.modeldouble.server import ModelDouble

__all__ = [
    "ApiFaultKind",
    "ApiFaultSpec",
    "Conversation",
    "ModelDouble",
    "Plan",
    "PlanError",
    "Reply",
    "Step",
    "TaskPlan",
    "decide",
    "load_plan",
    "parse_plan",
    "plan_for_task",
    "read_conversation",
]
