"""Choosing the next reply from the conversation a request carries.

The double keeps no per-session state: everything it needs is in the ``messages`` it is sent,
which is what makes ``claude --resume`` (which resends the history) continue where it stopped.
Each ``tool_use`` in an assistant message is paired with the ``tool_result`` that answers it;
a plan step is done once a call for it came back without error. The next reply is the first
step not done, a retry, a give-up, or the closing summary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_orch_recovery.doubles.modeldouble.continuation import indexed_steps, remaining_items
from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan, resolve_path

# Claude Code's denial when a tool is not allowed, e.g. "Claude requested permissions to write
# to /x/a.md, but you haven't granted it yet." (anthropics/claude-code-action#20,
# siteboon/claudecodeui#122) and, in don't-ask mode, "Permission to use Bash has been denied".
_DENIAL = re.compile(
    r"requested permissions to .+?haven't granted it yet|Permission to use \S+ has been denied",
    re.S,
)
# Claude Code shows a failed Bash call as "Error: Exit code N" (anthropics/claude-code#12115).
_EXIT = re.compile(r"^\s*(?:Error:\s*)?Exit code (?P<code>\d+)")
_CWD = re.compile(r"(?:Primary working directory|Working directory):[ \t]*(?P<cwd>/[^\n]*)")
_PR_URL = re.compile(r"https?://\S+/pull/\d+")
# Retries a model makes before giving up: a denial is asked again once; git/gh steps that
# fail are tried once more; anything else that fails is reported at once.
_MAX_DENIALS = 2
_RETRIED_KINDS = frozenset({"commit", "push", "open_pr"})
_MAX_ERRORS_RETRIED = 2


@dataclass(frozen=True)
class ToolResult:
    """What a tool call's ``tool_result`` said."""

    ok: bool
    denied: bool
    text: str


@dataclass(frozen=True)
class Call:
    """One ``tool_use`` the assistant made, and its result (None: never answered)."""

    name: str
    input: Mapping[str, Any]
    outcome: ToolResult | None
    turn: int  # how many human/orchestrator prompts preceded it


@dataclass(frozen=True)
class Conversation:
    first_user_text: str
    system_text: str
    cwd: str | None
    tool_names: frozenset[str]
    calls: tuple[Call, ...]
    turn: int  # prompts so far (the first user message is turn 1)
    max_tokens: int | None = None
    # The latest prompt from the human / orchestrator: after ``--resume`` the continuation
    # prompt arrives here, at the end of the resent history, not as the first message.
    latest_user_text: str = ""

    @property
    def all_text(self) -> str:
        return self.system_text + "\n" + self.first_user_text


@dataclass(frozen=True)
class Reply:
    """The double's answer: a tool call (with a short preamble) or a closing text."""

    reason: str  # step | retry | done | gave_up_permission | gave_up_error | side
    text: str
    step: Step | None = None
    step_index: int | None = None  # 1-based in the task's full plan; 0 = not in the plan
    tool_input: Mapping[str, Any] | None = None
    stop_reason: str = "end_turn"

    @property
    def tool_name(self) -> str | None:
        return None if self.step is None else self.step.tool_name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "stop_reason": self.stop_reason}
        if self.step is not None:
            out.update(
                tool=self.step.tool_name,
                kind=self.step.kind,
                step=self.step_index,
                target=self.step.target,
            )
        return out


# --------------------------------------------------------------------------- reading requests


def _blocks(content: Any) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, Mapping)]
    return []


def _text_of(content: Any) -> str:
    return "\n".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


def _outcome(block: Mapping[str, Any]) -> ToolResult:
    text = _text_of(block.get("content", ""))
    denied = bool(_DENIAL.search(text))
    exit_hit = _EXIT.match(text)
    failed = (
        bool(block.get("is_error"))
        or denied
        or (exit_hit is not None and exit_hit.group("code") != "0")
    )
    return ToolResult(ok=not failed, denied=denied, text=text)


def read_conversation(body: Mapping[str, Any]) -> Conversation:
    """Pull out of a Messages API request what the decision needs."""
    messages = [m for m in body.get("messages", ()) if isinstance(m, Mapping)]
    system_text = _text_of(body.get("system", ""))
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    first_text = "" if first_user is None else _text_of(first_user.get("content"))
    tool_names = frozenset(
        str(t.get("name")) for t in body.get("tools", ()) or () if isinstance(t, Mapping)
    )
    results: dict[str, ToolResult] = {}
    for m in messages:
        if m.get("role") == "user":
            for b in _blocks(m.get("content")):
                if b.get("type") == "tool_result":
                    results[str(b.get("tool_use_id"))] = _outcome(b)
    calls: list[Call] = []
    turn = 0
    latest_text = first_text
    for m in messages:
        blocks = _blocks(m.get("content"))
        if m.get("role") == "user":
            has_result = any(b.get("type") == "tool_result" for b in blocks)
            if not has_result and any(b.get("type") == "text" for b in blocks):
                turn += 1
                latest_text = _text_of(m.get("content"))
        elif m.get("role") == "assistant":
            for b in blocks:
                if b.get("type") == "tool_use":
                    raw_input = b.get("input")
                    calls.append(
                        Call(
                            name=str(b.get("name")),
                            input=raw_input if isinstance(raw_input, Mapping) else {},
                            outcome=results.get(str(b.get("id"))),
                            turn=turn,
                        )
                    )
    cwd_hit = _CWD.search(system_text) or _CWD.search(first_text)
    max_tokens = body.get("max_tokens")
    return Conversation(
        first_user_text=first_text,
        system_text=system_text,
        cwd=cwd_hit.group("cwd").strip() if cwd_hit else None,
        tool_names=tool_names,
        calls=tuple(calls),
        turn=turn,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        latest_user_text=latest_text,
    )


