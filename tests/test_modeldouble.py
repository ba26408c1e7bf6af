"""The model double: real HTTP against a started server, plan files, the CLI, and a property
over conversation prefixes (the next step is always the first not yet done)."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.doubles.modeldouble import (
    ApiFaultKind,
    ApiFaultSpec,
    ModelDouble,
    Plan,
    PlanError,
    Step,
    TaskPlan,
    decide,
    load_plan,
    plan_for_task,
    read_conversation,
)
from pytest_orch_recovery.doubles.simagent.api import ApiError
from pytest_orch_recovery.engine.analyze import continuation_prompt, initial_prompt, missing_work
from pytest_orch_recovery.engine.model import PartialWork, Task
from pytest_orch_recovery.infra.agents import claude_code_missing, find_claude_code

CWD = "/work/agent-7"
SYSTEM = [
    {
        "type": "text",
        "text": "You are Claude Code.\n<env>\nWorking directory: "
        f"{CWD}\nIs directory a git repo: Yes\n</env>",
    }
]
TOOLS = [
    {"name": n, "description": n, "input_schema": {"type": "object"}}
    for n in ("Bash", "Edit", "Read", "Write")
]
TASK = Task("t1", "Create /fake3 command", ("fake3.md", "fake3.py"), tests="pytest -q")
DENIAL = "Claude requested permissions to write to {path}, but you haven't granted it yet."
PR_URL = "https://github.com/acme/widgets/pull/886"

Result = tuple[str, bool]  # tool_result text, is_error


# --------------------------------------------------------------------------- helpers


def _post(
    url: str, body: Any, path: str = "/v1/messages?beta=true", key: str = "sk-test"
) -> tuple[int, Any, bytes]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url + path,
        data=data,
        method="POST",
        headers={
            "content-type": "application/json",
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def _body(
    messages: list[dict[str, Any]],
    *,
    stream: bool = False,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": SYSTEM,
        "messages": messages,
        "tools": TOOLS if tools is None else tools,
        "stream": stream,
    }


def _sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def _assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the Message from its stream, as an SDK does."""
    msg: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        assert data["type"] == name
        if name == "message_start":
            msg = dict(data["message"])
            msg["content"] = []
        elif name == "content_block_start":
            assert data["index"] == len(msg["content"])
            msg["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                msg["content"][data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            msg["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            msg["stop_reason"] = data["delta"]["stop_reason"]
            msg["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    return msg


def _tool_use(msg: dict[str, Any]) -> dict[str, Any] | None:
    return next((b for b in msg["content"] if b["type"] == "tool_use"), None)


def _text(msg: dict[str, Any]) -> str:
    return "".join(b["text"] for b in msg["content"] if b["type"] == "text")


class _Session:
    """A client conversation: sends the history, appends replies and tool results."""

    def __init__(self, url: str, prompt: str, *, stream: bool = False) -> None:
        self.url = url
        self.stream = stream
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]

    def ask(self) -> dict[str, Any]:
        status, _, raw = _post(self.url, _body(self.messages, stream=self.stream))
        assert status == 200, raw
        return _assemble(_sse(raw)) if self.stream else dict(json.loads(raw))

    def answer(self, msg: dict[str, Any], text: str, is_error: bool = False) -> None:
        use = _tool_use(msg)
        assert use is not None
        self.messages.append({"role": "assistant", "content": msg["content"]})
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": use["id"],
            "content": [{"type": "text", "text": text}],
        }
        if is_error:
            result["is_error"] = True
        self.messages.append({"role": "user", "content": [result]})

    def run(
        self, results: Callable[[dict[str, Any]], Result] | None = None, limit: int = 30
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Drive to end_turn; returns the tool_use blocks sent and the final message."""
        calls: list[dict[str, Any]] = []
        for _ in range(limit):
            msg = self.ask()
            use = _tool_use(msg)
            if use is None:
                assert msg["stop_reason"] == "end_turn"
                return calls, msg
            assert msg["stop_reason"] == "tool_use"
            calls.append(use)
            text, err = results(use) if results else _ok(use)
            self.answer(msg, text, err)
        raise AssertionError("no end_turn")


def _ok(use: dict[str, Any]) -> Result:
    if "gh pr create" in str(use["input"].get("command", "")):
        return PR_URL + "\n", False
    return "ok", False


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ModelDouble]:
    with ModelDouble(Plan((plan_for_task(TASK),)), transcript_path=tmp_path / "t.jsonl") as d:
        yield d


def _expected_calls(task: Task) -> list[tuple[str, str]]:
    plan = plan_for_task(task)
    return [(s.tool_name, s.tool_input(CWD).get("file_path") or s.target) for s in plan.steps]


def _key(use: dict[str, Any]) -> tuple[str, str]:
    return use["name"], use["input"].get("file_path") or use["input"]["command"]


# --------------------------------------------------------------------------- replies


def test_plain_reply_is_a_write_tool_use_with_absolute_path(double: ModelDouble) -> None:
    status, headers, raw = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    msg = json.loads(raw)
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["request-id"].startswith("req_")
    assert msg["id"].startswith("msg_") and msg["type"] == "message"
    assert msg["role"] == "assistant" and msg["stop_reason"] == "tool_use"
    use = _tool_use(msg)
    assert use is not None and use["id"].startswith("toolu_") and use["name"] == "Write"
    assert use["input"]["file_path"] == f"{CWD}/fake3.md"
    assert use["input"]["content"].startswith("# Create /fake3 command")
    assert msg["usage"]["input_tokens"] > 0 and msg["usage"]["output_tokens"] > 0


def test_a_usage_limit_refuses_the_accounts_requests_until_the_reset(
    double: ModelDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 429 a plan at its limit gets, for every request with that key, none with another;
    the sim agent reads it as Claude Code does: no retry, the reset in its notice."""
    double.add_fault(ApiFaultSpec(ApiFaultKind.USAGE_LIMIT, seconds=5))
    body = _body([{"role": "user", "content": TASK.title}])
    before = time.time()
    status, headers, raw = _post(double.url, body)
    assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_error"
    assert headers["anthropic-ratelimit-unified-status"] == "rejected"
    reset = int(headers["anthropic-ratelimit-unified-reset"])
    assert reset % 60 == 0 and before + 5 <= reset <= before + 66
    assert _post(double.url, body)[0] == 429  # the fault fired once; the limit holds
    assert _post(double.url, body, key="sk-other-account")[0] == 200
    err = ApiError(429, raw.decode(), dict(headers.items()))
    # On an API key, a reset a minute away at most is waited out, like any short retry-after;
    # a later one is given up. The double's reset is 5-65 s away: read it at fixed distances.
    clock = "pytest_orch_recovery.doubles.simagent.api.time.time"
    monkeypatch.setattr(clock, lambda: reset - 60.0)
    assert err.usage_limit_reset is None and err.retryable
    monkeypatch.setattr(clock, lambda: reset - 61.0)
    assert err.usage_limit_reset is None and not err.retryable
    monkeypatch.undo()
    assert err.display().startswith("API Error: Request rejected (429) · This request would")
    err.subscription = True  # on a subscription: said at once, with the reset
    assert err.usage_limit_reset == reset and not err.retryable
    assert err.display().startswith("You've hit your 5-hour limit · resets ")


def test_streaming_reply_follows_the_event_sequence_and_reassembles(double: ModelDouble) -> None:
    status, headers, raw = _post(
        double.url, _body([{"role": "user", "content": TASK.title}], stream=True)
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = _sse(raw)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    assert events[0][1]["message"]["content"] == []
    assert events[0][1]["message"]["stop_reason"] is None
    json_deltas = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert len([p for p in json_deltas if p]) >= 2  # the input arrives in several pieces
    msg = _assemble(events)
    use = _tool_use(msg)
    assert use is not None and use["input"] == {
        "file_path": f"{CWD}/fake3.md",
        "content": plan_for_task(TASK).steps[0].content,
    }
    assert msg["stop_reason"] == "tool_use" and _text(msg) == "I'll create fake3.md."


@pytest.mark.parametrize("stream", [False, True])
def test_conversation_runs_every_step_once_in_order(double: ModelDouble, stream: bool) -> None:
    calls, final = _Session(double.url, TASK.title + "\n\nCreate these files", stream=stream).run()
    assert [_key(c) for c in calls] == _expected_calls(TASK)
    assert PR_URL in _text(final)
    assert calls[-1]["input"]["command"].startswith("gh pr create --title ")


def test_resent_history_continues_without_repeating(double: ModelDouble) -> None:
    session = _Session(double.url, TASK.title)
    for _ in range(3):
        msg = session.ask()
        use = _tool_use(msg)
        assert use is not None
        session.answer(msg, "ok")
    first, again = session.ask(), session.ask()  # --resume resends the same history
    a, b = _tool_use(first), _tool_use(again)
    assert a is not None and b is not None
    assert _key(a) == _key(b) == _expected_calls(TASK)[3]  # the commit, not a rewrite


def test_continuation_prompt_plans_only_the_remaining_steps(double: ModelDouble) -> None:
    partial = PartialWork(
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py",),
        uncommitted=("fake3.md",),
        tests_passed=None,
    )
    prompt = continuation_prompt(TASK, partial, missing_work(TASK, partial))
    calls, _ = _Session(double.url, prompt).run()
    assert [_key(c) for c in calls] == _expected_calls(TASK)[1:]  # no rewrite of fake3.md


def test_continuation_with_nothing_left_ends_at_once(double: ModelDouble) -> None:
    prompt = f"You are continuing the task: {TASK.title}\n\nRemaining steps, in order:\n(none)\n"
    calls, final = _Session(double.url, prompt).run()
    assert calls == [] and _text(final).startswith("Done")


def test_permission_denial_is_retried_once_then_given_up(double: ModelDouble) -> None:
    def deny(use: dict[str, Any]) -> Result:
        return DENIAL.format(path=use["input"]["file_path"]), True

    calls, final = _Session(double.url, TASK.title).run(deny)
    assert [c["name"] for c in calls] == ["Write", "Write"]
    assert calls[0]["input"] == calls[1]["input"]
    assert "permission" in _text(final) and "Write" in _text(final)
    assert [e["action"]["reason"] for e in double.transcript] == [
        "step",
        "retry",
        "gave_up_permission",
    ]


def test_failed_push_is_retried_once_then_reported_with_the_error(double: ModelDouble) -> None:
    error = "Exit code 128\nfatal: could not read Username for 'https://github.com'"

    def push_fails(use: dict[str, Any]) -> Result:
        return (
            (error, True)
            if use["input"].get("command", "").startswith("git push")
            else ("ok", False)
        )

    calls, final = _Session(double.url, TASK.title).run(push_fails)
    pushes = [c for c in calls if c["input"].get("command", "").startswith("git push")]
    assert len(pushes) == 2 and calls[-1] in pushes
    assert "> fatal: could not read Username" in _text(final)
    assert not any("gh pr create" in c["input"].get("command", "") for c in calls)


def test_failed_tests_are_reported_without_retry(double: ModelDouble) -> None:
    def tests_fail(use: dict[str, Any]) -> Result:
        failing = use["input"].get("command") == "pytest -q"
        return ("Exit code 1\nFAILED test_x.py::test_a", True) if failing else ("ok", False)

    calls, final = _Session(double.url, TASK.title).run(tests_fail)
    assert [c["input"].get("command") for c in calls].count("pytest -q") == 1
    assert "FAILED test_x.py::test_a" in _text(final)


def test_side_requests_get_short_text_and_do_not_advance_the_task(double: ModelDouble) -> None:
    title_req = {
        "model": "claude-haiku",
        "max_tokens": 512,
        "system": [
            {
                "type": "text",
                "text": "Analyze if this message indicates a new "
                "conversation topic. Format your response as a JSON object with "
                "two fields: 'isNewTopic' (boolean) and 'title' (string or null).",
            }
        ],
        "messages": [{"role": "user", "content": TASK.title}],
    }
    status, _, raw = _post(double.url, title_req)
    reply = json.loads(raw)
    assert status == 200 and reply["stop_reason"] == "end_turn"
    assert json.loads(_text(reply))["isNewTopic"] is True
    quota = {
        "model": "claude-haiku",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "quota"}],
    }
    status, _, raw = _post(double.url, quota)
    assert status == 200 and json.loads(raw)["stop_reason"] == "max_tokens"
    # Tools present but not the task's (a sub-agent with Read only): also a side request.
    status, _, raw = _post(
        double.url, _body([{"role": "user", "content": TASK.title}], tools=[TOOLS[2]])
    )
    assert _tool_use(json.loads(raw)) is None
    msg = _Session(double.url, TASK.title).ask()
    use = _tool_use(msg)
    assert use is not None and use["input"]["file_path"].endswith("/fake3.md")
    assert [e["side"] for e in double.transcript] == [True, True, True, False]


