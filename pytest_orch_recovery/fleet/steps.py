"""The coordinator's steps as a supervisor drives them, in production and in the chaos tiers.

:class:`CoordinatorSteps` runs one step at a time (submit, run, release) on the current
coordinator. When the coordinator dies in a step -- an exception of ``deaths`` in-process (the
chaos tiers' simulated crash), or the whole process in production -- a replacement is started
on the same journal with ``start(True)``, which is ``Coordinator.recover()``: it replays the
journal and finishes the step in flight. The production supervisor starts with
``recover=True`` when its journal already holds events, so a supervisor restarted after
SIGKILL goes through exactly the path the campaign's ``coordinator_crash`` faults exercise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

from pytest_orch_recovery.engine.coordinator import Coordinator
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Reason, Task
from pytest_orch_recovery.infra.cleanup import cleanup_workspace
from pytest_orch_recovery.runtime.host import Host


def remove_finished_workspaces(coordinator: Coordinator, host: Host) -> list[str]:
    """Remove the worktree of every finished task that still has one -- anything unpushed is
    saved to a rescue ref first -- and journal each removal; escalated and unfinished tasks
    keep theirs (:meth:`Coordinator.owners`). What the campaign does at the end of each
    scenario, and a fleet with ``remove_finished_worktrees`` after each pass. Returns the
    agents whose worktree went."""
    removed = []
    for agent in coordinator.finished_agents():
        worktree = host.workspace(agent)
        if not worktree.exists():
            continue
        result = cleanup_workspace(worktree, repo=host.repo, managed_roots=[worktree.parent])
        if result.removed:
            coordinator.note_workspace_cleaned(agent, str(worktree), result.rescue_ref)
            removed.append(agent)
    return removed


def submit_task(coordinator: Coordinator, *, task: Task, agent: str | None) -> str:
    """Submit ``task``: a step a supervisor can retry on a replacement coordinator."""
    return coordinator.submit(task, agent=agent)


class CoordinatorSteps:
    """Runs the coordinator's steps and replaces a coordinator that died in one."""

    def __init__(
        self,
        start: Callable[[bool], Coordinator],
        *,
        recover: bool = False,
        deaths: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._start = start
        self._deaths = deaths
        self.coordinator = start(recover)
        self.crashes = 0

    def step(self, action: Callable[[Coordinator], object], *, loop: bool = False) -> None:
        """Carry out ``action``; after a death, the replacement finishes it (and, when the
        action was the run loop, ``loop``, goes on running)."""
        try:
            action(self.coordinator)
        except self._deaths:
            self.crashes += 1
            self.coordinator = self._start(True)
            if loop or action is Coordinator.run:
                action(self.coordinator)

    def submit(self, task: Task, agent: str | None = None) -> None:
        if self.coordinator.knows(task.task_id):
            return  # submitted before (a request carried out twice)
        self.step(functools.partial(submit_task, task=task, agent=agent))

    def adopt(self, events: Sequence[Event], *, lost: str) -> None:
        """Take over tasks from their history (``Coordinator.adopt``); a replacement after a
        death has them from its journal already, and records the loss there."""
        self.step(functools.partial(Coordinator.adopt, events=events, lost=lost))

    def run(self, until: float | None = None) -> None:
        self.step(functools.partial(Coordinator.run, until=until), loop=True)

    def release(
        self,
        action: str,
        *,
        reasons: Iterable[Reason] = (),
        tasks: Iterable[str] = (),
        incident: str | None = None,
    ) -> None:
        self.step(
            functools.partial(
                Coordinator.release,
                action=action,
                reasons=tuple(reasons),
                tasks=tuple(tasks),
                incident=incident,
            )
        )
