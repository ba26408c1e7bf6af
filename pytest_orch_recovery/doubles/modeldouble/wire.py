"""The Anthropic Messages API wire format: ids, message objects, SSE events, error bodies.

Shapes follow Anthropic's "Streaming Messages" documentation and the official SDKs' event
types: ``message_start`` (a Message with empty content), per block ``content_block_start`` /
``content_block_delta`` (``text_delta`` or ``input_json_delta`` with ``partial_json``) /
``content_block_stop``, ``ping`` events, then ``message_delta`` (stop_reason, usage) and
``message_stop``. Error bodies are ``{"type": "error", "error": {"type", "message"},
"request_id"}`` as the API returns them (e.g. anthropics/claude-code#35458).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator, Mapping
from typing import Any

from pytest_orch_recovery.doubles.modeldouble.conversation import Reply

_ALPHABET = string.ascii_letters + string.digits

# error type -> (HTTP status, the API's usual message)
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request_error": (400, "Invalid request"),
    "authentication_error": (401, "invalid x-api-key"),
    "not_found_error": (404, "Not Found"),
    "rate_limit_error": (
        429,
        # Wording of the organisation rate-limit 429 (bhouston/mycoder#62).
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can "
        "see the response headers for current usage. Please reduce the prompt length or the "
        "maximum tokens requested, or try again later.",
    ),
    "api_error": (500, "Internal server error"),
    "overloaded_error": (529, "Overloaded"),
}


def new_id(prefix: str) -> str:
    """An id in the API's style: ``msg_01…``, ``toolu_01…``, ``req_011C…``.

    >>> new_id("msg").startswith("msg_01"), len(new_id("toolu"))
    (True, 30)
    """
    lead = "011C" if prefix == "req" else "01"
    body = "".join(secrets.choice(_ALPHABET) for _ in range(24 - len(lead)))
    return f"{prefix}_{lead}{body}"


def error_body(error_type: str, request_id: str, message: str | None = None) -> dict[str, Any]:
    """The JSON body of an API error.

    >>> error_body("overloaded_error", "req_1")["error"]
    {'type': 'overloaded_error', 'message': 'Overloaded'}
    """
    text = ERRORS[error_type][1] if message is None else message
    return {
        "type": "error",
        "error": {"type": error_type, "message": text},
        "request_id": request_id,
    }


def estimate_tokens(payload: Any) -> int:
    """A rough token count (about four characters a token), at least 1."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return max(1, len(text) // 4)


def content_blocks(reply: Reply, tool_id: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    if reply.step is not None and reply.tool_input is not None:
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": reply.step.tool_name,
                "input": dict(reply.tool_input),
            }
        )
    return blocks


def message(
    reply: Reply, *, msg_id: str, tool_id: str, model: str, input_tokens: int
) -> dict[str, Any]:
    """The non-streaming response body."""
    blocks = content_blocks(reply, tool_id)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(input_tokens, estimate_tokens(blocks)),
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def chunks(text: str, pieces: int = 4) -> list[str]:
    """Split text into several non-empty pieces, as the API streams deltas.

    >>> chunks('{"a": 1}', 3)
    ['{"a', '": ', '1}']
    """
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(
    reply: Reply, *, msg_id: str, tool_id: str, model: str, input_tokens: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events for a reply, in the API's order, as ``(event name, data)``."""
    blocks = content_blocks(reply, tool_id)
    start: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(input_tokens, 1),
    }
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            if index == 0:
                yield "ping", {"type": "ping"}
            for piece in chunks(block["text"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
            # The API opens tool input with an empty partial_json, then streams the JSON text.
            for piece in ["", *chunks(json.dumps(block["input"], ensure_ascii=False), 5)]:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": estimate_tokens(blocks)},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One Server-Sent Event: ``event:`` line, ``data:`` line, blank line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