def test_tasks_added_while_running_are_served(double: ModelDouble) -> None:
    extra = TaskPlan("Write the changelog", (Step("write", "CHANGELOG.md", "write", content="x"),))
    double.add_task(extra)
    calls, final = _Session(double.url, "Write the changelog please").run()
    assert [c["input"]["file_path"] for c in calls] == [f"{CWD}/CHANGELOG.md"]
    assert _text(final) == "Done: wrote CHANGELOG.md."


def test_transcript_is_appended_as_jsonl(double: ModelDouble, tmp_path: Path) -> None:
    _Session(double.url, TASK.title).ask()
    _post(double.url, {"messages": []}, "/v1/messages/count_tokens")
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert lines == double.transcript
    assert lines[0]["task"] == TASK.title and lines[0]["action"]["tool"] == "Write"
    assert lines[1]["endpoint"] == "count_tokens"


def test_count_tokens_and_not_found(double: ModelDouble) -> None:
    status, _, raw = _post(
        double.url,
        _body([{"role": "user", "content": "hello " * 100}]),
        "/v1/messages/count_tokens?beta=true",
    )
    assert status == 200 and json.loads(raw)["input_tokens"] > 100
    status, headers, raw = _post(double.url, {}, "/v1/complete-nonsense")
    body = json.loads(raw)
    assert status == 404 and headers["request-id"].startswith("req_")
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "Not Found"}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(double.url + "/v1/models", timeout=30)
    with info.value as err:
        assert err.code == 404 and json.loads(err.read())["error"]["type"] == "not_found_error"


