"""The bundled sim agent against a tiny scripted Messages API server on loopback."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.doubles.simagent import cli
from pytest_orch_recovery.doubles.simagent.api import ApiError, StreamAccumulator, retry_delay_ms
from pytest_orch_recovery.doubles.simagent.session import project_slug, repair_history
from pytest_orch_recovery.doubles.simagent.tools import PermissionPolicy, run_tool

WAIT = 30.0  # generous bound for every wait on another process or thread
OVERLOADED = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'

# ----------------------------------------------------------------------------- fake server


def text_msg(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}


def tool_msg(name: str, tool_input: dict[str, Any], tool_id: str = "toolu_01") -> dict[str, Any]:
    return {
        "content": [
            {"type": "text", "text": f"Using {name}."},
            {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input},
        ],
        "stop_reason": "tool_use",
    }


def _full(msg: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_01sim",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 7},
        **msg,
    }


def sse_events(msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The stream the real API sends for ``msg``: text and tool input arrive in pieces."""
    full = _full(msg)
    start = {
        **full,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for i, block in enumerate(full["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            text = block["text"]
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        else:
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {**block, "input": {}},
                    },
                )
            )
            raw = json.dumps(block["input"])
            for piece in (raw[:5], raw[5:]):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": full["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


@dataclass
class Reply:
    kind: str  # "sse", "json", "status", "drop", "stall"
    message: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeApi:
    """Scripted replies, one per request; records every request it receives."""

    def __init__(self, script: list[Reply]) -> None:
        self.script = list(script)
        self.requests: list[Seen] = []
        self.got_request = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                with api._lock:
                    api.requests.append(
                        Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = (
                        api.script.pop(0)
                        if api.script
                        else Reply(
                            "status",
                            status=500,
                            body='{"type":"error","error":{"type":"api_error",'
                            '"message":"fake server script exhausted"}}',
                        )
                    )
                api.got_request.set()
                api._answer(self, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.kind == "stall":
            self.release.wait(WAIT)
            return
        if reply.kind in ("status", "json"):
            payload = reply.body if reply.kind == "status" else json.dumps(_full(reply.message))
            data = payload.encode()
            h.send_response(reply.status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.send_header("request-id", "req_fake")
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.end_headers()  # no length: the body ends when the connection closes (HTTP/1.0)
        events = sse_events(reply.message)
        if reply.kind == "drop":
            events = events[:3]  # the connection dies mid-message
        for name, event in events:
            h.wfile.write(f"event: {name}\ndata: {json.dumps(event)}\n\n".encode())
            h.wfile.flush()

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path


def agent_env(work: Path, api: FakeApi, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(
        HOME=str(work / "home"),
        ANTHROPIC_BASE_URL=api.url,
        ANTHROPIC_API_KEY="sk-ant-test",
        IS_SANDBOX="1",
        ORCH_SIM_RETRY_BASE_MS="1",
    )
    env.update(extra)
    return env


def run_agent(work: Path, api: FakeApi, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery.doubles.simagent", *args],
        cwd=work / "work",
        env=agent_env(work, api, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def last_user(seen: Seen) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = seen.body["messages"][-1]["content"]
    return content


# ----------------------------------------------------------------------------- end to end

RESULT_KEYS = {
    "type",
    "subtype",
    "is_error",
    "duration_ms",
    "duration_api_ms",
    "num_turns",
    "result",
    "session_id",
    "total_cost_usd",
    "usage",
    "permission_denials",
    "uuid",
}


def test_tools_run_over_a_streamed_conversation(work: Path) -> None:
    script = [
        Reply("sse", tool_msg("Write", {"file_path": "pkg/a.txt", "content": "hello\n"}, "t1")),
        Reply(
            "sse",
            tool_msg(
                "Edit", {"file_path": "pkg/a.txt", "old_string": "hello", "new_string": "bye"}, "t2"
            ),
        ),
        Reply("sse", tool_msg("Bash", {"command": "cat pkg/a.txt; echo oops >&2; exit 3"}, "t3")),
        Reply("sse", tool_msg("Read", {"file_path": "pkg/a.txt"}, "t4")),
        Reply("sse", text_msg("All done.")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(
            work,
            api,
            "-p",
            "make a.txt",
            "--dangerously-skip-permissions",
            "--output-format",
            "json",
        )
    assert proc.returncode == 0, proc.stderr
    assert (work / "work" / "pkg" / "a.txt").read_text() == "bye\n"
    result = json.loads(proc.stdout)
    assert result.keys() >= RESULT_KEYS
    assert (result["type"], result["subtype"], result["is_error"]) == ("result", "success", False)
    assert result["result"] == "All done." and result["num_turns"] == 5
    assert result["usage"]["input_tokens"] == 55 and result["permission_denials"] == []
    first = api.requests[0]
    assert first.path == "/v1/messages?beta=true"
    assert first.headers["x-api-key"] == "sk-ant-test"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.body["stream"] is True
    assert [t["name"] for t in first.body["tools"]] == ["Bash", "Edit", "Read", "Write"]
    system = " ".join(b["text"] for b in first.body["system"])
    assert f"Working directory: {(work / 'work').resolve()}" in system
    assert first.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "make a.txt"}]}
    ]
    bash_result = last_user(api.requests[3])[0]
    assert bash_result["tool_use_id"] == "t3" and bash_result["is_error"] is True
    assert bash_result["content"].startswith("Exit code 3\n") and "bye" in bash_result["content"]
    assert "oops" in bash_result["content"]
    read_result = last_user(api.requests[4])[0]
    assert read_result["content"] == "     1\tbye" and "is_error" not in read_result
    edit_tool_use = api.requests[2].body["messages"][-2]["content"][1]
    assert edit_tool_use["input"]["new_string"] == "bye"  # input rebuilt from json deltas


def test_plain_json_replies_and_text_output(work: Path) -> None:
    script = [
        Reply("json", tool_msg("Bash", {"command": "echo hi > out.txt"})),
        Reply("json", text_msg("Wrote out.txt")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(work, api, "-p", "go", "--permission-mode", "bypassPermissions")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Wrote out.txt\n"
    assert (work / "work" / "out.txt").read_text() == "hi\n"
    ok = last_user(api.requests[1])[0]
    assert ok["content"] == "Tool ran without output or errors" and "is_error" not in ok


def test_without_permission_flag_tools_are_denied_and_nothing_is_written(work: Path) -> None:
    script = [
        Reply(
            "sse",
            {
                "content": [
                    {
                        "type": "tool_use",
                        "id": "w1",
                        "name": "Write",
                        "input": {"file_path": "x.py", "content": "print(1)\n"},
                    },
                    {
                        "type": "tool_use",
                        "id": "b1",
                        "name": "Bash",
                        "input": {"command": "touch y"},
                    },
                ],
                "stop_reason": "tool_use",
            },
        ),
        Reply("sse", text_msg("I need permission.")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(work, api, "-p", "go", "--output-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert not (work / "work" / "x.py").exists() and not (work / "work" / "y").exists()
    result = json.loads(proc.stdout)
    assert result["is_error"] is False
    assert result["permission_denials"] == [
        {
            "tool_name": "Write",
            "tool_use_id": "w1",
            "tool_input": {"file_path": "x.py", "content": "print(1)\n"},
        },
        {"tool_name": "Bash", "tool_use_id": "b1", "tool_input": {"command": "touch y"}},
    ]
    results = last_user(api.requests[1])
    assert results[0]["content"] == (
        "Claude requested permissions to write to x.py, but you haven't granted it yet."
    )
    assert results[1]["content"] == (
        "Claude requested permissions to use Bash, but you haven't granted it yet."
    )
    assert all(r["is_error"] for r in results)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_root_refuses_skip_permissions_without_is_sandbox(work: Path) -> None:
    with FakeApi([Reply("sse", text_msg("never"))]) as api:
        proc = run_agent(work, api, "-p", "go", "--dangerously-skip-permissions", IS_SANDBOX="")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == cli.ROOT_REFUSAL
    assert api.requests == []


def test_529_is_retried_then_succeeds(work: Path) -> None:
    overloaded = Reply("status", status=529, body=OVERLOADED)
    with FakeApi([overloaded, overloaded, Reply("sse", text_msg("ok"))]) as api:
        proc = run_agent(work, api, "-p", "hi", "--output-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == "ok"
    assert [r.headers["x-stainless-retry-count"] for r in api.requests] == ["0", "1", "2"]


def test_gives_up_after_max_retries_with_the_api_error(work: Path) -> None:
    overloaded = Reply("status", status=529, body=OVERLOADED)
    with FakeApi([overloaded] * 3) as api:
        proc = run_agent(
            work, api, "-p", "hi", "--output-format", "json", CLAUDE_CODE_MAX_RETRIES="2"
        )
    assert proc.returncode == 1
    assert len(api.requests) == 3
    result = json.loads(proc.stdout)
    assert result["is_error"] is True and result["api_error_status"] == 529
    # Claude Code 2.1.328's wording, measured against a loopback API (docs/claude-code.md);
    # the old expectation (the raw body) came from reports about older versions.
    gave_up = (
        "API Error: 529 Overloaded. This is a server-side issue, usually temporary — "
        "try again in a moment. If it persists, check your inference gateway (127.0.0.1:"
    )
    assert result["result"].startswith(gave_up) and result["result"].endswith(").")
    assert result["terminal_reason"] == "api_error"
    with FakeApi([overloaded]) as api:
        text = run_agent(work, api, "-p", "hi", CLAUDE_CODE_MAX_RETRIES="0")
    assert text.returncode == 1 and text.stdout.startswith(gave_up)


def test_client_errors_are_not_retried(work: Path) -> None:
    bad = Reply(
        "status",
        status=400,
        body='{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
    )
    with FakeApi([bad, Reply("sse", text_msg("unused"))]) as api:
        proc = run_agent(work, api, "-p", "hi")
    assert proc.returncode == 1 and proc.stdout.startswith("API Error: 400 ")
    assert len(api.requests) == 1


def test_dropped_stream_is_retried(work: Path) -> None:
    with FakeApi([Reply("drop", text_msg("lost")), Reply("sse", text_msg("second try"))]) as api:
        proc = run_agent(work, api, "-p", "hi")
    assert (proc.returncode, proc.stdout) == (0, "second try\n")
    assert len(api.requests) == 2


def test_resume_sends_the_whole_history(work: Path) -> None:
    with FakeApi(
        [
            Reply("sse", tool_msg("Read", {"file_path": "nope.txt"}, "r1")),
            Reply("sse", text_msg("first answer")),
        ]
    ) as api:
        first = run_agent(work, api, "-p", "first prompt", "--output-format", "json")
    sid = json.loads(first.stdout)["session_id"]
    cwd = (work / "work").resolve()
    transcript = work / "home" / ".claude" / "projects" / project_slug(cwd) / f"{sid}.jsonl"
    entries = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert [e["type"] for e in entries] == ["user", "assistant", "user", "assistant"]
    assert all(e["sessionId"] == sid for e in entries)
    with FakeApi([Reply("sse", text_msg("second answer"))]) as api:
        second = run_agent(
            work, api, "--resume", sid, "-p", "second prompt", "--output-format", "json"
        )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["session_id"] == sid
    sent = api.requests[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[0]["content"][0]["text"] == "first prompt"
    missing = "<tool_use_error>File does not exist.</tool_use_error>"
    assert sent[2]["content"][0]["content"] == missing
    assert sent[3]["content"][0]["text"] == "first answer"
    assert sent[4]["content"] == [{"type": "text", "text": "second prompt"}]


def test_resume_of_unknown_session_fails(work: Path) -> None:
    with FakeApi([]) as api:
        proc = run_agent(work, api, "-p", "x", "-r", "0b7c0c3e-0000-4000-8000-000000000000")
    assert proc.returncode == 1
    assert "No conversation found with session ID: 0b7c0c3e" in proc.stderr


def test_post_tool_use_hooks_get_the_payload_and_exit_2_reaches_the_model(work: Path) -> None:
    payload_file = work / "payload.json"
    settings = {
        "hooks": {
            "PostToolUse": [
                {
                    "matcher": "Write|Edit",
                    "hooks": [
                        {"type": "command", "command": f"cat > {payload_file}"},
                        {
                            "type": "command",
                            "command": "echo 'lint failed: E1' >&2; exit 2",
                            "timeout": 30,
                        },
                    ],
                },
                {
                    "matcher": "Bash",
                    "hooks": [{"type": "command", "command": f"touch {work}/bash-hook"}],
                },
            ]
        }
    }
    (work / "work" / ".claude").mkdir()
    (work / "work" / ".claude" / "settings.json").write_text(json.dumps(settings))
    script = [
        Reply("sse", tool_msg("Write", {"file_path": "m.py", "content": "x = 1\n"}, "w9")),
        Reply("sse", text_msg("done")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(
            work, api, "-p", "go", "--dangerously-skip-permissions", "--output-format", "json"
        )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(payload_file.read_text())
    sid = json.loads(proc.stdout)["session_id"]
    assert payload["hook_event_name"] == "PostToolUse" and payload["tool_name"] == "Write"
    assert payload["session_id"] == sid and payload["cwd"] == str((work / "work").resolve())
    assert payload["tool_input"] == {"file_path": "m.py", "content": "x = 1\n"}
    assert payload["tool_response"]["type"] == "create"
    assert payload["transcript_path"].endswith(f"/{sid}.jsonl")
    assert not (work / "bash-hook").exists()  # matcher did not take Write
    blocks = last_user(api.requests[1])
    assert blocks[0]["type"] == "tool_result"
    assert "lint failed: E1" in blocks[1]["text"]


def test_sigint_while_waiting_on_the_api_exits_0_silently(work: Path) -> None:
    with FakeApi([Reply("stall")]) as api:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_orch_recovery.doubles.simagent",
                "-p",
                "hang",
                "--output-format",
                "json",
            ],
            cwd=work / "work",
            env=agent_env(work, api),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert api.got_request.wait(WAIT), "agent never called the API"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
    assert (proc.returncode, out) == (0, ""), err
    sessions = list((work / "home" / ".claude" / "projects").glob("*/*.jsonl"))
    entries = [json.loads(x) for x in sessions[0].read_text().splitlines()]
    assert [e["type"] for e in entries] == ["user"]


def test_stream_json_prints_init_messages_and_result(work: Path) -> None:
    script = [
        Reply("sse", tool_msg("Read", {"file_path": "missing"})),
        Reply("sse", text_msg("bye")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(work, api, "-p", "x", "--output-format", "stream-json", "--verbose")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [(e["type"], e.get("subtype")) for e in lines] == [
        ("system", "init"),
        ("assistant", None),
        ("user", None),
        ("assistant", None),
        ("result", "success"),
    ]
    assert lines[0]["cwd"] == str((work / "work").resolve())
    assert lines[0]["session_id"] == lines[-1]["session_id"]


def test_max_turns_stops_with_error_max_turns(work: Path) -> None:
    script = [Reply("sse", tool_msg("Read", {"file_path": "a"}, "r1"))] * 2
    with FakeApi(script) as api:
        proc = run_agent(work, api, "-p", "x", "--max-turns", "1", "--output-format", "json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert (result["subtype"], result["is_error"], result["num_turns"]) == (
        "error_max_turns",
        True,
        1,
    )
    assert len(api.requests) == 1


def test_prompt_from_file_and_from_stdin(work: Path) -> None:
    (work / "prompt.md").write_text("prompt from a file")
    with FakeApi([Reply("sse", text_msg("a")), Reply("sse", text_msg("b"))]) as api:
        run_agent(work, api, "-p", f"@{work / 'prompt.md'}")
        subprocess.run(
            [sys.executable, "-m", "pytest_orch_recovery.doubles.simagent", "-p"],
            cwd=work / "work",
            env=agent_env(work, api),
            input="prompt on stdin",
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=True,
        )
    texts = [r.body["messages"][0]["content"][0]["text"] for r in api.requests]
    assert texts == ["prompt from a file", "prompt on stdin"]


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--x"], "error: unknown option '--x'"),
        (["--model"], "error: option '--model <model>' argument missing"),
        (
            ["--output-format", "xml"],
            "error: option '--output-format <format>' argument 'xml' "
            "is invalid. Allowed choices are text, json, stream-json.",
        ),
    ],
)
def test_bad_command_lines_fail_like_commander(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip() == message


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == "0.1.0 (sim-agent)\n"


def test_allowed_tools_open_only_what_they_name() -> None:
    policy = PermissionPolicy("default", ("Bash(git status:*)", "Write"))
    assert policy.denial("Bash", {"command": "git status --short"}) is None
    assert policy.denial("Bash", {"command": "rm -rf /"}) is not None
    assert policy.denial("Write", {"file_path": "a"}) is None
    assert policy.denial("Edit", {"file_path": "a"}) is not None


def test_edit_refuses_ambiguous_and_missing_strings(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a a")
    twice = run_tool("Edit", {"file_path": "f", "old_string": "a", "new_string": "b"}, tmp_path)
    assert twice.is_error and "Found 2 matches" in twice.content
    absent = run_tool("Edit", {"file_path": "f", "old_string": "z", "new_string": "b"}, tmp_path)
    assert absent.is_error and "String to replace not found" in absent.content
    every = run_tool(
        "Edit",
        {"file_path": "f", "old_string": "a", "new_string": "b", "replace_all": True},
        tmp_path,
    )
    assert not every.is_error and (tmp_path / "f").read_text() == "b b"


def test_bash_timeout_kills_the_command(tmp_path: Path) -> None:
    out = run_tool("Bash", {"command": "echo started; exec sleep 30", "timeout": 200}, tmp_path)
    assert out.is_error and out.content.startswith("Command timed out")
    assert "started" in out.content


def test_bash_output_is_captured_and_a_background_child_does_not_hold_it(tmp_path: Path) -> None:
    # The background sleep keeps the command's stdout and stderr open long after bash exits:
    # with pipes the tool would wait for it until the command's timeout.
    command = "echo out; echo err >&2; sleep 60 & echo $! > bg.pid; exit 3"
    out = run_tool("Bash", {"command": command, "timeout": 30_000}, tmp_path)
    try:
        assert out.response["stdout"] == "out" and out.response["stderr"] == "err"
        assert out.response["interrupted"] is False and "timed out" not in out.content
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int((tmp_path / "bg.pid").read_text()), signal.SIGKILL)


def test_stream_error_event_maps_to_status() -> None:
    acc = StreamAccumulator()
    with pytest.raises(ApiError) as info:
        acc.feed("error", json.loads(OVERLOADED))
    assert info.value.status == 529 and info.value.retryable


@given(
    st.text(max_size=40),
    st.lists(st.integers(0, 60), max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=3),
)
def test_stream_reassembles_any_chunking(
    text: str, cuts: list[int], tool_input: dict[str, int]
) -> None:
    raw = json.dumps(tool_input)
    acc = StreamAccumulator()
    acc.feed(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "role": "assistant",
                "content": [],
                "usage": {"input_tokens": 1},
            },
        },
    )
    acc.feed(
        "",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    acc.feed(
        "",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "Bash", "input": {}},
        },
    )
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        acc.feed(
            "",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": raw[lo:hi]},
            },
        )
    for lo in range(0, len(text), 7):
        acc.feed(
            "",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text[lo : lo + 7]},
            },
        )
    for i in (0, 1):
        acc.feed("", {"type": "content_block_stop", "index": i})
    acc.feed(
        "",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 3},
        },
    )
    acc.feed("", {"type": "message_stop"})
    assert acc.stopped and acc.message is not None
    assert acc.message["content"][0]["text"] == text
    assert acc.message["content"][1]["input"] == tool_input
    assert acc.message["usage"] == {"input_tokens": 1, "output_tokens": 3}


@given(st.integers(1, 30), st.floats(1, 1000))
def test_backoff_grows_and_is_capped(attempt: int, base: float) -> None:
    delay = retry_delay_ms(attempt, {}, base)
    expected = min(base * 2 ** (attempt - 1), 32_000.0)
    assert expected <= delay <= expected * 1.25


_roles = st.lists(st.sampled_from(["text", "call", "result"]), max_size=12)


@given(_roles)
def test_repaired_history_answers_every_tool_call(steps: list[str]) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "go"}]}]
    pending: list[str] = []
    for n, step in enumerate(steps):
        if step == "call":
            pending = [f"t{n}"]
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {}}],
                }
            )
        elif step == "result" and pending:
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": pending.pop(), "content": "ok"}
                    ],
                }
            )
        else:
            messages.append({"role": "user", "content": [{"type": "text", "text": str(n)}]})
    fixed = repair_history(messages)
    for i, message in enumerate(fixed):
        if i:
            assert message["role"] != fixed[i - 1]["role"]
        calls = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        if calls:
            answer = fixed[i + 1]["content"]
            answered = {b.get("tool_use_id") for b in answer if b["type"] == "tool_result"}
            assert answered >= set(calls)
            assert answer[0]["type"] == "tool_result"


