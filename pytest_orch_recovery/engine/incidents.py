"""Systematic incidents: the escalations one fleet-wide cause produced, as one thing.

When the circuit breaker is open for a reason (or a rule names a systematic cause, such as the
permission flag missing), every task that fails with it escalates. Paged one by one, ten agents
killed by the same hand are ten pages. An :class:`Incident` groups them: the first such
escalation opens it (its id is journaled in the ``task_escalated`` event's ``incident``), later
ones of the same reason join it while it is open, and one operator release of the incident
frees its tasks and closes it (the ``operator_action`` names it). The next escalation for that
reason opens a new incident.

:class:`IncidentBook` is folded from the journal's events only, so the coordinator, the
supervisor (one ``on_escalate`` run per incident) and ``orch-recovery release`` (which tasks a
release frees) all read the same answer.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.events import Event, EventKind, OperatorAction, TaskEscalated


@dataclass
class Incident:
    incident_id: str
    reason: str
    cause: str
    opened_at: float
    opened_by: int  # journal seq of the escalation that opened it
    tasks: list[str] = field(default_factory=list)  # in the order they joined
    closed: bool = False


@dataclass
class IncidentBook:
    """Incidents and which tasks are escalated now, folded from events (:meth:`fold`)."""

    incidents: dict[str, Incident] = field(default_factory=dict)
    _open: dict[str, str] = field(default_factory=dict)  # reason -> open incident id
    # task id -> the incident it escalated in (None: an escalation of its own)
    escalated: dict[str, str | None] = field(default_factory=dict)

    def open_for(self, reason: str) -> Incident | None:
        incident_id = self._open.get(reason)
        return None if incident_id is None else self.incidents[incident_id]

    def next_id(self, reason: str) -> str:
        """The id an incident opened now for ``reason`` gets: stable on replay.

        >>> IncidentBook().next_id("killed")
        'killed-1'
        """
        return f"{reason}-{len(self.incidents) + 1}"

    def incident_of(self, task_id: str) -> Incident | None:
        """The open incident ``task_id`` is escalated in, if any."""
        incident_id = self.escalated.get(task_id)
        if incident_id is None:
            return None
        incident = self.incidents[incident_id]
        return None if incident.closed else incident

    def held(self, incident: Incident) -> list[str]:
        """The incident's tasks still escalated (what releasing it frees)."""
        return [t for t in incident.tasks if self.escalated.get(t) == incident.incident_id]

    def release_target(self, target: str, tasks: Container[str]) -> Incident | str | None:
        """What releasing ``target`` frees: the open incident it names (or the one the task
        is escalated in), None for a task escalated on its own, or why nothing (a string).
        ``tasks``: the task ids submitted.

        >>> IncidentBook().release_target("t1", {"t1"})
        'not escalated (nothing to release)'
        """
        incident = self.incidents.get(target)
        if incident is not None:
            return "incident released already" if incident.closed else incident
        if target not in self.escalated:
            if target not in tasks:
                return "no such task or incident"
            return "not escalated (nothing to release)"
        return self.incident_of(target)

    def fold(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, TaskEscalated) and event.task_id is not None:
            if payload.incident is None:
                self.escalated[event.task_id] = None
                return
            incident = self.incidents.get(payload.incident)
            if incident is None:
                reason = "" if payload.reason is None else str(payload.reason)
                incident = Incident(
                    payload.incident,
                    reason,
                    payload.systematic_cause or "",
                    event.time,
                    event.seq,
                )
                self.incidents[payload.incident] = incident
                self._open[reason] = payload.incident
            if event.task_id not in incident.tasks:
                incident.tasks.append(event.task_id)
            self.escalated[event.task_id] = payload.incident
        elif isinstance(payload, OperatorAction):
            for task_id in payload.tasks:
                self.escalated.pop(task_id, None)
            closing = {payload.incident} | {self._open.get(str(r)) for r in payload.reasons}
            for incident_id in closing:
                if incident_id is not None and incident_id in self.incidents:
                    self._close(self.incidents[incident_id])
        elif event.kind in (EventKind.DECISION, EventKind.ATTEMPT_LAUNCHED) and event.task_id:
            self.escalated.pop(event.task_id, None)

    def open_ids(self) -> dict[str, str]:
        """Reason -> the incident open for it."""
        return dict(self._open)

    def restore(
        self,
        incidents: Iterable[Incident],
        open_ids: Mapping[str, str],
        escalated: Mapping[str, str | None],
    ) -> None:
        """Hold exactly these (a coordinator restored from its exported state)."""
        self.incidents = {incident.incident_id: incident for incident in incidents}
        self._open = dict(open_ids)
        self.escalated = dict(escalated)

    def _close(self, incident: Incident) -> None:
        incident.closed = True
        if self._open.get(incident.reason) == incident.incident_id:
            del self._open[incident.reason]