def test_bad_request_body_is_an_invalid_request_error(double: ModelDouble) -> None:
    status, _, raw = _post(double.url, {"model": "m"})
    assert status == 400
    assert json.loads(raw)["error"] == {
        "type": "invalid_request_error",
        "message": "messages: Field required",
    }


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "message"),
    [
        (ApiFaultKind.OVERLOADED, 529, "overloaded_error", "Overloaded"),
        (ApiFaultKind.SERVER_ERROR, 500, "api_error", "Internal server error"),
        (ApiFaultKind.AUTH, 401, "authentication_error", "invalid x-api-key"),
    ],
)
def test_error_faults_answer_with_the_real_status_and_body(
    double: ModelDouble, kind: ApiFaultKind, status: int, error_type: str, message: str
) -> None:
    double.add_fault(ApiFaultSpec(kind, times=1))
    got, headers, raw = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    body = json.loads(raw)
    assert got == status
    assert body["type"] == "error" and body["error"] == {"type": error_type, "message": message}
    assert body["request_id"].startswith("req_")
    retry_hint = headers["x-should-retry"]
    assert retry_hint == ("false" if status == 401 else "true")
    # times=1: the retry goes through, to the same first step
    msg = _Session(double.url, TASK.title).ask()
    use = _tool_use(msg)
    assert use is not None and use["input"]["file_path"].endswith("fake3.md")
    assert [e["fault"] for e in double.transcript] == [str(kind), None]


