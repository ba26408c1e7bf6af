"""What the sim agent prints: Claude Code's ``text`` / ``json`` / ``stream-json`` outputs.

Result keys follow Claude Code's result message (Agent SDK ``SDKResultMessage``): type,
subtype, is_error, duration_ms, duration_api_ms, num_turns, result, stop_reason, session_id,
total_cost_usd, usage, modelUsage, permission_denials, uuid; API failures add
``api_error_status`` and, as the real CLI does (anthropics/claude-code#79500), keep subtype
``success`` with ``is_error: true``. As Claude Code 2.1.328 does, ``api_error_status`` is always
present (null without an API error) and ``terminal_reason`` says how the run ended
(``completed``, ``api_error``, ``aborted_tools``, ``max_turns``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

OUTPUT_FORMATS = ("text", "json", "stream-json")

# USD per million tokens (input, output); public list prices, used only for total_cost_usd.
_PRICES = {"opus": (15.0, 75.0), "haiku": (0.8, 4.0), "sonnet": (3.0, 15.0)}
_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def cost_usd(model: str, usage: Mapping[str, int]) -> float:
    """Approximate cost of ``usage`` at list prices (cache reads at a tenth, writes at 1.25x).

    >>> cost_usd("claude-sonnet-4-5", {"input_tokens": 1_000_000, "output_tokens": 0})
    3.0
    """
    price_in, price_out = next((p for key, p in _PRICES.items() if key in model), _PRICES["sonnet"])
    total = (
        usage.get("input_tokens", 0) * price_in
        + usage.get("cache_creation_input_tokens", 0) * price_in * 1.25
        + usage.get("cache_read_input_tokens", 0) * price_in * 0.1
        + usage.get("output_tokens", 0) * price_out
    )
    return round(total / 1_000_000, 6)


@dataclass
class RunTally:
    """Counters the result message reports."""

    model: str
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_USAGE_KEYS, 0))
    num_turns: int = 0
    permission_denials: list[dict[str, Any]] = field(default_factory=list)

    def add_usage(self, usage: Mapping[str, Any] | None) -> None:
        for key in _USAGE_KEYS:
            value = (usage or {}).get(key)
            if isinstance(value, int):
                self.usage[key] += value

    def result(
        self,
        *,
        subtype: str,
        is_error: bool,
        text: str | None,
        session_id: str,
        duration_ms: float,
        duration_api_ms: float,
        stop_reason: str | None,
        api_error_status: int | None = None,
        errors: list[str] | None = None,
        terminal_reason: str = "completed",
    ) -> dict[str, Any]:
        cost = cost_usd(self.model, self.usage)
        out: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "duration_ms": round(duration_ms),
            "duration_api_ms": round(duration_api_ms),
            "num_turns": self.num_turns,
            "result": text,
            "stop_reason": stop_reason,
            "terminal_reason": terminal_reason,
            "api_error_status": api_error_status,
            "session_id": session_id,
            "total_cost_usd": cost,
            "usage": {**self.usage, "service_tier": "standard"},
            "modelUsage": {
                self.model: {
                    "inputTokens": self.usage["input_tokens"],
                    "outputTokens": self.usage["output_tokens"],
                    "cacheReadInputTokens": self.usage["cache_read_input_tokens"],
                    "cacheCreationInputTokens": self.usage["cache_creation_input_tokens"],
                    "costUSD": cost,
                }
            },
            "permission_denials": list(self.permission_denials),
            "uuid": str(uuid.uuid4()),
        }
        if text is None:  # Claude Code's error_during_execution result has neither key
            del out["result"], out["api_error_status"]
        if errors:
            out["errors"] = errors
        return out


class Printer:
    """Writes events in the chosen output format; text and json print only at the end."""

    def __init__(self, fmt: str, stream: TextIO) -> None:
        self.fmt = fmt
        self.stream = stream

    def event(self, event: Mapping[str, Any]) -> None:
        if self.fmt == "stream-json":
            self._line(json.dumps(event, ensure_ascii=False))

    def final(self, result: Mapping[str, Any]) -> None:
        if self.fmt in ("json", "stream-json"):
            self._line(json.dumps(result, ensure_ascii=False))
        elif result.get("subtype") == "error_during_execution":
            # Claude Code 2.1.328 in text mode, interrupted in a tool: these words, no newline
            self.stream.write("Execution error")
            self.stream.flush()
        else:
            self._line(str(result.get("result", "")))

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