def test_sigint_to_the_group_during_bash_stops_the_command_and_exits_0(work: Path) -> None:
    fifo = work / "started.fifo"
    os.mkfifo(fifo)
    pid_file = work / "sleep.pid"
    command = f"echo $$ > {pid_file}; echo go > {fifo}; exec sleep 30"
    with FakeApi([Reply("sse", tool_msg("Bash", {"command": command}, "b7"))]) as api:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_orch_recovery.doubles.simagent",
                "-p",
                "run it",
                "--dangerously-skip-permissions",
            ],
            cwd=work / "work",
            env=agent_env(work, api),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started = threading.Event()

        def _wait_for_command() -> None:
            with open(fifo) as handle:  # returns once the command has opened the fifo
                if handle.read().strip() == "go":
                    started.set()

        reader = threading.Thread(target=_wait_for_command, daemon=True)
        reader.start()
        try:
            assert started.wait(WAIT), "the Bash command never started"
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the agent's terminal does
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(WAIT)
    # Claude Code 2.1.328 interrupted in a tool prints "Execution error" (text mode) and exits
    # 0; the old expectation (no output) holds only for an interrupt while waiting on the API.
    assert (proc.returncode, out) == (0, "Execution error"), err
    sleeper = int(pid_file.read_text())
    assert (
        not Path(f"/proc/{sleeper}").exists()
        or "Z" in Path(f"/proc/{sleeper}/stat").read_text().split()[2]
    )
    transcript = next((work / "home" / ".claude" / "projects").glob("*/*.jsonl"))
    kinds = [json.loads(x)["type"] for x in transcript.read_text().splitlines()]
    assert kinds == ["user", "assistant"]  # the tool call never got a result