def test_rate_limit_carries_retry_after(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.RATE_LIMIT, times=2, seconds=7))
    for _ in range(2):
        status, headers, raw = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
        assert status == 429 and headers["retry-after"] == "7"
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        assert "rate limit" in json.loads(raw)["error"]["message"]
    status, _, _ = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    assert status == 200


def test_step_keyed_fault_fires_only_before_that_step(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.OVERLOADED, before_kind="push"))
    double.add_fault(ApiFaultSpec(ApiFaultKind.SERVER_ERROR, at_step=2))
    session = _Session(double.url, TASK.title)
    statuses: list[int] = []
    for _ in range(12):
        status, _, raw = _post(double.url, _body(session.messages))
        statuses.append(status)
        if status != 200:
            continue
        msg = json.loads(raw)
        if _tool_use(msg) is None:
            break
        session.answer(msg, *_ok(_tool_use(msg) or {}))
    faulted = [(e["action"].get("step"), e["fault"]) for e in double.transcript if e["fault"]]
    assert faulted == [(2, "server_error"), (5, "overloaded")]
    assert statuses.count(200) == len(_expected_calls(TASK)) + 1


def test_request_keyed_fault_counts_per_server(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.OVERLOADED, at_request=2, times=2))
    codes = [
        _post(double.url, _body([{"role": "user", "content": TASK.title}]))[0] for _ in range(4)
    ]
    assert codes == [200, 529, 529, 200]


