"""Attribution throughput on the labelled corpus (tests/corpus/attribution.jsonl). Prints JSON.

Three figures, each against a baseline measured in the same run on the same lines:

- ``per_row``: every corpus row classified as its own attempt (a log-only observation, as
  ``orch-recovery classify --log`` builds it): rows per second, the worst case (every call
  pays the fixed cost of one classification).
- ``as_log``: the corpus joined into one log and classified once, repeated: lines per second
  through the pattern table on a realistic multi-line log.
- ``table_only``: ``match_lines`` per row without the rest of ``classify``, and the same with
  the literal prefilter switched off (every row's regex scans the whole text, as before the
  prefilter), to show what it saves.
- ``big_log``: one 16 MiB log (the corpus repeated) classified whole: seconds and MB per
  second (only the tail is read, so this is the cost of reaching it and reading it).
- ``leave_one_tool_out``: the generalisation figure per reason (report/attribution_eval.py).

Rates are per second of this process's CPU time (the machine is shared; wall-clock rates
are printed too). Baselines: ``json.loads`` of each corpus row (the least any reader of the
corpus does) and a plain ``re`` scan of each row with one regex (``error|fail|denied``).

Run: ``python benchmarks/bench_classify.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine import matcher, patterns
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.report import attribution_eval

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "attribution.jsonl"
_PLAIN = re.compile(r"error|fail|denied", re.IGNORECASE)


# The machine is shared: wall-clock rates swing with other processes' load. The figures are
# CPU time of this process (time.process_time), which load barely moves; the wall-clock rate
# of the headline figures is reported beside them.
_CLOCK = time.process_time


def _rate(
    count: int, run: Callable[[], object], repeat: int, clock: Callable[[], float] = _CLOCK
) -> float:
    """Items per second of CPU time (or of ``clock``), the best of ``repeat`` timed runs."""
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        run()
        best = min(best, clock() - start)
    return count / max(best, 1e-9)


def _classify_rows(texts: list[str]) -> None:
    for text in texts:
        classify(Observation(logs=(LogText("log", text),)))


def _match_rows(texts: list[str]) -> None:
    for text in texts:
        matcher.match_lines(text, "log")


def _unfiltered_match_rows(texts: list[str]) -> None:
    rows = matcher.TABLE.rows
    unfiltered = matcher.Table(rows, tuple(range(len(rows))), {}, (), (None,) * len(rows))
    for text in texts:
        matcher.match_lines(text, "log", unfiltered)


def _json_rows(raw: list[str]) -> None:
    for line in raw:
        json.loads(line)


def _plain_re_rows(texts: list[str]) -> None:
    for text in texts:
        _PLAIN.search(text)


def bench(repeat: int) -> dict[str, Any]:
    raw = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [json.loads(line)["text"] for line in raw]
    rows = len(texts)
    lines = sum(text.count("\n") + 1 for text in texts)
    log = "\n".join(texts)

    json_rate = _rate(rows, lambda: _json_rows(raw), repeat)
    plain_rate = _rate(rows, lambda: _plain_re_rows(texts), repeat)
    per_row = _rate(rows, lambda: _classify_rows(texts), repeat)
    per_row_wall = _rate(rows, lambda: _classify_rows(texts), repeat, time.perf_counter)

    def whole_log() -> None:
        classify(Observation(logs=(LogText("log", log),)))

    as_log = _rate(lines, whole_log, repeat * 5)
    as_log_wall = _rate(lines, whole_log, repeat * 5, time.perf_counter)
    big = (log + "\n") * (16 * 1024 * 1024 // (len(log) + 1) + 1)
    big = big[-16 * 1024 * 1024 :]

    def big_log() -> None:
        classify(Observation(logs=(LogText("log", big),)))

    big_per_second = _rate(1, big_log, repeat)
    corpus_rows = attribution_eval.load_corpus(CORPUS)
    loo = attribution_eval.score(corpus_rows, attribution_eval.leave_one_tool_out(corpus_rows))
    table = _rate(rows, lambda: _match_rows(texts), repeat)
    table_unfiltered = _rate(rows, lambda: _unfiltered_match_rows(texts), repeat)
    return {
        "corpus": {"rows": rows, "lines": lines, "pattern_rows": len(patterns.PATTERNS)},
        "per_row": {
            "rows_per_second": round(per_row),
            "rows_per_second_wall_clock": round(per_row_wall),
            "baseline_json_loads_per_second": round(json_rate),
            "ratio_to_json_loads": round(per_row / json_rate, 4),
        },
        "as_log": {
            "lines_per_second": round(as_log),
            "lines_per_second_wall_clock": round(as_log_wall),
            "baseline_plain_re_lines_per_second": round(plain_rate * lines / rows),
            "ratio_to_plain_re": round(as_log / (plain_rate * lines / rows), 4),
        },
        "table_only": {
            "rows_per_second": round(table),
            "rows_per_second_without_prefilter": round(table_unfiltered),
            "prefilter_speedup": round(table / table_unfiltered, 2),
            "baseline_plain_re_rows_per_second": round(plain_rate),
        },
        "big_log": {
            "mib": 16,
            "seconds": round(1 / big_per_second, 4),
            "mb_per_second": round(16 * big_per_second, 1),
        },
        "log_mb_per_second": round(as_log * len(log.encode()) / lines / 1e6, 3),
        "leave_one_tool_out": loo.to_json(),
        "repeat": repeat,
        "note": "per second of CPU time (process_time), best of `repeat` runs; *_wall_clock "
        "figures depend on the machine's load",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (best kept)")
    args = parser.parse_args()
    print(json.dumps(bench(args.repeat), indent=2))


if __name__ == "__main__":
    main()
