"""Command line of the sim agent, parsed the way Claude Code's (commander.js) parser does.

Flags: ``-p/--print``, ``[prompt]`` (``@FILE`` reads the prompt from FILE; no prompt and piped
stdin reads stdin), ``--output-format text|json|stream-json`` (stream-json needs
``--verbose``), ``--dangerously-skip-permissions``, ``--permission-mode``, ``--allowedTools``,
``-r/--resume ID``, ``-c/--continue``, ``--session-id UUID``, ``--model``, ``--max-turns``,
``--append-system-prompt``, ``--verbose``, ``-v/--version``, ``-h/--help``.

Environment: ``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY`` (or a subscription's
``CLAUDE_CODE_OAUTH_TOKEN``; the key is used first), ``ANTHROPIC_MODEL``, ``HOME``,
``IS_SANDBOX``, ``CLAUDE_CODE_MAX_RETRIES`` (default 10), ``API_TIMEOUT_MS`` and
``ORCH_SIM_RETRY_BASE_MS`` (base backoff delay, default 500 ms; tests set it small).

Interactive mode: without ``-p`` and with a terminal on stdin, the prompt is the positional
argument and a tool call that needs permission shows Claude Code's dialog and waits for a key
(:mod:`.interactive`); the run still ends when the model is done. Without ``-p`` and without a
terminal, the agent behaves as with ``-p``.

Signals: SIGINT (Ctrl-C, or a signal to the process group) ends the run with exit status 0 and
nothing more printed, as the real CLI measured on this machine does; the transcript keeps every
message completed so far. A Bash tool command shares the agent's process group, so it gets the
same SIGINT; the agent then SIGKILLs what is left of the command's process tree before exiting.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_orch_recovery.doubles.simagent.api import (
    DEFAULT_BASE_DELAY_MS,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    ApiError,
    MessagesClient,
)
from pytest_orch_recovery.doubles.simagent.interactive import TerminalPrompter
from pytest_orch_recovery.doubles.simagent.loop import DEFAULT_MODEL, RunConfig, load_run_hooks, run
from pytest_orch_recovery.doubles.simagent.result import OUTPUT_FORMATS, Printer
from pytest_orch_recovery.doubles.simagent.session import (
    SessionLog,
    find_session,
    latest_session,
    session_path,
)
from pytest_orch_recovery.doubles.simagent.tools import (
    PERMISSION_MODES,
    PermissionPolicy,
    split_tool_rules,
)
from pytest_orch_recovery.doubles.simagent.version import VERSION, VERSION_LINE
from pytest_orch_recovery.engine.errors import UsageError

# Wording: Claude Code's root guard (anthropics/claude-code#58150 quotes the source).
ROOT_REFUSAL = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
)
# Wording: anthropics/claude-code issue reports and RightNow-AI/openfang#305.
STREAM_JSON_NEEDS_VERBOSE = (
    "Error: When using --print, --output-format=stream-json requires --verbose"
)
INTERACTIVE_NEEDS_PROMPT = (
    "Error: the sim agent's interactive mode takes the prompt as an argument: "
    "orch-sim-agent [options] PROMPT"
)
NO_INPUT = (
    "Error: Input must be provided either through stdin or as a prompt argument when using --print"
)

_BOOL = {
    "-p": "print",
    "--print": "print",
    "-c": "continue",
    "--continue": "continue",
    "--verbose": "verbose",
    "--dangerously-skip-permissions": "skip_permissions",
    "-h": "help",
    "--help": "help",
    "-v": "version",
    "--version": "version",
}
# option -> (dest, commander flags text for messages, allowed choices)
_VALUE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "--output-format": ("output_format", "--output-format <format>", OUTPUT_FORMATS),
    "--model": ("model", "--model <model>", ()),
    "--max-turns": ("max_turns", "--max-turns <turns>", ()),
    "--permission-mode": ("permission_mode", "--permission-mode <mode>", PERMISSION_MODES),
    "-r": ("resume", "-r, --resume [sessionId]", ()),
    "--resume": ("resume", "-r, --resume [sessionId]", ()),
    "--session-id": ("session_id", "--session-id <uuid>", ()),
    "--append-system-prompt": ("append_system_prompt", "--append-system-prompt <prompt>", ()),
}
_VARIADIC = {"--allowedTools": "allowed_tools", "--allowed-tools": "allowed_tools"}

USAGE = f"""Usage: orch-sim-agent [options] [prompt]