def test_stall_is_released_when_the_double_stops(tmp_path: Path) -> None:
    double = ModelDouble(Plan((plan_for_task(TASK),))).start()
    double.add_fault(ApiFaultSpec(ApiFaultKind.STALL, seconds=600))
    outcome: list[BaseException | int] = []

    def client() -> None:
        try:
            outcome.append(_post(double.url, _body([{"role": "user", "content": TASK.title}]))[0])
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert double.wait_until(lambda d: d.stalled == 1, timeout=30)
    finally:
        double.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BaseException)  # no response at all
    assert double.transcript[-1]["released"] == "stop" and double.transcript[-1]["status"] is None
    double.stop()  # idempotent


def test_short_stall_then_normal_reply(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.STALL, seconds=0.01))
    status, _, raw = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    assert status == 200 and _tool_use(json.loads(raw)) is not None


def test_dropped_stream_is_an_incomplete_sse_body(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.DROP_STREAM, keep_events=4))
    host, port = double.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/messages?beta=true",
            body=json.dumps(_body([{"role": "user", "content": TASK.title}], stream=True)),
            headers={"content-type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
    finally:
        conn.close()
    names = [n for n, _ in _sse(info.value.partial)]
    assert names[0] == "message_start" and len(names) == 4
    assert "message_stop" not in names and "message_delta" not in names
    assert double.transcript[-1]["dropped"] is True


# --------------------------------------------------------------------------- plans


def test_plan_files_in_toml_and_json_load(tmp_path: Path) -> None:
    toml_file = tmp_path / "plan.toml"
    toml_file.write_text(
        '[[tasks]]\nmatch = "Add docs"\nfinal = "Docs added."\n\n'
        '[[tasks.steps]]\nwrite = "docs/a.md"\ncontent = "# A\\n"\n\n'
        '[[tasks.steps]]\nedit = "README.md"\nold = "TODO"\nnew = "See docs/a.md"\n\n'
        '[[tasks.steps]]\nbash = "git push -u origin HEAD"\nkind = "push"\n\n'
        '[[faults]]\nkind = "overloaded"\nat_step = 2\n'
    )
    plan = load_plan(toml_file)
    assert [(s.tool, s.kind) for s in plan.tasks[0].steps] == [
        ("write", "write"),
        ("edit", "edit"),
        ("bash", "push"),
    ]
    assert plan.tasks[0].final == "Docs added."
    assert plan.faults == (ApiFaultSpec(ApiFaultKind.OVERLOADED, at_step=2),)
    json_file = tmp_path / "plan.json"
    json_file.write_text(
        json.dumps(
            {"tasks": [{"match": "Add docs", "steps": [{"bash": "make test", "kind": "test"}]}]}
        )
    )
    assert load_plan(json_file).tasks[0].steps[0].tool_input(None) == {
        "command": "make test",
        "description": "Run the tests",
    }


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.json", '{"tasks": [\n  {"match": "x",\n   "steps": [}\n]}', "p.json:3: invalid JSON"),
        (
            "p.json",
            '{"tasks": [\n {"match": "x", "steps": [\n  {"write": "a.md"}\n ]}\n]}',
            "p.json:3: tasks[0].steps[0].content: required",
        ),
        ("p.json", '{"tasks": [\n {"match": ""}\n]}', "p.json:2: tasks[0].match"),
        (
            "p.toml",
            '[[tasks]]\nmatch = "x"\n\n[[tasks.steps]]\nbash = "ls"\nkind = "deploy"\n',
            "p.toml:4: tasks[0].steps[0].kind: 'deploy' is not one of",
        ),
        (
            "p.toml",
            '[[tasks]]\nmatch = "x"\n[[tasks.steps]]\nwrite = "a"\nbash = "ls"\n',
            "p.toml:3: tasks[0].steps[0]: needs exactly one of",
        ),
        (
            "p.toml",
            '[[tasks]]\nmatch = "x"\n\n[[faults]]\nkind = "meteor"\n',
            "p.toml:4: faults[0].kind: 'meteor' is not one of",
        ),
        ("p.toml", "tasks = 3\n", "p.toml:1: tasks: a non-empty list"),
    ],
)
def test_bad_plans_name_file_line_and_field(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value).startswith(str(tmp_path / expected.split(":", 1)[0]))
    assert expected.split(":", 1)[1] in str(info.value)


