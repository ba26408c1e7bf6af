"""What agent CLIs say in structure: the JSON they print, read for how a run ended.

Documented shapes read here (field names as each CLI's public docs and issues give them):

- Claude Code ``--output-format json`` / ``stream-json`` (and Cursor's ``cursor-agent
  --output-format json``, which prints the same ``result`` shape): the final
  ``{"type": "result", "subtype", "is_error", "result", "permission_denials",
  "terminal_reason", "stop_reason", "api_error_status", "errors"}``. ``subtype`` is one of
  ``success``, ``error_max_turns``, ``error_during_execution``, ``error_max_budget_usd``;
  ``terminal_reason`` ``completed``, ``max_turns``, ``aborted_streaming``, ``aborted_tools``,
  ``hook_stopped``, ``api_error``; a ``stop_reason`` of ``tool_use`` or ``pause_turn`` in
  the final result means the model still wanted to act (ClickHouse/nerve#292,
  humanfia/humanize2#3, openclaw/openclaw#136498).
- Codex ``exec --json`` (JSONL): ``thread.started``, ``turn.started``, ``turn.completed``,
  ``turn.failed`` ``{"error": {"message"}}``, ``item.*``, and top-level ``error``
  ``{"message"}`` events; an ``error`` event saying ``Reconnecting... n/m`` is a retry the
  turn survives (docs.rs codex-codes ``io::events``, career-ops-hq/career-ops#2102).
- Gemini CLI ``--output-format json``: one object ``{"response", "stats", "error":
  {"type", "message", "code"}}``; ``stream-json`` events ``init``, ``message``,
  ``tool_use``, ``tool_result``, ``error`` (non-fatal) and ``result`` (geminicli.com
  docs/cli/headless).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.engine.patterns import ANTHROPIC_ERROR_STATUS

# A JSON line longer than this is not parsed (a pasted file, not an event).
MAX_EVENT_CHARS = 1 << 20

_RETRYING = re.compile(r"Reconnecting\.\.\.|[Rr]etrying")


def json_object(text: str) -> Mapping[str, Any] | None:
    """``text`` parsed as one JSON object, or None."""
    if len(text) > MAX_EVENT_CHARS or not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _error_message(error: Any) -> str | None:
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        message = error.get("message")
        if isinstance(message, str):
            return message
        inner = error.get("error")
        if inner is not None and inner is not error:
            return _error_message(inner)
    return None


# Where an error object printed by an HTTP client keeps the response's status.
_STATUS_KEYS = ("status", "statusCode", "status_code")


def _is_error_object(data: Mapping[str, Any]) -> bool:
    """An event of type ``error``, or an HTTP client's error object: its ``message`` beside
    a 4xx/5xx ``status`` (``{"message": "...", "status": 429, "providerId": "mistral"}``)."""
    if data.get("type") == "error":
        return True
    return any(
        isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599
        for status in (data.get(key) for key in _STATUS_KEYS)
    )


def message_lines(data: Mapping[str, Any]) -> list[str]:
    """The human-readable lines an event carries: a result's ``result`` text, an error's
    message, ``errors`` entries. The model's own prose (assistant messages, Gemini's
    ``response``) is not among them: an agent *discussing* an error is not one."""
    texts: list[str] = []
    result = data.get("result")
    if isinstance(result, str):
        texts.append(result)
    for key in ("error", "message"):
        text = _error_message(data.get(key)) if key == "error" else data.get(key)
        if isinstance(text, str) and (key == "error" or _is_error_object(data)):
            texts.append(text)
    item = data.get("item")
    if isinstance(item, Mapping) and item.get("type") == "error":
        text = item.get("message")
        if isinstance(text, str):
            texts.append(text)
    errors = data.get("errors")
    if isinstance(errors, list):
        texts.extend(e for e in errors[:5] if isinstance(e, str))
    return [line for text in texts for line in text.splitlines() if line.strip()]


def is_result(data: Mapping[str, Any]) -> bool:
    """A Claude Code (or Cursor) final ``result`` object."""
    return data.get("type") == "result" and ("subtype" in data or "is_error" in data)


@dataclass(frozen=True)
class Fact:
    """A structured field that points at a reason."""

    reason: Reason
    weight: float
    detail: str
    fatal: bool = True
    api_status: int | None = None


def _status(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
        return int(value)
    return None


def event_facts(data: Mapping[str, Any]) -> list[Fact]:
    """What a non-``result`` event says about how the run ended (Codex, Gemini CLI).

    The message text itself goes through the table and the cue model like any line; these
    facts add what only the structure says: that the turn failed, an HTTP status.
    """
    kind = data.get("type")
    facts: list[Fact] = []
    if kind == "turn.failed":
        message = _error_message(data.get("error")) or "no message"
        facts.append(Fact(Reason.UNKNOWN, 0.35, f"Codex turn.failed: {message[:120]}"))
    elif kind == "error" and "message" in data and "severity" not in data:
        message = str(data.get("message"))
        retried = bool(_RETRYING.search(message))
        facts.append(
            Fact(
                Reason.UNKNOWN,
                0.1 if retried else 0.3,
                f"error event{' (retried)' if retried else ''}: {message[:120]}",
                fatal=not retried,
            )
        )
    error = data.get("error")
    if kind == "error" and isinstance(error, Mapping) and str(error.get("type")).endswith("_error"):
        # The model API's error body ({"type": "error", "error": {"type": "..._error"}}).
        etype = str(error.get("type"))
        status = ANTHROPIC_ERROR_STATUS.get(etype)
        facts.append(Fact(Reason.API_ERROR, 0.6, f"API error body: {etype}", api_status=status))
        return facts
    if isinstance(error, Mapping) and ("response" in data or "stats" in data or kind == "result"):
        status = _status(error.get("code")) or _status(error.get("status"))
        message = _error_message(error) or str(error.get("type") or "error")
        facts.append(
            Fact(
                Reason.API_ERROR if status is not None else Reason.UNKNOWN,
                0.6 if status is not None else 0.3,
                f"error object{f' (code {status})' if status else ''}: {message[:120]}",
                api_status=status,
            )
        )
    return facts
