"""The agent loop: ask the model, run the tools it asks for, record everything, repeat."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from pytest_orch_recovery.doubles.simagent.api import ApiError, MessagesClient
from pytest_orch_recovery.doubles.simagent.hooks import (
    EVENT,
    HookCommand,
    load_hooks,
    run_hooks,
    settings_files,
)
from pytest_orch_recovery.doubles.simagent.interactive import Answer, remembered_rule
from pytest_orch_recovery.doubles.simagent.result import Printer, RunTally
from pytest_orch_recovery.doubles.simagent.session import SessionLog
from pytest_orch_recovery.doubles.simagent.tools import (
    EDIT_TOOLS,
    TOOL_NAMES,
    TOOL_SCHEMAS,
    PermissionPolicy,
    run_tool,
)
from pytest_orch_recovery.doubles.simagent.version import VERSION

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol, TextIO

    class Prompter(Protocol):  # only annotations name it
        """Asks a person whether a tool call may run (interactive mode)."""

        def ask(self, tool: str, tool_input: Mapping[str, Any], cwd: Path) -> Answer: ...


DEFAULT_MODEL = "claude-sonnet-4-5"
MAX_TOKENS = 32_000
# Claude Code's first system block; model doubles key on it to recognise the agent.
IDENTITY = "You are Claude Code, Anthropic's official CLI for Claude."


@dataclass
class RunConfig:
    prompt: str
    cwd: Path
    home: Path
    session: SessionLog
    history: list[dict[str, Any]]
    client: MessagesClient
    policy: PermissionPolicy
    printer: Printer
    model: str = DEFAULT_MODEL
    max_turns: int | None = None
    append_system_prompt: str = ""
    verbose: bool = False
    hooks: list[HookCommand] = field(default_factory=list)
    # Interactive mode: calls that need permission are asked for here, not denied outright.
    prompter: Prompter | None = None
    # Interactive mode: the conversation as the terminal shows it (None in -p mode).
    screen: TextIO | None = None


def system_blocks(cwd: Path, extra: str = "") -> list[dict[str, str]]:
    """The system prompt, with Claude Code's ``<env>`` block naming the working directory."""
    is_repo = (
        subprocess.run(
            ["git", "-C", str(cwd), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    env = (
        "<env>\n"
        f"Working directory: {cwd}\n"
        f"Is directory a git repo: {'Yes' if is_repo else 'No'}\n"
        f"Platform: {sys.platform}\n"
        f"OS Version: {platform.system()} {platform.release()}\n"
        f"Today's date: {date.today().isoformat()}\n"
        "</env>"
    )
    body = (
        "You are an interactive CLI tool that helps users with software engineering tasks. "
        "Use the tools available to you to do the task in the working directory.\n\n" + env
    )
    if extra:
        body += "\n\n" + extra
    return [{"type": "text", "text": IDENTITY}, {"type": "text", "text": body}]


def load_run_hooks(cwd: Path, home: Path) -> list[HookCommand]:
    return load_hooks(settings_files(cwd, home), lambda m: print(m, file=sys.stderr))


def _text_of(message: Mapping[str, Any]) -> str:
    return "".join(
        str(b.get("text", "")) for b in message.get("content", []) if b.get("type") == "text"
    )


def run(cfg: RunConfig) -> int:
    """Run the loop to completion; returns the exit status. KeyboardInterrupt propagates."""
    conversation = _Conversation(cfg)
    conversation.announce()
    conversation.send_prompt()
    while True:
        code = conversation.turn()
        if code is not None:
            return code


class _Conversation:
    """One ``-p`` run: the messages so far and the tally, advanced one model turn at a time."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        self.tally = RunTally(cfg.model)
        self.sid = cfg.session.session_id
        self.messages: list[Any] = list(cfg.history)
        self.system = system_blocks(cfg.cwd, cfg.append_system_prompt)
        self.stop_reason: str | None = None

    def announce(self) -> None:
        """The ``system``/``init`` event stream-json consumers read first."""
        cfg = self.cfg
        cfg.printer.event(
            {
                "type": "system",
                "subtype": "init",
                "cwd": str(cfg.cwd),
                "session_id": self.sid,
                "tools": list(TOOL_NAMES),
                "mcp_servers": [],
                "model": cfg.model,
                "permissionMode": cfg.policy.mode,
                "slash_commands": [],
                "apiKeySource": "ANTHROPIC_API_KEY" if cfg.client.api_key else "none",
                "claude_code_version": VERSION,
                "output_style": "default",
                "agents": [],
                "skills": [],
                "plugins": [],
                "uuid": str(uuid.uuid4()),
            }
        )

    def send_prompt(self) -> None:
        cfg = self.cfg
        prompt_msg = {"role": "user", "content": [{"type": "text", "text": cfg.prompt}]}
        cfg.session.append("user", prompt_msg)
        self.messages.append(prompt_msg)
        if cfg.screen is not None:
            cfg.screen.write(f"\u276f {cfg.prompt}\n\n")
            cfg.screen.flush()

    def finish(
        self, subtype: str, is_error: bool, text: str | None, code: int, **extra: Any
    ) -> int:
        """Print the result object; returns the exit status."""
        self.cfg.printer.final(
            self.tally.result(
                subtype=subtype,
                is_error=is_error,
                text=text,
                session_id=self.sid,
                duration_ms=(time.monotonic() - self.started) * 1000,
                duration_api_ms=self.cfg.client.api_ms,
                stop_reason=self.stop_reason,
                **extra,
            )
        )
        return code

    def turn(self) -> int | None:
        """One request to the model and the tool calls it asks for; an exit status when the
        run is over, None to go on."""
        cfg = self.cfg
        if cfg.max_turns is not None and self.tally.num_turns >= cfg.max_turns:
            # Claude Code -p: "Error: Reached max turns (N)", exit 1
            text = f"Error: Reached max turns ({cfg.max_turns})"
            return self.finish(
                "error_max_turns",
                True,
                text,
                1,
                terminal_reason="max_turns",
                errors=[f"Reached maximum number of turns ({cfg.max_turns})"],
            )
        try:
            message = self.request()
        except ApiError as err:
            return self.api_failed(err)
        calls = [b for b in message.get("content", []) if b.get("type") == "tool_use"]
        if not calls:
            return self.finish("success", False, _text_of(message), 0)
        return self.run_calls(calls)

    def request(self) -> Mapping[str, Any]:
        """Send the conversation; record and show the reply."""
        cfg = self.cfg
        reply = cfg.client.create(
            {
                "model": cfg.model,
                "max_tokens": MAX_TOKENS,
                "system": self.system,
                "messages": self.messages,
                "tools": list(TOOL_SCHEMAS),
                "stream": True,
            }
        )
        message = reply.message
        self.tally.num_turns += 1
        self.tally.add_usage(message.get("usage"))
        self.stop_reason = message.get("stop_reason")
        cfg.session.append("assistant", message, {"requestId": reply.request_id})
        cfg.printer.event(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": self.sid,
                "uuid": cfg.session.last_uuid,
            }
        )
        self.messages.append({"role": "assistant", "content": message.get("content", [])})
        if cfg.screen is not None and _text_of(message):
            cfg.screen.write(f"\u25cf {_text_of(message)}\n")
            cfg.screen.flush()
        return message

    def api_failed(self, err: ApiError) -> int:
        """The API gave up (after the client's retries): a synthetic assistant message in the
        transcript, as Claude Code writes, and exit 1."""
        text = err.display(self.cfg.client.gateway)
        self.cfg.session.append(
            "assistant",
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": "<synthetic>",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "stop_sequence",
                "usage": {},
            },
            {"isApiErrorMessage": True},
        )
        return self.finish(
            "success", True, text, 1, api_error_status=err.status, terminal_reason="api_error"
        )

    def run_calls(self, calls: list[Mapping[str, Any]]) -> int | None:
        """Run the turn's tool calls and their hooks; answer the model with the results."""
        cfg = self.cfg
        results: list[dict[str, Any]] = []
        feedback: list[dict[str, Any]] = []
        responses: list[Any] = []
        try:
            for call in calls:
                block, response, payload = _run_call(cfg, self.tally, call)
                results.append(block)
                responses.append(response)
                if payload is not None:
                    feedback += _post_tool_hooks(cfg, payload)
        except KeyboardInterrupt:
            return self.interrupted(results, responses)
        # the API wants tool_result blocks first in the user turn, any text after them
        user_msg = {"role": "user", "content": results + feedback}
        cfg.session.append(
            "user", user_msg, {"toolUseResult": responses[0] if len(responses) == 1 else responses}
        )
        cfg.printer.event(
            {
                "type": "user",
                "message": user_msg,
                "parent_tool_use_id": None,
                "session_id": self.sid,
                "uuid": cfg.session.last_uuid,
            }
        )
        self.messages.append(user_msg)
        return None

    def interrupted(self, results: list[dict[str, Any]], responses: list[Any]) -> int:
        # Measured with Claude Code 2.1.328 (docs/claude-code.md): SIGINT while a tool or
        # its PostToolUse hook runs ends the run with exit 0 and a result JSON of subtype
        # error_during_execution, terminal_reason aborted_tools, and no "result" key. The
        # calls that finished are kept; an unanswered one reads as interrupted on resume.
        if results:
            self.cfg.session.append(
                "user",
                {"role": "user", "content": results},
                {"toolUseResult": responses[0] if len(responses) == 1 else responses},
            )
        return self.finish(
            "error_during_execution",
            True,
            None,
            0,
            terminal_reason="aborted_tools",
            errors=[
                "[ede_diagnostic] result_type=user last_content_type=n/a "
                f"stop_reason={self.stop_reason}"
            ],
        )


def _run_call(
    cfg: RunConfig, tally: RunTally, call: Mapping[str, Any]
) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """Run one tool_use block: its tool_result block, toolUseResult record, and the payload
    of the PostToolUse hooks to run (None: the call failed or was denied, no hooks)."""
    name, tool_input, tool_id = str(call["name"]), dict(call.get("input") or {}), str(call["id"])
    if cfg.screen is not None:
        _show_call(cfg, name, tool_input)
    denial = cfg.policy.denial(name, tool_input)
    if denial is not None and cfg.prompter is not None:
        denial = _ask(cfg, name, tool_input, denial)
    if denial is not None:
        tally.permission_denials.append(
            {"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input}
        )
        block = {"type": "tool_result", "tool_use_id": tool_id, "content": denial, "is_error": True}
        return block, f"Error: {denial}", None
    outcome = run_tool(name, tool_input, cfg.cwd)
    block = {"type": "tool_result", "tool_use_id": tool_id, "content": outcome.content}
    if outcome.is_error:
        # Claude Code runs PostToolUse only for calls that succeeded
        block["is_error"] = True
        return block, f"Error: {outcome.content}", None
    payload = {
        "session_id": cfg.session.session_id,
        "transcript_path": str(cfg.session.path),
        "cwd": str(cfg.cwd),
        "permission_mode": cfg.policy.mode,
        "hook_event_name": EVENT,
        "tool_name": name,
        "tool_input": tool_input,
        "tool_response": dict(outcome.response),
        "tool_use_id": tool_id,
    }
    return block, dict(outcome.response), payload


def _ask(cfg: RunConfig, name: str, tool_input: Mapping[str, Any], denial: str) -> str | None:
    """Interactive mode: the person's answer; the denial text stands when they say no."""
    assert cfg.prompter is not None
    answer = cfg.prompter.ask(name, tool_input, cfg.cwd)
    if answer is Answer.NO:
        return denial
    if answer is Answer.ALWAYS:
        rule = remembered_rule(name, tool_input)
        if name in EDIT_TOOLS:
            cfg.policy = replace(cfg.policy, mode="acceptEdits")
        elif rule is not None:
            cfg.policy = replace(cfg.policy, allowed=(*cfg.policy.allowed, rule))
    return None


def _show_call(cfg: RunConfig, name: str, tool_input: Mapping[str, Any]) -> None:
    """Interactive mode: the call's line in the conversation, as the TUI draws it."""
    target = tool_input.get("file_path") if name in EDIT_TOOLS else tool_input.get("command")
    shown = str(target or "")
    if name in EDIT_TOOLS:
        with contextlib.suppress(ValueError):
            shown = str(Path(shown).relative_to(cfg.cwd))
    if cfg.screen is not None:
        cfg.screen.write(f"\u25cf {name}({shown})\n")
        cfg.screen.flush()


def _post_tool_hooks(cfg: RunConfig, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run the PostToolUse hooks; blocking errors come back as text for the model."""
    feedback: list[dict[str, Any]] = []
    name = payload["tool_name"]
    for hook_run in run_hooks(cfg.hooks, payload, cfg.cwd):
        if hook_run.blocking:
            feedback.append(
                {
                    "type": "text",
                    "text": (
                        f"{EVENT}:{name} hook blocking error from command: "
                        f'"{hook_run.hook.command}": {hook_run.stderr.strip()}'
                    ),
                }
            )
        elif hook_run.exit_code != 0:
            status = "timed out" if hook_run.exit_code is None else f"status {hook_run.exit_code}"
            print(
                f"{EVENT}:{name} hook {hook_run.hook.command!r} failed ({status}): "
                f"{hook_run.stderr.strip()}",
                file=sys.stderr,
            )
    return feedback


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