_NASTY_TITLE = "Fix \"quotes\" & 'apostrophes' $(rm -rf ~) `id`\nsecond line — ünïcødé ✓"


def test_plan_for_task_quotes_titles_for_a_real_shell(tmp_path: Path) -> None:
    task = Task("t9", _NASTY_TITLE, ("a.md",), wants_pr=True)
    plan = plan_for_task(task)
    commit, push, pr = (s.target for s in plan.steps[1:])
    # Run the quoted words through bash and check they arrive intact.
    printed = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + commit.split("-m ", 1)[1]],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    ).stdout.decode()
    assert printed == _NASTY_TITLE + "\0"
    assert push == "git push -u origin HEAD"
    words = shlex.split(pr)
    assert words[:4] == ["gh", "pr", "create", "--title"] and words[4] == _NASTY_TITLE
    assert words[5] == "--body" and "a.md" in words[6]
    assert not (tmp_path / "~").exists()


@given(st.text(min_size=1, max_size=60).filter(lambda t: "\0" not in t))
def test_any_title_survives_shell_quoting(title: str) -> None:
    plan = plan_for_task(Task("t", title, ()))
    assert shlex.split(plan.steps[0].target)[-1] == title
    assert shlex.split(plan.steps[-1].target)[4] == title


def test_contents_override_defaults() -> None:
    plan = plan_for_task(TASK, contents={"fake3.py": "print('hi')\n"})
    assert plan.steps[1].content == "print('hi')\n"
    assert plan.steps[0].content.startswith("# Create /fake3 command")


# --------------------------------------------------------------------------- the property

_KINDS = st.sampled_from(["write", "test", "commit", "push", "open_pr", "free"])


@st.composite
def _task_plans(draw: st.DrawFn) -> TaskPlan:
    steps: list[Step] = []
    for i, kind in enumerate(draw(st.lists(_KINDS, min_size=1, max_size=6))):
        if kind == "write":
            steps.append(Step("write", f"f{i}.md", "write", content=f"c{i}"))
        else:
            steps.append(Step("bash", f"cmd-{i} --{kind}", kind))
    return TaskPlan("The task", tuple(steps))


@settings(max_examples=150, deadline=None)
@given(_task_plans(), st.lists(st.sampled_from(["ok", "error", "denied"]), max_size=20))
def test_next_step_is_always_the_first_not_done(plan: TaskPlan, outcomes: list[str]) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "The task"}]
    done: set[int] = set()
    for n, outcome in enumerate([*outcomes, *["ok"] * (len(plan.steps) * 3)]):
        conv = read_conversation({"system": SYSTEM, "messages": messages, "tools": TOOLS})
        reply = decide(plan, conv)
        first_open = next(
            i for i in range(1, len(plan.steps) + 2) if i > len(plan.steps) or i not in done
        )
        if reply.stop_reason != "tool_use":
            assert reply.reason in ("done", "gave_up_permission", "gave_up_error")
            if reply.reason == "done":
                assert done == set(range(1, len(plan.steps) + 1))
            else:
                assert reply.step_index == first_open
            return
        assert reply.step_index == first_open and reply.step_index not in done
        use_id = f"toolu_{n}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": reply.text},
                    {
                        "type": "tool_use",
                        "id": use_id,
                        "name": reply.tool_name,
                        "input": dict(reply.tool_input or {}),
                    },
                ],
            }
        )
        text = {"ok": "fine", "error": "Exit code 1\nboom", "denied": DENIAL.format(path="/x")}[
            outcome
        ]
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use_id,
                        "content": text,
                        "is_error": outcome != "ok",
                    }
                ],
            }
        )
        if outcome == "ok":
            done.add(reply.step_index)
    raise AssertionError("the conversation never ended")


# --------------------------------------------------------------------------- the CLI


