"""What an agent's screen says: permission and approval dialogs read from pane text.

Pure functions over the text ``tmux capture-pane`` returns; :class:`~.tmux.TmuxRuntime`
calls :func:`find_dialog` while an attempt runs and ends the attempt the moment a dialog that
waits for a person is on screen, instead of letting it sit there until the attempt timeout.

A dialog is recognised by its question *and* the choice the CLI offers right below it, so a
model that merely writes "Do you want to create x?" in its prose is not mistaken for one.
Each detector carries a real sample and its public source:

Claude Code (observed with 2.1.328 in a tmux pane, docs/claude-code.md)::

     Do you want to create fake3.md?
     ❯ 1. Yes

  also "Do you want to make this edit to X?" and "Do you want to proceed?" (Bash), from
  issue reports (``patterns.cc_prompt_do_you_want``).
OpenAI Codex CLI (openai/codex ``codex-rs/tui/src/bottom_pane/approval_overlay.rs``)::

      Would you like to run the following command?
    › 1. Yes, proceed (y)

  and "Would you like to make the following edits?".
Gemini CLI (google-gemini/gemini-cli
``packages/cli/src/ui/components/messages/ToolConfirmationMessage.tsx``)::

    Allow execution of: 'git commit -m wip'?
    ● 1. Yes, allow once

  and "Apply this change?".
Aider (Aider-AI/aider ``aider/io.py`` ``confirm_ask``, questions from
``aider/coders/base_coder.py``; a public chat history shows it)::

    Create new file? (Y)es/(N)o [Yes]:
    Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]:
"""  # noqa: RUF002

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_orch_recovery.engine.model import ScreenFinding

# Lines from the bottom of the screen a dialog's question may sit at: the question, up to
# three choices, a hint and blank lines (Claude Code: "Esc to cancel · Tab to amend").
_TAIL_LINES = 14
# How far below its question a dialog's first choice may be: Codex puts a blank line, a
# "Reason:" line, the command and more blank lines in between.
_CHOICE_WITHIN = 9
# The frame a TUI draws around a dialog (Gemini CLI: "│ Allow execution of: ...?").
_BORDER = re.compile(r"^\s*[\u2502\u2503\u2551|]\s?|\s*[\u2502\u2503\u2551|]\s*$")
# Choice markers the TUIs draw before the highlighted option.
_POINTER = "[\u276f\u203a>\u25cf\u2022*]?"


@dataclass(frozen=True)
class Detector:
    """One CLI's dialog: its question, and the first choice that must follow it."""

    cli: str
    question: re.Pattern[str]
    choice: re.Pattern[str] | None  # None: the question line carries its own choices
    source: str


@dataclass(frozen=True)
class Dialog:
    """A dialog found on screen: which CLI, its question line, the line number (0-based)."""

    cli: str
    line: str
    index: int


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "claude-code",
        re.compile(r"^\s*Do you want to (?:create .+|make this edit to .+|proceed)\?\s*$"),
        re.compile(rf"^\s*{_POINTER}\s*1\.\s+Yes\b"),
        "docs/claude-code.md (observed, 2.1.328)",
    ),
    Detector(
        "claude-code",
        re.compile(r"^\s*Auto mode can't check actions in this session"),
        re.compile(r"Enter to stay in auto mode"),
        "docs/claude-code.md (observed, 2.1.328)",
    ),
    Detector(
        "codex",
        re.compile(
            r"^\s*Would you like to (?:run the following command|make the following "
            r"edits|grant these permissions)\?\s*$"
        ),
        re.compile(rf"^\s*{_POINTER}\s*1\.\s+Yes\b"),
        "openai/codex codex-rs/tui/src/bottom_pane/approval_overlay.rs",
    ),
    Detector(
        "gemini",
        re.compile(
            r"^\s*(?:Allow execution of: .+\?|Apply this change\?|Allow execution of "
            r"MCP tool .+\?|Do you want to proceed\?)\s*$"
        ),
        re.compile(rf"^\s*{_POINTER}\s*(?:1\.\s+)?Yes, allow once\b"),
        "google-gemini/gemini-cli packages/cli/src/ui/components/messages/"
        "ToolConfirmationMessage.tsx",
    ),
    Detector(
        "aider",
        re.compile(r"^\s*(?:>\s*)?.+\? \(Y\)es/\(N\)o(?:/\([A-Z]\)[^\s\[]+)* \[(?:Yes|No)\]:\s*$"),
        None,
        "Aider-AI/aider aider/io.py confirm_ask",
    ),
)


