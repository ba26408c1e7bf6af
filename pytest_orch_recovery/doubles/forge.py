"""The forge: a GitHub stand-in that stores pull requests in files and fails like GitHub.

Agents in a sandbox run ``gh`` (see :mod:`pytest_orch_recovery.doubles.forge_cli`); the engine and
the
chaos harness use :class:`Forge` directly to look PRs up, inject faults and read what the
agents ran. Layout of ``root``:

``forge.json``   origin path, ``owner/repo``, default branch, login, first PR number
``prs.json``     the pull requests (schema v1), written atomically
``faults.json``  injected faults still to fire, written atomically
``calls.jsonl``  one line per ``gh`` invocation (argv, cwd, exit code, fault, times)
``.lock``        ``flock``-ed around every read-modify-write: several agents run gh at once.
                 Reads take no lock (``prs.json`` is replaced whole, so a reader sees the old
                 or the new list), as GitHub answers reads while PRs are being opened: a
                 supervisor's listing never queues behind a burst of agents' ``pr create``.

The wording of every message below is the real ``gh``'s (cli/cli sources cited inline), so a
classifier trained on what real agents print recognises what sandboxed agents print.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shlex
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidValue, OrchRecoveryError
from pytest_orch_recovery.infra.git import GitError, run_git
from pytest_orch_recovery.infra.lean_python import lean_python_argv
from pytest_orch_recovery.store import atomic

# typing and the model weigh on each gh (forge stand-in) process's start-up
# (docs/performance.md): for the type checker only here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pytest_orch_recovery.engine.model import PullRequest

SCHEMA_VERSION = 1
ROOT_ENV = "ORCH_FORGE_ROOT"
DEFAULT_OWNER_REPO = "acme/agent-project"
API_HOST = "api.github.com"
GRAPHQL_URL = f"https://{API_HOST}/graphql"

# cli/cli internal/ghcmd/cmd.go: exitError = 1, exitAuth = 4 (no token at all).
EXIT_ERROR = 1
EXIT_AUTH = 4

# Commands the forge answers; faults are keyed by these.
COMMANDS = ("pr create", "pr view", "pr list", "auth status")
PR_STATES = ("OPEN", "CLOSED", "MERGED")

# Faults that any API-calling command can meet, and those only ``pr create`` can.
_API_FAULTS = ("bad_credentials", "unreachable", "logged_out")
_CREATE_FAULTS = ("already_exists", "no_commits", "must_push")
FAULT_KINDS = _API_FAULTS + _CREATE_FAULTS


class ForgeError(OrchRecoveryError):
    """The forge's store is unusable or a request to it is malformed."""


class PullRequestExists(ForgeError):
    def __init__(self, existing: StoredPullRequest) -> None:
        self.existing = existing
        super().__init__(f"an open pull request for {existing.head!r} exists: {existing.url}")


class NoCommitsBetween(ForgeError):
    def __init__(self, base: str, head: str, *, head_missing: bool) -> None:
        self.base, self.head, self.head_missing = base, head, head_missing
        super().__init__(f"no commits between {base} and {head}")


@dataclass(frozen=True)
class GhOutcome:
    """What a ``gh`` invocation prints and how it exits."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class Fault:
    kind: str
    command: str
    times: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.command, "times": self.times}


@dataclass(frozen=True)
class StoredPullRequest:
    """A pull request as the forge keeps it (a superset of :class:`model.PullRequest`)."""

    number: int
    head: str
    base: str
    url: str
    title: str
    body: str = ""
    draft: bool = False
    state: str = "OPEN"
    head_oid: str | None = None
    created_at: str = ""
    author: str = ""

    def to_model(self) -> PullRequest:
        # Imported here: the engine asks for model objects, a gh process never does (the
        # model weighs on its start-up).
        from pytest_orch_recovery.engine.model import PullRequest

        return PullRequest(self.number, self.head, self.url, self.title, self.state)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "head": self.head,
            "base": self.base,
            "url": self.url,
            "title": self.title,
            "body": self.body,
            "draft": self.draft,
            "state": self.state,
            "head_oid": self.head_oid,
            "created_at": self.created_at,
            "author": self.author,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredPullRequest:
        return cls(
            number=int(data["number"]),
            head=str(data["head"]),
            base=str(data["base"]),
            url=str(data["url"]),
            title=str(data.get("title", "")),
            body=str(data.get("body", "")),
            draft=bool(data.get("draft", False)),
            state=str(data.get("state", "OPEN")),
            head_oid=data.get("head_oid"),
            created_at=str(data.get("created_at", "")),
            author=str(data.get("author", "")),
        )

    def gh_json(self) -> dict[str, Any]:
        """Every field ``gh pr view/list --json`` can give, named as GitHub's GraphQL names them."""
        return {
            "author": {"login": self.author},
            "baseRefName": self.base,
            "body": self.body,
            "closed": self.state != "OPEN",
            "createdAt": self.created_at,
            "headRefName": self.head,
            "headRefOid": self.head_oid or "",
            "isDraft": self.draft,
            "number": self.number,
            "state": self.state,
            "title": self.title,
            "url": self.url,
        }