def test_cli_serves_until_sigint_and_exits_zero(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "tasks": [
                    {"match": TASK.title, "steps": [{"write": "fake3.md", "content": "# fake3\n"}]}
                ]
            }
        )
    )
    transcript = tmp_path / "transcript.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            "model-double",
            "--plan",
            str(plan),
            "--transcript",
            str(transcript),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        status, _, raw = _post(url, _body([{"role": "user", "content": TASK.title}]))
        use = _tool_use(json.loads(raw))
        assert status == 200 and use is not None
        assert use["input"] == {"file_path": f"{CWD}/fake3.md", "content": "# fake3\n"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert json.loads(transcript.read_text().splitlines()[0])["status"] == 200


def test_cli_rejects_a_bad_plan_with_exit_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('[[tasks]]\nmatch = "x"\n\n[[tasks.steps]]\nedit = "a.md"\nold = "x"\n')
    proc = subprocess.run(
        ["orch-recovery", "model-double", "--plan", str(plan)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{plan}:4: tasks[0].steps[0].new: required" in proc.stderr


def test_task_scoped_request_fault_counts_only_that_tasks_requests(double: ModelDouble) -> None:
    double.add_task(TaskPlan("Other task", (Step("bash", "ls", "free"),)))
    double.add_fault(
        ApiFaultSpec(ApiFaultKind.OVERLOADED, at_request=2, scope="task", task="Other task")
    )
    codes = [
        _post(double.url, _body([{"role": "user", "content": prompt}]))[0]
        for prompt in (TASK.title, TASK.title, "Other task", TASK.title, "Other task")
    ]
    assert codes == [200, 200, 200, 200, 529]
    assert [e["task_index"] for e in double.transcript] == [1, 2, 1, 3, 2]


def test_stop_closes_idle_keep_alive_connections_and_joins_threads() -> None:
    double = ModelDouble(Plan((plan_for_task(TASK),))).start()
    host, port = double.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v1/messages/count_tokens", body=json.dumps({"messages": []}))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Connection") != "close"
        resp.read()  # the connection stays open, its handler thread waiting for more
        double.stop()
    finally:
        conn.close()
    handlers = [t for t in threading.enumerate() if "process_request_thread" in t.name]
    assert handlers == []


def test_odd_request_shapes_are_tolerated_and_the_server_stays_up(double: ModelDouble) -> None:
    status, _, raw = _post(
        double.url, {"messages": [{"role": "user", "content": 5}], "tools": "Write", "system": 7}
    )
    assert status == 200  # odd shapes are tolerated: a side request with a short reply
    assert json.loads(raw)["stop_reason"] == "end_turn"
    status, _, _ = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    assert status == 200


def test_stream_error_event_ends_a_started_stream(double: ModelDouble) -> None:
    double.add_fault(ApiFaultSpec(ApiFaultKind.STREAM_ERROR, keep_events=2, times=2))
    status, _, raw = _post(
        double.url, _body([{"role": "user", "content": TASK.title}], stream=True)
    )
    events = _sse(raw)
    assert status == 200 and [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "error",
    ]
    assert events[-1][1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    status, _, raw = _post(double.url, _body([{"role": "user", "content": TASK.title}]))
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"


def _claude_binary() -> str | None:
    found = find_claude_code()
    return None if found is None else str(found)


@pytest.mark.slow
@pytest.mark.skipif(claude_code_missing() is not None, reason=str(claude_code_missing()))
def test_real_claude_code_follows_the_plan_through_a_529(tmp_path: Path) -> None:
    repo, home = tmp_path / "repo", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit = (
        "git add -A && git -c user.email=a@example.com -c user.name=agent "
        "commit -m 'Create /fake3 command'"
    )
    plan = Plan(
        (
            TaskPlan(
                TASK.title,
                (
                    Step("write", "fake3.md", "write", content="# /fake3\n"),
                    Step("bash", commit, "commit"),
                ),
            ),
        ),
        (ApiFaultSpec(ApiFaultKind.OVERLOADED, at_step=2),),
    )
    with ModelDouble(plan) as double:
        env = {
            **os.environ,
            "HOME": str(home),
            "IS_SANDBOX": "1",
            "ANTHROPIC_BASE_URL": double.url,
            "ANTHROPIC_API_KEY": "sk-test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        proc = subprocess.run(
            [
                str(_claude_binary()),
                "-p",
                TASK.title,
                "--dangerously-skip-permissions",
                "--output-format",
                "json",
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        transcript = double.transcript
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["is_error"] is False
    assert (repo / "fake3.md").read_text() == "# /fake3\n"
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout
    assert log.splitlines() == ["Create /fake3 command"]
    task_entries = [e for e in transcript if e.get("task") == TASK.title]
    assert [e["fault"] for e in task_entries].count("overloaded") == 1
    assert task_entries[-1]["action"]["reason"] == "done"


def test_continuation_prompt_at_the_end_of_a_resumed_history_plans_only_what_is_left() -> None:
    from pytest_orch_recovery.doubles.modeldouble import plan_for_task
    from pytest_orch_recovery.doubles.modeldouble.conversation import decide, read_conversation
    from pytest_orch_recovery.engine.analyze import continuation_prompt, missing_work
    from pytest_orch_recovery.engine.model import PartialWork, Task

    task = Task("t", "Create /fake3 command", ("fake3.md",))
    partial = PartialWork(deliverables_present=("fake3.md",), uncommitted=("fake3.md",))
    prompt = continuation_prompt(task, partial, missing_work(task, partial))
    body = {
        "tools": [{"name": "Write"}, {"name": "Bash"}, {"name": "Edit"}],
        "messages": [
            {"role": "user", "content": "Create /fake3 command"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "Write",
                        "input": {"file_path": "fake3.md", "content": "x"},
                    }
                ],
            },
            # Interrupted before the tool result was recorded: what a resume repairs to.
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": "[Request interrupted by user for tool use]",
                    }
                ],
            },
            {"role": "user", "content": prompt},
        ],
    }
    reply = decide(plan_for_task(task), read_conversation(body))
    assert reply.step is not None and reply.step.kind == "commit"


