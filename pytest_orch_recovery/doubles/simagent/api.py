"""A small Anthropic Messages API client: one request, SSE or JSON reply, Claude Code's retries.

Wire format follows the public Messages API (``POST /v1/messages``, ``anthropic-version:
2023-06-01``, server-sent events ``message_start`` .. ``message_stop``). Retry behaviour follows
Claude Code: connection errors, 408/409/429/5xx/529 are retried with exponential backoff
(500 ms doubling, capped at 32 s, up to 25 % jitter), ``retry-after-ms`` / ``retry-after`` are
honoured, and the default budget is 10 retries (``CLAUDE_CODE_MAX_RETRIES``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.errors import OrchRecoveryError

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_RETRIES = 10  # Claude Code error reference: "retries up to 10 times"
DEFAULT_BASE_DELAY_MS = 500.0
MAX_DELAY_MS = 32_000.0
_MAX_HONOURED_RETRY_AFTER_MS = 60_000.0  # the SDKs ignore longer server hints

# Mid-stream ``error`` events carry a type, not a status; map them to the HTTP status the same
# error has when it comes as a plain response (Messages API "Errors" page).
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class ApiError(OrchRecoveryError):
    """A failed request. ``status`` is None for connection-level failures."""

    def __init__(
        self, status: int | None, body: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        # The account the request was sent for is a subscription (an OAuth token, no API
        # key): what a plan's limit does depends on it (:attr:`retryable`, :meth:`display`).
        self.subscription = False

    @property
    def limit_reset(self) -> float | None:
        """When the account's limit lifts (epoch seconds), when this 429 is the limiter's
        refusal: the unified rate-limit headers Claude Code reads a plan's limit from."""
        if self.status != 429 or self.headers.get("anthropic-ratelimit-unified-status") != (
            "rejected"
        ):
            return None
        try:
            return float(self.headers.get("anthropic-ratelimit-unified-reset", ""))
        except ValueError:
            return None

    @property
    def usage_limit_reset(self) -> float | None:
        """When the plan's usage limit lifts, when this 429 is one for a subscription (the
        only accounts with a plan)."""
        return self.limit_reset if self.subscription else None

    @property
    def retryable(self) -> bool:
        # Measured with Claude Code 2.1.328 (docs/claude-code.md): on a subscription it says
        # so at once, even with the reset seconds away; on an API key it waits out a reset up
        # to a minute away (the retry-after it is sent with) and gives up on a later one.
        reset = self.limit_reset
        if reset is not None:
            return (
                not self.subscription and reset - time.time() <= _MAX_HONOURED_RETRY_AFTER_MS / 1e3
            )
        hint = self.headers.get("x-should-retry")
        if hint in ("true", "false"):
            return hint == "true"
        if self.status is None:
            return True
        return self.status in (408, 409, 429) or self.status >= 500

    def message(self) -> str:
        """The ``error.message`` of an API error body, or the raw body."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return self.body
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        return self.body

    def display(self, gateway: str | None = None) -> str:
        """What Claude Code prints when it gives up (its result text).

        Measured with Claude Code 2.1.328 against the model double (docs/claude-code.md):
        5xx and 529 read ``API Error: 529 Overloaded. This is a server-side issue, usually
        temporary — try again in a moment.``, plus ``If it persists, check your inference
        gateway (HOST:PORT).`` when ``ANTHROPIC_BASE_URL`` points elsewhere than Anthropic;
        429 reads ``API Error: Request rejected (429) · <message>``. Other statuses keep the
        body (anthropics/claude-code#35801); connection failures use the SDK's
        ``Connection error.``.

        >>> ApiError(529, '{"type":"error","error":{"message":"Overloaded"}}').display("h:1")
        'API Error: 529 Overloaded. This is a server-side issue, usually temporary — try \
again in a moment. If it persists, check your inference gateway (h:1).'
        >>> ApiError(429, '{"error":{"message":"Slow down."}}').display()
        'API Error: Request rejected (429) · Slow down.'
        >>> ApiError(None, "reset").display()
        'API Error: Connection error.'
        """
        if self.status is None:
            return "API Error: Connection error."
        reset = self.usage_limit_reset
        if reset is not None:
            return usage_limit_notice(reset, self.headers, os.environ.get("TZ"))
        if self.status == 429:
            return f"API Error: Request rejected (429) · {self.message()}"
        if self.status >= 500:
            text = (
                f"API Error: {self.status} {self.message().rstrip('.')}. This is a "
                "server-side issue, usually temporary — try again in a moment."
            )
            if gateway:
                text += f" If it persists, check your inference gateway ({gateway})."
            return text
        return f"API Error: {self.status} {self.body}".rstrip()


# The window a unified limit names -> the word Claude Code prints for it (manaflow-ai/subrouter#24
# lists them from the CLI's bundle: seven_day is the "weekly"; five_hour was the "session
# limit" there, and 2.1.328 prints "5-hour limit", measured against the model double).
_LIMIT_WINDOWS = {
    "five_hour": "5-hour ",
    "seven_day": "weekly ",
    "seven_day_opus": "Opus ",
    "seven_day_sonnet": "Sonnet ",
}


def usage_limit_notice(reset: float, headers: Mapping[str, str], zone_name: str | None) -> str:
    """Claude Code's line for a plan at its limit, the reset to the minute in the machine's
    zone (``TZ``; UTC when unset or unknown): ``You've hit your 5-hour limit · resets 3:50pm
    (Asia/Tokyo)`` (anthropics/claude-code#86272, headless ``claude -p``; the window's word as
    2.1.328 prints it).

    >>> claim = {"anthropic-ratelimit-unified-representative-claim": "five_hour"}
    >>> usage_limit_notice(1753284600.0, claim, "Europe/Berlin")
    "You've hit your 5-hour limit · resets 5:30pm (Europe/Berlin)"
    >>> usage_limit_notice(1753282800.0, {}, None)
    "You've hit your limit · resets 3pm (UTC)"
    """
    # Imported here: only this rare path needs them, and every sim agent start pays for
    # what the module imports.
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = (zone_name or "").lstrip(":") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        name, zone = "UTC", ZoneInfo("UTC")
    local = datetime.fromtimestamp(reset, zone)
    clock = f"{local.hour % 12 or 12}" + (f":{local.minute:02d}" if local.minute else "")
    clock += "pm" if local.hour >= 12 else "am"
    claim = headers.get("anthropic-ratelimit-unified-representative-claim", "")
    return f"You've hit your {_LIMIT_WINDOWS.get(claim, '')}limit · resets {clock} ({name})"


class StreamDropped(ApiError):
    """The connection closed before ``message_stop``: retried like a connection error."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail)


class StreamErrorEvent(ApiError):
    """An ``event: error`` inside a streaming reply (e.g. ``overloaded_error`` under load)."""


def retry_delay_ms(
    attempt: int,
    headers: Mapping[str, str],
    base_ms: float = DEFAULT_BASE_DELAY_MS,
    rng: random.Random | None = None,
) -> float:
    """Milliseconds to wait before retry number ``attempt`` (1-based).

    >>> retry_delay_ms(3, {"retry-after-ms": "250"})
    250.0
    >>> retry_delay_ms(1, {"retry-after": "2"})
    2000.0
    >>> 1000.0 <= retry_delay_ms(2, {}) <= 1250.0
    True
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1.0), ("retry-after", 1000.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            hinted = float(raw) * scale
        except ValueError:
            continue  # an HTTP-date: fall back to our own backoff
        if 0 <= hinted <= _MAX_HONOURED_RETRY_AFTER_MS:
            return hinted
    delay = min(base_ms * 2 ** (attempt - 1), MAX_DELAY_MS)
    jitter: float = (rng or random.Random()).random()
    return float(delay * (1 + 0.25 * jitter))


class StreamAccumulator:
    """Rebuilds one assistant message from Messages API stream events."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.stopped = False
        self._partial_json: dict[int, str] = {}

    def feed(self, event: str, data: Mapping[str, Any]) -> None:
        kind = str(data.get("type", event))
        if kind == "ping":
            return
        if kind == "error":
            err = data.get("error", {})
            status = _ERROR_TYPE_STATUS.get(str(err.get("type", "")), 500)
            raise StreamErrorEvent(status, json.dumps(data, separators=(",", ":")))
        if kind == "message_start":
            self.message = dict(data["message"])
            self.message["content"] = list(self.message.get("content", []))
            return
        msg = self._require_message(kind)
        content: list[dict[str, Any]] = msg["content"]
        if kind == "content_block_start":
            index = int(data["index"])
            while len(content) <= index:
                content.append({})
            content[index] = dict(data["content_block"])
        elif kind == "content_block_delta":
            self._apply_delta(content[int(data["index"])], int(data["index"]), data["delta"])
        elif kind == "content_block_stop":
            index = int(data["index"])
            block = content[index]
            if block.get("type") in ("tool_use", "server_tool_use") and index in self._partial_json:
                text = self._partial_json.pop(index)
                block["input"] = json.loads(text) if text.strip() else {}
        elif kind == "message_delta":
            msg.update({k: v for k, v in dict(data.get("delta", {})).items()})
            usage = dict(msg.get("usage") or {})
            usage.update(dict(data.get("usage", {})))
            msg["usage"] = usage
        elif kind == "message_stop":
            self.stopped = True

    def _require_message(self, kind: str) -> dict[str, Any]:
        if self.message is None:
            raise StreamDropped(f"stream event {kind!r} before message_start")
        return self.message

    def _apply_delta(self, block: dict[str, Any], index: int, delta: Mapping[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = str(block.get("text", "")) + str(delta["text"])
        elif kind == "input_json_delta":
            self._partial_json[index] = self._partial_json.get(index, "") + str(
                delta["partial_json"]
            )
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking", "")) + str(delta["thinking"])
        elif kind == "signature_delta":
            block["signature"] = str(delta["signature"])


def parse_sse(stream: IO[bytes]) -> dict[str, Any]:
    """Read server-sent events until ``message_stop``; a short read is a dropped stream."""
    acc = StreamAccumulator()
    event = ""
    data_lines: list[str] = []
    try:
        while not acc.stopped:
            raw = stream.readline()
            if not raw:
                break
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data_lines:
                    acc.feed(event, json.loads("\n".join(data_lines)))
                event, data_lines = "", []
            elif line.startswith(":"):
                continue  # SSE comment
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
    except (http.client.IncompleteRead, OSError) as exc:
        raise StreamDropped(f"stream read failed: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise StreamDropped(f"torn stream event: {exc}") from exc
    if not acc.stopped or acc.message is None:
        raise StreamDropped("connection closed before message_stop")
    return acc.message


@dataclass(frozen=True)
class ApiReply:
    message: dict[str, Any]
    request_id: str | None
    duration_ms: float


@dataclass
class MessagesClient:
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    # A subscription's OAuth token (``CLAUDE_CODE_OAUTH_TOKEN``), sent as a bearer token when
    # there is no API key: Claude Code uses an API key first (measured with 2.1.328).
    oauth_token: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay_ms: float = DEFAULT_BASE_DELAY_MS
    timeout_s: float = 600.0
    session_id: str = ""
    user_agent: str = "claude-cli/0.1.0 (external, sim-agent)"
    on_retry: Callable[[ApiError, int, float], None] | None = None
    api_ms: float = field(default=0.0)

    @property
    def gateway(self) -> str | None:
        """``host:port`` of a base URL other than Anthropic's, as Claude Code names it."""
        netloc = urllib.parse.urlsplit(self.base_url).netloc
        return None if netloc == urllib.parse.urlsplit(DEFAULT_BASE_URL).netloc else netloc

    def create(self, body: Mapping[str, Any]) -> ApiReply:
        """Send one request, retrying transient failures; raise the last ApiError.

        Streaming falls back to one non-streaming request, as Claude Code 2.1.328 was measured
        to do (docs/claude-code.md): at once after an ``event: error`` inside the stream, and
        after the retries when every stream was dropped before ``message_stop``.
        """
        attempt = 0
        while True:
            try:
                return self._once(body, attempt)
            except ApiError as err:
                streaming = body.get("stream") is True
                exhausted = attempt >= self.max_retries
                if streaming and (
                    isinstance(err, StreamErrorEvent)
                    or (isinstance(err, StreamDropped) and exhausted)
                ):
                    body = {**body, "stream": False}
                    continue
                if not err.retryable or exhausted:
                    raise
                attempt += 1
                reset = err.limit_reset  # the limiter's refusal is waited out to its reset
                delay = (
                    retry_delay_ms(attempt, err.headers, self.base_delay_ms)
                    if reset is None
                    else max(0.0, reset - time.time()) * 1000.0
                )
                if self.on_retry is not None:
                    self.on_retry(err, attempt, delay)
                time.sleep(delay / 1000.0)

    def _once(self, body: Mapping[str, Any], attempt: int) -> ApiReply:
        url = urllib.parse.urlsplit(self.base_url)
        conn_cls = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(url.netloc, timeout=self.timeout_s)
        path = url.path.rstrip("/") + "/v1/messages?beta=true"
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "accept": "application/json",
            "user-agent": self.user_agent,
            "x-app": "cli",
            "x-stainless-retry-count": str(attempt),
            "x-claude-code-session-id": self.session_id,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        elif self.oauth_token:
            headers["authorization"] = f"Bearer {self.oauth_token}"
        started = time.monotonic()
        try:
            conn.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=headers)
            resp = conn.getresponse()
            resp_headers = dict(resp.getheaders())
            if resp.status != 200:
                text = resp.read().decode("utf-8", errors="replace").strip()
                refused = ApiError(resp.status, text, resp_headers)
                refused.subscription = not self.api_key and bool(self.oauth_token)
                raise refused
            ctype = resp.getheader("content-type", "")
            if "text/event-stream" in ctype:
                message = parse_sse(resp)
            else:
                message = json.loads(resp.read().decode("utf-8"))
            return ApiReply(message, resp.getheader("request-id"), _elapsed_ms(started))
        except ApiError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(None, f"{type(exc).__name__}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise StreamDropped(f"unreadable JSON reply: {exc}") from exc
        finally:
            self.api_ms += _elapsed_ms(started)
            conn.close()


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
