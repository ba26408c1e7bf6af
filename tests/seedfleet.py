"""Test helper: a results/logs/worktrees tree in the seed orchestrator's exact format.

The lines and file names are those of the seed's ``orchestration/task_dispatcher.py``: each
wrapper line is ``[$(date)] `` + text written through ``tee -a <log>``; the CLI's own output
(Claude Code ``stream-json``) is piped through the same ``tee``; the results file is one line of
JSON written by ``cat > <file> <<EOF`` when the run ends; ``<agent>_results.json`` and
``<agent>.log`` are symlinks to the latest run's files, made at launch. The suffix is
``<milliseconds since the epoch>-<pid>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What `date` prints in the seed's wrapper lines (C locale, UTC).
DATE = "[Tue Dec  1 04:17:40 UTC 2026]"
START_MS = 1_764_562_660_000  # 2026-12-01 04:17:40 UTC, in milliseconds


def stream(*events: dict[str, Any]) -> list[str]:
    return [json.dumps(e, separators=(",", ":")) for e in events]


def init_event(session: str = "9d3c0b6e-0000-4000-8000-000000000001") -> dict[str, Any]:
    return {
        "type": "system",
        "subtype": "init",
        "session_id": session,
        "tools": ["Write"],
        "model": "claude-sonnet-4-5",
    }


def assistant_text(text: str) -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
    }


def result_event(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Done.",
        "session_id": "9d3c0b6e-0000-4000-8000-00000000001",
        "num_turns": 3,
    }
    out.update(fields)
    return out


@dataclass
class SeedFleet:
    """``results/``, ``logs/`` and (optionally) ``worktrees/`` under ``root``."""

    root: Path
    pid: int = 4242

    def __post_init__(self) -> None:
        self.results = self.root / "results"
        self.logs = self.root / "logs"
        self.results.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)

    def suffix(self, offset_s: int) -> str:
        return f"{START_MS + offset_s * 1000}-{self.pid}"

    def launch(
        self, agent: str, suffix: str, *, chain: str = "claude", workdir: str = "/tmp/wt"
    ) -> Path:
        """What the dispatcher does before the agent runs: point the latest-run symlinks at
        the new files (the results one dangles until the run ends), start the log."""
        result_file = self.results / f"{agent}_results_{suffix}.json"
        log_file = self.logs / f"{agent}_{suffix}.log"
        for link, target in (
            (self.results / f"{agent}_results.json", result_file),
            (self.logs / f"{agent}.log", log_file),
        ):
            if os.path.lexists(link):
                link.unlink()
            link.symlink_to(target)
        self.log(
            agent,
            suffix,
            [
                f"Starting agent {agent}",
                f"Working directory: {workdir}",
                f"CLI chain: {chain}",
                "Child virtual memory cap: 4194304 KB",
                "PATH: /usr/local/bin:/usr/bin:/bin",
            ],
        )
        return log_file

    def log(
        self,
        agent: str,
        suffix: str,
        wrapper: Sequence[str] = (),
        raw: Sequence[str] = (),
        unfinished: str = "",
    ) -> None:
        """Append wrapper lines (dated), raw CLI output lines, and output the CLI was killed
        in the middle of (no newline: the wrapper's next line is glued to it, as observed)."""
        path = self.logs / f"{agent}_{suffix}.log"
        with path.open("a", encoding="utf-8") as handle:
            for line in wrapper:
                handle.write(f"{DATE} {line}\n")
            for line in raw:
                handle.write(line + "\n")
            handle.write(unfinished)

    def claude_try(
        self, agent: str, suffix: str, n: int, output: Sequence[str], unfinished: str = ""
    ) -> None:
        self.log(
            agent,
            suffix,
            [
                f"🔁 Attempt {n}: Claude",
                "Executing: claude --model sonnet -p @/tmp/agent_prompt_x.txt --output-format "
                "stream-json --verbose --dangerously-skip-permissions < /dev/null",
                "Timeout: 900s",
            ],
        )
        self.log(
            agent,
            suffix,
            raw=[f"{DATE} Applied child virtual memory cap: 4194304 KB", *output],
            unfinished=unfinished,
        )

    def claude_failed(
        self,
        agent: str,
        suffix: str,
        code: int,
        *,
        rate_limited: bool = False,
        timed_out: bool = False,
    ) -> None:
        lines = []
        if timed_out:
            lines.append("⏱️  CLI execution timed out after 900s (will try fallback)")
        lines.append(f"Claude exit code: {code}")
        if rate_limited:
            lines.append("⚠️  Detected rate limit/quota output (treating as failure)")
        lines.append(
            f"❌ Attempt failed via Claude (exit={code} rate_limited={1 if rate_limited else 0})"
        )
        self.log(agent, suffix, lines)

    def claude_completed(self, agent: str, suffix: str) -> None:
        self.log(
            agent, suffix, ["Claude exit code: 0", "✅ Agent completed successfully via Claude"]
        )

    def interrupted(self, agent: str, suffix: str) -> None:
        """The wrapper's SIGINT trap: it logs and exits 130, writing no results file."""
        self.log(agent, suffix, ["Agent interrupted with signal SIGINT"])

    def finish(
        self, agent: str, suffix: str, record: dict[str, Any], *, mtime_s: int | None = None
    ) -> Path:
        path = self.results / f"{agent}_results_{suffix}.json"
        # `cat > file <<EOF` of a one-line JSON object: the line and its newline.
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        self.log(
            agent,
            suffix,
            [
                "Agent execution completed. Session remains active for monitoring.",
                "Session will auto-close in 1 hour. "
                f"Check log at: {self.logs}/{agent}_{suffix}.log",
                f"Monitor with: 'tmux -L orch-{self.pid}-1764562660 attach -t {agent}'",
            ],
        )
        if mtime_s is not None:
            stamp = START_MS / 1000 + mtime_s
            os.utime(path, (stamp, stamp))
        return path


def failed_record(
    agent: str, code: int, *, rate_limited: bool = False, chain: str = "claude"
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "agent": agent,
        "status": "failed",
        "exit_code": code,
        "cli_last": chain.split(",")[-1],
        "cli_chain": chain,
    }
    if rate_limited:
        record["rate_limited"] = True
    return record


def completed_record(agent: str, chain: str = "claude") -> dict[str, Any]:
    return {
        "agent": agent,
        "status": "completed",
        "exit_code": 0,
        "cli_used": chain.split(",")[0],
        "cli_chain": chain,
    }
