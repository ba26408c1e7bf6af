"""When does a usage limit lift? Read the reset from what a CLI or the API said.

Pure: text in, an instant out; the observation time and the zone a bare clock time is read in
are arguments, never the machine's clock. The wordings, each seen in public reports (the
samples with their sources are ``tests/corpus/resets.jsonl``):

- Claude Code: ``You've hit your session limit · resets 5:40pm (Europe/Berlin)``,
  ``You've hit your limit · resets Jan 30, 11:30am (Asia/Calcutta)``, older
  ``Claude AI usage limit reached|1753088400`` (epoch seconds), claude.ai's
  ``Limits will reset at 9:30 AM``;
- Codex: ``try again in 4 days 6 hours 37 minutes``, ``try again at Jul 5th, 2026 8:19 PM``;
- Gemini and its API: ``Your quota will reset after 12h34m16s``, ``Please retry in 47.43s``;
- HTTP headers a log or result carries: ``retry-after`` (seconds or an HTTP date),
  ``retry-after-ms``, ``anthropic-ratelimit-unified-reset`` (epoch seconds) and the API's
  ``anthropic-ratelimit-{requests,tokens,...}-reset`` (RFC 3339).

A clock time without a date is its next occurrence after the observation (``resets 3:30am``
seen at 23:10 is tomorrow's), except within the minute the CLI rounds to: a reset printed as
the current minute has just come, not a day away.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pytest_orch_recovery.engine.model import Evidence, Reason

# A CLI prints the reset to the minute: a printed time this far behind the observation is the
# current minute, not tomorrow's.
CLOCK_PRECISION = 60.0

# Resets further away than this are not believed (a garbled year, a bogus epoch): Anthropic's
# and OpenAI's longest documented windows are a week.
MAX_RESET_SECONDS = 31 * 24 * 3600.0

# Only a text's tail is read: the limit that ended a run is at its end, and logs can be long.
_SCANNED = 16 * 1024

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}

# Words that make a reset a plan's usage limit (a condition of the account for hours), as
# opposed to a transient throttle the API lifts in seconds.
_LIMIT_WORDS = re.compile(
    r"hit your (?:[\w-]+ )?limit|usage limit|exhausted your capacity|quota will reset|"
    r"limits? will reset|unified-status:\s*rejected",
    re.IGNORECASE,
)

_CLOCK = r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)"
_ZONE = r"(?:\s*\((?P<zone>[A-Za-z][\w+-]*(?:/[\w+-]+){0,2})\))?"
_DATE = (
    r"(?:(?P<month>[A-Z][a-z]{2})[a-z]* (?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s*"
    r"(?P<year>\d{4})?,?\s*)?"
)

_FORMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("epoch", re.compile(r"usage limit reached\|(?P<epoch>\d{9,11})\b", re.IGNORECASE)),
    (
        "header_epoch",
        re.compile(
            r"^\s*anthropic-ratelimit-[\w-]*reset\s*[:=]\s*\"?(?P<epoch>\d{9,11})\"?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "header_rfc3339",
        re.compile(
            r"^\s*anthropic-ratelimit-[\w-]*reset\s*[:=]\s*\"?(?P<iso>\d{4}-\d{2}-\d{2}T"
            r"\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))\"?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "retry_after_ms",
        re.compile(
            r"^\s*retry-after-ms\s*:\s*\"?(?P<ms>\d+(?:\.\d+)?)\"?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "retry_after",
        re.compile(
            r"^\s*retry-after\s*:\s*\"?(?P<seconds>\d+(?:\.\d+)?)\"?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "retry_after_date",
        re.compile(
            r"^\s*retry-after\s*:\s*(?P<http_date>[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} "
            r"\d{2}:\d{2}:\d{2} GMT)\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "clock",
        re.compile(
            r"(?:\bresets|\breset at|try again at|available again at)\s+" + _DATE + _CLOCK + _ZONE,
            re.IGNORECASE,
        ),
    ),
    (
        "relative",
        re.compile(
            r"(?:try again|retry|resets?|reset after|wait)\s+(?:in|after)\s+"
            r"(?P<duration>\d+(?:\.\d+)?\s*[a-z]+(?:[\s,]*(?:and\s+)?\d+(?:\.\d+)?\s*[a-z]+)*)",
            re.IGNORECASE,
        ),
    ),
)

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)


@dataclass(frozen=True)
class ResetHint:
    """A reset read from text: when, how it was said, and whether it is a usage limit."""

    at: float  # epoch seconds at which the limit lifts
    seconds: float  # from the observation to ``at`` (never negative)
    form: str  # which wording: clock, relative, epoch, retry_after, header_epoch, ...
    text: str  # the words it was read from
    usage_limit: bool  # a plan's quota (hours), not a throttle lifted in seconds

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        kind = "usage limit" if self.usage_limit else "rate limit"
        return f"{kind} resets at {when} ({self.seconds:g}s after the observation): {self.text}"

    def evidence(self) -> Evidence:
        """The reset as an evidence item: it says when, not why, so it weighs nothing."""
        return Evidence("reset", Reason.API_ERROR, 0.0, self.describe())


def _duration(text: str) -> float | None:
    total = 0.0
    for number, unit in _DURATION_PART.findall(text):
        scale = _UNIT_SECONDS.get(unit.lower())
        if scale is None:
            break  # prose after the duration ("in 4 hours or upgrade")
        total += float(number) * scale
    return total if total > 0 else None


def _zone_named(name: str | None, default: tzinfo) -> tzinfo:
    if not name:
        return default
    if name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default  # a zone this machine does not know: the observer's own


def _clock_instant(m: re.Match[str], observed_at: float, default: tzinfo) -> float | None:
    hour = int(m["hour"])
    minute = int(m["minute"] or 0)
    if not 1 <= hour <= 12 or minute > 59:
        return None
    pm = m["ampm"].lower().startswith("p")
    hour = hour % 12 + (12 if pm else 0)
    zone = _zone_named(m["zone"], default)
    seen = datetime.fromtimestamp(observed_at, zone)
    if m["month"]:
        month = _MONTHS.get(m["month"][:3].lower())
        if month is None:
            return None
        year = int(m["year"]) if m["year"] else seen.year
        try:
            when = datetime(year, month, int(m["day"]), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if not m["year"] and when.timestamp() < observed_at - CLOCK_PRECISION:
            when = when.replace(year=year + 1)  # "Jan 2" seen on Dec 30
        return when.timestamp()
    when = seen.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when.timestamp() < observed_at - CLOCK_PRECISION:
        # Tomorrow's: the wall time on the next calendar day in that zone (not +24 h, which a
        # daylight-saving change would shift by an hour).
        nxt = seen.date() + timedelta(days=1)
        when = datetime(nxt.year, nxt.month, nxt.day, hour, minute, tzinfo=zone)
    return when.timestamp()


def _instant(form: str, m: re.Match[str], observed_at: float, zone: tzinfo) -> float | None:
    if form in ("epoch", "header_epoch"):
        return float(m["epoch"])
    if form == "header_rfc3339":
        return datetime.fromisoformat(m["iso"].replace("Z", "+00:00")).timestamp()
    if form == "retry_after_ms":
        return observed_at + float(m["ms"]) / 1000.0
    if form == "retry_after":
        return observed_at + float(m["seconds"])
    if form == "retry_after_date":
        try:
            return email.utils.parsedate_to_datetime(m["http_date"]).timestamp()
        except (TypeError, ValueError):
            return None
    if form == "clock":
        return _clock_instant(m, observed_at, zone)
    seconds = _duration(m["duration"])
    return None if seconds is None else observed_at + seconds


def read_reset(text: str, observed_at: float, zone: tzinfo = UTC) -> ResetHint | None:
    """The reset the text announces, the last one said (the latest word wins).

    ``observed_at`` is when the text was seen (epoch seconds), ``zone`` where a clock time
    without a zone is read (the machine the CLI ran on). None when the text names no reset,
    or one further than :data:`MAX_RESET_SECONDS` away.

    >>> berlin = datetime(2026, 7, 19, 17, 10, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    >>> hint = read_reset("You've hit your session limit · resets 5:40pm (Europe/Berlin)", berlin)
    >>> hint.seconds, hint.usage_limit
    (1800.0, True)
    >>> read_reset("retry-after: 30", 0.0).seconds
    30.0
    >>> read_reset("Error: something else", 0.0) is None
    True
    """
    best: tuple[int, ResetHint] | None = None
    for form, regex in _FORMS:
        for m in regex.finditer(text):
            at = _instant(form, m, observed_at, zone)
            if at is None or at - observed_at > MAX_RESET_SECONDS:
                continue
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            line = text[line_start : len(text) if line_end < 0 else line_end]
            limit = form in ("epoch",) or bool(_LIMIT_WORDS.search(line))
            if form == "header_epoch" and "unified" in m.group(0).lower():
                limit = True
            hint = ResetHint(
                at=at,
                seconds=max(0.0, at - observed_at),
                form=form,
                text=line.strip()[:200],
                usage_limit=limit,
            )
            if best is None or m.start() > best[0] or (m.start() == best[0] and limit):
                best = (m.start(), hint)
    if best is None:
        return None
    hint = best[1]
    if not hint.usage_limit and _LIMIT_WORDS.search(text):
        # A header or relative time beside a usage-limit line elsewhere in the same output.
        hint = ResetHint(hint.at, hint.seconds, hint.form, hint.text, True)
    return hint


class _Text(Protocol):
    @property
    def text(self) -> str: ...


def observed_reset(
    logs: Iterable[_Text],
    result: Mapping[str, Any] | None,
    observed_at: float | None,
    zone: tzinfo = UTC,
) -> ResetHint | None:
    """The reset an ended attempt announced: in its result's text, else its last log saying
    one. None without an observation time (a clock time means nothing without it)."""
    if observed_at is None:
        return None
    texts = [log.text for log in logs]
    if isinstance(result, Mapping) and isinstance(result.get("result"), str):
        texts.append(str(result["result"]))
    for text in reversed(texts):
        hint = read_reset(text[-_SCANNED:], observed_at, zone)
        if hint is not None:
            return hint
    return None
