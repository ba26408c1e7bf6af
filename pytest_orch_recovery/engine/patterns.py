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

This module is data: the rows are exact, high-confidence evidence for wording someone has
seen. :mod:`.matcher` scans text with them, and :mod:`.cues` reads the causes behind
wording no row knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pytest_orch_recovery.engine.model import Reason

# The Anthropic error ``type`` -> HTTP status, per the API's documented error table
# (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_ERROR_STATUS: dict[str, int] = {
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
    return Extracted(api_status=ANTHROPIC_ERROR_STATUS.get(m.group("etype")))


def _litellm_class(m: re.Match[str]) -> Extracted:
    return Extracted(api_status=_LITELLM_STATUS.get(m.group("lclass")))


def _c(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags | re.MULTILINE)


_CC_ISSUES = "https://github.com/anthropics/claude-code/issues/"
_GH_CREATE = "cli/cli pkg/cmd/pr/create/create.go"
_GIT_HERE = "git 2.39 on this machine (reproduced)"
_CODEX_ISSUES = "https://github.com/openai/codex/issues/"
_GEMINI_ISSUES = "https://github.com/google-gemini/gemini-cli/issues/"
_OPENCODE_ISSUES = "https://github.com/anomalyco/opencode/issues/"
_GH_ISSUES = "https://github.com/cli/cli/issues/"
_CC_NPM = "npm @anthropic-ai/claude-code 2.1.328 (the CLI's own text)"
_HERE = "reproduced on this machine (Debian, bash 5, coreutils 9)"

