"""The text patterns that point at a failure reason: one table, real wording, cited.

Each :class:`Pattern` row says which :class:`~pytest_orch_recovery.engine.model.Reason` a line of
agent output points at, how strongly (``weight``), and whether the error it reports *stopped
the run* (``stops_run``) or is a warning / an error the tool retried past. Every row carries
a real ``sample`` line and a ``source`` naming where that wording was seen (a public issue
thread, a repository file, or this machine's git 2.39), so the table is tested against the
world rather than against itself.

Rows are ordered most-specific first: a line is attributed to the *first* row that matches
it, so e.g. Claude Code's ``API Error: Operation aborted`` (what an interrupt looks like
mid-request) is read as SIGINT before the generic ``API Error`` rows see it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_orch_recovery.engine.model import Reason

# Only the end of a long log is scanned: the error that stopped a run is at the end, and
# the classifier runs thousands of times a second in simulation.
TAIL_BYTES = 64 * 1024

# The Anthropic error ``type`` -> HTTP status, per the API's documented error table
# (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class Extracted:
    """Figures a pattern can pull out of its line."""

    api_status: int | None = None
    retry_after: float | None = None  # seconds


Extractor = Callable[["re.Match[str]"], Extracted]


@dataclass(frozen=True)
class Pattern:
    """One row of the table. ``regex`` is compiled once, at import."""

    name: str
    reason: Reason
    regex: re.Pattern[str]
    weight: float  # 0..1: how strongly a matching line alone points at ``reason``
    stops_run: bool  # an error that ended the run, not a warning or a retried error
    sample: str  # a real line this row must match (tested)
    source: str  # where the wording comes from
    api_status: int | None = None  # constant status when the wording implies one
    extract: Extractor | None = None


@dataclass(frozen=True)
class Match:
    """A pattern row that matched one line of one source."""

    pattern: Pattern
    source: str
    line: int  # 1-based, counted in the whole text even when only its tail was scanned
    text: str  # the matching line, stripped and cut to 200 characters
    api_status: int | None = None
    retry_after: float | None = None

    @property
    def reason(self) -> Reason:
        return self.pattern.reason

    @property
    def stops_run(self) -> bool:
        return self.pattern.stops_run


# --------------------------------------------------------------------------- extractors


def _status_group(m: re.Match[str]) -> Extracted:
    """Named groups ``status`` (HTTP status) and ``retry`` (Retry-After seconds)."""
    groups = m.groupdict()
    status = groups.get("status")
    retry = groups.get("retry")
    return Extracted(
        api_status=int(status) if status else None,
        retry_after=float(retry) if retry else None,
    )


def _anthropic_error_type(m: re.Match[str]) -> Extracted:
    status = m.groupdict().get("status")
    if status:
        return Extracted(api_status=int(status))
    return Extracted(api_status=_ANTHROPIC_ERROR_STATUS.get(m.group("etype")))


def _c(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags | re.MULTILINE)


_CC_ISSUES = "https://github.com/anthropics/claude-code/issues/"
_GH_CREATE = "cli/cli pkg/cmd/pr/create/create.go"
_GIT_HERE = "git 2.39 on this machine (reproduced)"

# --------------------------------------------------------------------------- the table

PATTERNS: tuple[Pattern, ...] = (
    # ---- SIGINT: an interrupt, seen from inside the agent
    Pattern(
        "cc_operation_aborted",
        Reason.SIGINT,
        _c(r"API Error: (?:Operation aborted|Request was aborted)"),
        0.7,
        True,
        "  ⎿  API Error: Operation aborted",
        _CC_ISSUES + "7218",
    ),
    Pattern(
        "cc_interrupted_by_user",
        Reason.SIGINT,
        _c(r"\[Request interrupted by user|(?<!\S)Interrupted by user\b"),
        0.7,
        True,
        "  ⎿  Interrupted by user",
        _CC_ISSUES + "7218",
    ),
    Pattern(
        "python_keyboard_interrupt",
        Reason.SIGINT,
        _c(r"^[ \t]*KeyboardInterrupt\b"),
        0.7,
        True,
        "KeyboardInterrupt",
        "cpython Python/errors.c: the default SIGINT handler raises KeyboardInterrupt",
    ),
    # ---- PERMISSION: Claude Code permission refusals and prompts
    Pattern(
        "cc_root_skip_permissions",
        Reason.PERMISSION,
        _c(r"--dangerously-skip-permissions cannot be used with root/sudo privileges"),
        0.95,
        True,
        "--dangerously-skip-permissions cannot be used with root/sudo privileges "
        "for security reasons",
        _CC_ISSUES + "9184 and #58150 (cli.js: console.error then process.exit(1))",
    ),
    Pattern(
        "cc_permission_not_granted",
        Reason.PERMISSION,
        _c(r"Claude requested permissions to \w+(?: to)? .*but you haven't granted it yet"),
        0.85,
        True,
        "Claude requested permissions to write to /Users/XX/Documents/Project/frontend/"
        "app/components/ui/DataTable.tsx, but you haven't granted it yet.",
        "https://github.com/siteboon/claudecodeui/issues/122",
    ),
    Pattern(
        "cc_dont_ask_denied",
        Reason.PERMISSION,
        _c(r"Permission to use \w+ has been denied because Claude Code is running in"),
        0.8,
        True,
        "Permission to use Bash has been denied because Claude Code is running in "
        "don't ask mode.",
        "https://github.com/Ivy-Interactive/Ivy-Tendril/issues/604",
    ),
    Pattern(
        "cc_requires_approval",
        Reason.PERMISSION,
        _c(r"(?:This command|The following part) requires approval"),
        0.75,
        True,
        "This Bash command contains multiple operations. The following part requires "
        "approval: head -5 | xargs -I {}",
        "https://github.com/wcygan/dotfiles/issues/15",
    ),
    Pattern(
        "cc_prompt_do_you_want",
        Reason.PERMISSION,
        _c(r"Do you want to (?:create|make this edit to|proceed)\b[^?\n]*\?"),
        0.7,
        True,  # a headless agent waiting on this prompt goes no further
        "Do you want to create test-permission.md?",
        _CC_ISSUES + "49378 (also #16573)",
    ),
    # ---- API errors: retried ones first (they do not stop the run)
    Pattern(
        "cc_api_retrying",
        Reason.API_ERROR,
        _c(
            r"API Error \((?:(?P<status>\d{3})\b)?[^\n]*?\)\s*·\s*Retrying in \d+ seconds?"
        ),
        0.25,
        False,
        '  ⎿  API Error (529 {"type":"error","error":{"type":"overloaded_error",'
        '"message":"Overloaded"}}) · Retrying in 4 seconds… (attempt 4/10)',
        _CC_ISSUES + "2919",
        extract=_status_group,
    ),
    Pattern(
        "cc_api_repeated_529",
        Reason.API_ERROR,
        _c(r"API Error: Repeated 529 Overloaded errors"),
        0.9,
        True,
        "API Error: Repeated 529 Overloaded errors",
        "https://github.com/lbjlaq/Antigravity-Manager/issues/183",
        api_status=529,
    ),
    Pattern(
        "cc_api_rate_limit",
        Reason.API_ERROR,
        _c(r"API Error: Rate limit reached|API Error: Request rejected \(429\)"),
        0.9,
        True,
        "API Error: Rate limit reached",
        _CC_ISSUES + "32884 (also #69023)",
        api_status=429,
    ),
    Pattern(
        "cc_usage_limit",
        Reason.API_ERROR,
        _c(r"Claude(?: AI)? usage limit reached"),
        0.9,
        True,
        "Claude AI usage limit reached|1753088400",
        _CC_ISSUES + "4070 (also #2490)",
        api_status=429,
    ),
    Pattern(
        "cc_invalid_api_key",
        Reason.API_ERROR,
        _c(r"Invalid API key · (?:Please run /login|Fix external API key)"),
        0.9,
        True,
        "Invalid API key · Please run /login",
        _CC_ISSUES + "6331 (also #9694)",
        api_status=401,
    ),
    Pattern(
        "cc_api_request_timed_out",
        Reason.API_ERROR,  # the API client's own timeout, not the supervisor's
        _c(r"API Error: Request timed out"),
        0.85,
        True,
        "  ⎿  API Error: Request timed out.",
        _CC_ISSUES + "2728",
    ),
    Pattern(
        "cc_api_connection_error",
        Reason.API_ERROR,
        _c(r"API Error: Connection error"),
        0.85,
        True,
        "API Error: Connection error.",
        _CC_ISSUES + "14407 (debug log: 'Error: Connection error.')",
    ),
    Pattern(
        "cc_api_error_status",
        Reason.API_ERROR,
        _c(r"API Error: (?P<status>[45]\d\d)\b"),
        0.9,
        True,
        'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":'
        '"Overloaded. https://docs.claude.com/en/api/errors"},"request_id":'
        '"req_011CZTEFvft13DajMTp9pp64"}',
        _CC_ISSUES + "39745 (500 api_error: #48596)",
        extract=_status_group,
    ),
    Pattern(
        "anthropic_http_not_retryable",
        Reason.API_ERROR,
        _c(r"failed with status (?P<status>\d{3}) in \d+ms - error; not retryable"),
        0.85,
        True,
        "post https://api.anthropic.com/v1/messages?beta=true failed with status 403 "
        "in 341ms - error; not retryable",
        _CC_ISSUES + "79500",
        extract=_status_group,
    ),
    Pattern(
        "anthropic_retry_after_header",
        Reason.API_ERROR,
        _c(r"^[ \t]*retry-after:\s*\"?(?P<retry>\d+(?:\.\d+)?)\"?\s*$", re.IGNORECASE),
        0.2,
        False,
        "retry-after: 30",
        "https://docs.anthropic.com/en/api/rate-limits (429 responses carry retry-after)",
        extract=_status_group,
    ),
    Pattern(
        "anthropic_error_body",
        Reason.API_ERROR,
        _c(
            r"(?:Error: (?P<status>\d{3}) )?\{\s*\"type\":\s*\"error\",\s*\"error\":\s*\{"
            r"[^}]*?\"type\":\s*\"(?P<etype>[a-z_]+_error)\""
        ),
        0.7,
        True,
        'Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This '
        "request would exceed your account's rate limit. Please try again later.\"}}",
        _CC_ISSUES + "9046",
        extract=_anthropic_error_type,
    ),
    # ---- GitHub (gh) failures
    Pattern(
        "gh_pr_already_exists",
        Reason.GITHUB_ERROR,
        _c(r"a pull request for branch \"[^\"]+\"(?: into branch \"[^\"]+\")? already exists"),
        0.85,
        True,
        'a pull request for branch "task-agent-5030" into branch "main" already exists:',
        _GH_CREATE + " (createRun)",
    ),
    Pattern(
        "gh_rest_pr_already_exists",
        Reason.GITHUB_ERROR,
        _c(r"A pull request already exists for [\w.-]+:\S+"),
        0.8,
        True,
        '      "message": "A pull request already exists for yoyodyne-corporation:new_branch."',
        "https://github.com/gm3dmo/the-power/issues/175 (REST 422 Validation Failed)",
    ),
    Pattern(
        "gh_no_commits_between",
        Reason.GITHUB_ERROR,
        _c(r"GraphQL: No commits between \S+ and \S+"),
        0.85,
        True,
        "pull request create failed: GraphQL: No commits between main and "
        "prd-26-usage-intelligence-refinement (createPullRequest)",
        "gh output quoted in public repositories (find_string 'GraphQL: No commits between')",
    ),
    Pattern(
        "gh_must_push_first",
        Reason.GITHUB_ERROR,
        _c(r"you must first push the current branch to a remote"),
        0.85,
        True,
        "aborted: you must first push the current branch to a remote, or use the --head flag",
        _GH_CREATE + " (NewCreateContext)",
    ),
    Pattern(
        "gh_bad_credentials",
        Reason.GITHUB_ERROR,
        _c(r"HTTP 401: (?:Bad credentials|This endpoint requires you to be authenticated)"),
        0.9,
        True,
        "unable to determine base repository: HTTP 401: Bad credentials "
        "(https://api.github.com/graphql)",
        "https://github.com/cli/cli/issues/10032 (also #8729)",
    ),
    Pattern(
        "gh_not_logged_in",
        Reason.GITHUB_ERROR,
        _c(r"To get started with GitHub CLI, please run:\s+gh auth login"),
        0.85,
        True,
        "To get started with GitHub CLI, please run:  gh auth login",
        "https://github.com/cli/cli/issues/5927",
    ),
    Pattern(
        "gh_connect_error",
        Reason.GITHUB_ERROR,
        _c(r"error connecting to api\.github\.com"),
        0.8,
        True,
        "error connecting to api.github.com",
        "https://github.com/cli/cli/issues/13147",
    ),
    Pattern(
        "gh_pr_create_failed",
        Reason.GITHUB_ERROR,
        _c(r"pull request create failed: |GraphQL: [^\n]+\((?:createPullRequest|\w+)\)"),
        0.7,
        True,
        "pull request create failed: GraphQL: Head sha can't be blank, Base sha can't be "
        "blank (createPullRequest)",
        _GH_CREATE + " (submitPR wraps errors as 'pull request create failed: %w')",
    ),
    # ---- git failures
    Pattern(
        "git_index_lock",
        Reason.GIT_ERROR,
        _c(r"Unable to create '[^'\n]*index\.lock': File exists"),
        0.8,
        True,
        "fatal: Unable to create '/tmp/gx/b/.git/index.lock': File exists.",
        _GIT_HERE + "; git/git lockfile.c unable_to_lock_message",
    ),
    Pattern(
        "git_push_rejected",
        Reason.GIT_ERROR,
        _c(r"! \[(?:rejected|remote rejected)\]\s+\S+ -> \S+ \((?P<why>[^)]+)\)"),
        0.8,
        True,
        " ! [rejected]        main -> main (non-fast-forward)",
        _GIT_HERE + " ('(fetch first)' variant); git/git transport.c print_ref_status",
    ),
    Pattern(
        "git_failed_to_push",
        Reason.GIT_ERROR,
        _c(r"error: failed to push some refs to"),
        0.75,
        True,
        "error: failed to push some refs to '/tmp/gx/origin.git'",
        _GIT_HERE,
    ),
    Pattern(
        "git_worktree_checked_out",
        Reason.GIT_ERROR,
        _c(r"fatal: '[^'\n]+' is already (?:checked out|used by worktree) at '"),
        0.8,
        True,
        "fatal: 'x' is already checked out at '/tmp/gx/wt2'",
        _GIT_HERE + " (git >= 2.42 says 'is already used by worktree at')",
    ),
    Pattern(
        "git_not_a_repository",
        Reason.GIT_ERROR,
        _c(r"fatal: not a git repository"),
        0.8,
        True,
        "fatal: not a git repository (or any of the parent directories): .git",
        _GIT_HERE + "; git/git setup.c",
    ),
    Pattern(
        "git_merge_conflict",
        Reason.GIT_ERROR,
        _c(
            r"CONFLICT \([\w/ ]+\): |Automatic merge failed; fix conflicts and then commit"
        ),
        0.75,
        True,
        "CONFLICT (content): Merge conflict in fake3.py",
        "git/git merge-ort.c ('CONFLICT (%s): Merge conflict in %s')",
    ),
    # ---- test runners
    Pattern(
        "pytest_summary_failed",
        Reason.TEST_FAILURE,
        _c(r"^=+ (?:[^=\n]*\b)?\d+ (?:failed|errors?)\b[^=\n]* in \d+(?:\.\d+)?s\b[^=\n]*=+\s*$"),
        0.85,
        True,
        "========================= 2 failed, 3 passed in 0.12s =========================",
        "pytest src/_pytest/terminal.py (summary_stats)",
    ),
    Pattern(
        "pytest_failed_test",
        Reason.TEST_FAILURE,
        _c(r"^(?:FAILED|ERROR) \S+::\S+"),
        0.6,
        True,
        "FAILED tests/test_fake3.py::test_runs - AssertionError: assert 1 == 2",
        "pytest src/_pytest/terminal.py (short test summary info)",
    ),
    Pattern(
        "unittest_failed",
        Reason.TEST_FAILURE,
        _c(r"^FAILED \((?:failures|errors)=\d+"),
        0.8,
        True,
        "FAILED (failures=1)",
        "cpython Lib/unittest/runner.py (TextTestRunner.run)",
    ),
    Pattern(
        "jest_tests_failed",
        Reason.TEST_FAILURE,
        _c(r"^Tests:\s+\d+ failed"),
        0.8,
        True,
        "Tests:       1 failed, 4 passed, 5 total",
        "jestjs/jest packages/jest-reporters/src/SummaryReporter.ts (getSummary)",
    ),
    Pattern(
        "go_test_fail",
        Reason.TEST_FAILURE,
        _c(r"^[ \t]*--- FAIL: \S+|^FAIL\t\S+"),
        0.8,
        True,
        "--- FAIL: TestFake3 (0.00s)",
        "golang/go src/testing/testing.go (--- FAIL) and cmd/go test (FAIL\\t<pkg>)",
    ),
    Pattern(
        "npm_test_failed",
        Reason.TEST_FAILURE,
        _c(r"npm ERR! Test failed\."),
        0.75,
        True,
        "npm ERR! Test failed.  See above for more details.",
        "npm/cli v6 lib/test.js",
    ),
    # ---- timeouts (the supervisor's, not the API client's)
    Pattern(
        "coreutils_timeout_verbose",
        Reason.TIMEOUT,
        _c(r"timeout: sending signal \w+ to command"),
        0.85,
        True,
        "timeout: sending signal TERM to command \u2018claude\u2019",  # quote() in a UTF-8 locale
        "coreutils src/timeout.c (--verbose)",
    ),
    # ---- killed: OOM and signals reported by the shell
    Pattern(
        "kernel_oom_kill",
        Reason.KILLED,
        _c(r"Out of memory: Kill(?:ed)? process \d+"),
        0.9,
        True,
        "Out of memory: Killed process 4242 (node) total-vm:10240000kB, anon-rss:8000000kB",
        "torvalds/linux mm/oom_kill.c (__oom_kill_process)",
    ),
    Pattern(
        "node_heap_oom",
        Reason.KILLED,
        _c(r"JavaScript heap out of memory"),
        0.85,
        True,
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "nodejs/node deps/v8 (V8 fatal OOM message)",
    ),
    Pattern(
        "shell_killed",
        Reason.KILLED,
        _c(r"^(?:[\w./-]+: line \d+:\s+\d+ )?Killed(?:\s{2,}\S.*)?\s*$"),
        0.6,
        True,
        "bash: line 1:  4242 Killed                  claude -p \"$PROMPT\"",
        "bash jobs.c reports strsignal(SIGKILL) = 'Killed' for a killed job",
    ),
    Pattern(
        "shell_terminated",
        Reason.KILLED,
        _c(r"^(?:[\w./-]+: line \d+:\s+\d+ )?Terminated(?:\s{2,}\S.*)?\s*$"),
        0.5,
        True,
        "Terminated",
        "bash jobs.c reports strsignal(SIGTERM) = 'Terminated' for a terminated job",
    ),
)


def _first_row_per_line(
    text: str, line_starts: list[int]
) -> dict[int, tuple[int, re.Match[str]]]:
    """Line index -> (row index, match) of the first row, in table order, matching it."""
    found: dict[int, tuple[int, re.Match[str]]] = {}
    for row_index, row in enumerate(PATTERNS):
        # One C-level scan of the whole text per row is far cheaper than running every row
        # on every line from Python.
        for m in row.regex.finditer(text):
            line_index = bisect.bisect_right(line_starts, m.start()) - 1
            if line_index not in found:
                found[line_index] = (row_index, m)
            # later matches of this row on the same line add nothing
    return found


def _tail(text: str) -> tuple[str, int]:
    """The last ``TAIL_BYTES`` characters from a line start, and the lines skipped."""
    if len(text) <= TAIL_BYTES:
        return text, 0
    start = text.find("\n", len(text) - TAIL_BYTES)
    if start < 0:
        return text[-TAIL_BYTES:], text.count("\n", 0, len(text) - TAIL_BYTES)
    return text[start + 1 :], text.count("\n", 0, start + 1)


def match_lines(text: str, source: str) -> list[Match]:
    """Every line of ``text`` that a table row recognises, in line order.

    Each line is attributed to the first row (table order) that matches it. Only the last
    ``TAIL_BYTES`` of a long text are scanned; line numbers still count from the start.

    >>> [(m.line, m.pattern.name) for m in match_lines("ok\\nfatal: not a git repository", "x")]
    [(2, 'git_not_a_repository')]
    """
    if not text:
        return []
    tail, skipped = _tail(text)
    line_starts = [0]
    line_starts += [m.end() for m in re.finditer("\n", tail)]
    found = _first_row_per_line(tail, line_starts)
    out: list[Match] = []
    for line_index in sorted(found):
        row_index, m = found[line_index]
        row = PATTERNS[row_index]
        start = line_starts[line_index]
        end = tail.find("\n", start)
        line_text = tail[start : end if end >= 0 else len(tail)].strip()
        extracted = row.extract(m) if row.extract is not None else Extracted()
        out.append(
            Match(
                pattern=row,
                source=source,
                line=skipped + line_index + 1,
                text=line_text[:200],
                api_status=extracted.api_status or row.api_status,
                retry_after=extracted.retry_after,
            )
        )
    return out


def pattern_named(name: str) -> Pattern:
    """The row called ``name`` (KeyError if there is none)."""
    for row in PATTERNS:
        if row.name == name:
            return row
    raise KeyError(name)
