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
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.classify import LogText, Observation, classify

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "attribution.jsonl"
_PLAIN = re.compile(r"error|fail|denied", re.IGNORECASE)
BIG_LOG = 16 * 1024 * 1024


# The machine is shared: wall-clock rates swing with other processes' load. The figures are
# CPU time of this process (time.process_time), which load barely moves; the wall-clock rate
# of the headline figures is reported beside them.
_CLOCK = time.process_time


def _rate(
    count: float, run: Callable[[], object], repeat: int, clock: Callable[[], float] = _CLOCK
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
    from pytest_orch_recovery.engine import matcher

    for text in texts:
        matcher.match_lines(text, "log")


def _unfiltered_match_rows(texts: list[str]) -> None:
    from pytest_orch_recovery.engine import matcher

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


def classifier_rates(repeat: int) -> dict[str, float]:
    """Rows/s one row per attempt, lines/s on the joined corpus, seconds for a 16 MiB log:
    measured with whatever ``classify`` this process imports (the baseline's subprocess
    imports the revision under comparison)."""
    texts = _corpus_texts()
    rows = len(texts)
    lines = sum(text.count("\n") + 1 for text in texts)
    log = "\n".join(texts)
    big = ((log + "\n") * (BIG_LOG // (len(log) + 1) + 1))[-BIG_LOG:]

    def whole_log() -> None:
        classify(Observation(logs=(LogText("log", log),)))

    def big_log() -> None:
        classify(Observation(logs=(LogText("log", big),)))

    return {
        "rows_per_second": _rate(rows, lambda: _classify_rows(texts), repeat),
        "lines_per_second": _rate(lines, whole_log, repeat * 5),
        "mb_per_second": _rate(len(log.encode()) / 1e6, whole_log, repeat * 5),
        "big_log_seconds": 1 / _rate(1, big_log, repeat),
    }


def _corpus_texts() -> list[str]:
    raw = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line)["text"] for line in raw]


def baseline_rates(revision: str, repeat: int) -> dict[str, float]:
    """:func:`classifier_rates` of the package as it was at ``revision``, in a subprocess
    importing that revision's tree (git archive into a temporary directory)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", revision, "pytest_orch_recovery"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="bench-classify-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--rates-only", "--repeat", str(repeat)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        ).stdout
    rates: dict[str, float] = json.loads(out)
    return rates


def _best(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The better of two measurements of each rate (for seconds: the smaller)."""
    return {k: min(a[k], b[k]) if k.endswith("_seconds") else max(a[k], b[k]) for k in a}


def default_baseline() -> str:
    """The revision before the cause model: the parent of the commit that added
    engine/matcher.py (the phrase-book classifier)."""
    root = Path(__file__).resolve().parent.parent
    added = subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "log",
            "--diff-filter=A",
            "--format=%H",
            "--",
            "pytest_orch_recovery/engine/matcher.py",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def bench(repeat: int, baseline: str) -> dict[str, Any]:
    from pytest_orch_recovery.engine import patterns
    from pytest_orch_recovery.report import attribution_eval

    raw = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [json.loads(line)["text"] for line in raw]
    # Interleaved, best of two rounds each: the machine's load drifts over the minute this
    # takes, and a ratio of two figures measured at different loads would measure the load.
    before = baseline_rates(baseline, repeat)
    now = classifier_rates(repeat)
    before = _best(before, baseline_rates(baseline, repeat))
    now = _best(now, classifier_rates(repeat))
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
        "against_baseline": {
            "baseline": baseline,
            "now": {k: round(v, 4) for k, v in now.items()},
            "before": {k: round(v, 4) for k, v in before.items()},
            "ratio_rows_per_second": round(now["rows_per_second"] / before["rows_per_second"], 3),
            "ratio_lines_per_second": round(
                now["lines_per_second"] / before["lines_per_second"], 3
            ),
        },
        "big_log_16_mib_seconds": round(now["big_log_seconds"], 4),
        "leave_one_tool_out": loo.to_json(),
        "repeat": repeat,
        "note": "per second of CPU time (process_time), best of `repeat` runs; *_wall_clock "
        "figures depend on the machine's load",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (best kept)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="git revision whose classifier is measured in the same run for the ratios "
        "(default: the parent of the commit that added engine/matcher.py)",
    )
    parser.add_argument(
        "--rates-only",
        action="store_true",
        help="print only the classifier's rates (how the baseline's subprocess is run)",
    )
    args = parser.parse_args()
    if args.rates_only:
        print(json.dumps(classifier_rates(args.repeat)))
        return
    print(json.dumps(bench(args.repeat, args.baseline or default_baseline()), indent=2))


if __name__ == "__main__":
    main()