# litellm exception class -> the HTTP status it stands for (litellm docs, "Exception Types").
_LITELLM_STATUS: dict[str, int] = {
    "RateLimitError": 429,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "BadRequestError": 400,
    "ContextWindowExceededError": 400,
    "InternalServerError": 500,
    "ServiceUnavailableError": 503,
    "UnprocessableEntityError": 422,
}

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
    Pattern(
        "codex_conversation_interrupted",
        Reason.SIGINT,
        # What Codex prints when Ctrl-C / Esc interrupts a turn (maintainer, openai/codex#12493).
        _c(r"Conversation interrupted - tell the model what to do differently"),
        0.7,
        True,
        "■ Conversation interrupted - tell the model what to do differently. Something went "
        "wrong? Hit `/feedback` to report the issue.",
        _CODEX_ISSUES + "20383 (Ctrl-C per #12493)",
    ),
    Pattern(
        "gemini_request_cancelled",
        Reason.SIGINT,
        # Gemini CLI's line after Esc / Ctrl-C cancels the turn in flight.
        _c(r"^[ \t]*(?:\u2139[ \t]*)?Request cancelled\.[ \t]*$"),
        0.6,
        True,
        " Request cancelled.",
        _GEMINI_ISSUES + "25436",
    ),
    Pattern(
        "aider_ctrl_c_again",
        Reason.SIGINT,
        # aider catches the first Ctrl-C and prints this; a second one exits.
        _c(r"\^C again to exit"),
        0.6,
        True,
        "^C again to exit",
        "https://github.com/joshuavial/aider.nvim/issues/20 (aider's interrupt message; "
        "Aider-AI/aider#3492)",
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
        "Permission to use Bash has been denied because Claude Code is running in don't ask mode.",
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
    Pattern(
        "cc_bypass_permissions_dialog",
        Reason.PERMISSION,
        # The acceptance dialog --dangerously-skip-permissions shows on first use: an agent
        # parked on it waits for a person, exactly like a permission prompt.
        _c(r"In Bypass Permissions mode, Claude Code will not ask for your approval"),
        0.8,
        True,
        "In Bypass Permissions mode, Claude Code will not ask for your approval before "
        "running potentially dangerous commands.",
        "https://github.com/MadAppGang/claudish/issues/31 (the dialog on screen)",
    ),
    Pattern(
        "cc_outside_working_dirs",
        Reason.PERMISSION,
        _c(
            # Terminal output wraps this long line; the head of the sentence is what survives.
            r"was blocked\. For security, Claude Code\b"
        ),
        0.8,
        True,
        "Output redirection to '/etc/fake3.md' was blocked. For security, Claude Code may "
        "only write to files in the allowed working directories for this session: /work/wt.",
        _CC_ISSUES + "22647 (cd variant: #1588, search variant: #5697)",
    ),
    Pattern(
        "codex_approval_prompt",
        Reason.PERMISSION,
        # Codex asking to run a command (both TUIs' wording): a headless agent parked here
        # waits for a person, as at Claude Code's "Do you want to ...?".
        _c(r"Would you like to run the following command\?|^[\s\u2502]*Allow command\?"),
        0.7,
        True,
        "  Would you like to run the following command?",
        _CODEX_ISSUES + "1260 (the older TUI's 'Allow command?': #392)",
    ),
    Pattern(
        "gemini_allow_execution_prompt",
        Reason.PERMISSION,
        _c(r"Allow execution of(?: MCP tool)?[: ][^\n]*|Yes, allow once"),
        0.7,
        True,
        'Allow execution of MCP tool "foo" from server "bar"?',
        _GEMINI_ISSUES + "3502 (shell form 'Allow execution of: ...': #19497)",
    ),
    Pattern(
        "opencode_permission_required",
        Reason.PERMISSION,
        _c(r"Permission required to run(?: this tool)?:"),
        0.75,
        True,
        "\u25c6  Permission required to run: Access file outside working directory: "
        "/workspace/memory-bank/projectbrief.md",
        _OPENCODE_ISSUES + "4023 (also #3419)",
    ),
    Pattern(
        "gemini_tool_denied_by_policy",
        Reason.PERMISSION,
        # Non-interactive Gemini CLI turns every ASK_USER decision into DENY
        # (google-gemini/gemini-cli#17737): the headless twin of a permission prompt.
        _c(r"Tool execution denied by policy"),
        0.85,
        True,
        "Error executing tool write_file: Tool execution denied by policy. You are in Plan "
        "Mode and cannot modify source code.",
        "https://github.com/google-gemini/gemini-cli/pull/17737",
    ),
    Pattern(
        "cursor_workspace_trust",
        Reason.PERMISSION,
        # cursor-agent -p in an untrusted directory refuses before doing anything.
        _c(r"Workspace Trust Required|Pass --trust, --yolo, or -f if you trust this directory"),
        0.85,
        True,
        "  ⚠ Workspace Trust Required",
        "https://github.com/escoffier-labs/brigade/pull/205 (also kprompt/kprompt#144)",
    ),
    Pattern(
        "codex_sandbox_failed",
        Reason.PERMISSION,
        # Codex's Linux sandbox refusing to run a command (Landlock / bubblewrap): the agent is
        # not permitted to act, restarting it unchanged cannot help.
        _c(r"error running landlock|bwrap: [^\n]*Permission denied|Sandbox\(LandlockRestrict\)"),
        0.8,
        True,
        "error running landlock: Sandbox(LandlockRestrict)",
        _CODEX_ISSUES + "8218 (bwrap: #23468)",
    ),
    # ---- API errors: retried ones first (they do not stop the run)
    Pattern(
        "cc_api_retrying",
        Reason.API_ERROR,
        _c(r"API Error \((?:(?P<status>\d{3})\b)?[^\n]*?\)\s*·\s*Retrying in \d+ seconds?"),
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
        "cc_credit_balance_low",
        Reason.API_ERROR,
        # Billing, not the agent: the API refuses every request until someone pays.
        _c(r"[Cc]redit balance (?:is )?too low"),
        0.9,
        True,
        "  ⎿  Credit balance too low · Add funds: https://platform.claude.com/settings/billing",
        _CC_ISSUES + "46277 (body text: #54566)",
        api_status=400,
    ),
    Pattern(
        "cc_oauth_expired",
        Reason.API_ERROR,
        # Login expiry is the model API refusing the credential (401), like an invalid key.
        _c(
            r"OAuth token has expired|OAuth (?:access )?token has been revoked|"
            r"Session expired\. Please run /login"
        ),
        0.9,
        True,
        'API Error: 401 {"type":"error","error":{"type":"authentication_error","message":'
        '"OAuth token has expired. Please obtain a new token or refresh your existing token."}}',
        _CC_ISSUES + "6459 (also #33811)",
        api_status=401,
    ),
    Pattern(
        "cc_tool_use_without_result",
        Reason.API_ERROR,
        # A 400 from the API on a transcript left broken (often by an interrupted tool call);
        # the request is rejected, so it is an API error whatever broke the transcript.
        _c(r"`?tool_use`? ids were found without `?tool_result`? blocks"),
        0.85,
        True,
        "messages.12: `tool_use` ids were found without `tool_result` blocks immediately "
        "after: toolu_0164dj1VZiRHAsW2rXJugiC2.",
        _CC_ISSUES + "7796 (also #5705, #8286)",
        api_status=400,
    ),
    Pattern(
        "cc_prompt_too_long",
        Reason.API_ERROR,
        # An invalid_request the CLI reports as its API error; the same prompt fails again.
        _c(r"\bPrompt is too long\b"),
        0.8,
        True,
        "Prompt is too long",
        _CC_ISSUES + "12312",
        api_status=400,
    ),
    Pattern(
        "cc_invalid_api_key",
        Reason.API_ERROR,
        _c(r"(?:Invalid API key|Not logged in) · (?:Please run /login|Fix external API key)"),
        0.9,
        True,
        "Invalid API key · Please run /login",
        _CC_ISSUES + "6331 (also #9694; 'Not logged in' variant: " + _CC_NPM + ")",
        api_status=401,
    ),
    Pattern(
        "cc_api_request_timed_out",
        Reason.API_ERROR,  # the API client's own timeout, not the supervisor's
        _c(r"API Error: (?:Request|The operation) timed out"),
        0.85,
        True,
        "  ⎿  API Error: Request timed out.",
        _CC_ISSUES + "2728 ('The operation timed out': #69173)",
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
        # Header names are case-insensitive; logs print them in these spellings.
        _c(r"^[ \t]*(?:[Rr]etry-[Aa]fter|RETRY-AFTER):\s*\"?(?P<retry>\d+(?:\.\d+)?)\"?\s*$"),
        0.2,
        False,
        "retry-after: 30",
        "https://docs.anthropic.com/en/api/rate-limits (429 responses carry retry-after)",
        extract=_status_group,
    ),
    Pattern(
        "anthropic_unified_limit_rejected",
        Reason.API_ERROR,
        # The subscription's usage limit as the API states it: Claude Code keys its "You've
        # hit your limit" on this header, and the reset on anthropic-ratelimit-unified-reset.
        _c(r"anthropic-ratelimit-unified-status:\s*rejected"),
        0.8,
        True,
        "anthropic-ratelimit-unified-status: rejected",
        "https://github.com/router-for-me/CLIProxyAPI/pull/3148 (a captured 429's headers)",
        api_status=429,
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
    Pattern(
        "codex_stream_retrying",
        Reason.API_ERROR,
        # Codex retries a dropped stream up to 5 times; these lines are warnings.
        _c(r"; retrying \d+/\d+ in [\d.]+m?s|Reconnecting\.\.\. \d+/\d+"),
        0.25,
        False,
        "⚠️ stream error: stream disconnected before completion: Rate limit is exceeded. "
        "Try again in 4 seconds.; retrying 1/5 in 209ms…",
        _CODEX_ISSUES + "3764 (Reconnecting...: #10059)",
    ),
    Pattern(
        "codex_usage_limit",
        Reason.API_ERROR,
        # The plan's quota, said the same way by Codex and by cursor-agent.
        # Claude Code says it the same way ("You've hit your limit · resets 3:30am"; 2.1.328:
        # "You've hit your 5-hour limit · resets 2:16pm (UTC)", docs/claude-code.md).
        _c("You['\u2019]ve hit your (?:(?:usage|session|5-hour|weekly|Opus|Sonnet) )?limit"),
        0.9,
        True,
        "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) "
        "or try again in 4 days 6 hours 37 minutes.",
        _CODEX_ISSUES + "4095 (also #3124; cursor-agent: cursor/cursor#3703; Claude Code: "
        "anthropics/claude-code#55147)",
        api_status=429,
    ),
    Pattern(
        "openai_rate_limit_reached",
        Reason.API_ERROR,
        _c(r"Rate limit reached for (?:organization [\w-]+ on|[\w./-]+ in organization)"),
        0.85,
        True,
        "  └ Stream disconnected before completion: Rate limit reached for organization "
        "org-ABC on tokens per min (TPM): Limit 250000, Used 250000, Requested 89623.",
        _CODEX_ISSUES + "10059 (also #7075)",
        api_status=429,
    ),
    Pattern(
        "codex_stream_disconnected",
        Reason.API_ERROR,
        _c(r"[Ss]tream disconnected before completion"),
        0.75,
        True,
        "■ stream disconnected before completion: Rate limit is exceeded. Try again in 11 seconds.",
        _CODEX_ISSUES + "3764 (also #6397, #14200)",
    ),
    Pattern(
        "codex_retry_limit",
        Reason.API_ERROR,
        _c(r"exceeded retry limit, last status: (?P<status>\d{3})"),
        0.9,
        True,
        "exceeded retry limit, last status: 401 Unauthorized, request id: 99438b5929d256ae-OSL",
        _CODEX_ISSUES + "5678",
        extract=_status_group,
    ),
    Pattern(
        "codex_token_refresh",
        Reason.API_ERROR,
        _c(r"Your access token could not be refreshed|Failed to refresh token: (?P<status>\d{3})"),
        0.85,
        True,
        "■ Failed to refresh token: 401 Unauthorized: Your refresh token has already been "
        "used to generate a new access token. Please try signing in again.",
        _CODEX_ISSUES + "6028 (also #6498)",
        api_status=401,
        extract=_status_group,
    ),
    Pattern(
        "gemini_quota_fallback",
        Reason.API_ERROR,
        # Gemini CLI switches to a smaller model and goes on: a warning, not the end.
        _c(r"Possible quota limitations in place or slow response times detected"),
        0.3,
        False,
        "  Possible quota limitations in place or slow response times detected. Switching to "
        "the gemini-2.5-flash model for the rest of this session.",
        _GEMINI_ISSUES + "14811",
    ),
    Pattern(
        "gemini_api_error",
        Reason.API_ERROR,
        _c(r"\[API Error: (?:got status: (?P<status>\d{3}))?"),
        0.8,
        True,
        '✕ [API Error: got status: 429 Too Many Requests. {"error":{"message":"{\\n  '
        '\\"error\\": {\\n    \\"code\\": 429,',
        _GEMINI_ISSUES + "2020 (also #1800, #1848)",
        extract=_status_group,
    ),
    Pattern(
        "google_resource_exhausted",
        Reason.API_ERROR,
        _c(
            r"RESOURCE_EXHAUSTED|Resource has been exhausted \(e\.g\. check quota\)|"
            r"You exceeded your current quota|You have exhausted your capacity on this model"
        ),
        0.8,
        True,
        '      "status": "RESOURCE_EXHAUSTED"',
        _GEMINI_ISSUES + "1848 (also #6962; aider via litellm: Aider-AI/aider#764)",
        api_status=429,
    ),
    Pattern(
        "aider_rate_limited",
        Reason.API_ERROR,
        # aider prints this, then "Retrying in N seconds...": a retried error, not the end.
        _c(r"The API provider has rate limited you"),
        0.5,
        False,
        "The API provider has rate limited you. Try again later or check your quotas.",
        "https://github.com/Aider-AI/aider/blob/main/aider/exceptions.py (RateLimitError)",
        api_status=429,
    ),
    Pattern(
        "aider_provider_down",
        Reason.API_ERROR,
        _c(r"The API provider's servers are down or overloaded"),
        0.5,
        False,
        "The API provider's servers are down or overloaded.",
        "https://github.com/Aider-AI/aider/blob/main/aider/exceptions.py (ServiceUnavailableError)",
        api_status=503,
    ),
    Pattern(
        "litellm_exception",
        Reason.API_ERROR,
        _c(
            r"litellm\.(?P<lclass>RateLimitError|AuthenticationError|PermissionDeniedError|"
            r"NotFoundError|BadRequestError|ContextWindowExceededError|InternalServerError|"
            r"ServiceUnavailableError|APIConnectionError|APIError|Timeout)\b"
        ),
        0.7,
        True,
        "Unexpected error: litellm.RateLimitError: litellm.RateLimitError: VertexAIException - "
        'b\'[{\\n  "error": {\\n    "code": 429,',
        "https://github.com/Aider-AI/aider/issues/764",
        extract=_litellm_class,
    ),
    Pattern(
        "codex_unexpected_status",
        Reason.API_ERROR,
        _c(r"[Uu]nexpected status (?P<status>[45]\d\d)\b"),
        0.85,
        True,
        'unexpected status 401 Unauthorized: {"detail":"Unauthorized"}, url: '
        "https://chatgpt.com/backend-api/codex/responses",
        _CODEX_ISSUES + "26497 (also #19743, #12764)",
        extract=_status_group,
    ),
    Pattern(
        "gemini_talking_error",
        Reason.API_ERROR,
        _c(r"Error when talking to Gemini API"),
        0.7,
        True,
        "\u2716  Error when talking to Gemini API Full report available at:",
        _GEMINI_ISSUES + "4714 (also #2508, #13553)",
    ),
    Pattern(
        "openai_sdk_exception",
        Reason.API_ERROR,
        # The OpenAI Python SDK's exception names, as agents built on it print them.
        _c(
            r"\bopenai\.(?P<lclass>RateLimitError|AuthenticationError|PermissionDeniedError|"
            r"NotFoundError|BadRequestError|UnprocessableEntityError|InternalServerError|"
            r"APIConnectionError|APITimeoutError|APIStatusError|APIError)\b"
        ),
        0.7,
        True,
        "openai.APIConnectionError: Connection error.",
        "https://github.com/microsoft/autogen/issues/3609 (class names: openai/openai-python "
        "README, Handling errors)",
        extract=_litellm_class,
    ),
    Pattern(
        "cursor_connection_failed",
        Reason.API_ERROR,
        _c(r"Connection failed\. Please try again, or contact support if the issue persists"),
        0.7,
        True,
        "Connection failed. Please try again, or contact support if the issue persists.",
        "https://github.com/leookun/cursor-byok/issues/7 (also kingparks/cursor-vip#186)",
    ),
    Pattern(
        "cursor_not_logged_in",
        Reason.API_ERROR,
        # Cursor's own login expired or missing: the model service refuses the agent (401).
        _c(r"ERROR_NOT_LOGGED_IN|\[unauthenticated\] Not logged in"),
        0.85,
        True,
        "[unauthenticated] Not logged in. If you are logged in, try logging out and back in.",
        "https://github.com/xllm-go/bypass/issues/153 (ERROR_NOT_LOGGED_IN: "
        "leookun/cursor-byok#372)",
        api_status=401,
    ),
    Pattern(
        "cursor_too_many_computers",
        Reason.API_ERROR,
        _c(r"Too many computers used within the last 24 hours"),
        0.8,
        True,
        "Too many computers used within the last 24 hours for the same Cursor account. Please "
        "try again later, use a different Cursor account, or contact us at hi@cursor.sh",
        "https://github.com/kingparks/cursor-vip/issues/309",
        api_status=429,
    ),
    Pattern(
        "provider_unauthorized",
        Reason.API_ERROR,
        # OpenCode prints a provider's 401 as "Unauthorized: <body>" at the start of a line.
        _c(r"^[ \t]*Unauthorized: "),
        0.6,
        True,
        'Unauthorized: {"error":{"message":"User not found.","code":401}}',
        _OPENCODE_ISSUES + "14255 (also #36181)",
        api_status=401,
    ),
    Pattern(
        "opencode_ai_sdk_error",
        Reason.API_ERROR,
        _c(r"\bAI_(?:APICallError|RetryError)\b"),
        0.75,
        True,
        'error.error="AI_APICallError: Rate limit exceeded. Please try again later."',
        _OPENCODE_ISSUES + "42827",
    ),
    Pattern(
        "opencode_provider_error",
        Reason.API_ERROR,
        _c(r"Error from provider \([^)\n]*\):"),
        0.7,
        True,
        '"Error from provider (Console): Rate limit exceeded. Please try again later."',
        _OPENCODE_ISSUES + "42452 (also #47747)",
    ),
    Pattern(
        "cursor_user_api_key_rate_limit",
        Reason.API_ERROR,
        # Cursor shows this for any 429 or 5xx from the model endpoint.
        _c(r"User API Key Rate limit exceeded"),
        0.85,
        True,
        "User API Key Rate limit exceeded",
        "https://github.com/BerriAI/litellm-docs/pull/1139 (also zereight/gitlab-mcp#30)",
        api_status=429,
    ),
    # ---- turn and budget limits: the agent stopped on its own limit, work unfinished
    Pattern(
        "cc_output_token_maximum",
        Reason.INCOMPLETE,
        # Printed as an "API Error", but it is the CLI's own output cap cutting the answer off:
        # retrying the same request hits it again (anthropics/claude-code#24055), the work is
        # unfinished and must be split, which is what `incomplete` asks the policy for.
        _c(r"response exceeded the \d+ output token maximum"),
        0.75,
        True,
        "  \u23bf API Error: Claude's response exceeded the 32000 output token maximum. To "
        "configure this behavior, set the CLAUDE_CODE_MAX_OUTPUT_TOKENS environment variable.",
        _CC_ISSUES + "18373 (also #6158, #24055; 8000 variant: #55147)",
    ),
    Pattern(
        "cc_max_turns",
        Reason.INCOMPLETE,
        # The text twin of result subtype error_max_turns (weighted the same in classify).
        _c(r"Error: Reached max turns\b"),
        0.7,
        True,
        "Error: Reached max turns (25)",
        _CC_NPM + "; subtype error_max_turns: https://docs.claude.com/en/docs/claude-code/sdk",
    ),
    Pattern(
        "cc_stream_max_turns",
        Reason.INCOMPLETE,
        # The result event of a stream-json log, when the log is all there is.
        _c(r"\"subtype\":\s*\"error_max_turns\""),
        0.7,
        True,
        '{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":26}',
        "https://docs.claude.com/en/docs/claude-code/sdk (result subtypes)",
    ),
    Pattern(
        "cc_max_budget",
        Reason.INCOMPLETE,
        _c(r"Error: Exceeded USD budget\b"),
        0.7,
        True,
        "Error: Exceeded USD budget (5)",
        _CC_NPM + " (result subtype error_max_budget_usd)",
    ),
    Pattern(
        "gemini_max_session_turns",
        Reason.INCOMPLETE,
        _c(
            r"Reached max session turns for this session|"
            r"The session has reached the maximum number of turns"
        ),
        0.75,
        True,
        "Reached max session turns for this session. Increase the number of turns by "
        "specifying maxSessionTurns in settings.json.",
        _GEMINI_ISSUES + "25889 (headless exit: google-github-actions/run-gemini-cli#205)",
    ),
    # ---- GitHub (gh) failures
    Pattern(
        "gh_api_rate_limit",
        Reason.GITHUB_ERROR,
        # GitHub always names who ran out ("for user ID n", "for installation ID n", an IP);
        # a bare "API rate limit exceeded" from another API is left to the generic row.
        _c(r"API rate limit exceeded for (?:user ID \d+|installation ID \d+|[\d.:a-f]+)"),
        0.85,
        True,
        "API rate limit exceeded for user ID 95043299.",
        "https://github.com/anuraghazra/github-readme-stats/issues/4438 "
        "(IP form: Justintime50/github-archive#54)",
    ),
    Pattern(
        "gh_secondary_rate_limit",
        Reason.GITHUB_ERROR,
        _c(r"You have exceeded a secondary rate limit"),
        0.85,
        True,
        "RequestError [HttpError]: You have exceeded a secondary rate limit. Please wait a few "
        "minutes before you try again.",
        "https://github.com/semantic-release/github/issues/542 (also github/gh-gei#1425)",
    ),
    Pattern(
        "gh_saml_enforcement",
        Reason.GITHUB_ERROR,
        _c(r"Resource protected by organization SAML enforcement"),
        0.9,
        True,
        "GraphQL error: Resource protected by organization SAML enforcement. You must grant "
        "your OAuth token access to this organization.",
        _GH_ISSUES + "2661",
    ),
    Pattern(
        "gh_missing_scopes",
        Reason.GITHUB_ERROR,
        _c(r"missing required scopes? '|has not been granted the required scopes"),
        0.85,
        True,
        "error validating token: missing required scope 'read:org'",
        _GH_ISSUES + "4180 (GraphQL wording: antfu-collective/sponsorkit#6)",
    ),
    Pattern(
        "gh_base_branch_policy",
        Reason.GITHUB_ERROR,
        _c(r"is not mergeable: the base branch policy prohibits the merge"),
        0.85,
        True,
        " X Pull request xxx/yyy#123 is not mergeable: the base branch policy prohibits the merge.",
        _GH_ISSUES + "9839",
    ),
    Pattern(
        "gh_required_reviews",
        Reason.GITHUB_ERROR,
        _c(r"At least \d+ approving reviews? (?:is|are) required"),
        0.8,
        True,
        "Unable to merge branch: GitHub error 405 on PUT https://api.github.com/repos/o/r/"
        "pulls/1/merge: At least 1 approving review is required by reviewers with write access.",
        "https://github.com/Reviewable/Reviewable/issues/561",
    ),
    Pattern(
        "gh_required_status_checks",
        Reason.GITHUB_ERROR,
        # Said inside a GH006 push rejection too; the push lines after it ("! [remote
        # rejected]", "failed to push") then decide git_error as the last fatal line.
        _c(
            r"Required status checks? \"[^\"\n]+\" (?:is|are) expected|"
            r"\d+ of \d+ required status checks (?:is|are) expected"
        ),
        0.8,
        True,
        "remote: error: Changes must be made through a pull request. Required status check "
        '"Build" is expected.',
        "https://github.com/supportpal/github-gh-cli/issues/47 (also kubeflow/pipelines#4384)",
    ),
    Pattern(
        "gh_actions_cannot_create_pr",
        Reason.GITHUB_ERROR,
        _c(r"GitHub Actions is not permitted to create or approve pull requests"),
        0.85,
        True,
        "GitHub Actions is not permitted to create or approve pull requests. - "
        "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        "https://github.com/eclipse-wildwebdeveloper/wildwebdeveloper/issues/1888",
    ),
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
        _c(r"pull request create failed: |GraphQL: [^\n]+\([\w.]+\)"),
        0.7,
        True,
        "pull request create failed: GraphQL: Head sha can't be blank, Base sha can't be "
        "blank (createPullRequest)",
        _GH_CREATE + " (submitPR wraps errors as 'pull request create failed: %w'); GraphQL "
        "errors end with the dotted path: Azure/azure-rest-api-specs#26157",
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
        _c(r"CONFLICT \([\w/ ]+\): |Automatic merge failed; fix conflicts and then commit"),
        0.75,
        True,
        "CONFLICT (content): Merge conflict in fake3.py",
        "git/git merge-ort.c ('CONFLICT (%s): Merge conflict in %s')",
    ),
    Pattern(
        "git_terminal_prompts_disabled",
        Reason.GIT_ERROR,
        # git asking for credentials with no terminal to ask on (GIT_TERMINAL_PROMPT=0, a
        # headless agent): the push/fetch failed at the remote, a git_error.
        _c(
            r"could not read (?:Username|Password) for '[^'\n]*': "
            r"(?:terminal prompts disabled|No such device or address)"
        ),
        0.85,
        True,
        "Error: fatal: could not read Username for 'https://github.com': terminal prompts disabled",
        "https://github.com/actions/checkout/issues/641",
    ),
    Pattern(
        "git_http_403",
        Reason.GIT_ERROR,
        _c(
            r"The requested URL returned error: (?P<status>4\d\d)|remote: Permission to \S+ denied "
            r"to "
        ),
        0.85,
        True,
        "fatal: unable to access 'https://github.com/o/r.git/': The requested URL returned "
        "error: 403",
        "https://github.com/ad-m/github-push-action/issues/55 (also Vu1nT0tal/yarb#17)",
    ),
    Pattern(
        "git_auth_failed",
        Reason.GIT_ERROR,
        _c(
            r"fatal: Authentication failed for '|remote: Support for password authentication was "
            r"removed"
        ),
        0.85,
        True,
        "fatal: Authentication failed for 'https://github.com/KeroAutishima/commit-bot.git/'",
        "https://github.com/theshteves/commit-bot/issues/16 (also desktop/desktop#16814)",
    ),
    Pattern(
        "git_remote_hung_up",
        Reason.GIT_ERROR,
        _c(r"fatal: [Tt]he remote end hung up unexpectedly|error: RPC failed;"),
        0.75,
        True,
        "error: RPC failed; HTTP 500 curl 22 The requested URL returned error: 500 Internal "
        "Server Error",
        "https://github.com/gogs/gogs/issues/3619 (also desktop/desktop#12186)",
    ),
    Pattern(
        "ssh_host_key_failed",
        Reason.GIT_ERROR,
        _c(r"Host key verification failed\."),
        0.8,
        True,
        "Host key verification failed.",
        "https://github.com/concourse/semver-resource/pull/3 (also desktop/desktop#4479)",
    ),
    Pattern(
        "ssh_publickey_denied",
        Reason.GIT_ERROR,
        # ssh refusing git's key: a remote/credential failure of git, not the agent being
        # refused a tool (that is `permission`); listed before the EACCES rows.
        _c(r"Permission denied \(publickey[^)\n]*\)"),
        0.85,
        True,
        "git@github.com: Permission denied (publickey).",
        "https://github.com/kaist-cp/cs220/issues/35",
    ),
    Pattern(
        "git_remote_unreadable",
        Reason.GIT_ERROR,
        _c(r"fatal: Could not read from remote repository"),
        0.75,
        True,
        "fatal: Could not read from remote repository.",
        "https://github.com/kaist-cp/cs220/issues/35",
    ),
    Pattern(
        "gh006_protected_branch",
        Reason.GIT_ERROR,
        # The push was refused by the remote's branch protection: git's push failed.
        _c(r"GH006: Protected branch update failed"),
        0.85,
        True,
        "remote: error: GH006: Protected branch update failed for refs/heads/main.",
        "https://github.com/SalamLang/Salam/issues/430 (also hexojs/hexo#2817)",
    ),
    Pattern(
        "git_push_hint_rejected",
        Reason.GIT_ERROR,
        _c(
            r"Updates were rejected because (?:the tip of your current branch is behind|"
            r"the remote contains work that you do)"
        ),
        0.6,
        True,
        "hint: Updates were rejected because the remote contains work that you do not",
        "https://github.com/SalamLang/Salam/issues/430",
    ),
    Pattern(
        "git_rebase_conflict",
        Reason.GIT_ERROR,
        _c(
            r"[Cc]ould not apply [0-9a-f]{7,}\.\.\.|Resolve all conflicts manually, mark them as "
            r"resolved"
        ),
        0.75,
        True,
        "error: could not apply 5249ae0... add fake3",
        _GIT_HERE + " (git rebase onto a conflicting commit); git/git sequencer.c",
    ),
    Pattern(
        "git_local_changes_overwritten",
        Reason.GIT_ERROR,
        _c(r"Your local changes to the following files would be overwritten by"),
        0.75,
        True,
        "error: Your local changes to the following files would be overwritten by checkout:",
        _GIT_HERE + "; git/git unpack-trees.c",
    ),
    Pattern(
        "git_unrelated_histories",
        Reason.GIT_ERROR,
        _c(r"fatal: refusing to merge unrelated histories"),
        0.8,
        True,
        "fatal: refusing to merge unrelated histories",
        _GIT_HERE + " (git pull --no-rebase of an unrelated repository)",
    ),
    Pattern(
        "husky_hook_failed",
        Reason.GIT_ERROR,
        # A commit/push hook refused the change: the git step failed (the hook's own output
        # above says why, e.g. lint or tests).
        _c(r"husky - [\w-]+ (?:hook exited with code \d+|script failed \(code \d+\))"),
        0.75,
        True,
        "husky - pre-commit hook exited with code 1 (error)",
        "https://github.com/typicode/husky (v8 husky.sh; v9 'script failed (code N)')",
    ),
    Pattern(
        "pre_commit_hook_failed",
        Reason.GIT_ERROR,
        _c(r"^[^\n]*\S\.{4,}Failed[ \t]*$"),
        0.6,
        True,
        "flake8...................................................................Failed",
        "https://github.com/pre-commit/pre-commit pre_commit/commands/run.py (_full_msg)",
    ),
    # ---- test runners
    Pattern(
        "pytest_timeout",
        Reason.TEST_FAILURE,
        # pytest-timeout failing one hung test: the task's tests fail (the code under test
        # hangs); the agent itself was not timed out, so this is not `timeout`.
        _c(r"Failed: Timeout (?:>|\(>)\d+(?:\.\d+)?s"),
        0.75,
        True,
        "FAILED dandi/cli/tests/test_cmd_ls.py::test_ls_bids_file - Failed: Timeout >3.0s",
        "https://github.com/dandi/dandi-cli/pull/1440 (new wording: pytest-dev/pytest-timeout#180)",
    ),
    Pattern(
        "pytest_summary_failed",
        Reason.TEST_FAILURE,
        # "0 failed" is never a failure: counts start at 1.
        _c(
            r"^=+ (?:[^=\n]*\b)?[1-9]\d* (?:failed|errors?)\b[^=\n]* in \d+(?:\.\d+)?s\b"
            r"[^=\n]*=+\s*$"
        ),
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
        _c(r"^[ \t]*(?:Tests:|Test Suites:|Tests |Test Files )[ \t]+[1-9]\d* failed"),
        0.8,
        True,
        "Tests:       1 failed, 4 passed, 5 total",
        "jestjs/jest packages/jest-reporters/src/SummaryReporter.ts (getSummary); vitest "
        "prints ' Test Files  1 failed | 2 passed (3)' (vitest-dev/vitest reporters)",
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
    Pattern(
        "pytest_quiet_summary",
        Reason.TEST_FAILURE,
        # pytest -q drops the "=" rule around the same summary line.
        _c(r"^[1-9]\d* failed(?:, \d+ [a-z]+)* in \d+(?:\.\d+)?s\b"),
        0.8,
        True,
        "1 failed, 4 passed in 0.31s",
        "pytest src/_pytest/terminal.py (summary_stats, -q)",
    ),
    Pattern(
        "cargo_test_failed",
        Reason.TEST_FAILURE,
        _c(r"^test result: FAILED\.|^error: test failed, to rerun pass "),
        0.85,
        True,
        "test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; "
        "finished in 0.02s",
        'rust-lang/rust library/test/src/formatters ("test result: "); rust-lang/cargo '
        'src/cargo/ops/cargo_test.rs ("test failed, to rerun pass")',
    ),
    Pattern(
        "surefire_failures",
        Reason.TEST_FAILURE,
        _c(
            r"Tests run: \d+, Failures: (?:[1-9]\d*, Errors: \d+|\d+, Errors: [1-9]\d*)|"
            r"There (?:are|were) test failures"
        ),
        0.85,
        True,
        "[ERROR] Tests run: 5, Failures: 1, Errors: 0, Skipped: 0",
        "apache/maven-surefire (surefire-report summary; 'There are test failures.')",
    ),
    Pattern(
        "maven_build_failure",
        Reason.TEST_FAILURE,
        # Weak on purpose: BUILD FAILURE is also a compile error; in a task whose check is
        # `mvn test` it is most often the tests, and a specific row above wins when present.
        _c(r"\bBUILD FAILURE\b"),
        0.4,
        True,
        "[INFO] BUILD FAILURE",
        'apache/maven maven-embedder ExecutionEventLogger ("BUILD FAILURE")',
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
    Pattern(
        "cc_bash_command_timed_out",
        Reason.TIMEOUT,
        # One tool call hit Claude Code's Bash timeout; the agent carries on after it, so it
        # does not end the run, but a run that ends on it was waiting on a hung command.
        _c(r"Command timed out after \d+m? ?[\d.]*s?"),
        0.4,
        False,
        "Command timed out after 2m 0.0s",
        _CC_ISSUES + "3505 (limits: #25881)",
    ),
    Pattern(
        "gha_max_execution_time",
        Reason.TIMEOUT,
        _c(r"has exceeded the maximum execution time of"),
        0.9,
        True,
        "The job running on runner GitHub Actions 3 has exceeded the maximum execution time "
        "of 360 minutes.",
        "https://github.com/lowlighter/metrics/issues/731 (also mandiant/VM-Packages#1448)",
    ),
    Pattern(
        "gha_operation_canceled",
        Reason.TIMEOUT,
        # The runner's line when a step is cancelled, most often by timeout-minutes
        # (actions/runner-images#4643) but also by a person or a runner shutdown: a weak
        # witness that echoes the cause printed before it, so it does not end the run itself.
        _c(r"^[ \t]*(?:##\[error\]|Error: )?The operation was canceled\."),
        0.5,
        False,
        "Error: The operation was canceled.",
        "https://github.com/actions/runner-images/issues/4643 (also actions/runner#2323)",
    ),
    Pattern(
        "gha_exit_124",
        Reason.TIMEOUT,
        # 124 is coreutils timeout(1)'s own status, reported by the CI step that ran it.
        _c(r"Process completed with exit code 124\b"),
        0.7,
        True,
        "Error: Process completed with exit code 124.",
        "coreutils src/timeout.c (EXIT_TIMEDOUT 124); GitHub Actions step status line "
        "(inokawa/lang-box#10 shows its form)",
    ),
    Pattern(
        "swe_agent_command_timeout",
        Reason.TIMEOUT,
        _c(r"\bCommandTimeoutError\b|The last command [^\n]* timed out and has been killed"),
        0.7,
        True,
        "The last command <command>sleep 1000</command> timed out and has been killed.",
        "https://github.com/SWE-agent/mini-swe-agent/pull/211 (CommandTimeoutError: "
        "SWE-agent/SWE-ReX#189)",
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
        "kernel_memcg_oom",
        Reason.KILLED,
        _c(
            r"Memory cgroup out of memory: Kill(?:ed)? process|oom-kill:constraint=|"
            r"invoked oom-killer"
        ),
        0.85,
        True,
        "Memory cgroup out of memory: Killed process 4242 (node) total-vm:10240000kB",
        "torvalds/linux mm/memcontrol.c, mm/oom_kill.c (dump_oom_summary 'oom-kill:')",
    ),
    Pattern(
        "container_oomkilled",
        Reason.KILLED,
        _c(r"\bOOMKilled\b"),
        0.8,
        True,
        "      Reason:       OOMKilled",
        "https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/",
    ),
    Pattern(
        "gha_runner_shutdown",
        Reason.KILLED,
        # The runner service was stopped under the job: a supervisor ended it (the same job
        # often shows exit code 137, actions/runner#3724).
        _c(r"The runner has received a shutdown signal"),
        0.8,
        True,
        "##[error]The runner has received a shutdown signal. This can happen when the runner "
        "service is stopped, or a manually started runner is canceled.",
        "https://github.com/actions/runner/issues/2427 (also #3724, actions/runner-images#6709)",
    ),
    Pattern(
        "go_exec_signal_killed",
        Reason.KILLED,
        # Go's exec error for a child that died of SIGKILL (in these threads, the OOM killer).
        _c(r"\bsignal: killed\b"),
        0.7,
        True,
        "go build github.com/yuin/goldmark/util: /usr/local/go/pkg/tool/linux_amd64/compile: "
        "signal: killed",
        "https://github.com/yuin/goldmark/issues/159 (also golang/go#43726, beego/wetalk#32)",
    ),
    Pattern(
        "gha_exit_137",
        Reason.KILLED,
        _c(r"Process completed with exit code 137\b"),
        0.65,
        True,
        "Error: Process completed with exit code 137.",
        "128+9 (SIGKILL) as a GitHub Actions step reports it (form: inokawa/lang-box#10)",
    ),
    Pattern(
        "os_no_space_left",
        Reason.KILLED,
        # Resource exhaustion of the host, the `killed` family's "resource pressure": the
        # agent did not fail at its task, the machine ran out. Restarting elsewhere helps.
        _c(r"No space left on device|\bENOSPC\b"),
        0.6,
        True,
        "OSError: [Errno 28] No space left on device",
        "glibc strerror(ENOSPC); cpython OSError errno 28",
    ),
    Pattern(
        "os_too_many_open_files",
        Reason.KILLED,
        # Same family as ENOSPC (a host limit), weaker: a leak in the task can cause it too.
        _c(r"Too many open files|\bEMFILE\b"),
        0.5,
        True,
        "Error: EMFILE: too many open files, watch '/work/wt/src'",
        "glibc strerror(EMFILE); nodejs errors docs (EMFILE: Too many open files)",
    ),
    Pattern(
        "shell_killed",
        Reason.KILLED,
        _c(r"^(?:[\w./-]+: line \d+:\s+\d+ )?Killed(?:\s{2,}\S.*)?\s*$"),
        0.6,
        True,
        'bash: line 1:  4242 Killed                  claude -p "$PROMPT"',
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
    # ---- OS permission errors (EACCES): the agent may not write where the task needs it.
    # Restarting with the same configuration cannot fix it, which is what `permission` means
    # to the policy; ssh's "Permission denied (publickey)" is matched earlier as git_error.
    Pattern(
        "node_eacces",
        Reason.PERMISSION,
        _c(r"EACCES: permission denied"),
        0.7,
        True,
        "npm ERR! Error: EACCES: permission denied, mkdir '/usr/local/lib/node_modules/fake3'",
        "https://docs.npmjs.com/resolving-eacces-permissions-errors-when-installing-packages-"
        "globally",
    ),
    Pattern(
        "python_permission_error",
        Reason.PERMISSION,
        _c(r"PermissionError: \[Errno 13\] Permission denied"),
        0.7,
        True,
        "PermissionError: [Errno 13] Permission denied: '/root/fake3.md'",
        _HERE + " (open() of a file the user may not write)",
    ),
    Pattern(
        "shell_permission_denied",
        Reason.PERMISSION,
        _c(r": Permission denied[ \t]*$"),
        0.55,
        True,
        "mkdir: cannot create directory \u2018/opt/fake3\u2019: Permission denied",
        _HERE + " (mkdir, sh redirection and exec of a non-executable file)",
    ),
    # ---- generic fallbacks, after every specific row
    Pattern(
        "generic_rate_limit",
        Reason.API_ERROR,
        # An agent's busiest API is its model's; GitHub's own wordings are matched above,
        # and a limit that names a GitHub App installation is left to the cause model.
        _c(r"\b[Rr]ate limit (?:is )?(?:exceeded|reached)\b(?! for installation ID)"),
        0.5,
        True,
        'LLM error: { "message": "API rate limit exceeded", "request_id": "af88697938" }',
        "https://github.com/ovh/shai/issues/105 (also 7836246/cursor2api#107)",
    ),
)


def pattern_named(name: str) -> Pattern:
    """The row called ``name`` (KeyError if there is none)."""
    for row in PATTERNS:
        if row.name == name:
            return row
    raise KeyError(name)