_JSON_TEXT = st.text(alphabet=st.sampled_from('ab{}[]"\\:, \n\u00e9'), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3),
    max_leaves=12,
)


@given(_JSON, st.sampled_from([None, 0, 2]), st.booleans())
def test_every_json_object_of_a_plan_knows_where_it_starts(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    from pytest_orch_recovery.doubles.modeldouble.plan import _located_json, _LocatedDict

    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    decoded = _located_json(text)
    assert decoded == value
    pending = [decoded]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            assert isinstance(node, _LocatedDict)
            # The text from its offset decodes to exactly this object.
            assert json.JSONDecoder().raw_decode(text, node.offset)[0] == node
            pending += node.values()
        elif isinstance(node, list):
            pending += node


# --------------------------------------------------------------------------- tasks without a plan


def _without_body(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Calls without the PR body, which names the task id (a brief does not)."""
    return [(tool, target.split(" --body ")[0]) for tool, target in keys]


def test_a_task_without_a_plan_entry_is_served_from_its_brief(tmp_path: Path) -> None:
    with ModelDouble(Plan(), transcript_path=tmp_path / "t.jsonl") as double:
        calls, final = _Session(double.url, initial_prompt(TASK)).run()
        assert _without_body([_key(c) for c in calls]) == _without_body(_expected_calls(TASK))
        assert PR_URL in _text(final)
        # Its later attempts find it under its title, as a planned task.
        partial = PartialWork(
            deliverables_present=("fake3.md",), deliverables_missing=("fake3.py",)
        )
        again, _ = _Session(
            double.url, continuation_prompt(TASK, partial, missing_work(TASK, partial))
        ).run()
        assert _without_body([_key(c) for c in again]) == _without_body(_expected_calls(TASK)[1:])


def test_a_continuation_of_an_unknown_task_writes_what_is_missing(tmp_path: Path) -> None:
    partial = PartialWork(deliverables_present=("fake3.md",), deliverables_missing=("fake3.py",))
    prompt = continuation_prompt(TASK, partial, missing_work(TASK, partial))
    with ModelDouble(Plan()) as double:
        calls, _ = _Session(double.url, prompt).run()
    # The tests' command is not in a continuation prompt: that step is skipped.
    assert _without_body([_key(c) for c in calls]) == _without_body(
        [k for k in _expected_calls(TASK)[1:] if k[1] != TASK.tests]
    )


def test_a_prompt_that_briefs_no_task_gets_a_plain_answer(tmp_path: Path) -> None:
    with ModelDouble(Plan()) as double:
        calls, final = _Session(double.url, "What is the capital of France?").run()
    assert calls == [] and _text(final)
