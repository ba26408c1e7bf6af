"""The model double's HTTP server: a scripted Anthropic Messages API on loopback.

Endpoints: ``POST /v1/messages`` (query string ignored, so Claude Code's ``?beta=true`` works)
answers plain JSON, or Server-Sent Events when the body says ``"stream": true``;
``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}``; anything else gets the
API's 404 ``not_found_error`` body. Every response carries a ``request-id`` header.

Threads: one per connection (``ThreadingHTTPServer``), all joined by :meth:`ModelDouble.stop`,
which first releases stalled requests and shuts idle keep-alive connections so none is left.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from pytest_orch_recovery.doubles.modeldouble.continuation import plan_from_prompt
from pytest_orch_recovery.doubles.modeldouble.conversation import (
    Conversation,
    Reply,
    decide,
    is_side_request,
    read_conversation,
    side_reply,
)
from pytest_orch_recovery.doubles.modeldouble.faults import (
    ERROR_TYPES,
    ApiFaultKind,
    ApiFaultSpec,
    FaultBook,
    RequestContext,
)
from pytest_orch_recovery.doubles.modeldouble.plan import Plan, TaskPlan
from pytest_orch_recovery.doubles.modeldouble.wire import (
    ERRORS,
    error_body,
    estimate_tokens,
    message,
    new_id,
    sse,
    stream_events,
)
from pytest_orch_recovery.engine.errors import InvalidState, OrchRecoveryError
from pytest_orch_recovery.store import atomic

_DEFAULT_MODEL = "claude-sonnet-4-5"
# Guard against a client that opens a connection and never speaks; stop() does not wait for it.
_IDLE_TIMEOUT = 300.0


class ModelDouble:
    """A scripted Messages API server. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        plan: Plan,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transcript_path: Path | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._transcript_path = transcript_path
        self._lock = threading.RLock()  # re-entrant: wait_until's predicate reads properties
        self._changed = threading.Condition(self._lock)  # notified on every state change
        self._stalled = 0
        self._tasks: list[TaskPlan] = list(plan.tasks)
        self._book = FaultBook()
        for spec in plan.faults:
            self._book.add(spec)
        self._transcript: list[dict[str, Any]] = []
        self._seq = 0
        self._server_index = 0
        self._task_counts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._limits: dict[str, float] = {}  # API key -> when its usage limit lifts

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ModelDouble:
        with self._lock:
            if self._server is not None:
                return self
            if self._stopped:
                raise InvalidState("a stopped ModelDouble cannot be started again")
            server = _Server((self._host, self._port), _Handler)
            server.double = self
            self._server = server
            # A daemon: a double someone forgot to stop must not keep its process alive at
            # exit (stop() still joins it; the test suite reports such a leak as a failure).
            self._thread = threading.Thread(
                target=server.serve_forever,
                name="model-double",
                kwargs={"poll_interval": 0.1},
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release stalls, close connections, join every thread. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            if server is None or self._stopped:
                self._stopped = True
                return
            self._stopped = True
            self._stopping.set()
            connections = list(self._connections)
        server.shutdown()
        for conn in connections:
            _shut(conn)
        server.server_close()  # joins the per-connection threads (daemon_threads is off)
        if thread is not None:
            thread.join()

    def __enter__(self) -> ModelDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the value for ``ANTHROPIC_BASE_URL``."""
        if self._server is None:
            raise InvalidState("the ModelDouble is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------ configuration

    def add_fault(self, spec: ApiFaultSpec) -> None:
        self._book.add(spec)

    def task_requests(self, text: str) -> int:
        """How many requests the conversations of tasks whose ``match`` holds ``text`` made:
        an ``at_request`` armed now for the next attempt counts from here."""
        with self._lock:
            return sum(n for match, n in self._task_counts.items() if text in match)

    def add_task(self, task: TaskPlan) -> None:
        with self._lock:
            self._tasks.append(task)

    @property
    def stalled(self) -> int:
        """How many requests a ``stall`` fault is holding right now."""
        with self._lock:
            return self._stalled

    def wait_until(self, predicate: Callable[[ModelDouble], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (checked after each request/stall change) or
        ``timeout`` seconds pass; returns the predicate's last value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    @property
    def transcript(self) -> list[dict[str, Any]]:
        """One entry per request: seq, endpoint, index, task, side, action, fault, status."""
        with self._lock:
            return [dict(e) for e in self._transcript]

    # ------------------------------------------------------------------ used by the handler

    def _track(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._connections.add(conn)
            return True

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _plan(self) -> Plan:
        with self._lock:
            return Plan(tuple(self._tasks))

    def _count(self, task: TaskPlan | None) -> tuple[int, int | None]:
        with self._lock:
            self._server_index += 1
            if task is None:
                return self._server_index, None
            self._task_counts[task.match] = self._task_counts.get(task.match, 0) + 1
            return self._server_index, self._task_counts[task.match]

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "time": round(time.time(), 3), **entry}
            self._transcript.append(entry)
            self._changed.notify_all()
            if self._transcript_path is not None:
                atomic.append_line(self._transcript_path, json.dumps(entry, ensure_ascii=False))

    def _answer(
        self, body: Mapping[str, Any]
    ) -> tuple[Reply, TaskPlan | None, RequestContext, list[list[str]]]:
        conv = read_conversation(body)
        found = self._plan().find(conv.first_user_text)
        if found is None and conv.tool_names:
            found = self._derive(conv.first_user_text)
        side = is_side_request(found, conv)
        task = None if side else found
        reply = side_reply(conv) if task is None else decide(task, conv)
        server_index, task_index = self._count(task)
        position: int | None = None
        if task is not None:
            if reply.stop_reason == "tool_use":
                position = reply.step_index
            elif reply.reason == "done":
                position = len(task.steps) + 1
        ctx = RequestContext(
            server_index=server_index,
            task_index=task_index,
            task_match=None if task is None else task.match,
            step_position=position,
            step_kind=reply.step.kind if reply.stop_reason == "tool_use" and reply.step else None,
        )
        return reply, task, ctx, _history(conv)

    def _derive(self, prompt: str) -> TaskPlan | None:
        """A task the plan does not hold: its plan from the prompt's brief, kept from then on
        so its later attempts (continuations) find it under its title."""
        derived = plan_from_prompt(prompt)
        if derived is None:
            return None
        with self._lock:
            known = self._plan().find(derived.match)
            if known is not None and known.match == derived.match:
                return known  # another request derived it first
            self._tasks.append(derived)
            return derived

    def _take_fault(self, ctx: RequestContext) -> ApiFaultSpec | None:
        return self._book.take(ctx)

    def _usage_limit(self, key: str, fault: ApiFaultSpec | None) -> float | None:
        """When the account of API key ``key`` gets its quota back, while it is at its usage
        limit (a ``usage_limit`` fault starts one); None when it is not."""
        now = time.time()
        with self._lock:
            if fault is not None and fault.kind is ApiFaultKind.USAGE_LIMIT:
                # A plan resets on a whole minute, as the CLI prints it ("resets 3:50pm").
                reset = math.ceil((now + fault.seconds) / 60.0) * 60.0
                if self._limits.get(key, 0.0) <= now:
                    self._limits[key] = reset
            until = self._limits.get(key)
        return until if until is not None and until > now else None

    def _wait_stall(self, seconds: float) -> bool:
        """Hold a stalled request; True when released because the double is stopping."""
        with self._changed:
            self._stalled += 1
            self._changed.notify_all()
        try:
            return self._stopping.wait(seconds)
        finally:
            with self._changed:
                self._stalled -= 1
                self._changed.notify_all()


def _history(conv: Conversation) -> list[list[str]]:
    """The tool calls the request's history holds, each with what came back: ``ok``,
    ``error``, ``denied``, or ``none`` (a tool_use never answered, as after an interrupt)."""
    out = []
    for call in conv.calls:
        if call.outcome is None:
            state = "none"
        elif call.outcome.denied:
            state = "denied"
        else:
            state = "ok" if call.outcome.ok else "error"
        out.append([call.name, state])
    return out


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins them
    block_on_close = True
    double: ModelDouble

    def handle_error(self, request: Any, client_address: Any) -> None:
        # An agent killed mid-request (SIGINT, SIGKILL: the faults this double serves) hangs
        # up; that is the expected end of its connection, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _BadRequest(OrchRecoveryError):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-double"
    timeout = _IDLE_TIMEOUT

    @property
    def double(self) -> ModelDouble:
        return cast(_Server, self.server).double

    def setup(self) -> None:
        super().setup()
        if not self.double._track(self.connection):
            self.close_connection = True
            _shut(self.connection)

    def finish(self) -> None:
        self.double._untrack(self.connection)
        with contextlib.suppress(OSError):  # the peer or stop() closed the socket first
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the transcript is the log

    # ------------------------------------------------------------------ routing

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            raw = self._read_body()
        except _BadRequest as exc:
            self._error("invalid_request_error", str(exc))
            return
        if path == "/v1/messages":
            self._messages(raw)
        elif path == "/v1/messages/count_tokens":
            self._count_tokens(raw)
        else:
            self._not_found()

    def do_GET(self) -> None:
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _not_found(self) -> None:
        self._record_simple("other", 404)
        self._error("not_found_error")

    # ------------------------------------------------------------------ endpoints

    def _count_tokens(self, raw: bytes) -> None:
        try:
            body = self._parse(raw)
        except _BadRequest as exc:
            self._record_simple("count_tokens", 400)
            self._error("invalid_request_error", str(exc))
            return
        payload = {k: body.get(k) for k in ("system", "messages", "tools") if k in body}
        self._record_simple("count_tokens", 200)
        self._json(200, {"input_tokens": estimate_tokens(payload)})

    def _messages(self, raw: bytes) -> None:
        try:
            body = self._parse(raw)
            if not isinstance(body.get("messages"), list):
                raise _BadRequest("messages: Field required")
        except _BadRequest as exc:
            self._record_simple("messages", 400)
            self._error("invalid_request_error", str(exc))
            return
        try:
            reply, task, ctx, history = self.double._answer(body)
        except Exception as exc:  # a request shape the double cannot read: say so, stay up
            self.double._record({"endpoint": "messages", "status": 500, "error": repr(exc)})
            self._error("api_error")
            return
        fault = self.double._take_fault(ctx)
        if fault is not None and fault.kind is ApiFaultKind.QUIT_EARLY:
            reply = Reply("quit_early", "All done! The task is complete.")
        stream = body.get("stream") is True
        entry: dict[str, Any] = {
            "endpoint": "messages",
            "index": ctx.server_index,
            "task_index": ctx.task_index,
            "task": None if task is None else task.match,
            "side": task is None,
            "stream": stream,
            "action": reply.to_json(),
            "fault": None if fault is None else str(fault.kind),
            "history": history,
        }
        key = self.headers.get("x-api-key") or self.headers.get("Authorization") or ""
        limit = self.double._usage_limit(key, fault)
        if limit is not None:
            self.double._record({**entry, "status": 429, "usage_limit": limit})
            self._error(
                "rate_limit_error",
                # The body of a subscription's limit (anthropics/claude-code#43551).
                "This request would exceed your account's rate limit. Please try again later.",
                headers={
                    "anthropic-ratelimit-unified-status": "rejected",
                    "anthropic-ratelimit-unified-reset": str(int(limit)),
                    "anthropic-ratelimit-unified-representative-claim": "five_hour",
                    "retry-after": str(max(0, math.ceil(limit - time.time()))),
                },
            )
            return
        if fault is not None and fault.kind is ApiFaultKind.STREAM_ERROR and not stream:
            fault = ApiFaultSpec(ApiFaultKind.OVERLOADED)  # the status a non-streaming call gets
        if fault is not None and fault.kind in ERROR_TYPES:
            error_type = ERROR_TYPES[fault.kind]
            self.double._record({**entry, "status": ERRORS[error_type][0]})
            extra = (
                {"retry-after": str(max(0, round(fault.seconds)))}
                if fault.kind is ApiFaultKind.RATE_LIMIT
                else {}
            )
            self._error(error_type, headers=extra)
            return
        stalled = fault is not None and fault.kind is ApiFaultKind.STALL
        if stalled and fault is not None and self.double._wait_stall(fault.seconds):
            self.double._record({**entry, "status": None, "released": "stop"})
            self._hang_up()
            return
        model = str(body.get("model") or _DEFAULT_MODEL)
        msg_id, tool_id = new_id("msg"), new_id("toolu")
        input_tokens = estimate_tokens(
            {k: body.get(k) for k in ("system", "messages", "tools") if k in body}
        )
        dropping = fault is not None and fault.kind is ApiFaultKind.DROP_STREAM
        if dropping and not stream:
            self.double._record({**entry, "status": None, "dropped": True})
            self._hang_up()
            return
        self.double._record({**entry, "status": 200, "dropped": dropping})
        if not stream:
            self._json(
                200,
                message(
                    reply, msg_id=msg_id, tool_id=tool_id, model=model, input_tokens=input_tokens
                ),
            )
            return
        events = stream_events(
            reply, msg_id=msg_id, tool_id=tool_id, model=model, input_tokens=input_tokens
        )
        keep = None if fault is None else fault.keep_events
        if fault is not None and fault.kind is ApiFaultKind.STREAM_ERROR:
            self._stream(events, keep, error=error_body("overloaded_error", new_id("req")))
        else:
            self._stream(events, keep if dropping else None)

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _BadRequest("malformed chunked request body") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            return self.rfile.read(int(length))
        except ValueError:
            raise _BadRequest(f"invalid Content-Length header: {length!r}") from None

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def _record_simple(self, endpoint: str, status: int) -> None:
        self.double._record(
            {"endpoint": endpoint, "path": self.path, "method": self.command, "status": status}
        )

    def _headers(self, status: int, content_type: str, extra: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("request-id", new_id("req"))
        for name, value in extra.items():
            self.send_header(name, value)

    def _json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self._headers(status, "application/json", headers or {})
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _error(
        self,
        error_type: str,
        message_text: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        status = ERRORS[error_type][0]
        request_id = new_id("req")
        extra = {
            "x-should-retry": "true" if status in (429, 500, 529) else "false",
            **(headers or {}),
        }
        self._json(status, error_body(error_type, request_id, message_text), extra)

    def _stream(self, events: Any, keep: int | None, error: dict[str, Any] | None = None) -> None:
        self._headers(
            200,
            "text/event-stream; charset=utf-8",
            {"Cache-Control": "no-cache", "Transfer-Encoding": "chunked"},
        )
        self.end_headers()
        for sent, (name, data) in enumerate(events):
            if keep is not None and sent >= keep:
                if error is None:
                    self.wfile.flush()
                    self._hang_up()  # mid-message: no message_stop, no final chunk
                    return
                self._chunk(sse("error", error))
                break
            self._chunk(sse(name, data))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _hang_up(self) -> None:
        self.close_connection = True
        _shut(self.connection)
