"""The merge gate: aggregate every scenario run of a campaign and judge the success criteria.

Only the controller calls this (serially or after xdist workers sent their runs on the test
reports). The figures are :func:`~pytest_orch_recovery.report.metrics.compute` over all runs' events
(task ids prefixed with the scenario's name, so they are unique across scenarios), judged by
:func:`~pytest_orch_recovery.report.metrics.evaluate` with two campaign rules on top:

- **First-try rates are the steady state.** They are computed on the *fault-free* tasks only
  (the control group, and any task no fault of its scenario targets): a task that was made to
  fail by design says nothing about how often agents succeed on their own.
- **The attribution oracle.** Every failed attempt is compared with the causes the fault
  ledger says were injected into it; a known reason that is not among them is a wrong
  attribution and counts against ``max_unattributed``, on top of the failures the journal
  left unattributed (or blamed on ``unknown``), which ``compute`` already counts.

With ``strict``, a fault that never took effect (ledger status other than ``exercised``, unless
its scenario expected exactly that status) is a failure too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_orch_recovery.chaos.faults import FaultStatus
from pytest_orch_recovery.chaos.oracle import AttributionCheck, attribution_checks
from pytest_orch_recovery.chaos.record import ScenarioRun
from pytest_orch_recovery.engine.events import Event, OperatorAction
from pytest_orch_recovery.report.dashboard import render_campaign_markdown, write_campaign_report
from pytest_orch_recovery.report.htmlreport import render_html
from pytest_orch_recovery.report.metrics import (
    Criteria,
    CriterionResult,
    Metrics,
    compute,
    evaluate,
)
from pytest_orch_recovery.report.pagefacts import page_facts
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.journal import journal_text

if TYPE_CHECKING:
    from pytest_orch_recovery.plugin.options import ChaosSettings

SEPARATOR = "/"


@dataclass
class CampaignResult:
    metrics: Metrics  # the figures the gate judged
    results: list[CriterionResult]
    checks: list[AttributionCheck]  # task ids prefixed with the scenario name
    ledger: list[dict[str, Any]]  # every fault of every run, with its scenario
    strict_failures: list[str] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)  # pinned over --orch-fleet
    runs: int = 0
    control_tasks: int = 0
    events: list[Event] = field(default_factory=list)  # every run's, task ids prefixed

    @property
    def wrong_attributions(self) -> int:
        return sum(1 for c in self.checks if c.verdict == "wrong")

    @property
    def failed(self) -> bool:
        return bool(self.fail_lines())

    def fail_lines(self) -> list[str]:
        """One ``FAIL <criterion>: ...`` line per criterion missed."""
        lines = [r.describe() for r in self.results if r.verdict == "fail"]
        return lines + [f"FAIL strict: {text}" for text in self.strict_failures]

    def confusion_matrix(self) -> dict[str, dict[str, int]]:
        """Injected cause -> attributed reason (``(none)``: nothing attributed) -> count."""
        matrix: dict[str, Counter[str]] = {}
        for check in self.checks:
            row = matrix.setdefault(check.cause, Counter())
            row[check.attributed or "(none)"] += 1
        return {cause: dict(sorted(row.items())) for cause, row in sorted(matrix.items())}

    def to_json(self) -> dict[str, Any]:
        verdicts = Counter(c.verdict for c in self.checks)
        return {
            "runs": self.runs,
            "control_tasks": self.control_tasks,
            "confusion_matrix": self.confusion_matrix(),
            "attribution": dict(sorted(verdicts.items())),
            "misattributed": [c.to_json() for c in self.checks if c.verdict != "correct"],
            "ledger": self.ledger,
            "strict_failures": self.strict_failures,
            "fail_lines": self.fail_lines(),
        }


def prefixed_events(run: ScenarioRun) -> list[Event]:
    """``run``'s events with task ids made unique across scenarios: ``<scenario>/<task>``."""
    prefix = run.scenario + SEPARATOR
    out = []
    for event in run.events:
        if isinstance(event.payload, OperatorAction):
            tasks = tuple(prefix + t for t in event.payload.tasks)
            event = dataclasses.replace(
                event, payload=dataclasses.replace(event.payload, tasks=tasks)
            )
        if event.task_id is not None:
            event = dataclasses.replace(event, task_id=prefix + event.task_id)
        out.append(event)
    return out