# ----------------------------------------------------------------------------- interactive mode


class Pty:
    """The sim agent on a real pseudo-terminal (stdin, stdout and stderr), as in a tmux pane."""

    def __init__(self, work: Path, api: FakeApi, *args: str) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_orch_recovery.doubles.simagent", *args],
            cwd=work / "work",
            env=agent_env(work, api),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.text = ""

    def read_until(self, needle: str, timeout: float = WAIT) -> str:
        """Read the terminal until ``needle`` appears (bounded); returns everything so far."""
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never appeared; the terminal shows:\n{self.text}"
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the agent closed the terminal
                chunk = b""
            assert chunk, f"terminal closed before {needle!r}:\n{self.text}"
            self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.text

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def finish(self) -> int:
        code = self.proc.wait(WAIT)
        with contextlib.suppress(OSError):
            while True:
                ready, _, _ = select.select([self.master], [], [], 0)
                chunk = os.read(self.master, 65536) if ready else b""
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
        os.close(self.master)
        return code


def test_interactive_asks_on_the_terminal_and_blocks_until_answered(work: Path) -> None:
    script = [
        Reply(
            "sse", tool_msg("Write", {"file_path": "fake3.md", "content": "# Fake\nthree\n"}, "w1")
        ),
        Reply("sse", tool_msg("Write", {"file_path": "fake4.md", "content": "four\n"}, "w2")),
        Reply("sse", tool_msg("Write", {"file_path": "fake5.md", "content": "five\n"}, "w3")),
        Reply("sse", tool_msg("Bash", {"command": "touch y", "description": "Touch y"}, "b1")),
        Reply("sse", text_msg("Done, Bash was refused.")),
    ]
    with FakeApi(script) as api:
        term = Pty(work, api, "write the $(fake) 'docs'")
        screen = term.read_until("Esc to cancel")
        assert "\u276f write the $(fake) 'docs'" in screen
        assert "\u25cf Write(fake3.md)" in screen
        assert " Create file\n fake3.md\n" in screen and "  1 # Fake\n  2 three\n" in screen
        assert (
            " Do you want to create fake3.md?\n \u276f 1. Yes\n   2. Yes, and switch to "
            "accept edits (auto-approve file edits and common file commands) for this session "
            "(shift+tab)\n   3. No\n\n Esc to cancel \u00b7 Tab to amend" in screen
        )
        # Parked: the model is not asked again and nothing is written until a key is pressed.
        assert len(api.requests) == 1 and not (work / "work" / "fake3.md").exists()
        assert term.proc.poll() is None
        term.press(b"x")  # not an answer: still waiting
        term.press(b"\r")  # Enter = 1. Yes
        term.read_until("Do you want to create fake4.md?")
        term.press(b"2")  # yes, and accept edits from now on: fake5.md is not asked
        term.read_until("Do you want to proceed?")
        assert "Do you want to create fake5.md?" not in term.text
        assert " Bash command\n\n   touch y\n   Touch y\n" in term.text
        term.press(b"\x1b")  # Esc = no: denied as in -p mode
        term.read_until("Done, Bash was refused.")
        assert term.finish() == 0
    assert (work / "work" / "fake3.md").read_text() == "# Fake\nthree\n"
    assert (work / "work" / "fake4.md").exists() and (work / "work" / "fake5.md").exists()
    assert not (work / "work" / "y").exists()
    assert last_user(api.requests[4])[0]["content"] == (
        "Claude requested permissions to use Bash, but you haven't granted it yet."
    )


