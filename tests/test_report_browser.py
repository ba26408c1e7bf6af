"""The HTML report in a real browser: Debian's Chromium driven by Playwright for Python.

Two pages: the one the plugin writes for a chaos campaign on the sim tier
(``pytest --orch-chaos --orch-tier sim --orch-report=x.html``) and the one
``orch-recovery report --format html`` draws from that campaign's journal (``x.jsonl``). Each
is checked for its elements, for console errors and requests leaving the file, and for its
layout at a phone's width and a desktop's; screenshots are saved under ``ORCH_ARTIFACTS`` (or
the test's tmp dir). No browser is downloaded: the test uses ``/usr/bin/chromium`` (or
``ORCH_CHROMIUM``) and skips, saying why, only when it cannot be launched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NARROW, WIDE = 390, 1440
TICK = re.compile(r"^(0|\d+(\.\d+)? (s|min|h|d))$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install '.[test]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"{CHROMIUM} cannot be launched: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("ORCH_ARTIFACTS")
    path = Path(root) / "report-screenshots" if root else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The campaign page the plugin wrote, and the journal page the CLI drew from the
    campaign's journal."""
    work = tmp_path_factory.mktemp("campaign")
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    campaign = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--orch-chaos",
            "--orch-tier",
            "sim",
            "--orch-seed",
            "7",
            "--orch-report",
            "campaign.html",
            "--orch-report",
            "campaign.jsonl",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert campaign.returncode == 0, campaign.stdout + campaign.stderr
    journal = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_orch_recovery",
            "report",
            "--journal",
            str(work / "campaign.jsonl"),
            "--format",
            "html",
            "--output",
            str(work / "journal.html"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert journal.returncode == 0, journal.stderr
    return {"campaign": work / "campaign.html", "journal": work / "journal.html"}


class _Opened:
    """A page loaded from a file, with the console errors and the requests it made."""

    def __init__(self, browser: Any, path: Path, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    held: list[_Opened] = []

    def open_page(path: Path, width: int = WIDE) -> _Opened:
        held.append(_Opened(browser, path, width))
        return held[-1]

    yield open_page
    for page in held:
        page.close()


@pytest.mark.parametrize("kind", ["campaign", "journal"])
def test_page_has_axis_bars_legend_charts_and_details(
    kind: str, pages: dict[str, Path], opened: Any, artifacts: Path
) -> None:
    view = opened(pages[kind])
    page = view.page
    # A time axis with units on every timeline.
    timelines = page.locator("svg.timeline")
    assert timelines.count() == len(list(BUNDLED_SCENARIOS.glob("*.toml")))  # one per scenario
    for i in range(timelines.count()):
        ticks = timelines.nth(i).locator(".axis-ticks text.tick").all_text_contents()
        labels = [t for t in ticks if t != "time since start"]
        assert len(labels) >= 3 and all(TICK.match(t) for t in labels), labels
    # Bars labelled with attempt number, reason and strategy, each with a hover title.
    bars = page.locator("svg.timeline a.attempt")
    assert bars.count() >= 50
    labels = bars.locator("text.bar-label").all_text_contents()
    assert all(re.match(r"^#\d+ ", t) for t in labels)
    assert "#1 sigint → resume" in labels
    assert any(re.match(r"^#1 permission → escalate → restart$", t) for t in labels)
    assert "exit:" in (bars.first.locator(":scope > title").text_content() or "")
    # The legend: the fault entry only where faults are known.
    legend = page.locator("ul.legend li").all_inner_texts()
    assert "attempt that succeeded" in legend and "operator action" in legend
    assert ("fault injected into this attempt" in legend) == (kind == "campaign")
    assert (page.locator("svg.timeline g.fault").count() > 0) == (kind == "campaign")
    # Charts drawn with a size: criteria, reasons, recovery times.
    for selector in (
        "#criteria svg.chart",
        "#charts svg.chart >> nth=0",
        "#charts svg.chart >> nth=1",
    ):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 80, selector
    assert page.locator("#criteria svg.chart circle").count() == 3
    # A click on a summary opens its details; a click on a bar opens its task's details.
    details = page.locator("#timeline details").first
    assert details.evaluate("d => d.open") is False
    details.locator("summary").click()
    assert details.evaluate("d => d.open") is True
    # The widest bar: which narrow ones a neighbour's fault mark overlaps depends on the
    # run's timing (a 4 px attempt right before the next one's mark took the click once).
    widths = page.locator("svg.timeline a.attempt rect.bar").evaluate_all(
        "bars => bars.map(b => b.getBBox().width)"
    )
    bar = page.locator("svg.timeline a.attempt").nth(widths.index(max(widths)))
    target = bar.get_attribute("href")
    assert target is not None
    item = page.locator(target)
    assert item.evaluate("li => li.closest('details').open") is False
    bar.locator("rect.bar").click()
    page.wait_for_function(
        "id => document.getElementById(id).closest('details').open", arg=target.removeprefix("#")
    )
    assert item.is_visible() and "exit" in item.inner_text()
    page.screenshot(path=str(artifacts / f"{kind}-details-open.png"))
    # The keyboard reaches a bar too: focus it, press Enter, its details open.
    other = page.locator("svg.timeline a.attempt").nth(20)
    other_target = (other.get_attribute("href") or "").removeprefix("#")
    assert (
        page.evaluate("id => document.getElementById(id).closest('details').open", other_target)
        is False
    )
    other.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "id => document.getElementById(id).closest('details').open", arg=other_target
    )
    assert view.errors == []
    assert all(url.startswith("file:") for url in view.requests), view.requests


@pytest.mark.parametrize("width", [NARROW, WIDE])
@pytest.mark.parametrize("kind", ["campaign", "journal"])
def test_layout_fits_the_viewport_and_text_stays_legible(
    kind: str, width: int, pages: dict[str, Path], opened: Any, artifacts: Path
) -> None:
    view = opened(pages[kind], width)
    page = view.page
    scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert scroll <= inner, f"the body overflows: {scroll} > {inner}"
    # Charts shrink with the column; their words must stay readable (>= 9 CSS px).
    heights = page.evaluate(
        "[...document.querySelectorAll('svg.chart text')].map(t => t.getBBox().height * "
        "t.getScreenCTM().a)"
    )
    assert heights and min(heights) >= 9, min(heights)
    labels = page.evaluate(
        "[...document.querySelectorAll('svg.timeline text.bar-label')].map(t => "
        "t.getBBox().height * t.getScreenCTM().a)"
    )
    assert labels and min(labels) >= 9, min(labels)
    # A timeline keeps its scale and scrolls in its own box instead of squeezing.
    box = page.locator("svg.timeline").first.bounding_box()
    assert box is not None and box["width"] >= min(720, width - 40)
    page.screenshot(path=str(artifacts / f"{kind}-{width}.png"))
    page.screenshot(path=str(artifacts / f"{kind}-{width}-full.png"), full_page=True)
    if kind == "campaign" and width == WIDE:
        group = page.locator("#timeline section.group", has_text="permission-systematic")
        group.screenshot(path=str(artifacts / "campaign-timeline.png"))
    assert view.errors == []


_OVERLAPS = """
svg => {
  const boxes = [...svg.querySelectorAll(arguments_selector)].map(t => {
    const b = t.getBoundingClientRect();
    return {text: t.textContent, l: b.left, r: b.right, t: b.top, b: b.bottom};
  });
  const out = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], c = boxes[j];
      if (a.l < c.r - 0.5 && c.l < a.r - 0.5 && a.t < c.b - 0.5 && c.t < a.b - 0.5)
        out.push([a.text, c.text]);
    }
  return out;
}
"""


def _overlapping(page: Any, svg_selector: str, text_selector: str) -> list[list[str]]:
    found: list[list[str]] = []
    script = _OVERLAPS.replace("arguments_selector", repr(text_selector))
    for svg in page.locator(svg_selector).all():
        found += svg.evaluate(script)
    return found


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal page with a task of many quick attempts and too few complex tasks to judge."""
    from events import JournalBuilder

    from pytest_orch_recovery.engine.model import Reason, Strategy

    work = tmp_path_factory.mktemp("crowded")
    j = JournalBuilder()
    quick = j.task("quick", "task-agent-quick", title="Retry quickly")
    for _ in range(6):
        quick.launch(after=1.0).fail_with(Reason.API_ERROR).decide(Strategy.RESTART, after=0.5)
    quick.launch(after=1.0).succeed(pr=7, after=2.0)
    slow = j.task("slow", "task-agent-slow", title="Take the long road")
    slow.launch().fail_with(Reason.SIGINT).decide(Strategy.RESUME)
    slow.launch().succeed(after=3000.0)
    journal = j.write_jsonl(work / "crowded.jsonl")
    page = work / "crowded.html"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery", "report", "--journal", str(journal),
         "--format", "html", "--output", str(page)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return page


@pytest.mark.parametrize("width", [NARROW, WIDE])
@pytest.mark.parametrize("kind", ["campaign", "journal", "crowded"])
def test_no_label_covers_another(
    kind: str, width: int, pages: dict[str, Path], crowded: Path, opened: Any, artifacts: Path
) -> None:
    view = opened(crowded if kind == "crowded" else pages[kind], width)
    page = view.page
    assert _overlapping(page, "svg.timeline", "text.bar-label") == []
    assert _overlapping(page, "#criteria svg.chart", "text") == []
    if kind == "crowded":
        verdicts = page.locator("#criteria svg.chart text.verdict").all_text_contents()
        assert "INSUFFICIENT SAMPLES" in verdicts
        labels = page.locator("svg.timeline text.bar-label").all_text_contents()
        assert len(labels) >= 4
        page.screenshot(path=str(artifacts / f"crowded-{width}.png"), full_page=True)
