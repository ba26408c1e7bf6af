"""``gh`` for sandboxed agents: the GitHub CLI's pull-request and auth commands, on the forge.

Run as ``python -m pytest_orch_recovery.doubles.forge_cli`` (the shim written by
:func:`pytest_orch_recovery.doubles.forge.install_gh_shim` does that) with ``ORCH_FORGE_ROOT``
naming
the forge's directory. It behaves like real ``gh`` in non-interactive mode (agents have no
terminal): same flags, same output on stdout, same error text on stderr, same exit codes,
failing at the same stage real gh would. Every invocation is appended to ``calls.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.doubles import forge as _forge
from pytest_orch_recovery.doubles.forge import (
    Forge,
    ForgeError,
    GhOutcome,
    StoredPullRequest,
    go_quote,
)
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.infra.git import GitError, current_branch, head_sha, remote_sha, run_git

# The release this stand-in imitates (output format of `gh --version`, pkg/cmd/version).
GH_VERSION = "2.63.2"
GH_BUILD_DATE = "2024-12-05"

_ROOT_USAGE = (
    "Usage:  gh <command> <subcommand> [flags]\n\n"
    "Available commands:\n  auth\n  pr\n\n"
    "Flags:\n  --help      Show help for command\n  --version   Show gh version\n"
)
_PR_USAGE = "Usage:  gh pr <command> [flags]\n\nAvailable commands:\n  create\n  list\n  view\n"
_AUTH_USAGE = "Usage:  gh auth <command> [flags]\n\nAvailable commands:\n  status\n"


class _FlagError(OrchRecoveryError):
    """A usage error: real gh prints it, a blank line and the command's usage, and exits 1."""


@dataclass(frozen=True)
class _Flag:
    name: str
    short: str | None = None
    takes_value: bool = True


def _usage(command: str, flags: Sequence[_Flag]) -> str:
    lines = [f"Usage:  gh {command} [flags]", "", "Flags:"]
    for flag in flags:
        short = f"-{flag.short}, " if flag.short else "    "
        lines.append(f"  {short}--{flag.name}{' string' if flag.takes_value else ''}")
    return "\n".join(lines) + "\n"