def test_interactive_never_asks_with_the_permission_flag(work: Path) -> None:
    script = [
        Reply("sse", tool_msg("Write", {"file_path": "a.md", "content": "a\n"})),
        Reply("sse", text_msg("Wrote a.md.")),
    ]
    with FakeApi(script) as api:
        term = Pty(work, api, "--dangerously-skip-permissions", "write a")
        term.read_until("Wrote a.md.")
        assert term.finish() == 0
    assert "Do you want" not in term.text and (work / "work" / "a.md").exists()


def test_interactive_denies_on_n_and_needs_a_prompt_argument(work: Path) -> None:
    script = [
        Reply("sse", tool_msg("Edit", {"file_path": "a.md", "old_string": "a", "new_string": "b"})),
        Reply("sse", text_msg("Left a.md alone.")),
    ]
    (work / "work" / "a.md").write_text("a\n")
    with FakeApi(script) as api:
        term = Pty(work, api, "edit a")
        term.read_until("Do you want to make this edit to a.md?")
        term.press(b"n")
        term.read_until("Left a.md alone.")
        assert term.finish() == 0
        assert (work / "work" / "a.md").read_text() == "a\n"
        bare = Pty(work, api)
        bare.read_until(cli.INTERACTIVE_NEEDS_PROMPT)
        assert bare.finish() == 1


def test_without_p_and_without_a_terminal_it_runs_headless_as_before(work: Path) -> None:
    script = [
        Reply("sse", tool_msg("Write", {"file_path": "x.py", "content": "1\n"})),
        Reply("sse", text_msg("Needed permission.")),
    ]
    with FakeApi(script) as api:
        proc = run_agent(work, api, "go", "--output-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "Do you want" not in proc.stdout
    assert len(json.loads(proc.stdout)["permission_denials"]) == 1
