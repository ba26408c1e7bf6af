"""Attribution accuracy on the project's labelled corpus of real failure wording.

``tests/corpus/attribution.jsonl`` holds one JSON object per line: ``text`` (a line or a
short excerpt as a tool printed it; paths, names and numbers may be paraphrased, the wording
is the tool's), ``reason`` (the reason code a person assigns it), ``tool`` and ``source``
(where the wording was seen: an issue thread, a repository file, a docs page, or a
reproduction on this machine). Rows include near-misses (passing summaries, "0 failed",
successful pushes) and text that says nothing, labelled ``unknown``.

Every row is classified exactly as ``orch-recovery classify --log FILE`` does it: the CLI
reads the file and hands the engine a log-only observation.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_orch_recovery.cli import main as cli
from pytest_orch_recovery.engine.matcher import TABLE
from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.report import attribution_eval as evaluation

CORPUS = Path(__file__).parent / "corpus" / "attribution.jsonl"
DOCS = Path(__file__).parent.parent / "docs" / "attribution.md"

OVERALL_ACCURACY = 0.97
PER_REASON_ACCURACY = 0.90
# Leave-one-tool-out: each tool family judged without the table rows its own wording
# matched (report/attribution_eval.py): wording no row was written for.
LOO_ACCURACY = 0.85
LOO_PER_REASON_ACCURACY = 0.75
# Rows labelled with a cause that come back unknown.
MAX_UNKNOWN_RATE = 0.10
MIN_ROWS = 300
MIN_TOOLS = 25
MIN_TEST_RUNNERS = 12
TEST_RUNNERS = frozenset(
    {
        "pytest",
        "unittest",
        "jest",
        "vitest",
        "mocha",
        "go",
        "cargo",
        "maven",
        "phpunit",
        "dotnet-test",
        "rspec",
        "cucumber",
        "ctest",
        "googletest",
        "unity",
        "playwright",
        "gradle",
        "bun-test",
        "bazel",
        "behave",
        "deno-test",
        "avocado",
        "meson",
        "tap-spec",
        "openj9-testkitgen",
    }
)

_FIELDS = frozenset({"text", "reason", "tool", "source"})


@dataclass(frozen=True)
class CorpusRow:
    line: int
    text: str
    reason: Reason
    tool: str
    source: str


def _rows() -> Iterator[CorpusRow]:
    with CORPUS.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            data = json.loads(raw)
            assert set(data) == _FIELDS, f"{CORPUS.name}:{number}: fields {sorted(data)}"
            yield CorpusRow(
                number, data["text"], Reason(data["reason"]), data["tool"], data["source"]
            )


ROWS = tuple(_rows())


def _classify_via_cli(row: CorpusRow, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    log = tmp_path / f"row{row.line}.log"
    log.write_text(row.text, encoding="utf-8")
    assert cli.main(["classify", "--log", str(log)]) == 0
    reason: str = json.loads(capsys.readouterr().out)["reason"]
    return reason


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Line number -> reason the CLI attributed, for every row (run once per module)."""
    tmp = tmp_path_factory.mktemp("corpus")
    got: dict[int, str] = {}
    with pytest.MonkeyPatch.context() as patch:
        for row in ROWS:
            log = tmp / f"row{row.line}.log"
            log.write_text(row.text, encoding="utf-8")
            out = tmp / f"row{row.line}.json"
            with out.open("w", encoding="utf-8") as handle:
                patch.setattr("sys.stdout", handle)
                assert cli.main(["classify", "--log", str(log)]) == 0
            got[row.line] = json.loads(out.read_text(encoding="utf-8"))["reason"]
    return got


def _accuracy_table(outcomes: dict[int, str]) -> dict[Reason, tuple[int, int]]:
    total: Counter[Reason] = Counter()
    right: Counter[Reason] = Counter()
    for row in ROWS:
        total[row.reason] += 1
        right[row.reason] += outcomes[row.line] == row.reason.value
    return {reason: (right[reason], total[reason]) for reason in total}


def _misses(outcomes: dict[int, str], reason: Reason | None = None) -> list[str]:
    return [
        f"{CORPUS.name}:{row.line}: expected {row.reason}, got {outcomes[row.line]}: "
        f"{row.text[:100]!r}"
        for row in ROWS
        if outcomes[row.line] != row.reason.value and (reason is None or row.reason is reason)
    ]


def test_corpus_is_large_varied_and_sourced() -> None:
    assert len(ROWS) >= MIN_ROWS
    assert {row.reason for row in ROWS} == set(Reason)
    assert len({row.tool for row in ROWS}) >= MIN_TOOLS
    for row in ROWS:
        assert row.text.strip(), f"{CORPUS.name}:{row.line}: empty text"
        assert row.tool.strip(), f"{CORPUS.name}:{row.line}: no tool"
        # A public thread, a docs page, or the file of the tool's source that prints it (a
        # reproduction names that file too), by its address.
        assert row.source.startswith("https://"), f"{CORPUS.name}:{row.line}: source: no address"


