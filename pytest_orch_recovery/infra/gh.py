"""Pull request state from the ``gh`` command line, as the operator's own ``gh`` sees it.

``gh pr view --json number,state,url,title,headRefName -- <branch>`` prints one JSON object; a
branch with no pull request makes gh exit 1 with ``no pull requests found for branch "…"``.
Any other failure (no auth, no network) is logged and read as "no pull request known", which
makes the next attempt try to open one: harmless when one exists after all (gh then says so).

With ``batch``, lookups made at the same time share one ``gh pr list --state open --json ...``
(a fleet's exits come in bursts, each asking about its branch, and each ``gh`` is a process and
an API call): a lookup waits for a listing that started after it was asked, and a branch the
listing does not hold as open is asked about with ``gh pr view`` as before (a merged or closed
PR, more open PRs than the listing's limit). :meth:`GhPullRequests.listed_after` relaxes "after
it was asked" to "after a given time": the runtime asks about an agent that has ended, and
whatever PR it opened is in any listing started after its end, so a listing that other exits
of the same burst already caused answers it at once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from pytest_orch_recovery.engine.model import PullRequest
from pytest_orch_recovery.store import validation

_log = logging.getLogger(__name__)
_FIELDS = "number,state,url,title,headRefName"
_NOT_FOUND = "no pull requests found"
_LIST_LIMIT = 1000  # open PRs one listing asks for


class GhPullRequests:
    """A :class:`~pytest_orch_recovery.infra.workspace.PullRequestLookup` over ``gh``.

    ``cwd`` is a checkout of the repository (gh finds the GitHub repository from its
    remotes); ``env`` the environment gh runs with (its credentials: GH_TOKEN, HOME, ...).
    """

    def __init__(
        self,
        cwd: Path,
        *,
        env: Mapping[str, str] | None = None,
        gh: str = "gh",
        timeout: float = 60.0,
        batch: bool = False,
    ) -> None:
        self.batch = batch
        self._listing = threading.Condition()
        self._running: float | None = None  # when the listing under way started (time.time)
        self._listed_at: float | None = None  # when the last finished listing started
        self._wanted = 0.0  # a prefetch wants a listing started at or after this
        self._open: dict[str, PullRequest] = {}  # branch -> its open PR, that listing
        self.cwd = cwd
        self.env = None if env is None else dict(env)
        self.gh = gh
        self.timeout = timeout

    def pull_request_for(self, branch: str) -> PullRequest | None:
        return self.pull_request_listed_after(branch, None)

    def listed_after(self, since: float) -> PullRequestsListedAfter:
        """This lookup, answering from any listing that started at or after ``since``
        (``time.time()``), such as one another lookup already caused."""
        return PullRequestsListedAfter(self, since)

    def pull_request_listed_after(self, branch: str, since: float | None) -> PullRequest | None:
        """:meth:`pull_request_for`, where with ``batch`` a listing started at or after
        ``since`` answers (None: one started after this call)."""
        try:
            validation.ref_name(branch)
        except validation.RuleError as exc:
            _log.warning("gh pr view: not asked: %s", exc)
            return None
        if self.batch:
            listed = self._listed(since).get(branch)
            if listed is not None:
                return listed
        # "--": whatever the branch is called, gh reads it as the branch, never as a flag.
        argv = [self.gh, "pr", "view", "--json", _FIELDS, "--", branch]
        try:
            proc = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                timeout=self.timeout, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            _log.warning("%s: %s", " ".join(argv), exc)
            return None
        if proc.returncode != 0:
            if _NOT_FOUND not in proc.stderr:
                _log.warning(
                    "%s: exit %d: %s", " ".join(argv), proc.returncode, proc.stderr.strip()
                )
            return None
        return parse_pr_view(proc.stdout, branch)

    def _listed(self, since: float | None) -> dict[str, PullRequest]:
        """The open PRs by branch, from a listing started at or after ``since`` (None: after
        this call): one listing answers every lookup that was waiting when it started."""
        with self._listing:
            asked = time.time() if since is None else since
            while True:
                if self._listed_at is not None and self._listed_at >= asked:
                    return self._open
                if self._running is None:
                    started = self._running = time.time()  # this thread lists
                    break
                self._listing.wait()  # for the listing under way (fresh enough or not)
        return self._list(started)

    def prefetch(self, since: float) -> None:
        """See that a listing starts at or after ``since``: now, in this thread, unless one
        that did is done or under way; when the one under way started earlier, this thread
        lists again as soon as it ends. The runtime calls it when it notices an exit (the
        listing runs while the exit's pane and worktree are read) or a PR change."""
        with self._listing:
            if self._listed_at is not None and self._listed_at >= since:
                return
            if self._running is not None:
                self._wanted = max(self._wanted, since)
                return
            started = self._running = time.time()
        self._list(started, again=True)

    def _list(self, started: float, *, again: bool = False) -> dict[str, PullRequest]:
        """One listing started at ``started``; with ``again``, another right after it while
        a prefetch wants one that starts later than the last (see :meth:`prefetch`)."""
        while True:
            listed: dict[str, PullRequest] = {}
            answered = False
            try:
                listed = self._list_open()
                answered = True
            finally:  # whatever happens, the lookups waiting for this listing go on
                with self._listing:
                    self._open, self._listed_at, self._running = listed, started, None
                    self._listing.notify_all()
                    more = answered and again and self._wanted > started
                    if more:
                        started = self._running = time.time()
            if not more:
                return listed

    def _list_open(self) -> dict[str, PullRequest]:
        argv = [self.gh, "pr", "list", "--state", "open", "--limit", str(_LIST_LIMIT),
                "--json", _FIELDS]  # fmt: skip
        try:
            proc = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                timeout=self.timeout, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            _log.warning("%s: %s", " ".join(argv), exc)
            return {}
        if proc.returncode != 0:
            _log.warning("%s: exit %d: %s", " ".join(argv), proc.returncode, proc.stderr.strip())
            return {}
        return parse_pr_list(proc.stdout)


def parse_pr_list(text: str) -> dict[str, PullRequest]:
    """The open PRs in ``gh pr list --json`` output, by head branch (the newest of a branch).

    >>> sorted(parse_pr_list('[{"number":7,"state":"OPEN","headRefName":"b"}]'))
    ['b']
    >>> parse_pr_list("not json")
    {}
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    out: dict[str, PullRequest] = {}
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("number"), int):
            continue
        branch = item.get("headRefName")
        if not isinstance(branch, str) or branch in out or item.get("state") != "OPEN":
            continue
        out[branch] = PullRequest(
            number=int(item["number"]),
            branch=branch,
            url=str(item.get("url", "")),
            title=str(item.get("title", "")),
            state="OPEN",
        )
    return out


def parse_pr_view(text: str, branch: str) -> PullRequest | None:
    """The pull request in ``gh pr view --json`` output; None when it is not one, or when its
    ``headRefName`` is not ``branch`` (gh also takes a number or a URL as the selector: a
    branch called ``7`` gets PR #7, whatever its branch; that PR is not this task's).

    >>> parse_pr_view('{"number":7,"state":"OPEN","headRefName":"b"}', "b").number
    7
    >>> parse_pr_view('{"number":7,"state":"OPEN","headRefName":"other"}', "b") is None
    True
    >>> parse_pr_view("not json", "b") is None
    True
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        return None
    if data.get("headRefName") != branch:
        _log.warning(
            "gh pr view %s: answered with PR #%s of branch %r; not this branch's",
            branch,
            data["number"],
            data.get("headRefName"),
        )
        return None
    return PullRequest(
        number=int(data["number"]),
        branch=branch,
        url=str(data.get("url", "")),
        title=str(data.get("title", "")),
        state=str(data.get("state", "OPEN")),
    )


class PullRequestsListedAfter:
    """A :class:`~pytest_orch_recovery.infra.workspace.PullRequestLookup` view of
    :class:`GhPullRequests` (see :meth:`GhPullRequests.listed_after`)."""

    def __init__(self, lookup: GhPullRequests, since: float) -> None:
        self._lookup = lookup
        self.since = since

    def pull_request_for(self, branch: str) -> PullRequest | None:
        return self._lookup.pull_request_listed_after(branch, self.since)
