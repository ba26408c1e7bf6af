"""How well attribution carries over: accuracy on a labelled corpus, in sample and
leave-one-tool-out, with a calibration table.

A corpus is JSON lines of ``{"text", "reason", "tool", "source"}`` (the project's own is
``tests/corpus/attribution.jsonl``). Each row is classified as ``orch-recovery classify
--log FILE`` does it: a log-only observation.

Leave-one-tool-out: for each tool family, every table row that matches a line of that
family's texts is disabled, and the family's rows are judged by what is left (the other
families' exact rows and the cause model). It asks the question that matters in production:
how well is wording read that no row was written for?
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.matcher import TABLE, Table, match_lines
from pytest_orch_recovery.engine.model import Attribution, Reason

_FIELDS = frozenset({"text", "reason", "tool", "source"})

# Confidence bins of the calibration table: [low, high).
CONFIDENCE_BINS: tuple[tuple[float, float], ...] = (
    (0.0, 0.3),
    (0.3, 0.5),
    (0.5, 0.7),
    (0.7, 0.9),
    (0.9, 1.01),
)


class CorpusError(OrchRecoveryError, ValueError):
    """A corpus line that is not a well-formed row."""


@dataclass(frozen=True)
class CorpusRow:
    line: int
    text: str
    reason: Reason
    tool: str
    source: str


def load_corpus(path: Path) -> tuple[CorpusRow, ...]:
    rows: list[CorpusRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise CorpusError(f"{path}:{number}: invalid JSON: {exc}") from None
            if not isinstance(data, dict) or set(data) != _FIELDS:
                raise CorpusError(f"{path}:{number}: fields: expected {sorted(_FIELDS)}")
            try:
                reason = Reason(data["reason"])
            except ValueError:
                raise CorpusError(f"{path}:{number}: reason: {data['reason']!r}") from None
            rows.append(CorpusRow(number, data["text"], reason, data["tool"], data["source"]))
    return tuple(rows)


def classify_text(text: str, table: Table = TABLE) -> Attribution:
    """A row's text classified as a log-only observation (what ``classify --log`` does)."""
    return classify(Observation(logs=(LogText("log", text),)), table=table)


def own_rows(rows: Iterable[CorpusRow], table: Table = TABLE) -> set[str]:
    """Names of the table rows that match a line of these corpus rows."""
    return {m.pattern.name for row in rows for m in match_lines(row.text, "log", table)}


Judge = Callable[[CorpusRow, Table], Attribution]


def _judge(row: CorpusRow, table: Table) -> Attribution:
    return classify_text(row.text, table)


def in_sample(rows: Sequence[CorpusRow], judge: Judge = _judge) -> dict[int, Attribution]:
    """Line -> attribution, with the whole table."""
    return {row.line: judge(row, TABLE) for row in rows}


def leave_one_tool_out(rows: Sequence[CorpusRow], judge: Judge = _judge) -> dict[int, Attribution]:
    """Line -> attribution, each family judged by a table without its own rows."""
    by_tool: dict[str, list[CorpusRow]] = defaultdict(list)
    for row in rows:
        by_tool[row.tool].append(row)
    out: dict[int, Attribution] = {}
    for family in by_tool.values():
        table = TABLE.without(own_rows(family))
        for row in family:
            out[row.line] = judge(row, table)
    return out


@dataclass(frozen=True)
class Scores:
    """Accuracy overall and per reason, the unknown rate, and the calibration table."""

    right: int
    total: int
    per_reason: dict[Reason, tuple[int, int]]
    unknown_on_labelled: tuple[int, int]  # (unknown verdicts, rows labelled not unknown)
    calibration: list[tuple[tuple[float, float], int, int]]  # (bin, right, total)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    def reason_accuracy(self, reason: Reason) -> float:
        right, total = self.per_reason.get(reason, (0, 0))
        return right / total if total else 0.0

    @property
    def unknown_rate(self) -> float:
        unknown, labelled = self.unknown_on_labelled
        return unknown / labelled if labelled else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "rows": self.total,
            "per_reason": {
                str(reason): {"right": r, "total": t, "accuracy": round(r / t, 4) if t else None}
                for reason, (r, t) in sorted(self.per_reason.items())
            },
            "unknown_on_labelled": round(self.unknown_rate, 4),
            "calibration": [
                {
                    "confidence": f"[{lo:.1f}, {min(hi, 1.0):.1f}{')' if hi < 1 else ']'}",
                    "rows": t,
                    "accuracy": round(r / t, 4) if t else None,
                }
                for (lo, hi), r, t in self.calibration
            ],
        }


def score(rows: Sequence[CorpusRow], verdicts: dict[int, Attribution]) -> Scores:
    right: Counter[Reason] = Counter()
    total: Counter[Reason] = Counter()
    bins = [[0, 0] for _ in CONFIDENCE_BINS]
    unknown = labelled = 0
    for row in rows:
        verdict = verdicts[row.line]
        hit = verdict.reason is row.reason
        total[row.reason] += 1
        right[row.reason] += hit
        if row.reason is not Reason.UNKNOWN:
            labelled += 1
            unknown += verdict.reason is Reason.UNKNOWN
            for index, (low, high) in enumerate(CONFIDENCE_BINS):
                if low <= verdict.confidence < high:
                    bins[index][0] += hit
                    bins[index][1] += 1
                    break
    return Scores(
        sum(right.values()),
        sum(total.values()),
        {reason: (right[reason], total[reason]) for reason in total},
        (unknown, labelled),
        [(b, r, t) for b, (r, t) in zip(CONFIDENCE_BINS, bins, strict=True)],
    )


def misses(rows: Sequence[CorpusRow], verdicts: dict[int, Attribution], name: str) -> list[str]:
    """One ``file:line: expected X, got Y: text`` line per miss."""
    return [
        f"{name}:{row.line}: expected {row.reason}, got {verdicts[row.line].reason} "
        f"({verdicts[row.line].confidence:.2f}): {row.text[:100]!r}"
        for row in rows
        if verdicts[row.line].reason is not row.reason
    ]
