"""The dispatcher: turns a launch spec into an agent command in its workspace, for any host.

For each attempt it makes sure the agent's git worktree exists, merges the checkpoint hook
(and, under the chaos harness, the fault hook) into the worktree's
``.claude/settings.local.json`` (the user's own settings are kept, see :mod:`..infra.settings`),
writes the prompt to a file, and builds the command line from the agent driver. The permission
flag comes from the driver's :class:`~pytest_orch_recovery.infra.agents.AgentConfig`, so "the
dispatcher forgot --dangerously-skip-permissions" is a configuration fault, and fixing it is a
configuration change (:meth:`Dispatcher.configure`).

It also keeps a results file per attempt (``<results>/<agent>.<attempt>_results.json``: agent,
status, exit code, reason, timings), written from the coordinator's journal events, which
``orch-recovery report`` can read alongside the journal.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    Event,
    FailureAttributed,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import ExitInfo
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.agents import AgentConfig, AgentDriver, prompt_text
from pytest_orch_recovery.infra.checkpoint import HOOK_MATCHER
from pytest_orch_recovery.infra.git import git_common_dir
from pytest_orch_recovery.infra.lean_python import lean_python_argv
from pytest_orch_recovery.infra.settings import SETTINGS_FILE, install_hook
from pytest_orch_recovery.runtime.host import Host
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.attempt_results import AttemptResult

__all__ = ["SETTINGS_FILE", "Dispatcher", "read_results"]


class Dispatcher:
    """Builds each attempt's command line for the tmux runtime (its ``command_for``)."""

    def __init__(
        self,
        host: Host,
        driver_factory: Callable[[AgentConfig], AgentDriver],
        config: AgentConfig,
        *,
        fault_plan: Path | None = None,
        start_signal: Callable[[LaunchSpec], str | None] | None = None,
        config_for: Callable[[LaunchSpec, AgentConfig], AgentConfig | None] | None = None,
        driver_of_type: Callable[[str, AgentConfig], AgentDriver | None] | None = None,
    ) -> None:
        self.host = host
        # The driver of an attempt the coordinator moved to another agent type (a fallback
        # agent while the primary's account is at its usage limit); None: the current one.
        self._driver_of_type = driver_of_type
        # A configuration for one attempt instead of the current one (None: the current one),
        # given the spec and the current configuration; the chaos harness launches a
        # permission_prompt attempt interactive and without the permission flag.
        self._config_for = config_for
        # Chaos harness only: a signal the attempt is to die of the moment it starts.
        self._start_signal = start_signal
        self._driver_factory = driver_factory
        self.driver = driver_factory(config)
        self.fault_plan = fault_plan
        self._exclude_installed = False
        self._exclude_lock = threading.Lock()  # command_for runs on the runtime's workers
        self._exits: dict[tuple[str, int], AttemptExited] = {}

    @property
    def config(self) -> AgentConfig:
        return self.driver.config

    def configure(self, config: AgentConfig) -> None:
        """Change the agents' configuration (e.g. add the forgotten permission flag)."""
        self.driver = self._driver_factory(config)

    # ------------------------------------------------------------------ launching

    def command_for(self, spec: LaunchSpec) -> list[str]:
        workspace = self.host.add_workspace(spec.agent)
        self._install_hooks(workspace, spec.agent)
        prompt_file = self.host.results / f"{spec.agent}.{spec.attempt}.prompt.md"
        atomic.write_text(prompt_file, prompt_text(spec))
        signal_name = self._start_signal(spec) if self._start_signal is not None else None
        if signal_name is not None:
            # The agent process is killed by a real signal before it does anything.
            return ["/bin/sh", "-c", f"kill -{signal_name} $$"]
        return self.driver_for(spec).argv(spec, prompt_file=prompt_file, workdir=workspace)

    def driver_for(self, spec: LaunchSpec) -> AgentDriver:
        """The driver of this attempt: the current one unless ``config_for`` overrides it."""
        override = self._config_for(spec, self.config) if self._config_for is not None else None
        if self._driver_of_type is not None:
            other = self._driver_of_type(spec.agent_type, override or self.config)
            if other is not None:
                return other
        if override is None or override == self.config:
            return self.driver
        return self._driver_factory(override)

    def hook_command(self, agent: str) -> str:
        """The PostToolUse hook's shell command. Agents run it with ``sh -c``; ``exec`` makes
        the shell become the hook instead of forking it: one process per tool call, not two."""
        if self.fault_plan is not None:
            argv = lean_python_argv(
                "pytest_orch_recovery.chaos.faulthook", "--plan", str(self.fault_plan)
            )
        else:
            argv = lean_python_argv(
                "pytest_orch_recovery",
                "checkpoint",
                "--from-hook",
                "--agent",
                agent,
                "--dir",
                str(self.host.checkpoints),
            )
        return "exec " + shlex.join(argv)

    def _install_hooks(self, workspace: Path, agent: str) -> None:
        install_hook(
            workspace, matcher=HOOK_MATCHER, command=self.hook_command(agent), timeout=3600
        )
        with self._exclude_lock:
            self._exclude_settings()

    def _exclude_settings(self) -> None:
        if not self._exclude_installed:
            # Keep the hook settings out of the agent's commits (git add -A): the worktrees
            # share the main repository's info/exclude.
            exclude = git_common_dir(self.host.repo) / "info" / "exclude"
            exclude.parent.mkdir(parents=True, exist_ok=True)
            current = exclude.read_text() if exclude.exists() else ""
            if f"/{SETTINGS_FILE}" not in current.splitlines():
                exclude.write_text(current + f"\n/{SETTINGS_FILE}\n")
            self._exclude_installed = True

    # ------------------------------------------------------------------ results files

    def observe(self, event: Event) -> None:
        """Coordinator observer (``on_event``): one results file per judged attempt."""
        payload = event.payload
        if isinstance(payload, AttemptExited) and event.agent and event.attempt:
            self._exits[(event.agent, event.attempt)] = payload
            return
        if not isinstance(payload, FailureAttributed | TaskSucceeded):
            return
        if event.agent is None or event.attempt is None:
            return
        attribution = payload.attribution if isinstance(payload, FailureAttributed) else None
        exited = self._exits.pop((event.agent, event.attempt), None)
        exit_info = None if exited is None else exited.exit or ExitInfo(None)
        result = AttemptResult(
            agent=event.agent,
            attempt=event.attempt,
            status="success" if attribution is None else "failed",
            task_id=event.task_id,
            reason=None if attribution is None else str(attribution.reason),
            confidence=None if attribution is None else round(attribution.confidence, 3),
            exit_code=None if exit_info is None else exit_info.display_code,
            signal=None if exit_info is None else exit_info.signal_name,
            started_at=None if exited is None else exited.started_at,
            ended_at=None if exited is None else exited.ended_at,
            duration=None
            if exited is None
            else (exited.ended_at or 0.0) - (exited.started_at or 0.0),
            recorded_at=event.time,
        )
        path = self.host.results / f"{event.agent}.{event.attempt}_results.json"
        atomic.write_json(path, result.file_json())


def read_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every ``*_results.json`` in a results dir, oldest first."""
    out = []
    for path in sorted(results_dir.glob("*_results.json")):
        out.append(json.loads(path.read_text()))
    return sorted(out, key=lambda r: (r.get("recorded_at") or 0, r.get("agent") or ""))