def test_corpus_spans_test_runners() -> None:
    runners = {row.tool for row in ROWS} & TEST_RUNNERS
    assert len(runners) >= MIN_TEST_RUNNERS, sorted(runners)


@pytest.fixture(scope="module")
def loo() -> tuple[evaluation.Scores, list[str]]:
    rows = evaluation.load_corpus(CORPUS)
    verdicts = evaluation.leave_one_tool_out(rows)
    return evaluation.score(rows, verdicts), evaluation.misses(rows, verdicts, CORPUS.name)


def test_leave_one_tool_out_accuracy(loo: tuple[evaluation.Scores, list[str]]) -> None:
    scores, missed = loo
    assert scores.accuracy >= LOO_ACCURACY, "\n".join(missed)


@pytest.mark.parametrize("reason", list(Reason), ids=[r.value for r in Reason])
def test_leave_one_tool_out_accuracy_per_reason(
    reason: Reason, loo: tuple[evaluation.Scores, list[str]]
) -> None:
    scores, missed = loo
    assert scores.reason_accuracy(reason) >= LOO_PER_REASON_ACCURACY, "\n".join(
        m for m in missed if f"expected {reason}," in m
    )


def test_unknown_only_when_nothing_points_anywhere(
    loo: tuple[evaluation.Scores, list[str]], outcomes: dict[int, str]
) -> None:
    scores, _ = loo
    assert scores.unknown_rate < MAX_UNKNOWN_RATE
    labelled = [row for row in ROWS if row.reason is not Reason.UNKNOWN]
    unknown = sum(outcomes[row.line] == Reason.UNKNOWN.value for row in labelled)
    assert unknown / len(labelled) < MAX_UNKNOWN_RATE


def test_disabling_a_familys_rows_is_what_loo_measures() -> None:
    # The rows a family's wording matched are really gone from its table.
    rows = [row for row in evaluation.load_corpus(CORPUS) if row.tool == "git"]
    own = evaluation.own_rows(rows)
    assert own
    table = TABLE.without(own)
    assert not evaluation.own_rows(rows, table)


def test_no_row_is_listed_twice() -> None:
    texts = Counter(row.text for row in ROWS)
    assert [text for text, n in texts.items() if n > 1] == []


def test_overall_accuracy(outcomes: dict[int, str]) -> None:
    right = sum(outcomes[row.line] == row.reason.value for row in ROWS)
    assert right / len(ROWS) >= OVERALL_ACCURACY, "\n".join(_misses(outcomes))


@pytest.mark.parametrize("reason", list(Reason), ids=[r.value for r in Reason])
def test_accuracy_per_reason(reason: Reason, outcomes: dict[int, str]) -> None:
    right, total = _accuracy_table(outcomes)[reason]
    assert total >= 5, f"too few {reason} rows to measure"
    assert right / total >= PER_REASON_ACCURACY, "\n".join(_misses(outcomes, reason))


def test_single_row_through_the_cli_matches_the_bulk_run(
    outcomes: dict[int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bulk fixture redirects stdout by hand; one row through capsys checks it agrees.
    row = next(r for r in ROWS if r.reason is Reason.GIT_ERROR)
    assert _classify_via_cli(row, tmp_path, capsys) == outcomes[row.line]


# --------------------------------------------------------------------------- the docs' figures

_FIGURE_ROW = re.compile(
    r"^\| \**(\w+)\** \| \**(\d+)\** \| \**([\d.]+)\** \| \**([\d.]+)\** \|", re.M
)
_CALIBRATION_ROW = re.compile(r"^\| \[([\d.]+), ([\d.]+)[)\]] \| (\d+) \| ([\d.]+|—) \|", re.M)


def test_the_docs_figures_are_the_corpus_figures(
    loo: tuple[evaluation.Scores, list[str]],
) -> None:
    """docs/attribution.md's table (rows, leave-one-tool-out and in-sample accuracy per
    reason) and its calibration table are what the corpus measures today."""
    rows = evaluation.load_corpus(CORPUS)
    scores, _ = loo
    sample = evaluation.score(rows, evaluation.in_sample(rows))
    text = DOCS.read_text(encoding="utf-8")
    documented = {m[1]: m.groups()[1:] for m in _FIGURE_ROW.finditer(text)}
    expected = {
        str(reason): (
            str(total),
            f"{scores.reason_accuracy(reason):.3f}",
            f"{sample.reason_accuracy(reason):.3f}",
        )
        for reason, (_, total) in scores.per_reason.items()
    }
    expected["all"] = (str(scores.total), f"{scores.accuracy:.3f}", f"{sample.accuracy:.3f}")
    assert documented == expected
    calibration = [(int(m[3]), m[4]) for m in _CALIBRATION_ROW.finditer(text)]
    assert calibration == [
        (total, f"{right / total:.2f}" if total else "—") for _, right, total in scores.calibration
    ]
