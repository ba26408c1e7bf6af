"""The dispatcher's per-attempt results file (``<results>/<agent>.<attempt>_results.json``):
one judged attempt's agent, status, reason, exit and timings. The runtime writes it from the
coordinator's journal events and the report reads it alongside the journal; this is the one
definition of its format both use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.model import ExitInfo, signal_number

__all__ = ["RESULTS_SCHEMA_VERSION", "AttemptResult"]

RESULTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AttemptResult:
    """One judged attempt as the dispatcher's results file records it."""

    agent: str
    attempt: int
    status: str  # success | failed
    task_id: str | None = None
    reason: str | None = None
    confidence: float | None = None
    exit_code: int | None = None
    signal: str | None = None  # its name, as the results file writes it: SIGINT, SIG40
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    recorded_at: float | None = None

    @classmethod
    def from_json(cls, data: object) -> AttemptResult:
        """Check and convert one results file's object; ``InvalidValue`` names the field.

        >>> AttemptResult.from_json({"agent": "a", "attempt": 1, "status": "success"}).status
        'success'
        >>> try:
        ...     AttemptResult.from_json({"agent": "a", "attempt": "1", "status": "success"})
        ... except InvalidValue as exc:
        ...     print(exc)
        field attempt: expected a positive integer, got '1'
        """
        if not isinstance(data, dict):
            raise InvalidValue(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", 1)
        if version != 1:
            raise InvalidValue(f"field schema_version: expected 1, got {version!r}")
        for name in ("agent", "status"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise InvalidValue(
                    f"field {name}: expected a non-empty string, got {data.get(name)!r}"
                )
        attempt = data.get("attempt")
        if not _is_int(attempt) or attempt < 1:
            raise InvalidValue(f"field attempt: expected a positive integer, got {attempt!r}")
        for name in ("task_id", "reason"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise InvalidValue(f"field {name}: expected a string or null, got {data[name]!r}")
        if data.get("exit_code") is not None and not _is_int(data["exit_code"]):
            raise InvalidValue(
                f"field exit_code: expected an integer or null, got {data['exit_code']!r}"
            )
        signal = data.get("signal")
        if signal is not None:
            try:
                if not isinstance(signal, str | int) or isinstance(signal, bool):
                    raise ValueError
                signal = ExitInfo(None, signal_number(signal)).signal_name
            except ValueError:
                raise InvalidValue(
                    f"field signal: expected a signal name, number or null, got {signal!r}"
                ) from None
        numbers = ("confidence", "started_at", "ended_at", "duration", "recorded_at")
        for name in numbers:
            value = data.get(name)
            if value is not None and not (_is_number(value) and math.isfinite(value)):
                raise InvalidValue(f"field {name}: expected a number or null, got {value!r}")
        return cls(
            agent=data["agent"],
            attempt=int(attempt),
            status=data["status"],
            task_id=data.get("task_id"),
            reason=data.get("reason"),
            exit_code=data.get("exit_code"),
            signal=signal,
            **{name: None if data.get(name) is None else float(data[name]) for name in numbers},
        )

    def to_json(self) -> dict[str, Any]:
        """The file's object (``schema_version`` aside: see :meth:`file_json`)."""
        return {
            "agent": self.agent,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "status": self.status,
            "reason": self.reason,
            "confidence": self.confidence,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "recorded_at": self.recorded_at,
        }

    def file_json(self) -> dict[str, Any]:
        """What the results file holds: :meth:`to_json` under its schema version."""
        return {"schema_version": RESULTS_SCHEMA_VERSION, **self.to_json()}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
