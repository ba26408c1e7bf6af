"""``orch-recovery report``: render the recovery metrics dashboard from one or more journals,
or from a fleet store (``--store URL``: every host's events, the whole fleet's dashboard).

With ``--results DIR`` (the dispatcher's results dir of a sandbox, repeatable) an ``## Attempts``
table follows the dashboard (an ``attempts`` list in JSON): one row per judged attempt.
``--format html`` writes the page the pytest plugin writes for ``--orch-report=x.html``
(:mod:`pytest_orch_recovery.report.htmlreport`), without the parts that need a chaos campaign;
it draws each attempt from the journal, so ``--results`` adds nothing to it.

The report is information, so it exits 0 whatever the verdicts say (the pytest plugin's gate
is what fails a build); it exits 2 on a usage error: a journal that is missing or has a bad
line (the message names the file and line), a results dir that is missing or holds a bad
results file (named), or a bad option value.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from pytest_orch_recovery.cli import pagecache, reportcache
from pytest_orch_recovery.cli.fleet_output import (
    fail,
    read_events,
    read_history,
    store_events,
    write_chunks,
)
from pytest_orch_recovery.engine.classify import classify
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.infra import argtypes
from pytest_orch_recovery.infra.argtypes import count, rate
from pytest_orch_recovery.ingest import results as seed
from pytest_orch_recovery.report.dashboard import DEFAULT_MAX_EVENTS, render_json, render_markdown
from pytest_orch_recovery.report.htmlreport import render_html
from pytest_orch_recovery.report.jsondoc import document_chunks
from pytest_orch_recovery.report.metrics import Criteria, Metrics, compute, evaluate
from pytest_orch_recovery.report.pagefacts import PageFacts, page_facts
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.attempt_results import AttemptResult
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import JournalError
from pytest_orch_recovery.store.snapshot import HistoryFollower

_DEFAULTS = Criteria()
_FORMATS = ("md", "json", "html")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Render the Recovery Metrics Dashboard (overall statistics, recovery "
        "reasons, recent recovery events, success criteria) from engine journals, as "
        "Markdown, JSON or a self-contained HTML page with a timeline and charts. Exits 0 "
        "whatever the verdicts; 2 on a usage error.",
    )
    _add_inputs(parser)
    _add_output(parser)
    _add_criteria(parser)
    return parser


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """Where the events come from: journals, and the dispatcher's results dirs."""
    parser.add_argument(
        "--journal",
        type=Path,
        action="append",
        metavar="PATH",
        help="a journal.jsonl written by the engine; repeat to combine several runs "
        "(task ids must be unique across them)",
    )
    parser.add_argument(
        "--store",
        type=argtypes.store_url,
        metavar="URL",
        help="read the fleet store several hosts share (postgresql://...) instead of "
        "journal files: every host's events, the whole fleet's dashboard",
    )
    parser.add_argument(
        "--results",
        type=Path,
        action="append",
        metavar="DIR",
        help="a results dir the dispatcher wrote (<agent>.<attempt>_results.json per judged "
        "attempt) or the seed orchestrator's (<agent>_results_<suffix>.json per run); adds an "
        "Attempts table after the dashboard; repeat for several runs",
    )
    parser.add_argument(
        "--orphaned-workspaces",
        type=count,
        metavar="N",
        help="orphaned workspace count found by other means; overrides the journal's "
        "workspace_orphaned events",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    """What is written, and where."""
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        help="output format: md, json, or html (one self-contained page: criteria and "
        "charts, a timeline per task); default from --output's suffix (.json, .html), else md",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write the report to FILE atomically instead of standard output",
    )
    parser.add_argument(
        "--max-events",
        type=count,
        default=DEFAULT_MAX_EVENTS,
        metavar="N",
        help=f"recent recovery events shown in Markdown (default {DEFAULT_MAX_EVENTS}); "
        "the rest are counted as omitted",
    )


