"""The HTML report: one page for both front doors, drawn from events alone where it can be.

"The same page" is tested literally: a chaos campaign's report written by the plugin's gate and
the page ``orch-recovery report --format html`` draws from the campaign's journal (the gate's
``.jsonl`` report) have the same sections, and every section drawn from the events alone
(overview, charts, timeline) is byte-identical once the campaign's fault marks
(``class="fault"``) are removed. The criteria section differs by design: the gate judges
first-try rates over the fault-free tasks only.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from events import JournalBuilder, random_journal, seed_incident, sigint_resumed
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.campaign import run_scenario
from pytest_orch_recovery.chaos.scenario import load_scenario
from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched, Event, EventKind
from pytest_orch_recovery.engine.model import ExitInfo
from pytest_orch_recovery.plugin.gate import aggregate, write_report
from pytest_orch_recovery.report.charts import (
    criteria_chart,
    reasons_chart,
    recovery_time_chart,
    tick_step,
    time_label,
)
from pytest_orch_recovery.report.htmlreport import render_html
from pytest_orch_recovery.report.htmltimeline import MAX_TIMELINE_TASKS
from pytest_orch_recovery.report.metrics import Criteria, compute, evaluate
from pytest_orch_recovery.report.pagefacts import page_facts
from pytest_orch_recovery.report.stats import percentile, wilson_interval
from pytest_orch_recovery.report.timeline import task_lanes
from pytest_orch_recovery.store.journal import journal_text, replay

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("task-agent-5030", "api-429-retry-after", "permission-systematic", "timeout")
CAMPAIGN_ONLY = re.compile(r'<(g|p|li) class="fault"[^>]*>.*?</\1>', re.DOTALL)


class _Sections(HTMLParser):
    """Where each top-level ``<section id=...>`` starts and ends in the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=False)
        self.lines = [0]
        for line in page.splitlines(keepends=True):
            self.lines.append(self.lines[-1] + len(line))
        self.depth = 0
        self.open: tuple[str, int] | None = None
        self.found: dict[str, tuple[int, int]] = {}
        self.feed(page)

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.lines[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "section":
            return
        if self.depth == 0:
            self.open = (dict(attrs).get("id") or "", self._offset())
        self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag != "section":
            return
        self.depth -= 1
        if self.depth == 0 and self.open is not None:
            self.found[self.open[0]] = (self.open[1], self._offset() + len("</section>"))


def sections(page: str) -> dict[str, str]:
    """The page's top-level sections by id, in page order."""
    return {name: page[a:b] for name, (a, b) in _Sections(page).found.items()}


def _campaign(tmp_path: Path) -> tuple[Path, Path]:
    runs = [
        run_scenario(
            load_scenario(BUNDLED_SCENARIOS / f"{name}.toml"), tier="sim", seed=5, agent="sim"
        )
        for name in SCENARIOS
    ]
    # As the plugin sends them: a run travels from its worker as compact JSON.
    runs = [type(r).from_json(r.to_json()) for r in runs]
    result = aggregate(runs, Criteria())
    campaign = {
        **result.to_json(),
        "seed": 5,
        "tier": "sim",
        "agent": "sim",
        "replay": "pytest --orch-chaos --orch-seed 5",
    }
    page, journal = tmp_path / "o.html", tmp_path / "o.jsonl"
    write_report(page, result, campaign)
    write_report(journal, result, campaign)
    return page, journal


def _cli_page(journal: Path, out: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            "report",
            "--journal",
            str(journal),
            "--format",
            "html",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text(encoding="utf-8")


def test_plugin_and_cli_draw_the_same_page_for_the_same_events(tmp_path: Path) -> None:
    plugin_path, journal = _campaign(tmp_path)
    plugin_page = plugin_path.read_text(encoding="utf-8")
    cli_page = _cli_page(journal, tmp_path / "j.html")
    plugin, cli = sections(plugin_page), sections(cli_page)
    assert list(plugin) == ["overview", "criteria", "charts", "timeline", "campaign"]
    assert list(cli) == ["overview", "criteria", "charts", "timeline"]
    for name in ("overview", "charts", "timeline"):
        assert CAMPAIGN_ONLY.sub("", plugin[name]) == cli[name], name
    # The fault marks are the plugin's only additions to the timeline, and there are some.
    assert 'class="fault"' in plugin["timeline"] and 'class="fault"' not in cli_page
    # What the journal path judged is what compute + evaluate say about the journal.
    metrics = compute(replay(journal))
    for result in evaluate(metrics):
        if result.is_rate:
            assert result.describe() in html.unescape(cli["criteria"])
        else:
            assert f"<b>{result.observed:g}</b>" in cli["criteria"]


def test_timeline_shows_reason_strategy_backoff_and_operator(tmp_path: Path) -> None:
    page, _ = _campaign(tmp_path)
    text = page.read_text(encoding="utf-8")
    timeline = sections(text)["timeline"]
    # task-agent-5030: SIGINT after fake3.md, resumed; the label says so, hover says why.
    assert "#1 sigint → resume</text>" in timeline and "#2 succeeded, PR #1</text>" in timeline
    assert "exit: 0" in timeline and "SIGINT delivered" in timeline
    assert "partial work: created fake3.md" in timeline
    # api-429: the engine waited the Retry-After before resuming: a backoff bar.
    # (at least the 1 s of the scenario's retry-after; the jitter may make it longer)
    backoff = re.search(
        r'<rect class="wait"[^>]*><title>backoff ([\d.]+) s before resume', timeline
    )
    assert backoff is not None and float(backoff.group(1)) >= 1
    # permission-systematic: escalated, then an operator released every task.
    # A diamond on the axis and a line through each of the three lanes it released.
    assert timeline.count('<g class="operator">') == 4 and '<g class="escalated">' in timeline
    assert "#1 permission → escalate → restart</text>" in timeline
    # Every bar links to its attempt in a details element.
    for href in re.findall(r'<a href="#(a\d+-\d+)" class="attempt"', timeline):
        assert f'<li id="{href}">' in timeline
    # A time axis with units.
    assert re.search(r'<text class="tick"[^>]*>\d+ (s|min)</text>', timeline)


def test_journal_page_has_no_campaign_parts_and_nothing_external(tmp_path: Path) -> None:
    j = seed_incident()
    page = render_html(
        page_facts(j.events),
        compute(j.events),
        evaluate(compute(j.events)),
        journals=["journal.jsonl"],
    )
    assert "campaign" not in sections(page) and 'class="fault"' not in page
    assert "fault injected" not in page  # the legend leaves out what cannot be drawn
    assert "Journal journal.jsonl" in page
    # Self-contained: no script, no fetched resource; the SVG namespace is only a name.
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}


def test_hostile_text_is_escaped_and_every_svg_is_well_formed_xml() -> None:
    j = JournalBuilder()
    sigint_resumed(j, "<script>alert(1)</script>", 'agent-"q"&')
    page = render_html(page_facts(j.events), compute(j.events), evaluate(compute(j.events)))
    assert "<script>" not in page and "&lt;script&gt;" in page
    for svg in re.findall(r"<svg .*?</svg>", page, re.DOTALL):
        ET.fromstring(svg)


@settings(max_examples=30, deadline=None)
@given(random_journal())
def test_any_journal_renders_a_page_with_an_attempt_bar_per_attempt(events: list[Event]) -> None:
    metrics = compute(events)
    page = render_html(page_facts(events), metrics, evaluate(metrics))
    assert page.count('class="attempt"') == len(
        {(e.task_id, e.attempt) for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED}
    )
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert set(re.findall(r'href="#([^"]+)"', page)) <= set(ids)
    for svg in re.findall(r"<svg .*?</svg>", page, re.DOTALL):
        ET.fromstring(svg)


def test_timeline_is_capped_and_says_so() -> None:
    j = JournalBuilder()
    for i in range(MAX_TIMELINE_TASKS + 5):
        sigint_resumed(j, f"t{i}", f"agent-{i}")
    page = render_html(page_facts(j.events), compute(j.events), evaluate(compute(j.events)))
    assert page.count("<details id=") == MAX_TIMELINE_TASKS
    assert "5 more task(s) not drawn" in page


def test_empty_journal_renders() -> None:
    page = render_html(page_facts([]), compute([]), evaluate(compute([])))
    assert "No tasks in these events." in page and "No failed attempts." in page


@given(st.floats(min_value=0.05, max_value=30 * 86400, allow_nan=False))
def test_ticks_are_few_and_cover_the_span(span: float) -> None:
    step = tick_step(span)
    assert span / step <= 8
    label = time_label(step, step)
    assert label.split()[-1] in ("s", "min", "h", "d")


def test_journal_text_round_trips_through_replay(tmp_path: Path) -> None:
    events = seed_incident().events
    path = tmp_path / "j.jsonl"
    path.write_text(journal_text(events), encoding="utf-8")
    assert [e.to_json() for e in replay(path)] == [
        {**e.to_json(), "seq": i} for i, e in enumerate(events, 1)
    ]


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_cli_picks_html_by_suffix(tmp_path: Path, suffix: str) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_text(journal_text(seed_incident().events), encoding="utf-8")
    out = tmp_path / f"r{suffix}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            "report",
            "--journal",
            str(journal),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(markup)


NS = "{http://www.w3.org/2000/svg}"


def test_criteria_chart_draws_the_wilson_interval_and_the_threshold_to_scale() -> None:
    j = JournalBuilder()
    for i in range(4):
        sigint_resumed(j, f"t{i}", f"agent-{i}")
    metrics = compute(j.events)
    results = evaluate(metrics, Criteria(min_recovery_rate=0.9))
    svg = _svg(criteria_chart(results))
    grid = [
        float(line.get("x1", "nan"))
        for line in svg.iter(f"{NS}line")
        if line.get("class") == "grid"
    ]
    zero, hundred = grid[0], grid[-1]
    rate = next(r for r in results if r.name == "recovery_rate")
    assert rate.successes is not None and rate.n is not None
    low, high = wilson_interval(rate.successes, rate.n)
    band = next(g for g in svg.iter(f"{NS}g") if g.get("class") == "rate").find(f"{NS}rect")
    assert band is not None
    x, width = float(band.get("x", "nan")), float(band.get("width", "nan"))
    assert x == pytest.approx(zero + (hundred - zero) * low, abs=0.1)
    assert x + width == pytest.approx(zero + (hundred - zero) * high, abs=0.1)
    threshold = next(line for line in svg.iter(f"{NS}line") if line.get("class") == "threshold")
    assert float(threshold.get("x1", "nan")) == pytest.approx(
        zero + (hundred - zero) * 0.9, abs=0.1
    )


@given(
    st.lists(st.floats(min_value=0.0, max_value=86400.0, allow_nan=False), min_size=1, max_size=60)
)
def test_recovery_histogram_counts_every_task_once(times: list[float]) -> None:
    p50, p95 = percentile(times, 50), percentile(times, 95)
    svg = _svg(recovery_time_chart(times, p50, p95))
    titles = [r.findtext(f"{NS}title", "") for r in svg.iter(f"{NS}rect")]
    counted = sum(int(t.split(" task(s)")[0]) for t in titles if " task(s) " in t)
    assert counted == len(times)
    if max(times) > 2 * p95:
        assert any("or longer" in t for t in titles)


def test_reasons_chart_bars_are_proportional_to_counts() -> None:
    j = seed_incident()
    rows = compute(j.events).reasons
    svg = _svg(reasons_chart(rows))
    widths = {
        g.findtext(f"{NS}title", "").split(":")[0]: float(r.get("width", "nan"))
        for g in svg.iter(f"{NS}g")
        for r in g.iter(f"{NS}rect")
    }
    counts = {str(r.reason): r.count for r in rows if r.count}
    assert set(widths) == set(counts)
    most = max(counts.values())
    unit = max(widths.values()) / most
    for reason, count in counts.items():
        assert widths[reason] == pytest.approx(max(unit * count, 2.0), abs=0.1)


def test_a_launch_journaled_twice_is_one_attempt_and_an_unfinished_one_is_open() -> None:
    events = [
        Event(AttemptLaunched(), 0.0, "t1", attempt=1),
        Event(AttemptLaunched(), 1.0, "t1", attempt=1),
        Event(AttemptExited(ExitInfo(143, signal=15)), 5.0, "t1", attempt=1),
        Event(AttemptLaunched(), 6.0, "t2", attempt=1),
    ]
    lanes = task_lanes(events)
    assert [len(lane.attempts) for lane in lanes] == [1, 1]
    assert lanes[0].attempts[0].start == 0.0 and "SIGTERM" in lanes[0].attempts[0].exit_text
    page = render_html(page_facts(events), compute(events), evaluate(compute(events)))
    assert page.count('class="bar open"') == 2  # neither attributed nor succeeded
    assert "#1 running</text>" in page and "#1 exited</text>" in page
