"""The lease fence for agents' own pushes: a host cut off past its lease (frozen, partitioned)
still runs its agents, and they must not push the task's branch while another host holds it.

The database fences every record and launch, but an agent's ``git push`` never reaches it,
and the agent should not hold the database's credentials. So the supervisor keeps, per
agent, a file holding the wall-clock time its lease is good until -- rewritten after each
heartbeat, removed when the task is let go or finished -- and every git command an agent
runs uses a ``pre-push`` hook (``core.hooksPath``, set through git's ``GIT_CONFIG_*``
environment) that refuses the push once that time has passed. A frozen supervisor writes
nothing, so its agents' pushes are refused from the moment its lease ran out, by this
machine's clock alone. The hook then runs the repository's own ``pre-push`` hook, if any.
``gh pr create`` is fenced the same way by a ``gh`` wrapper first on the agents' PATH.

That wrapper (:func:`install_gh`, on every fleet's agents' PATH, fenced or not) also tells the
supervisor when the agent changed a pull request (``gh pr create``, ``close``, ...): one line
``pr AGENT ATTEMPT`` to the runtime's event FIFO, after the real ``gh`` returned, so the
supervisor's PR listing starts while the agent is still finishing instead of after its exit
(runtime/tmux.py, ``_pr_changed``). The line is a hint, never evidence: whatever runs as the
agent's user can write it, and the PR itself is always read from the forge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

# Exits 1 with a line saying so when $ORCH_AGENT's lease file holds a time already past.
_LEASE_CHECK = """until=$(cat "$ORCH_LEASE_DIR/$ORCH_AGENT" 2>/dev/null) || until=0
if [ "$(date +%s)" -ge "${until%%.*}" ]; then
    echo "orch-recovery: $what refused: the lease of $ORCH_AGENT's task ran out on this host" >&2
    exit 1
fi
"""

HOOK = (
    """#!/bin/sh
# orch-recovery: an agent pushes only while its host holds the task's lease (fleet/pushfence.py).
what=push
"""
    + _LEASE_CHECK
    + """own="$(git rev-parse --git-common-dir)/hooks/pre-push"
if [ -x "$own" ]; then
    exec "$own" "$@"
fi
"""
)

# First on the agents' PATH. Every call goes to the next ``gh`` on PATH, as if this one were
# not there (output and exit status untouched); fenced, ``gh pr create`` needs the lease
# first; a call that changes a pull request is followed by the line for the supervisor.
_GH_HEAD = """#!/bin/sh
# orch-recovery: the agents' gh (fleet/pushfence.py).
changes=
case "$1 $2" in
"pr create" | "pr close" | "pr reopen" | "pr merge" | "pr edit" | "pr ready") changes=1 ;;
esac
"""
_GH_FENCE = (
    """# An agent opens a pull request only while its host holds the task's lease.
if [ "$1" = pr ] && [ "$2" = create ]; then
    what="gh pr create"
"""
    + "".join(f"    {line}\n" if line else "\n" for line in _LEASE_CHECK.splitlines())
    + "fi\n"
)
_GH_TAIL = """me=$(cd "$(dirname "$0")" && pwd -P)
real=
IFS=:
for dir in $PATH; do
    [ "$(cd "$dir" 2>/dev/null && pwd -P)" = "$me" ] && continue
    if [ -x "$dir/gh" ]; then
        real="$dir/gh"
        break
    fi
done
unset IFS
if [ -z "$real" ]; then
    echo "gh: command not found" >&2
    exit 127
fi
if [ -z "$changes" ] || [ ! -p "${ORCH_EVENTS-}" ]; then
    exec "$real" "$@"
fi
"$real" "$@"
status=$?
# O_NONBLOCK: no supervisor reading (dd fails with ENXIO) must not hang the agent.
printf 'pr %s %s\n' "${ORCH_AGENT-}" "${ORCH_ATTEMPT-}" |
    dd of="$ORCH_EVENTS" oflag=nonblock,append conv=notrunc status=none 2>/dev/null
if [ "$status" -gt 128 ] && [ "$status" -lt 160 ]; then
    kill -s "$(kill -l "$status")" $$  # gh ended by a signal: end by it too, as exec would
fi
exit "$status"
"""


def gh_wrapper(*, fenced: bool) -> str:
    """The text of the agents' ``gh`` wrapper (see the module docstring)."""
    return _GH_HEAD + (_GH_FENCE if fenced else "") + _GH_TAIL


def install_gh(directory: Path, *, fenced: bool) -> None:
    """Write the agents' ``gh`` wrapper as ``directory/gh``."""
    directory.mkdir(parents=True, exist_ok=True)
    _replace(directory / "gh", gh_wrapper(fenced=fenced))
    (directory / "gh").chmod(0o755)


def first_on_path(directory: Path, base: Mapping[str, str]) -> str:
    """``base``'s PATH with ``directory`` first."""
    return f"{directory}{os.pathsep}{base.get('PATH', os.defpath)}"


class PushFence:
    """The lease files and the hook under ``root`` (the supervisor's state directory)."""

    def __init__(self, root: Path) -> None:
        self.leases = root / "leases"
        self.hooks = root / "git-hooks"
        self.bin = root / "fence-bin"
        for directory in (self.leases, self.hooks, self.bin):
            directory.mkdir(parents=True, exist_ok=True)
        self._granted: dict[str, int] = {}
        _replace(self.hooks / "pre-push", HOOK)
        (self.hooks / "pre-push").chmod(0o755)
        install_gh(self.bin, fenced=True)

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The variables that put the hook in every git command, and the ``gh`` wrapper first
        on PATH, of an agent whose environment is otherwise ``base`` (whose own
        ``GIT_CONFIG_*`` entries are kept)."""
        count = int(base.get("GIT_CONFIG_COUNT", "0") or "0")
        return {
            "PATH": first_on_path(self.bin, base),
            "ORCH_LEASE_DIR": str(self.leases),
            "GIT_CONFIG_COUNT": str(count + 1),
            f"GIT_CONFIG_KEY_{count}": "core.hooksPath",
            f"GIT_CONFIG_VALUE_{count}": str(self.hooks),
        }

    def grant(self, agent: str, until: float, *, lease: float) -> None:
        """``agent`` may push until wall-clock time ``until`` (a live lease of ``lease``
        seconds). The file is rewritten only once a third of the lease has gone by since
        the last write: it then lags, which only ends the pushes sooner, and a fleet of
        hundreds of agents does not rewrite hundreds of files each loop pass."""
        whole = int(until)
        if whole - self._granted.get(agent, 0) < lease / 3:
            return
        _replace(self.leases / agent, f"{whole}\n")
        self._granted[agent] = whole

    def revoke(self, agent: str) -> None:
        self._granted.pop(agent, None)
        with contextlib.suppress(FileNotFoundError):
            (self.leases / agent).unlink()


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole by rename, without fsync: after a crash a lost file only
    refuses pushes until the next heartbeat writes it again."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
