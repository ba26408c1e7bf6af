"""The push fence (fleet/pushfence.py) with real git: an agent's push goes through while its
host's lease is live, and is refused once it ran out or was revoked; the repository's own
``pre-push`` hook still runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pytest_orch_recovery.fleet.pushfence import PushFence, first_on_path, gh_wrapper, install_gh
from pytest_orch_recovery.infra.git import create_repo_with_origin, run_git

AGENT = "task-agent-7"


def _push(
    repo: Path, fence: PushFence, *, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (repo / "work.md").write_text(f"{time.monotonic()}\n")
    run_git(["add", "work.md"], cwd=repo)
    run_git(["commit", "--quiet", "-m", "work"], cwd=repo)
    base = {**os.environ, "ORCH_AGENT": AGENT, **(extra or {})}
    env = base | fence.env(base)
    return subprocess.run(
        ["git", "push", "--quiet", "origin", f"HEAD:refs/heads/{AGENT}-work"],
        cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_a_push_needs_a_live_lease(tmp_path: Path) -> None:
    repo, origin = create_repo_with_origin(tmp_path / "project")
    fence = PushFence(tmp_path / "state")
    refused = _push(repo, fence)  # never granted
    assert refused.returncode != 0
    assert "orch-recovery: push refused: the lease of task-agent-7's task ran out" in (
        refused.stderr
    )
    fence.grant(AGENT, time.time() + 30, lease=30)
    assert _push(repo, fence).returncode == 0
    head = run_git(["rev-parse", "HEAD"], cwd=repo).stdout
    assert run_git(["rev-parse", f"refs/heads/{AGENT}-work"], cwd=origin).stdout == head
    fence.revoke(AGENT)
    assert _push(repo, fence).returncode != 0
    fence.grant(AGENT, time.time() - 1, lease=30)  # ran out: the host was frozen past it
    assert _push(repo, fence).returncode != 0
    assert run_git(["rev-parse", f"refs/heads/{AGENT}-work"], cwd=origin).stdout == head


def test_the_repository_s_own_pre_push_hook_still_runs(tmp_path: Path) -> None:
    repo, _ = create_repo_with_origin(tmp_path / "project")
    own = repo / ".git" / "hooks" / "pre-push"
    own.write_text('#!/bin/sh\necho "own hook saw $1" >&2\nexit 3\n')
    own.chmod(0o755)
    fence = PushFence(tmp_path / "state")
    fence.grant(AGENT, time.time() + 30, lease=30)
    pushed = _push(repo, fence)
    assert pushed.returncode != 0 and "own hook saw origin" in pushed.stderr
    # An agent's own GIT_CONFIG_* entries are kept, the hook path added after them.
    kept = fence.env({"GIT_CONFIG_COUNT": "1"})
    assert kept["GIT_CONFIG_COUNT"] == "2" and kept["GIT_CONFIG_KEY_1"] == "core.hooksPath"


def test_gh_pr_create_needs_a_live_lease_and_everything_else_passes_through(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real-bin"
    real.mkdir()
    (real / "gh").write_text('#!/bin/sh\necho "real gh: $*"\n')
    (real / "gh").chmod(0o755)
    fence = PushFence(tmp_path / "state")
    base = {"PATH": f"{real}{os.pathsep}{os.environ['PATH']}", "ORCH_AGENT": AGENT}
    env = {**os.environ, **base, **fence.env(base)}

    def gh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gh", *args], env=env, capture_output=True, text=True, check=False, timeout=60
        )

    refused = gh("pr", "create", "--title", "x y")
    assert refused.returncode == 1 and "real gh" not in refused.stdout
    assert "orch-recovery: gh pr create refused: the lease of task-agent-7's task" in (
        refused.stderr
    )
    assert gh("pr", "list", "--json", "number").stdout == "real gh: pr list --json number\n"
    fence.grant(AGENT, time.time() + 30, lease=30)
    assert gh("pr", "create", "--title", "x y").stdout == "real gh: pr create --title x y\n"


def test_the_agents_gh_says_when_it_changed_a_pull_request(tmp_path: Path) -> None:
    real = tmp_path / "real-bin"
    real.mkdir()
    # A gh whose output and status the wrapper must pass on untouched; "pr close" is killed.
    (real / "gh").write_text(
        '#!/bin/sh\necho "real gh: $*"\necho "to stderr" >&2\n'
        '[ "$2" = close ] && kill -TERM $$\n[ "$2" = create ] && exit 4\nexit 0\n'
    )
    (real / "gh").chmod(0o755)
    install_gh(tmp_path / "agent-bin", fenced=False)
    events = tmp_path / "events.fifo"
    os.mkfifo(events, 0o600)
    reader = os.open(events, os.O_RDONLY | os.O_NONBLOCK)
    base = {"PATH": f"{real}{os.pathsep}{os.environ['PATH']}"}
    env = {
        **os.environ,
        "PATH": first_on_path(tmp_path / "agent-bin", base),
        "ORCH_AGENT": AGENT,
        "ORCH_ATTEMPT": "2",
        "ORCH_EVENTS": str(events),
    }

    def gh(*args: str, **changes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gh", *args], env={**env, **changes}, capture_output=True, text=True,
            check=False, timeout=60,
        )  # fmt: skip

    def told() -> bytes:
        try:
            return os.read(reader, 4096)
        except BlockingIOError:
            return b""

    listed = gh("pr", "list", "--json", "number")
    assert (listed.returncode, listed.stdout) == (0, "real gh: pr list --json number\n")
    assert listed.stderr == "to stderr\n" and told() == b""  # reads change nothing
    created = gh("pr", "create", "--title", "x y")
    assert (created.returncode, created.stdout) == (4, "real gh: pr create --title x y\n")
    assert told() == b"pr task-agent-7 2\n"
    closed = gh("pr", "close", "7")
    assert closed.returncode == -signal.SIGTERM  # ended by gh's signal, as an exec'd gh is
    assert told() == b"pr task-agent-7 2\n"
    (tmp_path / "plain").write_text("")
    assert gh("pr", "merge", "7", ORCH_EVENTS=str(tmp_path / "plain")).returncode == 0
    assert (tmp_path / "plain").read_text() == ""  # only ever a FIFO is written to
    os.close(reader)  # nobody reading: the line is dropped, the agent is not held up
    assert gh("pr", "create", "--title", "z").returncode == 4
    # Fenced, the lease is checked first; the wrapper's text says which it is.
    assert "lease" in gh_wrapper(fenced=True) and "lease" not in gh_wrapper(fenced=False)