# --------------------------------------------------------------------------- deciding


def _same_call(step: Step, call: Call, cwd: str | None) -> bool:
    if call.name != step.tool_name:
        return False
    if step.tool == "bash":
        return call.input.get("command") == step.target
    path = str(call.input.get("file_path", ""))
    wanted = resolve_path(step.target, cwd)
    same_path = path in (wanted, step.target) or path.endswith("/" + step.target.lstrip("/"))
    if step.tool == "edit":
        return same_path and call.input.get("old_string") == step.old
    return same_path


def step_done(step: Step, conv: Conversation) -> bool:
    """A call for this step came back without error."""
    return any(
        c.outcome is not None and c.outcome.ok and _same_call(step, c, conv.cwd) for c in conv.calls
    )


def is_side_request(task: TaskPlan | None, conv: Conversation) -> bool:
    """Title/topic generation, quota checks, sub-agents: no task, no tools, or not its tools."""
    if task is None or not conv.tool_names:
        return True
    return not task.tool_names <= conv.tool_names


def decide(task: TaskPlan, conv: Conversation) -> Reply:
    """The next reply for a task conversation (see the module docstring)."""
    # A continuation prompt, wherever it stands (first message of a fresh session, or the
    # newest one of a resumed session), says which steps are left; otherwise the whole plan.
    prompt = conv.first_user_text
    if remaining_items(conv.latest_user_text) is not None:
        prompt = conv.latest_user_text
    planned = indexed_steps(task, prompt)
    done_steps: list[Step] = []
    for index, step in planned:
        if step_done(step, conv):
            done_steps.append(step)
            continue
        failures = [
            c.outcome
            for c in conv.calls
            if c.outcome is not None
            and not c.outcome.ok
            and c.turn == conv.turn
            and _same_call(step, c, conv.cwd)
        ]
        return _next_for(step, index, failures, conv)
    return _summary(task, done_steps, conv)


def _next_for(step: Step, index: int, failures: Sequence[ToolResult], conv: Conversation) -> Reply:
    denials = [f for f in failures if f.denied]
    errors = [f for f in failures if not f.denied]
    tool_input = step.tool_input(conv.cwd)
    if len(denials) >= _MAX_DENIALS:
        return Reply(
            reason="gave_up_permission",
            text=(
                f"I can't finish this task: I don't have permission to use the "
                f"{step.tool_name} tool ({_first_line(denials[-1].text)}). "
                f"Please grant the permission (or run with --dangerously-skip-permissions) "
                f"and ask me to continue."
            ),
            step=step,
            step_index=index,
        )
    limit = _MAX_ERRORS_RETRIED if step.kind in _RETRIED_KINDS else 1
    if len(errors) >= limit:
        return Reply(
            reason="gave_up_error",
            text=(
                f"I stopped because `{_short(step)}` failed:\n\n"
                f"{_quote(errors[-1].text)}\n\nThe remaining steps were not done."
            ),
            step=step,
            step_index=index,
        )
    if failures:
        why = "The permission was denied" if failures[-1].denied else "That failed"
        return Reply("retry", f"{why}; trying again.", step, index, tool_input, "tool_use")
    return Reply("step", _preamble(step), step, index, tool_input, "tool_use")


def _summary(task: TaskPlan, done_steps: Sequence[Step], conv: Conversation) -> Reply:
    if task.final is not None:
        return Reply("done", task.final)
    urls = [
        m.group(0)
        for c in conv.calls
        if c.outcome is not None
        for m in _PR_URL.finditer(c.outcome.text)
    ]
    parts = [s.describe() for s in done_steps] or ["nothing was left to do"]
    text = "Done: " + "; ".join(parts) + "."
    if urls:
        text += f"\n\nPull request: {urls[-1]}"
    return Reply("done", text)


def side_reply(conv: Conversation) -> Reply:
    """A short answer for a request that is not a step of a task (never advances a task)."""
    words = " ".join(conv.first_user_text.split()[:6]) or "New task"
    if "isNewTopic" in conv.all_text:
        text = json.dumps({"isNewTopic": True, "title": words[:50]})
    else:
        text = words
    limit = conv.max_tokens
    if limit is not None and limit * 4 < len(text):
        return Reply("side", text[: max(1, limit * 4)], stop_reason="max_tokens")
    return Reply("side", text)


def _preamble(step: Step) -> str:
    if step.tool == "write":
        return f"I'll create {step.target}."
    if step.tool == "edit":
        return f"I'll update {step.target}."
    return {
        "test": "Now I'll run the tests.",
        "fix_tests": "I'll fix the failing tests.",
        "commit": "Let me commit the changes.",
        "push": "Now I'll push the branch.",
        "open_pr": "Now I'll open the pull request.",
    }.get(step.kind, "Let me run a command.")


def _short(step: Step) -> str:
    return _first_line(step.target)[:80] if step.tool == "bash" else f"{step.tool} {step.target}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail given")


def _quote(text: str) -> str:
    lines = text.strip().splitlines()[-20:] or ["(no output)"]
    return "\n".join("> " + line for line in lines)