def _add_criteria(parser: argparse.ArgumentParser) -> None:
    """The success criteria; they change the verdicts shown, never the exit status."""
    group = parser.add_argument_group("success criteria (affect the verdict column only)")
    group.add_argument(
        "--min-recovery-rate",
        type=rate,
        default=_DEFAULTS.min_recovery_rate,
        metavar="RATE",
        help="recovered / tasks that required recovery must be strictly greater "
        f"(seed: > 90%%; default {_DEFAULTS.min_recovery_rate})",
    )
    group.add_argument(
        "--min-first-try-simple",
        type=rate,
        default=_DEFAULTS.min_first_try_simple,
        metavar="RATE",
        help="first-try success of simple tasks (< 5 deliverables) must be at least this "
        f"(default {_DEFAULTS.min_first_try_simple})",
    )
    group.add_argument(
        "--min-first-try-complex",
        type=rate,
        default=_DEFAULTS.min_first_try_complex,
        metavar="RATE",
        help="first-try success of complex tasks (5+ deliverables) must be at least this "
        f"(default {_DEFAULTS.min_first_try_complex})",
    )
    group.add_argument(
        "--max-orphans",
        type=count,
        default=_DEFAULTS.max_orphans,
        metavar="N",
        help=f"most orphaned workspaces allowed (default {_DEFAULTS.max_orphans})",
    )
    group.add_argument(
        "--max-unattributed",
        type=count,
        default=_DEFAULTS.max_unattributed,
        metavar="N",
        help=f"most failures without a known cause allowed (default {_DEFAULTS.max_unattributed})",
    )
    group.add_argument(
        "--gate",
        choices=("point", "lower-bound"),
        default=_DEFAULTS.gate,
        help="judge rates by the observed value or by its Wilson 95%% lower bound "
        f"(default {_DEFAULTS.gate})",
    )
    group.add_argument(
        "--min-samples",
        type=count,
        default=_DEFAULTS.min_samples,
        metavar="N",
        help="a rate with fewer samples is reported as 'insufficient samples' "
        f"(default {_DEFAULTS.min_samples})",
    )


_RESULTS_GLOB = "*_results.json"  # the dispatcher's <agent>.<attempt>_results.json


def _read_results(dirs: list[Path]) -> list[AttemptResult]:
    """Every results file of every dir, in the order the attempts were judged: the engine
    dispatcher's, and the seed orchestrator's ``<agent>_results_<suffix>.json`` (its
    ``<agent>_results.json`` is a symlink to the latest of those, dangling while that run goes
    on, and is skipped)."""
    found: list[AttemptResult] = []
    for directory in dirs:
        if not directory.exists():
            raise UsageError(f"{directory}: no such results directory")
        if not directory.is_dir():
            raise UsageError(f"{directory}: not a results directory")
        for path in sorted(directory.glob(_RESULTS_GLOB)):
            if path.is_symlink() and seed.is_latest_pointer_name(path.name):
                continue
            try:
                data = seed.load_json_object(path)
                found.append(AttemptResult.from_json(data))
            except seed.ResultsError as exc:
                raise UsageError(str(exc)) from None
            except ValueError as exc:
                raise UsageError(f"{path}: {exc}") from None
        found += _read_run_results(directory)
    # As dispatcher.read_results orders them; the attempt number breaks ties.
    return sorted(found, key=lambda r: (r.recorded_at or 0.0, r.agent, r.attempt))


def _read_run_results(directory: Path) -> list[AttemptResult]:
    """The seed orchestrator's runs, numbered per agent in the order they started, each
    attributed from what its results file says (status, exit_code, rate_limited)."""
    found: list[AttemptResult] = []
    numbers: dict[str, int] = {}
    for run in seed.find_runs(directory, None):
        assert run.results is not None
        try:
            result = seed.load_run_result(run.results)
            ended = run.results.stat().st_mtime
        except seed.ResultsError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"{run.results}: cannot read: {exc.strerror or exc}") from None
        numbers[run.agent] = numbers.get(run.agent, 0) + 1
        attribution = None if result.completed else classify(seed.observation(result, None))
        exit_info = result.exit
        started = run.started_ms / 1000.0
        found.append(
            AttemptResult(
                agent=result.agent,
                attempt=numbers[run.agent],
                status="success" if result.completed else "failed",
                reason=None if attribution is None else str(attribution.reason),
                confidence=None if attribution is None else attribution.confidence,
                exit_code=result.exit_code,
                signal=None if exit_info is None else exit_info.signal_name,
                started_at=started,
                ended_at=ended,
                duration=max(0.0, ended - started),
                recorded_at=ended,
            )
        )
    return found