def _parse_flags(
    args: Sequence[str], flags: Sequence[_Flag]
) -> tuple[dict[str, str | bool], list[str]]:
    """pflag-style parsing: ``--name value``, ``--name=value``, ``-n value``, ``-nvalue``, ``--``.

    Error wording is pflag's (spf13/pflag flag.go), which cobra passes through unchanged.
    """
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, str | bool] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals.extend(args[i + 1 :])
            break
        if arg.startswith("--"):
            name, eq, inline = arg[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise _FlagError(f"unknown flag: --{name}")
            if not flag.takes_value:
                values[flag.name] = inline.lower() not in ("false", "0") if eq else True
            elif eq:
                values[flag.name] = inline
            elif i + 1 < len(args):
                i += 1
                values[flag.name] = args[i]
            else:
                raise _FlagError(f"flag needs an argument: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            letter, rest = arg[1], arg[2:]
            flag = by_short.get(letter)
            if flag is None:
                raise _FlagError(f"unknown shorthand flag: {letter!r} in {arg}")
            if not flag.takes_value:
                values[flag.name] = True
            elif rest:
                values[flag.name] = rest.removeprefix("=")
            elif i + 1 < len(args):
                i += 1
                values[flag.name] = args[i]
            else:
                raise _FlagError(f"flag needs an argument: {letter!r} in -{letter}")
        else:
            positionals.append(arg)
        i += 1
    return values, positionals


def _text(values: Mapping[str, str | bool], name: str) -> str | None:
    value = values.get(name)
    return value if isinstance(value, str) else None


class _Invocation:
    """One run of ``gh``: the forge, the working directory, and the fault it met (if any)."""

    def __init__(self, forge: Forge, cwd: Path, command: str) -> None:
        self.forge = forge
        self.cwd = cwd
        self.command = command
        self.fault: str | None = None
        self.warnings = ""  # printed on stderr before the outcome, as gh does

    def fault_at(self, kinds: Collection[str]) -> str | None:
        """The injected fault this stage meets; at most one per invocation."""
        if self.fault is None:
            self.fault = self.forge.take_fault(self.command, kinds)
            return self.fault
        return None

    def api_faults(self) -> GhOutcome | None:
        kind = self.fault_at(("bad_credentials", "unreachable"))
        if kind is None:
            return None
        return _forge.api_fault_outcome(kind, self.command, login=self.forge.login)

    def auth_check(self) -> GhOutcome | None:
        # Real gh checks for a token before it parses the subcommand's flags (cobra
        # PersistentPreRun on the root command).
        if self.fault_at(("logged_out",)) is None:
            return None
        return _forge.api_fault_outcome("logged_out", self.command, login=self.forge.login)


# ---------------------------------------------------------------------- pr create

_CREATE_FLAGS = (
    _Flag("title", "t"),
    _Flag("body", "b"),
    _Flag("body-file", "F"),
    _Flag("base", "B"),
    _Flag("head", "H"),
    _Flag("fill", "f", takes_value=False),
    _Flag("fill-first", None, takes_value=False),
    _Flag("draft", "d", takes_value=False),
    _Flag("repo", "R"),
    _Flag("label", "l"),
    _Flag("reviewer", "r"),
    _Flag("assignee", "a"),
)


def _humanize(branch: str) -> str:
    return branch.replace("-", " ").replace("_", " ")


def _commits(cwd: Path, base_ref: str, head_ref: str) -> list[tuple[str, str]]:
    """(subject, body) of commits in ``base_ref..head_ref``, newest first, as gh reads them."""
    proc = run_git(
        [
            "-c",
            "log.ShowSignature=false",
            "log",
            "--pretty=format:%H%x00%s%x00%b%x00",
            "--cherry",
            f"{base_ref}...{head_ref}",
        ],
        cwd=cwd,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(["log", f"{base_ref}...{head_ref}"], cwd, proc.returncode, proc.stderr)
    fields = proc.stdout.split("\0")
    commits = []
    for i in range(0, len(fields) - 3, 3):
        commits.append((fields[i + 1], fields[i + 2].strip()))
    if not commits:
        # gh git client Commits(): its own wording for an empty range.
        raise GitError(
            ["log"], cwd, 1, f"could not find any commits between {base_ref} and {head_ref}"
        )
    return commits


def _uncommitted_count(cwd: Path) -> int:
    # gh's UncommittedChangeCount: the lines of `git status --porcelain`.
    proc = run_git(["status", "--porcelain"], cwd=cwd, check=False)
    return len([line for line in proc.stdout.splitlines() if line.strip()])


@dataclass(frozen=True)
class _CreateRequest:
    """What ``gh pr create``'s flags ask for, checked as gh checks them before any API call."""

    title: str | None
    body: str | None
    fill: bool
    fill_first: bool
    draft: bool
    head: str | None  # --head; None: the current branch
    base: str | None  # --base; None: the repository's default branch
    repo: str | None


def _pr_create(inv: _Invocation, args: Sequence[str]) -> GhOutcome:
    """``gh pr create``, stage by stage in gh's order; the first stage that fails answers."""
    if (outcome := inv.auth_check()) is not None:
        return outcome
    request = _create_request(inv, args)
    if isinstance(request, GhOutcome):
        return request
    if request.repo is not None and request.repo != inv.forge.owner_repo:
        return _repo_not_found(request.repo)
    if (outcome := inv.api_faults()) is not None:
        return outcome
    head = _create_head(inv, request)
    if isinstance(head, GhOutcome):
        return head
    base = _create_base(inv, request, head)
    if isinstance(base, GhOutcome):
        return base
    if (outcome := _already_open(inv, head, base)) is not None:
        return outcome
    text = _title_and_body(inv, request, head, base)
    if isinstance(text, GhOutcome):
        return text
    return _open_pull_request(inv, head, base, *text, draft=request.draft)


def _create_request(inv: _Invocation, args: Sequence[str]) -> _CreateRequest | GhOutcome:
    values, positionals = _parse_flags(args, _CREATE_FLAGS)
    if positionals:
        raise _FlagError(f'unknown command {go_quote(positionals[0])} for "gh pr create"')
    body = _text(values, "body")
    body_file = _text(values, "body-file")
    if body_file is not None:
        try:
            body = sys.stdin.read() if body_file == "-" else (inv.cwd / body_file).read_text()
        except OSError as exc:
            return GhOutcome(_forge.EXIT_ERROR, stderr=f"{exc}\n")
    title = _text(values, "title")
    fill = bool(values.get("fill") or values.get("fill-first"))
    if values.get("fill") and values.get("fill-first"):
        raise _FlagError("`--fill` is not supported with `--fill-first`")
    # pkg/cmd/pr/create/create.go, for a caller without a terminal.
    if not fill and (title is None or body is None):
        raise _FlagError(
            "must provide `--title` and `--body` (or `--fill` or `fill-first` or "
            "`--fillverbose`) when not running interactively"
        )
    return _CreateRequest(
        title=title,
        body=body,
        fill=fill,
        fill_first=bool(values.get("fill-first")),
        draft=bool(values.get("draft")),
        head=_text(values, "head"),
        base=_text(values, "base"),
        repo=_text(values, "repo"),
    )


def _create_head(inv: _Invocation, request: _CreateRequest) -> str | GhOutcome:
    """The PR's head branch: ``--head`` (``owner:branch`` too) or the current branch; warns
    about uncommitted changes as gh does."""
    if request.head is None:
        branch = current_branch(inv.cwd)
        if branch is None:
            return GhOutcome(
                _forge.EXIT_ERROR,
                stderr="could not determine the current branch: git: not on any branch\n",
            )
        head = branch
    else:
        head = request.head.split(":", 1)[-1]
    changes = _uncommitted_count(inv.cwd)
    if changes:
        inv.warnings += f"Warning: {changes} uncommitted change{'s' if changes != 1 else ''}\n"
    return head


def _create_base(inv: _Invocation, request: _CreateRequest, head: str) -> str | GhOutcome:
    """The PR's base branch, once the head is known to be pushed and different from it."""
    # Real gh accepts the current branch as pushed only when some remote's copy of it is at
    # HEAD; otherwise, without a terminal to ask where to push, it aborts (--head skips this).
    # We ask the origin itself rather than the local remote-tracking ref: the server is what a
    # PR is made of.
    if request.head is None and (inv.fault_at(("must_push",)) or not _pushed(inv.cwd, head)):
        return _forge.must_push_outcome()
    base = request.base or inv.forge.default_branch
    if head == base:
        return GhOutcome(
            _forge.EXIT_ERROR,
            stderr=f"must be on a branch named differently than {go_quote(base)}\n",
        )
    return base


def _already_open(inv: _Invocation, head: str, base: str) -> GhOutcome | None:
    """gh's answer when a PR from ``head`` into ``base`` is open already (or said to be)."""
    forge = inv.forge
    if inv.fault_at(("already_exists",)):
        existing = forge.record_for(head)
        # Injected with no PR behind it: GitHub's search lagging behind a PR someone else just
        # opened; the URL names the number that PR would have.
        url = existing.url if existing is not None else forge.pr_url(forge.next_number())
        return _forge.already_exists_outcome(head, base, url)
    existing = forge.record_for(head)
    if existing is not None and existing.state == "OPEN" and existing.base == base:
        return _forge.already_exists_outcome(head, base, existing.url)
    return None


def _title_and_body(
    inv: _Invocation, request: _CreateRequest, head: str, base: str
) -> tuple[str, str] | GhOutcome:
    """The title and body given, or (``--fill``, ``--fill-first``) made from the commits."""
    title, body = request.title, request.body
    if request.fill:
        try:
            commits = _commits(inv.cwd, _tracking(inv.cwd, base), head)
        except GitError as exc:
            return GhOutcome(
                _forge.EXIT_ERROR,
                stderr=f"could not compute title or body defaults: {exc.stderr.strip()}\n",
            )
        if request.fill_first:
            fill_title, fill_body = commits[-1]
        else:
            fill_title = _humanize(head)
            fill_body = "".join(f"- **{subject}**\n" for subject, _ in reversed(commits))
        title = fill_title if title is None else title
        body = fill_body if body is None else body
    if not title:
        return GhOutcome(_forge.EXIT_ERROR, stderr="pull request title must not be blank\n")
    return title, body or ""


def _open_pull_request(
    inv: _Invocation, head: str, base: str, title: str, body: str, *, draft: bool
) -> GhOutcome:
    if inv.fault_at(("no_commits",)):
        return _forge.no_commits_outcome(base, head)
    try:
        pr = inv.forge.open_pull_request(head=head, base=base, title=title, body=body, draft=draft)
    except _forge.PullRequestExists as exc:  # another agent won the race
        return _forge.already_exists_outcome(head, base, exc.existing.url)
    except _forge.NoCommitsBetween as exc:
        return _forge.no_commits_outcome(base, head, head_missing=exc.head_missing)
    # create.go submitPR: the URL alone on stdout.
    return GhOutcome(0, stdout=pr.url + "\n")


def _pushed(cwd: Path, branch: str) -> bool:
    local = head_sha(cwd)
    try:
        remote = remote_sha(cwd, "origin", branch)
    except GitError:
        return False
    return local is not None and local == remote


def _tracking(cwd: Path, base: str) -> str:
    """gh compares against ``origin/<base>`` when the repo has an origin remote."""
    ref = f"refs/remotes/origin/{base}"
    proc = run_git(["rev-parse", "--verify", "--quiet", ref], cwd=cwd, check=False)
    return f"origin/{base}" if proc.returncode == 0 else base


def _repo_not_found(repo: str) -> GhOutcome:
    # GitHub's GraphQL error for an unknown repository, as gh prints GraphQL errors.
    return GhOutcome(
        _forge.EXIT_ERROR,
        stderr=f"GraphQL: Could not resolve to a Repository with the name '{repo}'. (repository)\n",
    )


# ---------------------------------------------------------------------- pr view / pr list


def _json_fields(values: Mapping[str, str | bool]) -> list[str] | None:
    raw = _text(values, "json")
    if raw is None:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    available = "\n  ".join(_forge.GH_JSON_FIELDS)
    for name in fields:
        if name not in _forge.GH_JSON_FIELDS:
            # pkg/cmdutil/json_flags.go
            raise _JsonFieldError(
                f"Unknown JSON field: {go_quote(name)}\nAvailable fields:\n  {available}"
            )
    if not fields:
        raise _JsonFieldError(
            f"Specify one or more comma-separated fields for `--json`:\n  {available}"
        )
    return fields


class _JsonFieldError(OrchRecoveryError):
    """gh's JSONFlagError: printed alone (no usage), exit 1."""


def _export(pr: StoredPullRequest, fields: Sequence[str]) -> dict[str, object]:
    data = pr.gh_json()
    return {name: data[name] for name in fields}


def _json_line(value: object) -> str:
    # Without a terminal gh writes compact JSON, HTML left unescaped, and a newline.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


_VIEW_FLAGS = (_Flag("json"), _Flag("repo", "R"), _Flag("comments", "c", takes_value=False))


def _pr_view(inv: _Invocation, args: Sequence[str]) -> GhOutcome:
    if (outcome := inv.auth_check()) is not None:
        return outcome
    values, positionals = _parse_flags(args, _VIEW_FLAGS)
    if len(positionals) > 1:
        raise _FlagError(f"accepts at most 1 arg(s), received {len(positionals)}")
    fields = _json_fields(values)
    repo = _text(values, "repo")
    if repo is not None and repo != inv.forge.owner_repo:
        return _repo_not_found(repo)
    if (outcome := inv.api_faults()) is not None:
        return outcome
    pr, problem = _find(inv, positionals[0] if positionals else None)
    if pr is None:
        return problem
    if fields is not None:
        return GhOutcome(0, stdout=_json_line(_export(pr, fields)))
    state = "DRAFT" if pr.draft and pr.state == "OPEN" else pr.state
    # pkg/cmd/pr/view/view.go printRawPrPreview: tab-separated "key:\tvalue" lines, then body.
    raw = (
        f"title:\t{pr.title}\nstate:\t{state}\nauthor:\t{pr.author}\nlabels:\t\n"
        f"assignees:\t\nreviewers:\t\nprojects:\t\nmilestone:\t\nnumber:\t{pr.number}\n"
        f"url:\t{pr.url}\nauto-merge:\tdisabled\n--\n{pr.body}\n"
    )
    return GhOutcome(0, stdout=raw)


def _find(inv: _Invocation, selector: str | None) -> tuple[StoredPullRequest | None, GhOutcome]:
    forge = inv.forge
    if selector is None:
        branch = current_branch(inv.cwd)
        if branch is None:
            return None, GhOutcome(
                _forge.EXIT_ERROR,
                stderr="could not determine current branch: git: not on any branch\n",
            )
        selector = branch
    prefix = f"https://github.com/{forge.owner_repo}/pull/"
    number_text = selector.removeprefix(prefix).removeprefix("#")
    if number_text.isdigit():
        pr = forge.record(int(number_text))
        if pr is None:
            # GitHub's GraphQL error for a missing PR number.
            return None, GhOutcome(
                _forge.EXIT_ERROR,
                stderr="GraphQL: Could not resolve to a PullRequest with the number of "
                f"{int(number_text)}. (repository.pullRequest)\n",
            )
        return pr, GhOutcome(0)
    pr = forge.record_for(selector.split(":", 1)[-1])
    if pr is None:
        # pkg/cmd/pr/shared/finder.go NotFoundError.
        return None, GhOutcome(
            _forge.EXIT_ERROR,
            stderr=f"no pull requests found for branch {go_quote(selector)}\n",
        )
    return pr, GhOutcome(0)


_LIST_FLAGS = (
    _Flag("json"),
    _Flag("head", "H"),
    _Flag("base", "B"),
    _Flag("state", "s"),
    _Flag("limit", "L"),
    _Flag("repo", "R"),
)
_STATE_FILTERS = {
    "open": ("OPEN",),
    "closed": ("CLOSED", "MERGED"),
    "merged": ("MERGED",),
    "all": _forge.PR_STATES,
}


def _pr_list(inv: _Invocation, args: Sequence[str]) -> GhOutcome:
    if (outcome := inv.auth_check()) is not None:
        return outcome
    values, positionals = _parse_flags(args, _LIST_FLAGS)
    if positionals:
        raise _FlagError(f'unknown command {go_quote(positionals[0])} for "gh pr list"')
    state = _text(values, "state") or "open"
    if state not in _STATE_FILTERS:
        # pflag's enum error as gh's StringEnumFlag words it.
        raise _FlagError(
            f'invalid argument "{state}" for "-s, --state" flag: valid values are '
            "{open|closed|merged|all}"
        )
    limit_text = _text(values, "limit") or "30"
    if not limit_text.isdigit():
        raise _FlagError(
            f'invalid argument "{limit_text}" for "-L, --limit" flag: '
            f'strconv.ParseInt: parsing "{limit_text}": invalid syntax'
        )
    limit = int(limit_text)
    if limit < 1:
        return GhOutcome(_forge.EXIT_ERROR, stderr=f"invalid value for --limit: {limit}\n")
    fields = _json_fields(values)
    repo = _text(values, "repo")
    if repo is not None and repo != inv.forge.owner_repo:
        return _repo_not_found(repo)
    if (outcome := inv.api_faults()) is not None:
        return outcome
    head, base = _text(values, "head"), _text(values, "base")
    chosen = [
        pr
        for pr in reversed(inv.forge.records())  # newest first, as GitHub lists them
        if pr.state in _STATE_FILTERS[state]
        and (head is None or pr.head == head)
        and (base is None or pr.base == base)
    ][:limit]
    if fields is not None:
        return GhOutcome(0, stdout=_json_line([_export(pr, fields) for pr in chosen]))
    # Without a terminal: number, title, head, state, created, tab-separated (nothing at all
    # when there are no results).
    lines = "".join(
        f"{pr.number}\t{pr.title}\t{pr.head}\t{'DRAFT' if pr.draft else pr.state}\t"
        f"{pr.created_at}\n"
        for pr in chosen
    )
    return GhOutcome(0, stdout=lines)


# ---------------------------------------------------------------------- auth status, dispatch

_STATUS_FLAGS = (
    _Flag("hostname", "h"),
    _Flag("show-token", "t", takes_value=False),
    _Flag("active", "a", takes_value=False),
)


def _auth_status(inv: _Invocation, args: Sequence[str]) -> GhOutcome:
    values, positionals = _parse_flags(args, _STATUS_FLAGS)
    if positionals:
        raise _FlagError(f'unknown command {go_quote(positionals[0])} for "gh auth status"')
    hostname = _text(values, "hostname")
    if hostname is not None and hostname != "github.com":
        return GhOutcome(
            _forge.EXIT_ERROR, stderr=f"You are not logged into any accounts on {hostname}\n"
        )
    kind = inv.fault_at(("logged_out", "bad_credentials", "unreachable"))
    if kind is not None:
        return _forge.api_fault_outcome(kind, "auth status", login=inv.forge.login)
    return _forge.auth_status_ok(inv.forge.login)


_Handler = Callable[[_Invocation, Sequence[str]], GhOutcome]
_COMMANDS: dict[str, tuple[_Handler, Sequence[_Flag]]] = {
    "pr create": (_pr_create, _CREATE_FLAGS),
    "pr view": (_pr_view, _VIEW_FLAGS),
    "pr list": (_pr_list, _LIST_FLAGS),
    "auth status": (_auth_status, _STATUS_FLAGS),
}
_GROUPS = {"pr": _PR_USAGE, "auth": _AUTH_USAGE}
_ALIASES = {"new": "create", "ls": "list"}


def _version() -> str:
    return (
        f"gh version {GH_VERSION} ({GH_BUILD_DATE})\n"
        f"https://github.com/cli/cli/releases/tag/v{GH_VERSION}\n"
    )


def _unknown(name: str, parent: str, usage: str) -> GhOutcome:
    # cobra's wording; gh's printError adds a blank line and the usage after it.
    return GhOutcome(
        _forge.EXIT_ERROR, stderr=f'unknown command {go_quote(name)} for "{parent}"\n\n{usage}\n'
    )


def run(forge: Forge, args: Sequence[str], cwd: Path) -> tuple[GhOutcome, str | None]:
    """Answer one ``gh`` invocation; the outcome and the injected fault it met (if any)."""
    if not args or args[0] in ("--help", "-h", "help"):
        return GhOutcome(
            0, stdout="Work seamlessly with GitHub from the command line.\n\n" + _ROOT_USAGE
        ), None
    if args[0] in ("--version", "version"):
        return GhOutcome(0, stdout=_version()), None
    group = args[0]
    if group not in _GROUPS:
        if group.startswith("-"):
            return GhOutcome(
                _forge.EXIT_ERROR, stderr=f"unknown flag: {group}\n\n{_ROOT_USAGE}\n"
            ), None
        return _unknown(group, "gh", _ROOT_USAGE), None
    if len(args) < 2 or args[1] in ("--help", "-h"):
        return GhOutcome(0, stdout=_GROUPS[group]), None
    sub = _ALIASES.get(args[1], args[1])
    command = f"{group} {sub}"
    if command not in _COMMANDS:
        return _unknown(args[1], f"gh {group}", _GROUPS[group]), None
    handler, flags = _COMMANDS[command]
    if "--help" in args[2:]:
        return GhOutcome(0, stdout=_usage(command, flags)), None
    inv = _Invocation(forge, cwd, command)
    try:
        outcome = handler(inv, args[2:])
    except _FlagError as exc:
        outcome = GhOutcome(_forge.EXIT_ERROR, stderr=f"{exc}\n\n{_usage(command, flags)}\n")
    except _JsonFieldError as exc:
        outcome = GhOutcome(_forge.EXIT_ERROR, stderr=f"{exc}\n")
    except GitError as exc:
        outcome = GhOutcome(_forge.EXIT_ERROR, stderr=f"{exc}\n")
    if inv.warnings:
        outcome = GhOutcome(outcome.exit_code, outcome.stdout, inv.warnings + outcome.stderr)
    return outcome, inv.fault


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    started = time.time()
    root = os.environ.get(_forge.ROOT_ENV)
    if not root:
        sys.stderr.write(
            f"gh (forge): {_forge.ROOT_ENV} is not set; run the gh shim that "
            "install_gh_shim wrote\n"
        )
        return _forge.EXIT_ERROR
    try:
        forge = Forge.open(Path(root))
    except ForgeError as exc:
        sys.stderr.write(f"gh (forge): {exc}\n")
        return _forge.EXIT_ERROR
    cwd = Path.cwd()
    try:
        outcome, fault = run(forge, args, cwd)
    except ForgeError as exc:
        outcome, fault = GhOutcome(_forge.EXIT_ERROR, stderr=f"gh (forge): {exc}\n"), None
    sys.stdout.write(outcome.stdout)
    sys.stdout.flush()
    sys.stderr.write(outcome.stderr)
    sys.stderr.flush()
    forge.record_call(
        args,
        cwd=str(cwd),
        exit_code=outcome.exit_code,
        started=started,
        ended=time.time(),
        fault=fault,
    )
    return outcome.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
