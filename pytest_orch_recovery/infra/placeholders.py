"""The placeholders of an agent command template, and the environment variables carrying the
same values: one list for the option validator, the command builder and the help text.
Standard library only and free of the package's other modules: the pytest plugin imports it to
write ``--orch-agent``'s help while ``--orch-chaos`` is off."""

from __future__ import annotations

from collections.abc import Mapping

# placeholder -> the environment variable that carries the same value
PLACEHOLDERS: Mapping[str, str] = {
    "prompt": "ORCH_PROMPT",  # the prompt text itself
    "prompt_file": "ORCH_PROMPT_FILE",  # a file holding the prompt
    "workdir": "ORCH_WORKDIR",  # the agent's workspace (its working directory)
    "task_id": "ORCH_TASK_ID",
    "session": "ORCH_SESSION",  # the session to resume; empty on a fresh start
    "agent": "ORCH_AGENT",  # the agent's (tmux session's) name
    "attempt": "ORCH_ATTEMPT",  # 1 for the first attempt
}
BUILTIN_AGENTS = ("sim", "claude-code")  # agents that are not templates


def is_template(agent: str) -> bool:
    """Whether ``agent`` is a command template rather than a built-in agent's name."""
    return agent not in BUILTIN_AGENTS and ("{" in agent or any(c.isspace() for c in agent))


def known() -> str:
    """The placeholders, as a user writes them.

    >>> known()
    '{agent}, {attempt}, {prompt}, {prompt_file}, {session}, {task_id}, {workdir}'
    """
    return ", ".join("{" + name + "}" for name in sorted(PLACEHOLDERS))