Sim agent {VERSION_LINE}: a stand-in for `claude -p` that speaks the Anthropic Messages API.

Options:
  -p, --print                      print the response and exit (without it, on a
                                   terminal: interactive, asks before tools)
  --output-format <format>         text, json or stream-json (stream-json needs --verbose)
  --verbose                        verbose output (retry notes on stderr)
  --dangerously-skip-permissions   run every tool without asking
  --permission-mode <mode>         default, acceptEdits, bypassPermissions or plan
  --allowedTools <tools...>        tools allowed without asking, e.g. "Bash(git:*) Edit"
  -r, --resume [sessionId]         resume a conversation by session id
  -c, --continue                   continue the most recent conversation here
  --session-id <uuid>              use this session id for a new conversation
  --model <model>                  model name sent to the API
  --max-turns <turns>              stop after this many model turns
  --append-system-prompt <prompt>  extra system prompt text
  -v, --version                    output the version number
  -h, --help                       display help for command
"""


class AgentUsageError(UsageError):
    """A mistake on the sim agent's command line; as with Claude Code, the message is printed as
    is and the exit status is 1 (not the 2 of ``orch-recovery``'s own usage errors)."""


@dataclass
class Options:
    print: bool = False
    continue_: bool = False
    verbose: bool = False
    skip_permissions: bool = False
    help: bool = False
    version: bool = False
    output_format: str = "text"
    model: str | None = None
    max_turns: str | None = None
    permission_mode: str | None = None
    resume: str | None = None
    session_id: str | None = None
    append_system_prompt: str = ""
    allowed_tools: list[str] = field(default_factory=list)
    prompt: str | None = None


def parse_args(argv: Sequence[str]) -> Options:
    """Parse like commander.js: unknown options and missing values are errors.

    >>> parse_args(["-p", "hi", "--output-format=json"]).output_format
    'json'
    >>> parse_args(["--bogus"])
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.doubles.simagent.cli.AgentUsageError: error: unknown option '--bogus'
    """
    opts = Options()
    args = list(argv)
    i = 0
    positional: list[str] = []
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional += args[i:]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_inline, inline = arg.partition("=")
        if name in _BOOL and not has_inline:
            dest = _BOOL[name]
            setattr(opts, "continue_" if dest == "continue" else dest, True)
        elif name in _VALUE:
            dest, flags, choices = _VALUE[name]
            if has_inline:
                value = inline
            elif i < len(args) and not args[i].startswith("-"):
                value = args[i]
                i += 1
            else:
                raise AgentUsageError(f"error: option '{flags}' argument missing")
            if choices and value not in choices:
                raise AgentUsageError(
                    f"error: option '{flags}' argument '{value}' is invalid. "
                    f"Allowed choices are {', '.join(choices)}."
                )
            setattr(opts, dest, value)
        elif name in _VARIADIC:
            values = [inline] if has_inline else []
            while not has_inline and i < len(args) and not args[i].startswith("-"):
                values.append(args[i])  # commander variadic options take every following word
                i += 1
            if not values:
                raise AgentUsageError(
                    "error: option '--allowedTools, --allowed-tools <tools...>' argument missing"
                )
            opts.allowed_tools += values
        else:
            raise AgentUsageError(f"error: unknown option '{arg}'")
    if positional:
        opts.prompt = positional[0]
    return opts


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _read_prompt(opts: Options) -> str:
    if opts.prompt is not None:
        if opts.prompt.startswith("@") and len(opts.prompt) > 1:
            path = Path(opts.prompt[1:])
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise AgentUsageError(
                    f"Error: cannot read prompt file {path}: {exc.strerror}"
                ) from exc
        return opts.prompt
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        if text.strip():
            return text
    raise AgentUsageError(NO_INPUT)


def _int_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise AgentUsageError(
            f"Error: environment variable {name}={raw!r} is not a number"
        ) from None


def interactive(opts: Options) -> bool:
    """Started without ``-p`` on a terminal: ask before tools, as the real TUI does."""
    return not opts.print and sys.stdin.isatty()


def _build(opts: Options) -> RunConfig:
    asking = interactive(opts)
    if asking and opts.prompt is None:
        raise AgentUsageError(INTERACTIVE_NEEDS_PROMPT)
    if asking:
        opts.output_format = "text"  # the real CLI ignores --output-format without -p
    if opts.output_format == "stream-json" and not opts.verbose:
        raise AgentUsageError(STREAM_JSON_NEEDS_VERBOSE)
    mode = opts.permission_mode or "default"
    if opts.skip_permissions:
        mode = "bypassPermissions"
    if mode == "bypassPermissions" and _is_root() and os.environ.get("IS_SANDBOX") != "1":
        raise AgentUsageError(ROOT_REFUSAL)
    max_turns: int | None = None
    if opts.max_turns is not None:
        if not opts.max_turns.isdigit() or int(opts.max_turns) < 1:
            raise AgentUsageError(
                f"error: option '--max-turns <turns>' argument '{opts.max_turns}' is invalid."
            )
        max_turns = int(opts.max_turns)
    cwd = Path.cwd().resolve()
    home = Path(os.environ.get("HOME") or Path.home())
    session = _open_session(opts, cwd, home)
    history = session.load() if session.path.exists() else []
    prompt = _read_prompt(opts)
    verbose = opts.verbose

    def note_retry(err: ApiError, attempt: int, delay_ms: float) -> None:
        if verbose:  # Claude Code's retry line (anthropics/claude-code#661)
            detail = err.display().removeprefix("API Error: ")
            print(
                f"API Error ({detail}) · Retrying in {delay_ms / 1000:.0f} seconds… "
                f"(attempt {attempt}/{client.max_retries})",
                file=sys.stderr,
            )

    client = MessagesClient(
        base_url=os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL,
        api_key=os.environ.get("ANTHROPIC_API_KEY") or None,
        oauth_token=os.environ.get("CLAUDE_CODE_OAUTH_TOKEN") or None,
        max_retries=int(_int_env("CLAUDE_CODE_MAX_RETRIES", DEFAULT_MAX_RETRIES)),
        base_delay_ms=_int_env("ORCH_SIM_RETRY_BASE_MS", DEFAULT_BASE_DELAY_MS),
        timeout_s=_int_env("API_TIMEOUT_MS", 600_000) / 1000.0,
        session_id=session.session_id,
        user_agent=f"claude-cli/{VERSION} (external, sim-agent)",
        on_retry=note_retry,
    )
    return RunConfig(
        prompt=prompt,
        cwd=cwd,
        home=home,
        session=session,
        history=history,
        client=client,
        policy=PermissionPolicy(mode, split_tool_rules(opts.allowed_tools)),
        printer=Printer(opts.output_format, sys.stdout),
        model=opts.model or os.environ.get("ANTHROPIC_MODEL") or DEFAULT_MODEL,
        max_turns=max_turns,
        append_system_prompt=opts.append_system_prompt,
        verbose=opts.verbose,
        hooks=load_run_hooks(cwd, home),
        prompter=TerminalPrompter(sys.stdin.fileno(), sys.stdout) if asking else None,
        screen=sys.stdout if asking else None,
    )


def _open_session(opts: Options, cwd: Path, home: Path) -> SessionLog:
    wanted = opts.resume
    if opts.continue_ and wanted is None:
        wanted = latest_session(home, cwd)
        if wanted is None:
            raise AgentUsageError("No conversation found to continue")
    if wanted is not None:
        path = find_session(home, cwd, wanted)
        if path is None:
            raise AgentUsageError(f"No conversation found with session ID: {wanted}")
        return SessionLog(path, wanted, cwd, VERSION)
    if opts.session_id is not None:
        try:
            sid = str(uuid.UUID(opts.session_id))
        except ValueError:
            raise AgentUsageError("Error: Invalid session ID. Must be a valid UUID.") from None
        if find_session(home, cwd, sid) is not None:
            raise AgentUsageError(f"Error: Session ID {sid} is already in use.")
    else:
        sid = str(uuid.uuid4())
    return SessionLog(session_path(home, cwd, sid), sid, cwd, VERSION)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``orch-sim-agent`` / ``python -m pytest_orch_recovery.doubles.simagent``."""
    try:
        opts = parse_args(list(sys.argv[1:] if argv is None else argv))
        if opts.help:
            sys.stdout.write(USAGE)
            return 0
        if opts.version:
            print(VERSION_LINE)
            return 0
        return run(_build(opts))
    except AgentUsageError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Measured with the real CLI: SIGINT while waiting on the API -> exit 0, no output.
        return 0
