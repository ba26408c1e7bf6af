"""Interactive mode: the permission dialog on the terminal, answered by a keypress.

Started without ``-p`` and with a terminal on stdin, the sim agent runs the same loop as in
``-p`` mode, but a tool call that needs permission (no ``--dangerously-skip-permissions``, not
``bypassPermissions``, no matching ``--allowedTools`` rule) shows Claude Code's dialog and
blocks reading the answer from the terminal — forever, as the real CLI does. The wording was
observed with Claude Code 2.1.328 in a tmux pane (docs/claude-code.md)::

     Create file
     fake3.md
    ╌╌╌╌╌╌╌╌
      1 # Write the fake docs
    ╌╌╌╌╌╌╌╌
     Do you want to create fake3.md?
     ❯ 1. Yes
       2. Yes, and switch to accept edits (auto-approve file edits and common file commands) for this session (shift+tab)
       3. No

     Esc to cancel · Tab to amend

Keys: ``1`` or Enter run the tool; ``2`` runs it and stops asking (edits: the session switches
to ``acceptEdits``; Bash: that command's first word is allowed); ``3``, Esc or ``n`` deny it,
exactly as ``-p`` mode denies it; end of input denies too. Ctrl-C interrupts as usual.
"""  # noqa: E501, RUF002

from __future__ import annotations

import contextlib
import enum
import os
import termios
import tty
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.doubles.simagent.tools import EDIT_TOOLS

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

RULE = "\u254c" * 60  # the dialog's dashed rule around the preview
POINTER = "\u276f"  # Claude Code's selection marker
ACCEPT_EDITS_CHOICE = (
    "Yes, and switch to accept edits (auto-approve file edits and common file commands) "
    "for this session (shift+tab)"
)
_PREVIEW_LINES = 12


class Answer(enum.Enum):
    YES = "yes"
    ALWAYS = "always"  # yes, and do not ask again for this kind of call
    NO = "no"


_KEYS: dict[bytes, Answer] = {
    b"1": Answer.YES,
    b"\r": Answer.YES,
    b"\n": Answer.YES,
    b"y": Answer.YES,
    b"2": Answer.ALWAYS,
    b"3": Answer.NO,
    b"\x1b": Answer.NO,
    b"n": Answer.NO,
    b"N": Answer.NO,
}


def question(tool: str, tool_input: Mapping[str, Any], cwd: Path) -> str:
    """The dialog's question line, as the real CLI words it.

    >>> question("Write", {"file_path": "/w/fake3.md"}, Path("/w"))
    'Do you want to create fake3.md?'
    >>> question("Bash", {"command": "ls"}, Path("/w"))
    'Do you want to proceed?'
    """
    if tool in EDIT_TOOLS:
        path = _shown_path(tool_input, cwd)
        target = Path(str(tool_input.get("file_path", "")))
        target = target if target.is_absolute() else cwd / target
        if tool == "Write" and not target.exists():
            return f"Do you want to create {path}?"
        return f"Do you want to make this edit to {path}?"
    return "Do you want to proceed?"


def dialog(tool: str, tool_input: Mapping[str, Any], cwd: Path) -> str:
    """The whole dialog text (header, preview, question, numbered choices, hint)."""
    lines: list[str] = []
    if tool in EDIT_TOOLS:
        path = _shown_path(tool_input, cwd)
        creating = question(tool, tool_input, cwd).startswith("Do you want to create")
        lines += [" Create file" if creating else " Edit file", f" {path}", RULE]
        body = str(tool_input.get("content", tool_input.get("new_string", "")))
        for number, text in enumerate(body.splitlines()[:_PREVIEW_LINES], start=1):
            lines.append(f"  {number} {text}")
        lines.append(RULE)
        second = ACCEPT_EDITS_CHOICE
    else:
        command = str(tool_input.get("command", ""))
        lines += [" Bash command", "", f"   {command}"]
        if tool_input.get("description"):
            lines.append(f"   {tool_input['description']}")
        lines.append("")
        word = command.split()[0] if command.split() else command
        second = f"Yes, and don't ask again for {word} commands in {cwd}"
    lines += [
        " " + question(tool, tool_input, cwd),
        f" {POINTER} 1. Yes",
        f"   2. {second}",
        "   3. No",
        "",
        " Esc to cancel \u00b7 Tab to amend",
    ]
    return "\n".join(lines) + "\n"


def remembered_rule(tool: str, tool_input: Mapping[str, Any]) -> str | None:
    """The allow rule answer 2 adds for a Bash call (edits switch mode instead)."""
    if tool in EDIT_TOOLS:
        return None
    words = str(tool_input.get("command", "")).split()
    return f"{tool}({words[0]}:*)" if words and tool == "Bash" else tool


@dataclass
class TerminalPrompter:
    """Shows the dialog on ``out`` and reads one answer key from the terminal ``fd``."""

    fd: int
    out: TextIO

    def ask(self, tool: str, tool_input: Mapping[str, Any], cwd: Path) -> Answer:
        # Key-at-a-time before the dialog shows, so a key pressed the moment it appears is
        # neither line-buffered nor flushed by the mode change.
        with _cbreak(self.fd):
            self.out.write("\n" + dialog(tool, tool_input, cwd))
            self.out.flush()
            while True:
                key = os.read(self.fd, 1)  # blocks until a person (or send-keys) answers
                if not key:
                    return Answer.NO  # the terminal went away
                answer = _KEYS.get(key)
                if answer is not None:
                    return answer


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """One key at a time, no echo; Ctrl-C still raises SIGINT. Restored afterwards."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # not TCSAFLUSH: keep keys already typed
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _shown_path(tool_input: Mapping[str, Any], cwd: Path) -> str:
    raw = str(tool_input.get("file_path", ""))
    path = Path(raw)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return str(path.relative_to(cwd))
    return raw