def find_dialog(screen: str, detectors: tuple[Detector, ...] = DETECTORS) -> Dialog | None:
    """The dialog waiting for an answer at the bottom of ``screen``, if any.

    Only the last lines count: a dialog answered long ago has scrolled up, and the CLI is
    waiting for a person only while its dialog is the last thing drawn.

    >>> find_dialog(" Do you want to create fake3.md?\\n \u276f 1. Yes\\n   3. No\\n")
    Dialog(cli='claude-code', line='Do you want to create fake3.md?', index=0)
    >>> find_dialog("I wonder: Do you want to create fake3.md?\\nsure\\n") is None
    True
    """
    lines = [_BORDER.sub("", line) for line in screen.split("\n")]
    while lines and not lines[-1].strip():  # a TUI's screen ends in empty rows
        lines.pop()
    start = max(0, len(lines) - _TAIL_LINES)
    for index in range(len(lines) - 1, start - 1, -1):
        line = lines[index]
        for detector in detectors:
            if not detector.question.search(line):
                continue
            if detector.choice is None:
                if index >= len(lines) - 2:  # the prompt line waits at the bottom
                    return Dialog(detector.cli, line.strip(), index)
                continue
            following = lines[index + 1 : index + 1 + _CHOICE_WITHIN]
            if any(detector.choice.search(f) for f in following):
                return Dialog(detector.cli, line.strip(), index)
    return None


# --------------------------------------------------------------------------- watching


@dataclass
class ScreenWatch:
    """Per-attempt watcher state: fed what the pane shows and how busy the agent is, it says
    when to end the attempt early. Pure: the runtime does the reading and the ending.

    Activity is new output on the pane *or* CPU time spent by the agent's processes (in
    ``-p`` mode a CLI prints nothing while a tool runs, however much the tool talks to it).
    Silence, past ``stall_window`` seconds, is a stall.

    >>> w = ScreenWatch(started=0.0, stall_window=5.0)
    >>> w.observe(1.0, output_size=10, cpu_ticks=3, screen=lambda: "working\\n") is None
    True
    >>> w.observe(5.9, output_size=10, cpu_ticks=3, screen=lambda: "") is None
    True
    >>> w.observe(6.1, output_size=10, cpu_ticks=3, screen=lambda: "").detail
    'no output and no CPU for 5.1 s (stall window 5 s)'
    """

    started: float
    stall_window: float | None = None
    last_activity: float | None = None
    output_size: int = -1
    cpu_ticks: int = -1

    def observe(
        self, now: float, *, output_size: int, cpu_ticks: int, screen: Callable[[], str]
    ) -> ScreenFinding | None:
        grew = output_size != self.output_size
        busy = cpu_ticks != self.cpu_ticks
        self.output_size, self.cpu_ticks = output_size, cpu_ticks
        if self.last_activity is None or grew or busy:
            self.last_activity = (
                now if self.last_activity is not None or grew or busy else self.started
            )
        if grew:
            dialog = find_dialog(screen())
            if dialog is not None:
                return ScreenFinding("dialog", dialog.line, cli=dialog.cli, seen_at=now)
        silent = now - self.last_activity
        if self.stall_window is not None and silent > self.stall_window:
            return ScreenFinding(
                "stall",
                f"no output and no CPU for {silent:.1f} s (stall window {self.stall_window:g} s)",
                seen_at=now,
                silent_for=silent,
            )
        return None
