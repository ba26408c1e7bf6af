"""The cause model: what a line says happened, read from the words any tool uses for it.

The pattern table knows exact wordings; this module reads the ones nobody catalogued. A line
is read for two things:

- **cue words** for a kind of event: a denial (denied, not permitted, requires approval,
  blocked by policy), a limit (rate limit, quota, usage limit, credits, throttled,
  overloaded, 429), a time limit (timed out, deadline, stalled, no output for), an
  interruption (interrupted, cancelled, aborted), a test verdict (N failed, FAIL,
  AssertionError, expected ... got), a cap on the agent's loop (max turns, iteration limit,
  step budget), a kill (killed, OOM, SIGKILL), or only a generic error word;
- **its subject**, what the line is about: the model provider's API, GitHub, git or ssh,
  the test runner, the agent's own tool use, a file, the process or CI job.

The pair decides the reason (:func:`_reason_of`): "Permission denied (publickey)" is a
denial about ssh, so git_error; a 403 from api.github.com is a denial about GitHub; a refused
Bash tool call is a denial about the agent's tool use, so permission. A cue agreeing with
its subject weighs more than a cue alone; a generic error word weighs little and only speaks
through its subject. Lines that announce a retry or a warning count as retried errors, not as
what stopped the run. Every reading names its cue and subject, and the line it read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.engine.needles import group_end, needles_of, split_top
from pytest_orch_recovery.engine.patterns import Pattern


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# ---- cue words, on the lower-cased line

# What an agent may be refused to do: "not authorised to <act>" is a refusal, not a login.
_ACTS = r"(?:write|edit|run|execute|use|modify|create|read|access|delete)"

_CUES: dict[str, re.Pattern[str]] = {
    "turns": _words(
        r"\bmax(?:imum)?[ _-]?(?:turns?|iterations?|steps?|rounds?|tool[ _-]?calls?|loops?)\b",
        r"\b(?:turn|iteration|step|round|recursion|loop|tool[ -]call|agent[ -]step)s?"
        r"[ _-](?:limit|cap|budget|count exceeded)",
        r"\b(?:step|turn|iteration|cost|usd|spend(?:ing)?|token) budget\b",
        r"\bbudget (?:of [^ ]+ )?(?:exceeded|exhausted|reached|spent)",
        r"\bran out of (?:turns|steps|iterations|budget)\b",
        r"\bmax(?:imum)? (?:\w+ )?(?:turns|iterations|steps|rounds)\b",
        r"\bmax(?:imum)? number of "
        r"(?:turns|messages|steps|iterations|rounds|actions|tool[ -]?calls)\b",
        r"\b(?:stops?|stopped|halts?|halted) (?:the )?(?:agent |run |loop )?after \d+ "
        r"(?:turns|steps|iterations|actions|tool[ -]?calls)\b",
        r"\bcost (?:limit|budget|cap)\b",
        r"\brequest[_ ]limit\b",
        r"\busagelimitexceeded\b",
        r"\b(?:response|output|reply|completion) (?:was )?truncated\b",
        r"\boutput tokens? (?:maximum|max|limit|cap)\b",
        r"\bmax_tokens\b",
        r"\bmaximum output\b",
        r"\berror_max_(?:turns|budget)",
        r"\b(?:exceeded|reached|hit) (?:the |its |max )?(?:maximum )?(?:number of )?"
        r"(?:turns|iterations|steps|rounds)\b",
        r"\bstopped (?:early|before (?:finishing|completing))\b",
        r"\b(?:did not|didn't|never) (?:finish|complete)\b",
        r"\bwithout (?:finishing|completing)\b",
        r"\bincomplete\b",
    ),
    "kill": _words(
        r"\bkilled\b",
        r"\bsigkill\b",
        r"\boom[ -]?kill",
        r"\boomkilled\b",
        r"\bout of (?:\w+ )?memory\b",
        r"\bheap space\b",
        # Written, like several below, so that each alternative starts a word with a
        # literal: the index files it under that word (_Index), rather than trying it on
        # every line holding one of its substrings.
        r"\bgc (?:is )?thrashing\b",
        r"\bgarbage collector (?:is )?thrashing\b",
        r"\bmemory (?:limit|exhausted)",
        r"\bheap (?:limit|out of memory)",
        r"\bcannot allocate memory\b",
        r"\bexit(?:ed)? (?:with )?(?:code|status)[: ]+137\b",
        r"\b(?:agent|runner|worker|node|machine|host) (?:was )?lost\b",
        r"\bsignal[: ]+(?:9|killed)\b",
        r"\bsignall?ed to (?:exit|stop|terminate|quit|shut ?down)\b",  # told by a signal to end
        r"\bno space left\b",
        r"\boom_reaper\b",
        r"\breaped process\b",
        r"\bmemory allocation (?:of \d+ bytes )?failed\b",
        r"\ballocation (?:of \d+ bytes )?failed\b",
        r"\benospc\b",
        r"\btoo many open files\b",
        r"\bemfile\b",
        r"\bshut ?down signal\b",
        r"\breceived (?:a )?shut ?down\b",
        r"\bevicted\b",
        r"\bterminat(?:ed|ing)\b",
        r"\bsigterm\b",
    ),
    "time": _words(
        r"\btim(?:ed|ing)[ -]?out\b",
        r"\btimeouts?\b(?!\s*=|\s*:\s*\d)",  # not a setting: timeout: 900, timeout=...
        r"\bdeadline\b",
        r"\bstall(?:ed|ing|s)?\b",
        r"\bno (?:output|activity|progress|response|new output|message)s? "
        r"(?:for|in|after|within)\b",
        r"\b(?:execution|run|build|job|wall[- ]clock) time (?:limit )?exceeded\b",
        r"\bfailed to (?:finish|complete) (?:within|in time)\b",
        r"\bno output\b",
        r"\binactiv(?:e|ity)\b",
        r"\bidle (?:for|timeout)\b",
        r"\bexceeded (?:the )?(?:maximum )?(?:execution |run ?)?time\b",
        r"\btook (?:too long|longer than|more than)\b",
        r"\btime ?limit\b",
        r"\bhung\b(?! up)",
        r"\bwatchdog\b",
        r"\betimedout\b",
        r"\bexit (?:code|status)[: ]+124\b",  # coreutils timeout(1)'s own status
        r"\bran (?:for )?longer than\b",
    ),
    "limit": _words(
        r"\brate[ _-]?limit",
        r"\bratelimit",
        r"\bquota",
        r"\busage (?:limit|cap)",
        r"\b(?:session|weekly|daily|monthly|hourly|5-hour|five-hour|plan) (?:usage )?limit\b"
        r".{0,40}\b(?:reached|exceeded|hit|exhausted|used up)\b",
        r"\bcredits?\b",
        r"\bbilling\b",
        r"\bthrottl",
        r"\boverloaded",
        r"\btoo many requests\b",
        r"\btoo (?:quickly|fast|frequently|often)\b",
        r"\b(?:429|529)\b",
        r"\bresource[ _]?exhausted\b",
        r"\bcapacity\b",
        r"\bpayment required\b",
        r"\b(?:tokens|requests) per (?:min|minute|day)\b",
        r"\blimit (?:reached|exceeded|hit)\b",
        r"\bhit (?:your|the) (?:\w+ )?limit\b",
        r"\bout of (?:credits|tokens)\b",
        r"\btry again (?:later|in \d)",
        r"\bhigh demand\b",
        r"\bupgrade to\b",
        r"\bsubscription\b",
        r"\binsufficient[_ ](?:quota|balance|funds|credits)\b",
    ),
    "deny": _words(
        r"\bpermission(?:s)? denied\b",
        r"\bdenied\b",
        r"\bnot permitted\b",
        r"\bnot allowed\b",
        r"\bdisallowed\b",
        r"\bforbidden\b",
        r"\baccess (?:is )?denied\b",
        r"\brequires? (?:user |manual |your )?(?:approval|confirmation|permission)\b",
        r"\b(?:needs?|awaiting|pending|without) (?:user )?(?:approval|confirmation)\b",
        r"\bapproval (?:required|needed|policy)\b",
        r"\bblocked\b",
        r"\brefus(?:ed|es|ing)\b",
        r"\beacces\b",
        r"\beperm\b",
        r"\berrno 13\b",
        r"\bread-only file ?system\b",
        r"\binsufficient (?:permissions?|privileges?|scopes?)\b",
        r"\b(?:do not|don't|does not|doesn't) have (?:the )?(?:required |necessary )?"
        r"(?:permissions?|access|scopes?)\b",
        r"\blacks? (?:the )?(?:required )?(?:permissions?|scopes?)\b",
        r"\bnot trusted\b",
        r"\buntrusted\b",
        r"\b(?:declined|rejected) by (?:the )?user\b",
        r"\buser (?:rejected|denied|declined)\b",
        r"\bcannot (?:ask|prompt) for\b",
        r"\bnon-?interactive\b",
        r"\bsandbox(?:ed|ing)? (?:denied|blocked|violation|restrict)",
        r"\bpermission (?:check|required|prompt|request|error)\b",
        r"\b403\b",
        r"\bdenials?\b",
        r"\bprohibit",
        r"\bnot accessible\b",
        r"\bhas been disabled\b",
        r"\bhas disabled\b",
        r"\b(?:haven't|have not|not|never) (?:been )?granted\b",
        r"\btrust (?:is )?required\b",
        r"\btrust\b(?<=--trust)",  # --trust
        r"\bskip[- ]permissions\b",
        r"\bbypass permissions\b",
        r"\bdo you want to\b",
        r"\bneed (?:your )?permission\b",
        r"\bpermission to (?:use|run|write|edit|access|execute|create|modify)\b",
        r"\bnot authori[sz]ed to " + _ACTS + r"\b",
        r"\boutside (?:of )?(?:the )?allowed\b",
        r"\bwould you like to (?:run|allow|proceed|make|create|edit|execute)\b",
        r"\ballow (?:execution|command|this|once|always|all)\b",
        r"\byes, (?:allow|and don't ask|proceed)\b",
        r"\by/n\)(?<=\(y/n\))|\by/n\](?<=\[y/n\])",  # (y/n) or [y/n]
        r"\bprevent(?:s|ed|ing)? (?:you |the agent |it |me |us )?from\b",
        r"\brejected\b(?<!promise rejected)",
        r"\bis read[ -]only\b",
        r"\brestricted\b",
        r"\b(?:policy|permission|access|security) restrictions?\b",
    ),
    "auth": _words(
        r"\bunauthori[sz]ed\b",
        r"\bnot authori[sz]ed\b(?! to " + _ACTS + r"\b)",  # "not authorised to write" denies
        r"\bunauthenticated\b",
        r"\b401\b",
        r"\binvalid (?:api[ _-]?)?(?:key|token|credentials?)\b",
        r"\bapi[ _-]?key\b",
        r"not[ _]logged[ _]in",  # also inside a constant: ERROR_NOT_LOGGED_IN
        r"\blog ?in (?:required|again|expired)\b",
        r"\b(?:run|please run) /?(?:login|auth login)\b",
        r"\blogin\b(?<=/login)",  # /login
        r"\bauth login\b",
        r"\bauthentication (?:error|failed|required)\b",
        r"\bbad credentials\b",
        r"\b(?:token|session|credentials?) (?:has )?(?:expired|revoked|invalid)\b",
        r"\b(?:expired|revoked) (?:token|session|credentials?)\b",
        r"\b(?:validat|refresh)(?:e|ing) (?:the )?token\b",
        r"\bmissing (?:required )?scopes?\b",
        r"\bneeds? the .{0,40}\bscopes?\b",
        r"\bauth refresh\b",
        r"\boauth token\b",
        r"\bnot authenticated\b",
        r"\bplease sign in\b",
        r"\bauthori[sz]ation (?:is )?required\b",
        r"\bto authenticate\b",
    ),
    "server": _words(
        r"\binternal ?server ?error\b",
        r"\bservice ?unavailable\b",
        r"\bbad gateway\b",
        r"\bgateway timeout\b",
        r"\bserver error\b",
        r"\b(?:500|502|503|504)\b",
        r"\bapi ?(?:connection ?)?error\b",
        r"\bconnection (?:error|failed|refused|reset|closed|lost)\b",
        r"\bnetwork error\b",
        r"\bfetch failed\b",
        r"\bsocket hang up\b",
        r"\beconn(?:reset|refused)\b",
        r"\bdisconnected\b",
        r"\btoo long\b",
        r"\bcontext (?:window|length)\b",
        r"\bmaximum context\b",
        r"\btoo many tokens\b",
        r"\bcontext .{0,40}\bexceeds?\b",
        r"\btransient\b",
        r"\bdeadline_exceeded\b",
        r"\binterrupted by (?:an? )?(?:api |server |network )?error\b",
    ),
    "interrupt": _words(
        r"\binterrupt(?:ed|ion|s)?\b",
        r"\bkeyboardinterrupt\b",
        r"\bcancell?(?:ed|ing|ation)\b",
        r"\bcanceled\b",
        r"\babort(?:ed|ing)?\b",
        r"\bctrl[- +]?c\b",
        r"\bc\b(?<=\^c)",  # ^c, the echo of a typed ctrl-c
        r"\bsigint\b",
        r"\bsighup\b",
        r"\bstopped by (?:the )?user\b",
        r"\buser (?:stopped|cancell?ed|aborted|interrupted|pressed)\b",
    ),
    "tests": _words(
        # "[1-9](?<!\w[1-9])" is "\b[1-9]" written so the engine can skip to the digits
        r"[1-9](?<!\w[1-9])\d* (?:tests? |specs? |examples? |scenarios? |steps? |assertions? )?"
        r"(?:failed|fails?|failures?|failing|errors?|errored|broken)\b",
        r"\b(?:failures?|failed|failing|errors?)[:=] ?[1-9]",
        r"\bfail(?:ed)?[:!]? [1-9]",
        r"^\s*(?:--- )?fail\b(?! to\b)",
        r"\bfail(?:ed|ures?)? *$",
        r"\bfailed\b",
        r"\bfailing\b",
        r"\bfailures?\b",
        r"\bassertion ?error\b",
        r"\bassert(?:ion)? failed\b",
        r"\bexpected\b.{0,80}\b(?:got|but (?:was|got|received)|received|actual|to (?:be|equal))\b",
        r"\bnot ok \d",
        r"\u2717|\u2715|\u2716|\u00d7",  # the crosses runners print by a failed test
    ),
    "error": _words(
        r"\berror\b",
        r"\bfatal\b",
        r"\bexception\b",
        r"\bcould ?n[o']t\b",
        r"\bunable to\b",
        r"\bcannot\b",
        r"\bcan't\b",
        r"\bpanic(?:ked)?\b",
        r"\btraceback\b",
        r"\b(?:status|code|http|error)[: ]+[45]\d\d\b",
        r"\bconflicts?\b",
        r"\bno such\b",
        r"\bnot possible\b",
        r"\bnot available\b",
        r"\bno \w+(?: \w+)? found\b",
        r"\balready exists\b",
        r"\bnot found\b",
        r"\b(?:does not|doesn't|did not|didn't) exist\b",
        r"\bno commits between\b",
        r"\bnot mergeable\b",
    ),
}

# An API or network error that interrupted the run: not an interruption by a person.
_BY_ERROR = re.compile(r"\binterrupted by (?:an? )?(?:api |server |network )?error\b")
# A line that reports a zero count of failures, or only passes, says nothing failed.
_NOTHING_FAILED = re.compile(
    r"\b0 (?:tests? )?(?:failed|failures?|failing|errors?)\b|\b(?:failures?|failed|errors)[:=] ?0\b"
    r"|\bno (?:tests? )?failures?\b|\ball tests passed\b"
)
_NONZERO_FAILED = re.compile(
    r"[1-9](?<!\w[1-9])\d* (?:tests? |specs? |examples? |scenarios? )?"
    r"(?:failed|fails?|failures?|failing|errors?)\b"
    r"|\b(?:failures?|failed|failing|errors?)[:=] ?[1-9]"
    r"|\bfail[:=]? +[1-9]"  # a results table's column: "PASS 0 | FAIL 1"
)
# A count of zero interruptions ("INTERRUPT 0 | CANCEL 0" in a results table, "0 aborted")
# says none happened, as "0 failed" says nothing failed.
_NONE_INTERRUPTED = re.compile(
    r"\b(?:interrupt(?:ed|s)?|cancell?(?:ed|s)?|canceled|abort(?:ed|s)?)[:=]? +0\b"
    r"|\b0 (?:interrupted|cancell?ed|aborted)\b"
)
# A line that starts with FAIL is a test runner's verdict (go test, jest, vitest, ...).
# "Failed to update ref" is prose about an action, not a runner's verdict.
_RUNNER_VERDICT = re.compile(r"^\s*(?:--- )?fail(?:ed)?\b(?! to\b)")
# Announced retries and warnings: an error the tool got past (or will try to).
_RETRIED = re.compile(
    r"\bretry(?:ing)?\b|\bretries\b|\bwill retry\b|\breconnecting\b|\battempt \d+ ?(?:/|of) ?\d+"
    r"|\bwarn(?:ing)?\b|\bbacking off\b|\bfalling back\b|\bwaiting \d"
)

# ---- subjects

_SUBJECTS: dict[str, re.Pattern[str]] = {
    "ssh": _words(
        r"\bssh\b",
        r"\bpublickey\b",
        r"\bhost key\b",
        r"\bgit@",
        r"\bknown_hosts\b",
        r"\bport 22\b",
    ),
    "git_strong": _words(
        r"\bgit\b",
        r"^\s*(?:error: )?remote: ",
        r"^\s*! \[",
        r"\brefs/",
        r"\bhook id\b",
        r"\bsend-pack\b",
        r"\brpc failed\b",
        r"\bfailed to push\b",
    ),
    "git": _words(
        r"\bgit\b",
        r"\bnon-fast-forward\b",
        r"\bfast-forward\b",
        r"\bdetached head\b",
        r"\bhead detached\b",
        r"\b(?:push|pull|fetch|clone|rebase|merge|checkout|commit|cherry-pick|stash)\b",
        r"\bworktree\b",
        r"\bremote\b",
        r"\bunmerged\b",
        r"\bindex\.lock\b",
        r"\bupstream\b",
        r"\borigin\b",
        r"\bpre-(?:commit|push)\b",
        r"\bhusky\b",
        r"\blfs\b",
        r"\bgitlab\b",
        r"\bbitbucket\b",
        r"\.git\b",
    ),
    "github": _words(
        r"\bgithub\b(?!\.com[:/][\w.-]+/[\w.-]+\.git| copilot)",
        r"\bapi\.github\.com\b",
        r"\bgh (?:pr|api|issue|run|repo|auth|release|workflow)\b",
        r"\bgh\b(?=:)",  # gh:
        r"\bgraphql",  # GraphQL, GraphqlError
        r"\bpull request\b",
        r"\bpr\b",
        r"\boctokit\b",
        r"\bgh0\d\d\b",
        r"\bresource not accessible\b",
        r"\binstallation id\b",
        r"\bpersonal access token\b",
        r"\bfine-grained\b",
        r"\bgithub_token\b",
        r"\bsecondary rate limit\b",
        r"\bx-ratelimit",
        r"\brepository rule",
        r"\bruleset\b",
        r"\bbranch protection\b",
        r"\bprotected branch\b",
        r"\breview(?:s|ers?)? (?:required|requested)\b",
        r"\bstatus checks?\b",
    ),
    # Words of GitHub's API that other services use too: GitHub only when the line names
    # no model provider.
    "github_weak": _words(
        r"\bscopes?\b",
        r"\bmergeable\b",
        r"\bintegration\b",
        r"\binstallation\b",
        r"\bvalidation failed\b",
        r"\bunprocessable entity\b",
        r"\bhttperror\b",
    ),
    "provider": _words(
        r"\bapi error\b",
        r"\banthropic\b",
        r"\bopenai\b",
        r"\bclaude\b",
        r"\bgemini\b",
        r"\bvertex\b",
        r"\bbedrock\b",
        r"\bazure\b",
        r"\bopenrouter\b",
        r"\bmistral\b",
        r"\bgroq\b",
        r"\bdeepseek\b",
        r"\bollama\b",
        r"\bllm\b",
        r"\bmodels?\b",
        r"\bprovider\b",
        r"\bcompletions?\b",
        r"/v1/",
        r"\bchat\b",
        r"\bmessages\b",
        r"\brequest[_ ]?id\b",
        r"\brequests? (?:has |have )?timed out\b",
        r"\b(?:overloaded|rate_limit|api|invalid_request|authentication|permission)_error\b",
        r"\bserver_error\b",
        r"\bupstream\b",
        r"\bapi\b",
        r"\bapi key\b",
        r"\bstream(?:ing)?\b",
        r"\binference\b",
        r"\bcopilot\b",
        r"\bcursor\b",
        r"\bcodex\b",
        r"\bgpt-",
        r"\bsonnet\b|\bopus\b|\bhaiku\b",
        r"\bsubscription\b",
        r"\bplan\b",
        r"\bservice unavailable\b",
        r"\binternal server error\b",
        r"\bbad gateway\b",
    ),
    "tests": _words(
        r"\btests?\b",
        r"\bspecs?\b",
        r"\bpytest\b",
        r"\bjest\b",
        r"\bvitest\b",
        r"\bmocha\b",
        r"\bjasmine\b",
        r"\bkarma\b",
        r"\brspec\b",
        r"\bminitest\b",
        r"\bjunit\b",
        r"\btestng\b",
        r"\bsurefire\b",
        r"\bphpunit\b",
        r"\bnextest\b",
        r"\bctest\b",
        r"\bgtest\b",
        r"\bcatch2\b",
        r"\bxunit\b",
        r"\bnunit\b",
        r"\bplaywright\b",
        r"\bcypress\b",
        r"\bcucumber\b",
        r"\bbehave\b",
        r"\bscenarios?\b",
        r"\bassert",
        r"\bxctest\b",
        r"\bexunit\b",
        r"\bbats\b",
        r"\bnot ok\b",
        r"::",
        r"_test\.go\b|\.test\.[jt]sx?\b|\.spec\.[jt]sx?\b|test_\w+\.py\b|_spec\.rb\b",
        r"_test\b",
        r"\btest_\w",
    ),
    # Words test output uses that other output does too.
    "tests_weak": _words(
        r"\bexamples?\b",
        r"\bsuites?\b",
        r"\bexpect(?:ed|ation)?\b",
        r"\bpass(?:ed|ing)\b",
        r"\bskipped\b",
    ),
    # Words of running things in general: the agent's tool use only when nothing names a
    # provider ("Cloud Shell project was denied" is the provider's refusal).
    "tool_weak": _words(
        r"\bshell\b",
        r"\b(?:read|run|execute|exec)\b",
    ),
    "tool": _words(
        r"\btools?\b",
        r"\bbash\b",
        r"\bcommands?\b",
        r"\b(?:edit|write)\b",
        r"\bmcp\b",
        r"\bapprov",
        r"\ballow(?:ed|list)?\b",
        r"\bsandbox",
        r"\bpolicy\b",
        r"\bauto[- ]?mode\b",
        r"\byolo\b",
        r"\bdangerously\b",
        r"\bbypass\b",
        r"\btrust",
        r"\bconfirm",
        r"\bnon-?interactive\b",
        r"\bheadless\b",
        r"\bprompt(?:ed)?\b",
        r"\bhook\b",
        r"\bsettings\b",
        r"\bpermission mode\b",
        r"\bworkspace\b",
        r"\bsudo\b",
        r"\broot\b",
    ),
    "file": _words(
        r"\beacces\b",
        r"\beperm\b",
        r"\berrno 13\b",
        r"\bfiles?\b",
        r"\bdirector(?:y|ies)\b",
        r"\bpath\b",
        r"\bmkdir\b",
        r"\bopen\b",
        r"\bread-only\b",
        # a path: "/", "~/" or "./" at the line's start or after a space, quote or "(",
        # written to start with the "/" the engine can skip to
        r"/(?:(?<=^/)|(?<=[\s'\"`(]/)|(?<=^[~.]/)|(?<=[\s'\"`(][~.]/))[\w.-]",
    ),
    # A CI system's own words: a cancellation it reports is the job's limit or a cancel.
    "ci_strong": _words(
        r"##\[error\]",
        # the .NET message GitHub's runner prints when it cancels a job (its timeout-minutes
        # or a cancel): the runner's own words, not an agent's interrupt
        r"\bthe operation was canceled\b",
        r"\brunner\b",
        r"\bjob\b",
        r"\bworkflow\b",
        r"\bpipeline\b",
        r"\bbuild was\b",
    ),
    "ci": _words(
        r"##\[error\]",
        r"\bthe operation was canceled\b",
        r"\brunner\b",
        r"\bjob\b",
        r"\bworkflow\b",
        r"\bstep\b",
        r"\bpipeline\b",
        r"\bci\b",
        r"\bbuildkite\b",
        r"\bjenkins\b",
        r"\bcircleci\b",
        r"\bprocess\b",
        r"\bcontainer\b",
        r"\bpod\b",
        r"\bkubernetes\b|\bkubectl\b",
        r"\bdocker\b",
        r"\bkernel\b",
        r"\bcgroup\b",
        r"\bsignal\b",
        r"\bexit (?:code|status)\b",
        r"\bcommand\b",
    ),
}


class CueReading(NamedTuple):
    """What the cause model read in one line (a tuple: read lines are many, and a tuple is
    built in a fraction of a frozen dataclass's time)."""

    reason: Reason
    weight: float
    cue: str
    subject: str | None
    fatal: bool

    def describe(self) -> str:
        """``cue deny, about ssh``: which cue word family, and what the line is about."""
        about = f", about {self.subject}" if self.subject else ", no subject"
        return f"cue {self.cue}{about}"


# Weights: the table's exact rows weigh 0.5-0.95; a reading stays below them, so exact
# evidence wins where it exists, and a generic error word only hints.
_AGREES = 0.55  # a cue whose subject confirms it (a limit about the model API)
_CUE_ALONE = 0.45  # a cue with no subject, or a subject that does not bear on it
_GENERIC = 0.25  # only an error word, read through its subject
_RETRIED_FACTOR = 0.4


# ---- reading a line fast: alternatives indexed by the start of the word they begin with

# Most lexicon alternatives begin with a word boundary and a literal (``\bdenied\b``,
# ``\bthrottl``): they can only match where a word of the line starts with that literal.
# Each is filed under the literal's first (up to) three characters, and a line tries the
# alternatives filed under each of its word starts *at* that word (an anchored match, not a
# scan of the line). The rest (anchored at the line start, or beginning with a group or a
# symbol) are few; each is tried only on lines holding one of its required substrings.
_LEAD = re.compile(r"((?:[\w@ ]|\\[-.@/ ])+)")
_QUANTIFIED = re.compile(r"[?*{]")
_WORD_START = re.compile(r"\w+")
_PREFIX = 3


def _unwrap(alternative: str) -> str:
    """``(?:x)`` -> ``x`` when the group spans the whole alternative."""
    while alternative.startswith("(?:") and group_end(alternative, 0) == len(alternative):
        alternative = alternative[3:-1]
    return alternative


def _literal_start(text: str) -> tuple[str, str] | None:
    """(lead, literal): the first three characters of the word every match of ``text``
    starts with (the whole word when it is shorter and provably ends there), and the
    literal text every match starts with; or None."""
    m = _LEAD.match(text)
    if m is None:
        return None
    literal = m.group(1).replace("\\", "")
    rest = text[m.end() :]
    if rest and _QUANTIFIED.match(rest):
        literal, rest = literal[:-1], "?"  # the last character is optional
    word = _WORD_START.match(literal)
    lead = word.group() if word else ""
    if len(lead) >= _PREFIX:
        return lead[:_PREFIX], literal
    if lead and (len(lead) < len(literal) or rest.startswith(("\\b", "-"))):
        return lead, literal  # the word ends here: a token equal to it
    return None


def _starts(alternative: str) -> list[tuple[str, str]] | None:
    """(lead, literal) for each way a match of ``alternative`` can begin, where every match
    begins a word (``\\bdenied`` -> [("den", "denied")], ``\\b(?:push|pull)`` -> two),
    or None."""
    if not alternative.startswith("\\b"):
        return None
    rest = alternative[2:]
    if rest.startswith("(?:"):
        end = group_end(rest, 0)
        if end < len(rest) and _QUANTIFIED.match(rest[end]):
            return None  # an optional group: the word may start with what follows
        starts = [_literal_start(branch) for branch in split_top(rest[3 : end - 1])]
        return None if any(start is None for start in starts) else [s for s in starts if s]
    start = _literal_start(rest)
    return None if start is None else [start]


def _word_starts(prefixes: Mapping[str, str]) -> re.Pattern[str]:
    """A regex that finds a word starting with one of ``prefixes`` (lead -> the literal text
    every alternative filed under the lead starts with) and matches its lead. Written as a
    trie, so the engine picks a branch by character instead of trying every lead at every
    word; a word whose lead's alternatives all need more than the lead is not found unless
    that much follows (checked ahead, not consumed: a later word may start inside it)."""
    trie: dict[str, Any] = {}
    for lead, prefix in prefixes.items():
        node = trie
        for char in lead:
            node = node.setdefault(char, {})
        if prefix != lead:
            node[""] = f"(?={re.escape(prefix[len(lead) :])})"
        else:  # a short lead is the whole word: it must end there
            node[""] = r"(?!\w)" if len(lead) < _PREFIX else ""

    def branches(node: dict[str, Any]) -> str:
        alternatives = [
            child if char == "" else re.escape(char) + branches(child)
            for char, child in sorted(node.items())
        ]
        return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"

    return re.compile(r"\b" + branches(trie))


_Family = tuple[str, re.Pattern[str]]


def _common_prefix(texts: Sequence[str]) -> str:
    shortest = min(texts, key=len)
    for i, char in enumerate(shortest):
        if any(text[i] != char for text in texts):
            return shortest[:i]
    return shortest


@dataclass(frozen=True)
class _Index:
    """Lexicon families split into alternatives: those filed by the word start they need,
    and the unfiled ones with the substrings one of which they need (None: tried always).

    Under each lead, one regex holds every family's alternatives, each family in a group of
    its own: most words with a filed lead match nothing, and one anchored match says so
    for all the lead's families at once."""

    # lead -> any family's regex, and per family matched first: (its name, the families after)
    by_lead: dict[str, tuple[re.Pattern[str], tuple[tuple[str, tuple[_Family, ...]], ...]]]
    word_starts: re.Pattern[str]  # finds the words a lead's alternatives may start at
    unfiled: tuple[tuple[tuple[str, ...] | None, _Family], ...]
    gate: re.Pattern[str] | None  # finds any unfiled alternative's needle; None: always try

    @classmethod
    def of(cls, families: dict[str, re.Pattern[str]]) -> _Index:
        # lead -> family -> its alternatives filed there; lead -> the literals they start with
        filed: dict[str, dict[str, list[str]]] = {}
        literals: dict[str, list[str]] = {}
        unfiled: list[tuple[tuple[str, ...] | None, _Family]] = []
        for name, regex in families.items():
            for alternative in split_top(regex.pattern):
                alternative = _unwrap(alternative)
                starts = _starts(alternative)
                if starts is None:
                    needles = needles_of(alternative, 1)
                    unfiled.append((needles, (name, re.compile(alternative, re.MULTILINE))))
                for lead, literal in starts or ():
                    alternatives = filed.setdefault(lead, {}).setdefault(name, [])
                    if alternative not in alternatives:
                        alternatives.append(alternative)
                    literals.setdefault(lead, []).append(literal)
        prefixes = {lead: _common_prefix(texts) for lead, texts in literals.items()}

        def union(alternatives: list[str]) -> re.Pattern[str]:
            return re.compile("|".join(f"(?:{a})" for a in alternatives), re.MULTILINE)

        def lead_entry(
            by_family: dict[str, list[str]],
        ) -> tuple[re.Pattern[str], tuple[tuple[str, tuple[_Family, ...]], ...]]:
            families = tuple((name, union(alts)) for name, alts in by_family.items())
            grouped = "|".join(f"({regex.pattern})" for _, regex in families)
            after = tuple((name, families[i + 1 :]) for i, (name, _) in enumerate(families))
            return re.compile(grouped, re.MULTILINE), after

        gate_needles = [n for ns, _ in unfiled if ns is not None for n in ns]
        gated = all(ns is not None for ns, _ in unfiled)
        return cls(
            {lead: lead_entry(by_family) for lead, by_family in filed.items()},
            _word_starts(prefixes),
            tuple(unfiled),
            re.compile("|".join(map(re.escape, gate_needles))) if gated and gate_needles else None,
        )

    def present(self, lowered: str) -> set[str]:
        """The families with an alternative that matches ``lowered``."""
        found: set[str] = set()
        by_lead = self.by_lead
        for word in self.word_starts.finditer(lowered):
            at = word.start()
            any_family, families = by_lead[word.group()]
            hit = any_family.match(lowered, at)
            if hit is None:
                continue
            # The first family that matches here is the group that matched; a later one may
            # match here too (families before it did not: alternatives are tried in order).
            first, later = families[(hit.lastindex or 1) - 1]
            found.add(first)
            for name, regex in later:
                if name not in found and regex.match(lowered, at):
                    found.add(name)
        if self.gate is not None and self.gate.search(lowered) is None:
            return found
        for needles, (name, regex) in self.unfiled:
            if name in found:
                continue
            if needles is not None:
                for needle in needles:
                    if needle in lowered:
                        break
                else:
                    continue
            if regex.search(lowered):
                found.add(name)
        return found


# Cue families, subjects and the marks read_line asks about, in one index, so a line's
# words are looked up once for all of them. Subjects keep their names, but for the one a
# cue family also has ("tests").
_TESTS_SUBJECT = "about tests"
_RETRIED_MARK = "mark retried"
_API_DEADLINE_MARK = "mark api deadline"
_NOTHING_FAILED_MARK = "mark nothing failed"
_BY_ERROR_MARK = "mark interrupted by error"
_NONE_INTERRUPTED_MARK = "mark none interrupted"
_SUBJECT_KEY = {name: _TESTS_SUBJECT if name in _CUES else name for name in _SUBJECTS}
LEXICON_FAMILIES: dict[str, re.Pattern[str]] = {
    **_CUES,
    **{_SUBJECT_KEY[name]: regex for name, regex in _SUBJECTS.items()},
    _RETRIED_MARK: _RETRIED,
    _API_DEADLINE_MARK: re.compile(r"\b(?:504|deadline_exceeded|gateway time-?out)\b"),
    _NOTHING_FAILED_MARK: _NOTHING_FAILED,
    _BY_ERROR_MARK: _BY_ERROR,
    _NONE_INTERRUPTED_MARK: _NONE_INTERRUPTED,
}
_LEXICON = _Index.of(LEXICON_FAMILIES)


def families_in(lowered: str) -> set[str]:
    """The lexicon's families (cue words, subjects, marks) with a match in ``lowered``: what
    reading a line looks up, found through the index rather than family by family."""
    return _LEXICON.present(lowered)


_SUBJECT_KEYS = frozenset(_SUBJECT_KEY.values())


def _subjects_in(found: set[str]) -> set[str]:
    """The subjects among the families ``found`` in a line, with the weak words resolved."""
    subjects = found & _SUBJECT_KEYS
    if _TESTS_SUBJECT in subjects:
        subjects.discard(_TESTS_SUBJECT)
        subjects.add("tests")
    if "github_weak" in subjects and "provider" not in subjects:
        subjects.add("github")
    if "tests_weak" in subjects and not subjects & {"github", "git_strong"}:
        subjects.add("tests")
    return subjects


def _cues_in(found: set[str]) -> list[str]:
    """The cue families among those ``found`` in a line, in deciding order (:data:`_ORDER`)."""
    return [cue for cue in _ORDER if cue in found]


# Complexity: the cause model's decision table (cue x subject), kept as one readable
# sequence of rules in priority order; split, the order between rules would be hidden.
def _reason_of(  # noqa: C901
    cue: str, subjects: set[str], lowered: str, borrowed: bool = False
) -> tuple[Reason, str | None, float]:
    """(reason, subject that decided it, weight) for a cue read with these subjects
    (``borrowed``: the subjects are the lines before's, not the line's own)."""
    # git's own output (fatal:, remote:, ! [rejected], refs/) is about git even when it
    # names GitHub: a push GitHub refused is a failed push (docs/attribution.md).
    gitish = bool(subjects & {"ssh", "git_strong"}) or (
        "git" in subjects and "github" not in subjects
    )
    github = "github" in subjects and not subjects & {"ssh", "git_strong"}
    if cue == "turns":
        return Reason.INCOMPLETE, None, _AGREES
    if cue == "kill":
        return Reason.KILLED, ("ci" if "ci" in subjects else None), _AGREES
    if cue == "time":
        if "ci" in subjects:
            return Reason.TIMEOUT, "ci", _AGREES
        if borrowed:
            # A limit stated on its own line is the run's; a test's timeout names the test.
            return Reason.TIMEOUT, None, _AGREES
        if "tests" in subjects:
            return Reason.TEST_FAILURE, "tests", _CUE_ALONE
        if subjects & {"ssh", "git_strong"}:
            return Reason.GIT_ERROR, "git", _CUE_ALONE
        if github:
            return Reason.GITHUB_ERROR, "github", _CUE_ALONE
        if "provider" in subjects and "tool" not in subjects:
            return Reason.API_ERROR, "provider", _CUE_ALONE
        if gitish:
            return Reason.GIT_ERROR, "git", _CUE_ALONE
        return Reason.TIMEOUT, None, _AGREES
    if cue == "limit":
        if github or ("github" in subjects and "provider" not in subjects):
            return Reason.GITHUB_ERROR, "github", _AGREES
        return Reason.API_ERROR, ("provider" if "provider" in subjects else None), _AGREES
    if cue in ("auth", "server"):
        if subjects & {"ssh", "git_strong"} or (gitish and "provider" not in subjects):
            return Reason.GIT_ERROR, "git", _CUE_ALONE
        if github:
            return Reason.GITHUB_ERROR, "github", _AGREES
        subject = "provider" if "provider" in subjects else None
        return Reason.API_ERROR, subject, _AGREES if subject else _CUE_ALONE
    if cue == "deny":
        if subjects & {"ssh", "git_strong"} or (gitish and not subjects & {"tool", "file"}):
            return Reason.GIT_ERROR, "git", _AGREES
        if github:
            return Reason.GITHUB_ERROR, "github", _AGREES
        if subjects & {"tool", "file"}:
            return Reason.PERMISSION, ("tool" if "tool" in subjects else "file"), _AGREES
        if "provider" in subjects:
            return Reason.API_ERROR, "provider", _CUE_ALONE
        if "tool_weak" in subjects:
            return Reason.PERMISSION, "tool", _CUE_ALONE
        return Reason.PERMISSION, None, _CUE_ALONE
    if cue == "interrupt":
        if "ci_strong" in subjects and "user" not in lowered:
            # GitHub Actions' "The operation was canceled." ends a job its timeout-minutes
            # stopped (docs/attribution.md, boundary cases).
            return Reason.TIMEOUT, "ci", _CUE_ALONE
        if gitish and "user" not in lowered:
            return Reason.GIT_ERROR, "git", _GENERIC  # git "Aborting", a rebase aborted
        if github and "user" not in lowered:
            return Reason.GITHUB_ERROR, "github", _GENERIC
        return Reason.SIGINT, None, _AGREES
    if cue == "tests":
        if "tests" in subjects:
            return Reason.TEST_FAILURE, "tests", _AGREES
        if gitish:
            return Reason.GIT_ERROR, "git", _CUE_ALONE
        if github:
            return Reason.GITHUB_ERROR, "github", _CUE_ALONE
        if _NONZERO_FAILED.search(lowered) or "assert" in lowered:
            return Reason.TEST_FAILURE, None, _CUE_ALONE
        if "provider" in subjects:
            return Reason.API_ERROR, "provider", _GENERIC
        return Reason.UNKNOWN, None, 0.0
    # a generic error word: its subject speaks, faintly
    for subject, reason in (
        ("git_strong", Reason.GIT_ERROR),
        ("ssh", Reason.GIT_ERROR),
        ("github", Reason.GITHUB_ERROR),
        ("git", Reason.GIT_ERROR),
        ("tests", Reason.TEST_FAILURE),
        ("provider", Reason.API_ERROR),
    ):
        if subject in subjects:
            return reason, subject.removesuffix("_strong"), _GENERIC
    return Reason.UNKNOWN, None, 0.0


# Cue families in the order they decide a line that has several: the most specific first
# (a turn cap beats the word "limit", a kill for a timeout is the timeout's, an expired
# key beats the "denied" around it, a denial beats the "failed" around it).
_ORDER = (
    "turns",
    "time",
    "kill",
    "limit",
    "auth",
    "deny",
    "interrupt",
    "server",
    "tests",
    "error",
)
# A cue with no subject of its own borrows the subjects of the lines just before it, at
# this fraction of its weight ("FAILED (errors=2)" under "Ran 3 tests").
_BORROWED = 0.8


# Lines that report where an error happened, not what it was: stack frames (JS, V8
# native, gdb, Python), and the shell's bare "Aborted" for a SIGABRT.
_NOT_A_CAUSE = re.compile(
    r"^\s*(?:at \S.*(?:\(.*\)|:\d+:\d+)\s*$|\d+: (?:0x)?[0-9a-f]{6,}\b|#\d+ +0x|"
    r"File \".+\", line \d+|aborted(?: \(core dumped\))?\s*$)",
    re.IGNORECASE,
)
# git's own prefixes, in git's own (lower) case: "FATAL:" from Jenkins is not git.
_GIT_PREFIX = re.compile(r"^\s*(?:error: )?(?:fatal|hint): ")


# Words that configure rather than report: a command line echoed before it runs
# ("Executing: claude ... --dangerously-skip-permissions") and settings
# that say a thing did not happen ("rate_limited=0").
_ECHOED_COMMAND = re.compile(
    r"^\W*(?:\[[^\]]*\]\s*)?(?:executing|running|launching|command|cmd)\s*:|^\s*[$+]\s",
    re.IGNORECASE,
)
_SETTINGS = re.compile(r"\b[\w.-]+=(?:0|false|no|none|null)\b")
# Lines not read at all, in one test: where an error happened, and echoed commands.
_NOT_READ = re.compile(f"(?:{_NOT_A_CAUSE.pattern})|(?:{_ECHOED_COMMAND.pattern})", re.IGNORECASE)
_CUE_NAMES = frozenset(_CUES)


def read_line(line: str, context: Callable[[], str] | None = None) -> CueReading | None:
    """The cause model's reading of one line, or None when it says nothing. ``context``
    gives the few lines before it, whose subjects a line without one of its own borrows."""

    def above() -> set[str]:
        return set() if context is None else _LEXICON.present(context().lower())

    def after_time() -> bool:
        return "time" in above()

    if context is None:
        return _read(line, None, None, None)
    return _read(line, None, above, after_time)


# How many lines before a cue line lend it their subjects.
CONTEXT_LINES = 3
# How far back a kill or an interruption looks for the time limit that sent it.
TIME_LIMIT_LINES = 8
# The most lines above a read line that reading it may look at.
LINES_ABOVE = max(CONTEXT_LINES, TIME_LIMIT_LINES)


def read_lines(lines: Sequence[str], indices: Iterable[int]) -> Iterator[tuple[int, CueReading]]:
    """(index, reading) of each line ``lines[index]`` that says something, ``indices`` in
    increasing order. A line without a subject borrows those of the :data:`CONTEXT_LINES`
    lines above it; each line's words are looked up once, whether read or lent."""
    families: dict[int, set[str]] = {}

    def words_of(index: int) -> set[str]:
        found = families.get(index)
        if found is None:
            found = families[index] = _LEXICON.present(lines[index].lower())
        return found

    for index in indices:

        def above(index: int = index) -> set[str]:
            found: set[str] = set()
            for before in range(max(0, index - CONTEXT_LINES), index):
                found |= words_of(before)
            return found

        def after_time(index: int = index) -> bool:
            for before in range(max(0, index - TIME_LIMIT_LINES), index):
                words = words_of(before)
                # a stack frame with "timeout" in it says where, not why
                if (
                    "time" in words
                    and _RETRIED_MARK not in words
                    and not _NOT_READ.match(lines[before])
                ):
                    return True
            return False

        line = lines[index]
        reading = _read(line, None if "=" in line else words_of, above, after_time, index)
        if reading is not None:
            yield index, reading


# "State 'stop-sigterm' timed out." then "Killing process ...", slurm's "CANCELLED DUE TO
# TIME LIMIT" then "Terminated", Jenkins' "Cancelling nested steps due to timeout" then
# "Sending interrupt signal": what a time limit does to end a run is the limit's doing.
_LIMIT_SENDS = frozenset({"kill", "interrupt"})


def _sent_by_a_limit(cues: list[str], subjects: set[str], lowered: str) -> bool:
    """A kill, or a process or job interrupted by something other than a person (not a
    program's own "KeyboardInterrupt"), which a time limit just above may have sent."""
    if "kill" in cues:
        return True
    return "interrupt" in cues and "ci" in subjects and "user" not in lowered


def _cues_of(found: set[str], lowered: str) -> list[str]:
    """The line's cue families, less those its marks explain away: an interruption by an
    API error is the error's; a failure word in "0 failed" reports nothing failed, an
    interruption word in "INTERRUPT 0" that nothing was interrupted."""
    cues = _cues_in(found)
    if "interrupt" in cues and (_BY_ERROR_MARK in found or _NONE_INTERRUPTED_MARK in found):
        cues = [c for c in cues if c != "interrupt"]
    if "tests" in cues and _NOTHING_FAILED_MARK in found and not _NONZERO_FAILED.search(lowered):
        cues = [c for c in cues if c not in ("tests", "error")]
    return cues


def _deciding_cues(
    cues: list[str],
    found: set[str],
    subjects: set[str],
    lowered: str,
    after_time: Callable[[], bool] | None,
) -> list[str]:
    """The cues that decide the line, in deciding order: a gateway's or the API's own
    deadline status is the API failing; a kill or interruption a time limit sent is the
    limit's."""
    if _API_DEADLINE_MARK in found:
        return ["server"]
    if (
        "time" not in cues
        and after_time is not None
        and _sent_by_a_limit(cues, subjects, lowered)
        and after_time()
    ):
        return sorted({"time" if c in _LIMIT_SENDS else c for c in cues}, key=_ORDER.index)
    return cues


def _line_families(
    line: str, words_of: Callable[[int], set[str]] | None, index: int
) -> tuple[str, set[str]]:
    """The line lower-cased (settings blanked out) and the lexicon families found in it."""
    lowered = line.lower()
    if words_of is not None:
        return lowered, words_of(index)
    if "=" in lowered:
        lowered = _SETTINGS.sub(" ", lowered)
    return lowered, _LEXICON.present(lowered)


def _read(
    line: str,
    words_of: Callable[[int], set[str]] | None,
    above: Callable[[], set[str]] | None,
    after_time: Callable[[], bool] | None,
    index: int = 0,
) -> CueReading | None:
    """:func:`read_line`, with the families of the line's words from ``words_of(index)``
    when given (a line without settings to blank out), and those of the lines above it."""
    if _NOT_READ.match(line):
        return None
    lowered, found = _line_families(line, words_of, index)
    if found.isdisjoint(_CUE_NAMES):
        return None
    cues = _cues_of(found, lowered)
    if not cues:
        return None
    subjects = _subjects_in(found)
    if _GIT_PREFIX.match(line):
        subjects.add("git_strong")
    if _RUNNER_VERDICT.match(lowered):
        subjects.add("tests")
    factor = 1.0
    borrowed = False
    if not subjects and above is not None:
        subjects = _subjects_in(above())
        factor, borrowed = _BORROWED, bool(subjects)
    fatal = _RETRIED_MARK not in found
    for cue in _deciding_cues(cues, found, subjects, lowered, after_time):
        if cue == "kill" and "time" in cues:
            continue  # killed for a time limit: the time cue decides
        reason, subject, weight = _reason_of(cue, subjects, lowered, borrowed)
        if reason is Reason.UNKNOWN:
            continue
        weight *= factor
        if not fatal:
            weight *= _RETRIED_FACTOR
        return CueReading(reason, weight, cue, subject, fatal)
    return None


# One synthetic table row per (reason, cue): cue readings travel as matches of these rows,
# so the classifier weighs them with the same rules as table matches.
_ROWS: dict[tuple[Reason, str, str | None], Pattern] = {}


def row_for(reading: CueReading) -> Pattern:
    key = (reading.reason, reading.cue, reading.subject)
    row = _ROWS.get(key)
    if row is None:
        row = Pattern(
            reading.describe(),
            reading.reason,
            _CUES[reading.cue],
            reading.weight,
            True,
            "(cue lexicon)",
            "pytest_orch_recovery/engine/cues.py",
        )
        _ROWS[key] = row
    return row
