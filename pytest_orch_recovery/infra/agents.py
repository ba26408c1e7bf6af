"""Agent drivers: how to build an agent's command line, resume it, and read its result.

The bundled sim agent and the real Claude Code CLI speak the same CLI contract (``-p``, prompt
on stdin, ``--output-format json``, ``--dangerously-skip-permissions``, ``--resume ID``,
``--model``), so one :class:`CliAgentDriver` drives both; only the executable differs. A
user's own agent is a :class:`TemplateDriver` over a command template.

Whether the permission flag is passed is part of the driver's :class:`AgentConfig`: a
dispatcher that "forgot the flag" is a configuration fault, fixed by changing configuration.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.command_template import CommandTemplate, parse_template
from pytest_orch_recovery.infra.lean_python import lean_python_argv
from pytest_orch_recovery.infra.placeholders import PLACEHOLDERS, is_template
from pytest_orch_recovery.store import atomic

SKIP_PERMISSIONS_FLAG = "--dangerously-skip-permissions"
# The fix-focused variant of an agent type, as the policy's Reassign names it.
FIXER_SUFFIX = "-fixer"
FIXER_BRIEF = (
    "You are a fix-focused agent. The implementation exists; the tests fail. Read the "
    "failures, change the code until the tests pass, then finish the remaining steps.\n\n"
)


@dataclass(frozen=True)
class AgentConfig:
    """The dispatcher's configuration for one agent type."""

    skip_permissions: bool = True
    output_format: str = "json"
    model: str | None = None
    extra_args: tuple[str, ...] = ()
    # Launched as a person would: no ``-p``, the prompt as an argument, the TUI on the pane's
    # terminal. Without the permission flag it parks at the first tool's permission dialog.
    interactive: bool = False

    def without_permission_flag(self) -> AgentConfig:
        return replace(self, skip_permissions=False)


class AgentDriver(Protocol):
    """Builds the argv the runtime starts for one attempt."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> AgentConfig: ...

    def argv(
        self, spec: LaunchSpec, *, prompt_file: Path, workdir: Path | None = None
    ) -> list[str]: ...


def prompt_text(spec: LaunchSpec) -> str:
    """What the agent is told: the fixer variant gets a short brief before the prompt."""
    if spec.agent_type.endswith(FIXER_SUFFIX):
        return FIXER_BRIEF + spec.prompt
    return spec.prompt


@dataclass(frozen=True)
class CliAgentDriver:
    """An agent with Claude Code's CLI contract; the prompt arrives on stdin (``-p``), or as
    the one positional argument when the configuration is interactive.

    ``environment`` is set for the agent on top of what the runtime gives it (``exec env
    K=V ... agent``), so a driver carries what its agent needs wherever it is launched.
    """

    name: str
    executable: tuple[str, ...]
    config: AgentConfig = AgentConfig()
    environment: tuple[tuple[str, str], ...] = ()

    def argv(
        self, spec: LaunchSpec, *, prompt_file: Path, workdir: Path | None = None
    ) -> list[str]:
        interactive = self.config.interactive
        args = [*self.executable]
        if not interactive:
            args += ["-p", "--output-format", self.config.output_format]
        if self.config.output_format == "stream-json" and not interactive:
            args.append("--verbose")  # the real CLI refuses stream-json in -p without it
        if self.config.skip_permissions:
            args.append(SKIP_PERMISSIONS_FLAG)
        if spec.resume_session:
            args += ["--resume", spec.resume_session]
        if self.config.model:
            args += ["--model", self.config.model]
        args += list(self.config.extra_args)
        if self.environment:
            args = ["env", *(f"{k}={v}" for k, v in self.environment), *args]
        if interactive:
            # The terminal stays on stdin; the prompt is one argument, expanded by the shell
            # from the file inside double quotes, so quotes, $() and newlines in the task text
            # are never parsed (only trailing newlines are dropped).
            command = "exec " + shlex.join(args) + ' "$(cat ' + shlex.quote(str(prompt_file)) + ')"'
            return ["/bin/sh", "-c", command]
        # stdin from the prompt file: no quoting of hostile task text on any command line.
        command = "exec " + shlex.join(args) + " < " + shlex.quote(str(prompt_file))
        return ["/bin/sh", "-c", command]


@dataclass(frozen=True)
class TemplateDriver:
    """Any agent, from a command template with the placeholders of
    :data:`~pytest_orch_recovery.infra.placeholders.PLACEHOLDERS`.

    The template is split into words once (a bad template raises
    :class:`~pytest_orch_recovery.infra.command_template.TemplateError`); each attempt fills
    the words as plain text and runs them directly, no shell, with every value also in the
    environment (``env -- ORCH_TASK_ID=... program ...``).
    """

    name: str
    template: str
    config: AgentConfig = AgentConfig()
    parsed: CommandTemplate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", parse_template(self.template))

    def argv(
        self, spec: LaunchSpec, *, prompt_file: Path, workdir: Path | None = None
    ) -> list[str]:
        values = {
            "prompt": prompt_text(spec),
            "prompt_file": str(prompt_file),
            "workdir": "." if workdir is None else str(workdir),
            "task_id": spec.task.task_id,
            "session": spec.resume_session or "",
            "agent": spec.agent,
            "attempt": str(spec.attempt),
        }
        words = self.parsed.render(values)
        environment = [f"{PLACEHOLDERS[key]}={value}" for key, value in values.items()]
        return ["env", "--", *environment, *words]


def sim_agent_driver(config: AgentConfig | None = None) -> CliAgentDriver:
    """The bundled sim agent, run with this interpreter (no PATH lookup, no install step)."""
    return CliAgentDriver(
        "sim",
        tuple(lean_python_argv("pytest_orch_recovery.doubles.simagent")),
        config or AgentConfig(),
    )


# Where tools/install-claude-code.sh puts the pinned CLI (git-ignored).
LOCAL_CLAUDE = Path(__file__).resolve().parents[2] / ".tools" / "claude-code" / "bin" / "claude"


def find_claude_code() -> Path | None:
    """The Claude Code binary: ``$ORCH_CLAUDE_CODE``, the project-local install, or PATH."""
    configured = os.environ.get("ORCH_CLAUDE_CODE")
    if configured:
        return Path(configured)
    if LOCAL_CLAUDE.exists():
        return LOCAL_CLAUDE
    found = shutil.which("claude")
    return Path(found) if found else None


# What the real CLI needs in a headless, sandboxed run (measured with 2.1.328, see
# docs/claude-code.md): no telemetry, error reporting, update checks or other traffic beyond
# the Messages API; no auto-update of the pinned binary; and, as root, IS_SANDBOX=1, without
# which it refuses --dangerously-skip-permissions ("cannot be used with root/sudo privileges").
CLAUDE_CODE_ENV: tuple[tuple[str, str], ...] = (
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
)


def claude_code_environment(config: AgentConfig) -> tuple[tuple[str, str], ...]:
    """The environment the Claude Code driver adds for ``config``.

    >>> dict(claude_code_environment(AgentConfig()))["DISABLE_TELEMETRY"]
    '1'
    """
    env = CLAUDE_CODE_ENV
    if config.skip_permissions and hasattr(os, "geteuid") and os.geteuid() == 0:
        env += (("IS_SANDBOX", "1"),)
    return env


def claude_code_driver(
    config: AgentConfig | None = None, executable: Path | None = None
) -> CliAgentDriver:
    """The real Claude Code CLI. The session id for Resume comes from its result JSON
    (``session_id``), which the runtime reads from the pane; the hooks it runs (the checkpoint
    hook) are read from the worktree's ``.claude/settings.local.json``."""
    path = executable or find_claude_code()
    if path is None:
        raise LookupError(
            "Claude Code CLI not found: run tools/install-claude-code.sh, set "
            "ORCH_CLAUDE_CODE, or put `claude` on PATH"
        )
    cfg = config or AgentConfig()
    return CliAgentDriver("claude-code", (str(path),), cfg, claude_code_environment(cfg))