GH_JSON_FIELDS = tuple(sorted(StoredPullRequest(0, "", "", "", "").gh_json()))


@dataclass
class _Store:
    next_number: int
    prs: list[StoredPullRequest] = field(default_factory=list)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def go_quote(text: str) -> str:
    """Go's ``%q`` for the plain strings branch names are: JSON escaping is the same there."""
    return json.dumps(text, ensure_ascii=False)


class Forge:
    """A GitHub repository's pull requests, kept under ``root``, backed by a bare ``origin``."""

    def __init__(
        self,
        root: Path,
        *,
        origin: Path,
        owner_repo: str = DEFAULT_OWNER_REPO,
        first_number: int = 1,
        default_branch: str = "main",
        login: str = "agent-bot",
    ) -> None:
        if "/" not in owner_repo or owner_repo.count("/") != 1:
            raise InvalidValue(f"owner_repo must look like OWNER/REPO, got {owner_repo!r}")
        if first_number < 1:
            raise InvalidValue(f"first_number must be at least 1, got {first_number}")
        self.root = Path(root).resolve()
        self.origin = Path(origin).resolve()
        self.owner_repo = owner_repo
        self.first_number = first_number
        self.default_branch = default_branch
        self.login = login
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(
            self.config_path,
            {
                "schema_version": SCHEMA_VERSION,
                "origin": str(self.origin),
                "owner_repo": owner_repo,
                "first_number": first_number,
                "default_branch": default_branch,
                "login": login,
            },
        )

    @classmethod
    def open(cls, root: Path) -> Forge:
        """Reopen a forge from its ``forge.json`` (what the ``gh`` program does)."""
        path = Path(root) / "forge.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ForgeError(f"{path}: no forge here (forge.json missing)") from None
        except json.JSONDecodeError as exc:
            raise ForgeError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        for key in ("origin", "owner_repo"):
            if not isinstance(data.get(key), str):
                raise ForgeError(f"{path}:1: field {key!r} missing or not a string")
        forge = cls.__new__(cls)
        forge.root = Path(root).resolve()
        forge.origin = Path(data["origin"])
        forge.owner_repo = data["owner_repo"]
        forge.first_number = int(data.get("first_number", 1))
        forge.default_branch = str(data.get("default_branch", "main"))
        forge.login = str(data.get("login", "agent-bot"))
        return forge

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.root / "forge.json"

    @property
    def prs_path(self) -> Path:
        return self.root / "prs.json"

    @property
    def faults_path(self) -> Path:
        return self.root / "faults.json"

    @property
    def calls_path(self) -> Path:
        return self.root / "calls.jsonl"

    def pr_url(self, number: int) -> str:
        return f"https://github.com/{self.owner_repo}/pull/{number}"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # ------------------------------------------------------------------ pull requests

    def _read_store(self) -> _Store:
        path = self.prs_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Store(self.first_number)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ForgeError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ForgeError(f"{path}:1: field 'schema_version' must be {SCHEMA_VERSION}")
        prs: list[StoredPullRequest] = []
        for index, item in enumerate(data.get("pull_requests", [])):
            try:
                prs.append(StoredPullRequest.from_json(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise ForgeError(f"{path}: pull_requests[{index}]: bad field {exc}") from None
        return _Store(int(data.get("next_number", self.first_number)), prs)

    def _write_store(self, store: _Store) -> None:
        atomic.write_json(
            self.prs_path,
            {
                "schema_version": SCHEMA_VERSION,
                "next_number": store.next_number,
                "pull_requests": [pr.to_json() for pr in store.prs],
            },
        )

    def records(self) -> list[StoredPullRequest]:
        """Every stored pull request, oldest first (no lock: see the module docstring)."""
        return list(self._read_store().prs)

    def pull_requests(self) -> list[PullRequest]:
        return [pr.to_model() for pr in self.records()]

    def record_for(self, branch: str) -> StoredPullRequest | None:
        """The PR whose head is ``branch``: an open one first, else the newest (as gh's finder)."""
        candidates = [pr for pr in self.records() if pr.head == branch]
        if not candidates:
            return None
        open_prs = [pr for pr in candidates if pr.state == "OPEN"]
        return (open_prs or candidates)[-1]

    def pull_request_for(self, branch: str) -> PullRequest | None:
        """The engine's PR lookup: the PR opened from ``branch``, or None."""
        record = self.record_for(branch)
        return None if record is None else record.to_model()

    def record(self, number: int) -> StoredPullRequest | None:
        return next((pr for pr in self.records() if pr.number == number), None)

    def open_pull_request(
        self,
        *,
        head: str,
        base: str,
        title: str,
        body: str = "",
        draft: bool = False,
    ) -> StoredPullRequest:
        """Open a PR as GitHub's ``createPullRequest`` does, checking what GitHub checks.

        Raises :class:`PullRequestExists` when an open PR already goes from ``head`` into
        ``base``, and :class:`NoCommitsBetween` when ``head`` has nothing ``base`` lacks on
        the origin (or is not on the origin at all).
        """
        with self._locked():
            store = self._read_store()
            for pr in store.prs:
                if pr.head == head and pr.base == base and pr.state == "OPEN":
                    raise PullRequestExists(pr)
            head_oid = self._origin_sha(head)
            if head_oid is None or self._origin_sha(base) is None:
                raise NoCommitsBetween(base, head, head_missing=head_oid is None)
            if self._commits_between(base, head) == 0:
                raise NoCommitsBetween(base, head, head_missing=False)
            pr = StoredPullRequest(
                number=store.next_number,
                head=head,
                base=base,
                url=self.pr_url(store.next_number),
                title=title,
                body=body,
                draft=draft,
                head_oid=head_oid,
                created_at=_utc_now(),
                author=self.login,
            )
            store.prs.append(pr)
            store.next_number += 1
            self._write_store(store)
            return pr

    def set_state(self, number: int, state: str) -> StoredPullRequest:
        """Close or merge a PR (what a reviewer would do on GitHub)."""
        if state not in PR_STATES:
            raise InvalidValue(f"state must be one of {', '.join(PR_STATES)}, got {state!r}")
        with self._locked():
            store = self._read_store()
            for index, pr in enumerate(store.prs):
                if pr.number == number:
                    updated = dataclasses.replace(pr, state=state)
                    store.prs[index] = updated
                    self._write_store(store)
                    return updated
        raise ForgeError(f"{self.prs_path}: no pull request #{number}")

    def next_number(self) -> int:
        with self._locked():
            return self._read_store().next_number

    def _origin_sha(self, branch: str) -> str | None:
        proc = run_git(
            ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
            cwd=self.origin,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    def _commits_between(self, base: str, head: str) -> int:
        try:
            out = run_git(
                ["rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}"], cwd=self.origin
            ).stdout
        except GitError as exc:
            raise ForgeError(f"origin {self.origin}: {exc}") from None
        return int(out.strip())

    # ------------------------------------------------------------------ faults

    def _read_faults(self) -> list[Fault]:
        path = self.faults_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except json.JSONDecodeError as exc:
            raise ForgeError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        faults: list[Fault] = []
        for index, item in enumerate(data.get("faults", [])):
            try:
                faults.append(Fault(str(item["kind"]), str(item["command"]), int(item["times"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ForgeError(f"{path}: faults[{index}]: bad field {exc}") from None
        return faults

    def _write_faults(self, faults: Sequence[Fault]) -> None:
        atomic.write_json(
            self.faults_path,
            {"schema_version": SCHEMA_VERSION, "faults": [f.to_json() for f in faults]},
        )

    def inject(self, kind: str, *, command: str = "pr create", times: int = 1) -> None:
        """Make the next ``times`` invocations of ``gh <command>`` fail with ``kind``."""
        if kind not in FAULT_KINDS:
            raise InvalidValue(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if command not in COMMANDS:
            raise InvalidValue(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        if kind in _CREATE_FAULTS and command != "pr create":
            raise InvalidValue(f"fault {kind!r} only happens on 'pr create', not {command!r}")
        if times < 1:
            raise InvalidValue(f"times must be at least 1, got {times}")
        with self._locked():
            faults = self._read_faults()
            faults.append(Fault(kind, command, times))
            self._write_faults(faults)

    def clear_faults(self) -> None:
        with self._locked():
            self._write_faults([])

    def faults_remaining(self, kind: str | None = None, command: str | None = None) -> int:
        """How many more invocations will fail (optionally of one kind / command)."""
        with self._locked():
            return sum(
                f.times
                for f in self._read_faults()
                if (kind is None or f.kind == kind) and (command is None or f.command == command)
            )

    def take_fault(self, command: str, kinds: Collection[str] | None = None) -> str | None:
        """Consume the oldest pending fault for ``command`` if its kind is in ``kinds``.

        gh meets each kind of failure at one stage of its work; the program asks at each stage
        for the kinds that stage can meet, so a fault is used up exactly when it takes effect.
        """
        if not any(f.command == command for f in self._read_faults()):
            # The usual case, read without the lock (faults.json is replaced whole): a
            # command does not queue behind the agents' writes to learn it meets no fault.
            return None
        with self._locked():
            faults = self._read_faults()
            for index, fault in enumerate(faults):
                if fault.command == command:
                    if kinds is not None and fault.kind not in kinds:
                        return None
                    if fault.times > 1:
                        faults[index] = Fault(fault.kind, fault.command, fault.times - 1)
                    else:
                        del faults[index]
                    self._write_faults(faults)
                    return fault.kind
        return None

    # ------------------------------------------------------------------ call log

    def record_call(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        exit_code: int,
        started: float,
        ended: float,
        fault: str | None,
    ) -> None:
        """Append one invocation to ``calls.jsonl``: one write on an ``O_APPEND`` descriptor,
        which Linux never interleaves with another's on a local file system (no lock: a read
        such as ``pr list`` does not wait for the agents' writes to log itself)."""
        line = json.dumps(
            {
                "argv": list(argv),
                "cwd": cwd,
                "exit_code": exit_code,
                "fault": fault,
                "started": started,
                "ended": ended,
            },
            ensure_ascii=False,
        )
        atomic.append_line(self.calls_path, line)

    def calls(self) -> list[dict[str, Any]]:
        """Every recorded invocation, oldest first; a torn last line is skipped."""
        try:
            lines = self.calls_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    break
                raise ForgeError(f"{self.calls_path}:{number}: not JSON") from None
        return out


# ---------------------------------------------------------------------- gh's messages


def api_fault_outcome(kind: str, command: str, *, login: str) -> GhOutcome:
    """How real gh reports a fault of the API kinds for ``command``."""
    if command == "auth status":
        return _auth_status_failure(kind, login=login)
    if kind == "bad_credentials":
        # api/client.go HTTPError.Error(): "HTTP %d: %s (%s)"; the hint is internal/ghcmd/cmd.go's
        # for a 401.
        return GhOutcome(
            EXIT_ERROR,
            stderr=f"HTTP 401: Bad credentials ({GRAPHQL_URL})\n"
            "Try authenticating with:  gh auth login\n",
        )
    if kind == "unreachable":
        # internal/ghcmd/cmd.go printError, for a *net.DNSError.
        return GhOutcome(
            EXIT_ERROR,
            stderr=f"error connecting to {API_HOST}\n"
            "check your internet connection or https://githubstatus.com\n",
        )
    if kind == "logged_out":
        # pkg/cmd/root auth check; exits exitAuth (4) in internal/ghcmd/cmd.go.
        return GhOutcome(
            EXIT_AUTH,
            stderr="To get started with GitHub CLI, please run:  gh auth login\n"
            "Alternatively, populate the GH_TOKEN environment variable with a GitHub API "
            "authentication token.\n",
        )
    raise InvalidValue(f"{kind!r} is not an API fault")


def _auth_status_failure(kind: str, *, login: str) -> GhOutcome:
    # pkg/cmd/auth/status/status.go: failures go to stderr and exit 1 (SilentError).
    if kind == "logged_out":
        return GhOutcome(
            EXIT_ERROR,
            stderr="You are not logged into any GitHub hosts. To log in, run: gh auth login\n",
        )
    who = f"account {login}" if kind == "bad_credentials" else "using token"
    return GhOutcome(
        EXIT_ERROR,
        stderr="github.com\n"
        f"  X Failed to log in to github.com {who} (GH_TOKEN)\n"
        "  - Active account: true\n"
        "  - The token in GH_TOKEN is invalid.\n",
    )


def auth_status_ok(login: str) -> GhOutcome:
    # pkg/cmd/auth/status/status.go (gh >= 2.40): a valid entry goes to stdout.
    return GhOutcome(
        0,
        stdout="github.com\n"
        f"  \u2713 Logged in to github.com account {login} (GH_TOKEN)\n"
        "  - Active account: true\n"
        "  - Git operations protocol: https\n"
        "  - Token: gho_************************************\n"
        "  - Token scopes: 'gist', 'read:org', 'repo', 'workflow'\n",
    )


def must_push_outcome() -> GhOutcome:
    # pkg/cmd/pr/create/create.go: Fprintf without a newline, then SilentError (exit 1).
    return GhOutcome(
        EXIT_ERROR,
        stderr="aborted: you must first push the current branch to a remote, "
        "or use the --head flag",
    )


def already_exists_outcome(head: str, base: str, url: str) -> GhOutcome:
    # pkg/cmd/pr/create/create.go: "a pull request for branch %q into branch %q already exists:\n%s"
    return GhOutcome(
        EXIT_ERROR,
        stderr=f"a pull request for branch {go_quote(head)} into branch {go_quote(base)} "
        f"already exists:\n{url}\n",
    )


def no_commits_outcome(base: str, head: str, *, head_missing: bool = False) -> GhOutcome:
    # create.go wraps the API error as "pull request create failed: %w"; GitHub's GraphQL
    # errors read "GraphQL: <messages> (createPullRequest)". A head missing on the server
    # draws GitHub's longer cluster (seen in cli/cli issue #5465).
    if head_missing:
        detail = (
            f"Head sha can't be blank, Base sha can't be blank, No commits between {base} and "
            f"{head}, Head ref must be a branch"
        )
    else:
        detail = f"No commits between {base} and {head}"
    return GhOutcome(
        EXIT_ERROR,
        stderr=f"pull request create failed: GraphQL: {detail} (createPullRequest)\n",
    )


# ---------------------------------------------------------------------- the shim


def install_gh_shim(bin_dir: Path, forge_root: Path) -> Path:
    """Write an executable ``gh`` into ``bin_dir`` that runs the forge's ``gh`` program.

    It runs this interpreter with ``-P`` so an agent's checkout that happens to contain a
    ``pytest_orch_recovery`` directory cannot shadow the installed package.
    """
    root = Path(forge_root).resolve()
    if not (root / "forge.json").is_file():
        raise ForgeError(f"{root / 'forge.json'}: no forge here; create Forge(root, ...) first")
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = (
        "#!/bin/sh\n"
        "# gh stand-in: pytest_orch_recovery.doubles.forge.install_gh_shim\n"
        f"{ROOT_ENV}={shlex.quote(str(root))}\n"
        f"export {ROOT_ENV}\n"
        f"exec {shlex.join(lean_python_argv('pytest_orch_recovery.doubles.forge_cli'))} "
        '"$@"\n'
    )
    target = bin_dir / "gh"
    atomic.write_bytes(target, script.encode("utf-8"), mode=0o755)
    return target