def _fault_free(run: ScenarioRun) -> set[str]:
    targeted = {str(entry.get("task", "*")) for entry in run.ledger.values()}
    # A fault that takes a host away hits every task running there; its hits name them.
    targeted |= {str(hit["task"]) for entry in run.ledger.values() for hit in entry.get("hits", ())}
    if "*" in targeted:
        return set()
    return {t for t in run.outcomes if t not in targeted}


def aggregate(
    runs: Sequence[ScenarioRun], criteria: Criteria, *, strict: bool = False
) -> CampaignResult:
    """Judge a campaign. ``runs`` in any order: they are sorted by scenario name first, so
    serial and distributed sessions give the same figures."""
    ordered = sorted(runs, key=lambda r: r.scenario)
    events: list[Event] = []
    control: set[str] = set()
    checks: list[AttributionCheck] = []
    ledger: list[dict[str, Any]] = []
    strict_failures: list[str] = []
    orphans: list[str] = []
    overrides: list[dict[str, Any]] = []
    for run in ordered:
        prefix = run.scenario + SEPARATOR
        events += prefixed_events(run)
        control |= {prefix + t for t in _fault_free(run)}
        checks += [
            dataclasses.replace(c, task_id=prefix + c.task_id) for c in attribution_checks(run)
        ]
        orphans += [prefix + o for o in run.orphans]
        overrides += run.overrides
        for fault_id, entry in sorted(run.ledger.items()):
            ledger.append({"scenario": run.scenario, **entry, "id": fault_id})
            status = str(entry.get("status"))
            if (
                strict
                and not run.generated
                and status != FaultStatus.EXERCISED
                and status != entry.get("expected_status")
            ):
                strict_failures.append(
                    f"fault {prefix}{fault_id} ({entry.get('kind')}) {status.replace('_', ' ')}"
                )
    # Each run's orphans already include those its journal reported (workspace_orphaned).
    everything = compute(events, orphaned_workspaces=len(orphans))
    steady = compute([e for e in events if e.task_id in control])
    wrong = sum(1 for c in checks if c.verdict == "wrong")
    judged = dataclasses.replace(
        everything,
        first_try_simple=steady.first_try_simple,
        settled_simple=steady.settled_simple,
        first_try_complex=steady.first_try_complex,
        settled_complex=steady.settled_complex,
        orphaned_workspaces=len(orphans),
        orphaned_paths=tuple(orphans),
        unattributed_failures=everything.unattributed_failures + wrong,
    )
    return CampaignResult(
        metrics=judged,
        results=evaluate(judged, criteria),
        checks=checks,
        ledger=ledger,
        strict_failures=strict_failures,
        overrides=overrides,
        runs=len(ordered),
        control_tasks=len(control),
        events=events,
    )


def write_report(
    path: Path, result: CampaignResult, campaign: Mapping[str, Any], *, base: Path | None = None
) -> None:
    """Write one campaign report atomically, by suffix: ``.md``, ``.json``, ``.html`` (the
    page ``orch-recovery report --format html`` draws too), or ``.jsonl`` (the campaign's
    events as a journal, for ``orch-recovery report --journal``)."""
    suffix = path.suffix.lower()
    if suffix == ".html":
        atomic.write_output(
            path,
            render_html(
                page_facts(result.events), result.metrics, result.results, campaign=campaign
            ),
            base=base,
        )
    elif suffix == ".jsonl":
        atomic.write_output(path, journal_text(result.events, compact=True), base=base)
    else:
        write_campaign_report(
            atomic.output_target(path, base=base), result.metrics, result.results, campaign
        )