def _shown(url: str) -> str:
    # Imported here: psycopg is the optional 'postgres' extra, needed only with a store.
    from pytest_orch_recovery.store.postgres import display_url

    return display_url(url)


def _format_for(output: Path | None) -> str:
    """The format an output file's suffix asks for: ``.json``, ``.html``/``.htm``, else md."""
    suffix = "" if output is None else output.suffix.lower()
    return {".json": "json", ".html": "html", ".htm": "html"}.get(suffix, "md")


def _metrics(
    args: argparse.Namespace, fmt: str, stack: ExitStack
) -> tuple[Metrics, PageFacts | None, list[str]]:
    """The metrics, what the page draws beyond them (for HTML), and the sources' names. One
    journal's metrics come from the totals kept beside it when they fit
    (:mod:`~pytest_orch_recovery.cli.reportcache`), the page's facts from its own file
    (:mod:`~pytest_orch_recovery.cli.pagecache`); a read without them writes them."""
    orphans = args.orphaned_workspaces
    html = fmt == "html"
    if args.store is not None:
        events = store_events(args.store)
        return (
            compute(History(events), orphaned_workspaces=orphans),
            page_facts(events) if html else None,
            [f"fleet store {_shown(args.store)}"],
        )
    journals: list[Path] = list(args.journal)
    sources = [str(p) for p in journals]
    if html and len(journals) != 1:
        events = read_events(journals)
        return compute(History(events), orphaned_workspaces=orphans), page_facts(events), sources
    if len(journals) != 1 or not journals[0].is_file():
        return compute(read_history(journals), orphaned_workspaces=orphans), None, sources
    journal = journals[0]
    kept = stack.enter_context(reportcache.kept_metrics(journal, orphaned_workspaces=orphans))
    if kept is None:
        follower = HistoryFollower(journal)
        history = read_history(journals, follower=follower)
        kept = reportcache.fold(
            journal, history, follower.offset, follower.seq, orphaned_workspaces=orphans
        )
    return kept, _journal_facts(journal) if html else None, sources


def _journal_facts(journal: Path) -> PageFacts:
    """What the page draws beyond the metrics, from the file it keeps beside ``journal``."""
    try:
        return pagecache.read_facts(journal)
    except JournalError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    prog = "orch-recovery report"
    with ExitStack() as stack:
        try:
            fmt = args.format or _format_for(args.output)
            if args.store is not None and args.journal:
                raise UsageError("--journal and --store are two sources: name one")
            if args.store is None and not args.journal:
                raise UsageError("one of the arguments --journal or --store is required")
            metrics, facts, sources = _metrics(args, fmt, stack)
            attempts = None if args.results is None else _read_results(list(args.results))
        except UsageError as exc:
            return fail(prog, str(exc))
        try:
            return _write(prog, args, fmt, metrics, facts, sources, attempts)
        except JournalError as exc:  # a kept file damaged past its header
            return fail(prog, str(exc))


def _write(
    prog: str,
    args: argparse.Namespace,
    fmt: str,
    metrics: Metrics,
    facts: PageFacts | None,
    sources: list[str],
    attempts: list[AttemptResult] | None,
) -> int:
    criteria = Criteria(
        min_recovery_rate=args.min_recovery_rate,
        min_first_try_simple=args.min_first_try_simple,
        min_first_try_complex=args.min_first_try_complex,
        max_orphans=args.max_orphans,
        max_unattributed=args.max_unattributed,
        gate=args.gate,
        min_samples=args.min_samples,
    )
    results = evaluate(metrics, criteria)
    output: Path | None = args.output
    if fmt == "json":
        chunks = document_chunks(render_json(metrics, results, attempts=attempts, stream=True))
        if output is None:
            write_chunks(chunks)
            return 0
        text = "".join(chunks)
    elif fmt == "html":
        assert facts is not None
        text = render_html(facts, metrics, results, journals=sources)
    else:
        text = render_markdown(metrics, results, max_events=args.max_events, attempts=attempts)
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic.write_output(output, text)
    except atomic.OutputError as exc:
        return fail(prog, str(exc))
    except OSError as exc:
        return fail(prog, f"{output}: cannot write report: {exc.strerror or exc}")
    return 0