def claude_code_missing() -> str | None:
    """Why the real CLI cannot run here (for test skips), or None when it can."""
    path = find_claude_code()
    if path is None:
        return (
            "Claude Code CLI not installed: run tools/install-claude-code.sh (CI does), "
            "or set ORCH_CLAUDE_CODE"
        )
    if not os.access(path, os.X_OK):
        return f"Claude Code CLI at {path} is not executable"
    return None


def driver_for(agent: str, config: AgentConfig | None = None) -> AgentDriver:
    """``sim``, ``claude-code``, or a command template (anything with a space or ``{``)."""
    if agent == "sim":
        return sim_agent_driver(config)
    if agent == "claude-code":
        return claude_code_driver(config)
    if is_template(agent):
        return TemplateDriver("template", agent, config or AgentConfig())
    raise InvalidValue(f"unknown agent {agent!r}: use sim, claude-code, or a command template")


# Claude Code's global state file (under CLAUDE_CONFIG_DIR when that is set, else ~/.claude.json)
CLAUDE_CODE_STATE_FILE = ".claude.json"


def accept_claude_code_first_run(
    config_dir: Path, workspace: Path, api_key: str | None = None
) -> Path:
    """Leave ``<config_dir>/.claude.json`` as a person leaves it after the interactive CLI's
    first run in ``workspace``: onboarding done (a theme picked), the API key from the
    environment approved, and the folder trusted. Without it a fresh HOME meets those screens
    (and the onboarding's reachability check of api.anthropic.com) before any prompt.

    Measured with 2.1.328 in a tmux pane: ``hasCompletedOnboarding`` skips onboarding; the
    key's last 20 characters in ``customApiKeyResponses.approved`` skip "Do you want to use
    this API key?"; ``projects[<cwd>].hasTrustDialogAccepted`` skips "Quick safety check: Is
    this a project you created or one you trust?" only for that exact path (a trusted parent
    does not count). Other fields are kept; the file is rewritten atomically."""
    path = config_dir / CLAUDE_CODE_STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    state["hasCompletedOnboarding"] = True
    state.setdefault("theme", "dark")
    if api_key:
        responses = state.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
        approved = responses.setdefault("approved", [])
        if api_key[-20:] not in approved:
            approved.append(api_key[-20:])
    projects = state.setdefault("projects", {})
    for key in dict.fromkeys((str(workspace), str(workspace.resolve()))):
        projects.setdefault(key, {})["hasTrustDialogAccepted"] = True
    config_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, state)
    return path