class ChaosGate:
    """The controller's plugin object under ``--orch-chaos``: gathers the runs the test
    reports carry, aggregates them after the session, writes the reports, and fails the
    session when a criterion is missed. It never raises from a reporting hook."""

    NAME = "orch-chaos-gate"

    def __init__(self, config: pytest.Config, settings: ChaosSettings) -> None:
        self.config = config
        self.settings = settings
        self.payloads: dict[str, str] = {}  # nodeid -> ScenarioRun JSON
        self.result: CampaignResult | None = None
        self.written: list[str] = []
        self.problems: list[str] = []

    def criteria(self) -> Criteria:
        return Criteria(**self.settings.thresholds)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # xdist: every worker runs (and collects) with the controller's seed.
        node.workerinput["orch_seed"] = self.settings.seed

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, "_orch_run", None)
        if report.when == "call" and isinstance(payload, str):
            self.payloads[report.nodeid] = payload

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        try:
            self._finish()
        except Exception as exc:  # the gate must decide; it never takes the session down
            self.problems.append(f"FAIL gate: could not judge the campaign: {exc!r}")
        if (self.problems or (self.result is not None and self.result.failed)) and int(
            session.exitstatus
        ) == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _finish(self) -> None:
        runs = [ScenarioRun.from_json(json.loads(self.payloads[k])) for k in sorted(self.payloads)]
        result = aggregate(runs, self.criteria(), strict=self.settings.strict)
        self.result = result
        campaign = {
            **result.to_json(),
            "seed": self.settings.seed,
            "tier": self.settings.tier,
            "agent": self.settings.agent,
            "replay": "pytest " + " ".join(self.settings.replay_args()),
        }
        if self.settings.fleet is not None:
            campaign["fleet"] = {**self.settings.fleet.to_json(), "overrides": result.overrides}
        base = self.config.invocation_params.dir
        for name in self.settings.reports:
            path = base / name
            try:
                write_report(path, result, campaign, base=base)
                self.written.append(str(path))
            except OSError as exc:
                self.problems.append(f"FAIL report: cannot write {path}: {exc}")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            text = render_campaign_markdown(result.metrics, result.results, campaign)
            try:
                with open(summary, "a", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                self.problems.append(
                    f"FAIL report: cannot append to GITHUB_STEP_SUMMARY {summary}: {exc}"
                )
        self._junit_properties(result)

    def _junit_properties(self, result: CampaignResult) -> None:
        # The supported route is record_testsuite_property's: junitxml's LogXML plugin object
        # and its public add_global_property (the fixture cannot run on an xdist controller).
        adders = [
            plugin.add_global_property
            for plugin in self.config.pluginmanager.get_plugins()
            if callable(getattr(plugin, "add_global_property", None))
        ]
        if not adders:
            return
        m = result.metrics
        figures: dict[str, object] = {
            "orch_seed": self.settings.seed,
            "orch_tasks": m.total_tasks,
            "orch_required_recovery": m.required_recovery,
            "orch_recovered": m.recovered,
            "orch_escalated": m.escalated,
            "orch_orphaned_workspaces": m.orphaned_workspaces,
            "orch_unattributed_failures": m.unattributed_failures,
            "orch_verdict": "fail" if result.failed else "pass",
        }
        for r in result.results:
            figures[f"orch_{r.name}"] = "" if r.observed is None else f"{r.observed:.4f}"
        for add in adders:
            for name, value in figures.items():
                add(name, value)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        tr.write_sep("=", "orch-chaos recovery gate")
        result = self.result
        if result is not None:
            m = result.metrics
            tr.write_line(
                f"seed {self.settings.seed}, tier {self.settings.tier}: {result.runs} scenario "
                f"runs, {m.total_tasks} tasks, {m.first_try} first try, {m.required_recovery} "
                f"required recovery, {m.recovered} recovered, {m.escalated} escalated; "
                f"attribution: {result.wrong_attributions} "
                f"wrong of {len(result.checks)} failed attempts"
            )
            for r in result.results:
                if r.verdict != "fail":
                    tr.write_line(r.describe())
            for line in result.fail_lines():
                tr.write_line(line, red=True, bold=True)
        for line in self.problems:
            tr.write_line(line, red=True, bold=True)
        fleet = self.settings.fleet
        if fleet is not None:
            tr.write_line(f"fleet file {fleet.source}: {fleet.describe()}")
            for override in [] if result is None else result.overrides:
                tr.write_line(f"  pinned by {override['text']}")
        for path in self.written:
            tr.write_line(f"report: {path}")
        tr.write_line(f"replay: pytest {' '.join(self.settings.replay_args())}")
