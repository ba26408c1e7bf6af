"""Fuzzing every boundary (issue 10): whatever arrives, the answer is a correct result or one
line saying what is wrong with the documented usage status; never a traceback, a hang, a write
outside the sandbox, or a value run as code. Bounded (``max_examples``) to stay in CI time."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.scenario import ScenarioError, parse_scenario
from pytest_orch_recovery.infra import argtypes
from pytest_orch_recovery.infra.checkpoint import read_checkpoint_safely, record_hook_input
from pytest_orch_recovery.infra.command_template import TemplateError, parse_template
from pytest_orch_recovery.infra.placeholders import PLACEHOLDERS
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.journal import JournalError, replay

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "..",
            "../../etc/passwd",
            "/abs",
            "$(touch pwned)",
            "`id`",
            "a\x00b",
            "'; rm -rf / #",
            "x" * 300,
            "{task_id}",
            "\n",
            "-1",
            "NaN",
            "inf",
            "1e308",
            "9" * 5000,
            "[" * 200,
        ]
    ),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    _hostile_text,
)
_json = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


# --------------------------------------------------------------------------- scenario files


def _toml(value: Any) -> str:
    """A TOML value for ``value`` (strings as basic strings; None as an empty string)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"


_TASK_FIELDS = ["id", "title", "deliverables", "tests", "agent", "prompt", "pr", "agent_type"]
_FAULT_FIELDS = [
    "kind",
    "task",
    "attempt",
    "params",
    "expect",
    "after_file",
    "at_api_request",
    "after_tool_call",
    "at_open_pr",
]
_TOP_FIELDS = ["attempt_timeout", "crash_after_event", "name", "operator_actions"]


@FUZZ
@given(
    where=st.sampled_from(["task", "fault", "top"]),
    field=st.integers(0, 8),
    value=_json,
    fault_kind=st.sampled_from(["sigint", "api_rate_limit", "pr_create_fails", "kill"]),
)
def test_scenario_loader(where: str, field: int, value: Any, fault_kind: str) -> None:
    task = {"id": '"t1"', "title": '"Docs"', "deliverables": '["a.md"]'}
    fault = {"kind": json.dumps(fault_kind), "task": '"t1"'}
    top: dict[str, str] = {}
    target = {
        "task": (task, _TASK_FIELDS),
        "fault": (fault, _FAULT_FIELDS),
        "top": (top, _TOP_FIELDS),
    }[where]
    target[0][target[1][field % len(target[1])]] = _toml(value)
    text = "".join(f"{k} = {v}\n" for k, v in top.items())
    text += "[[tasks]]\n" + "".join(f"{k} = {v}\n" for k, v in task.items())
    text += "[[faults]]\n" + "".join(f"{k} = {v}\n" for k, v in fault.items())
    try:
        scenario = parse_scenario(text, source="fuzz.toml")
    except ScenarioError as exc:
        _one_line(str(exc))
        assert str(exc).startswith("fuzz.toml:")
        return
    for entry in scenario.tasks:  # what loads is inside the rules
        validation.name(entry.task.task_id)
        for path in entry.task.deliverables:
            assert validation.relative_path(path) == path
    assert scenario.attempt_timeout is None or math.isfinite(scenario.attempt_timeout)


@FUZZ
@given(st.text(max_size=300))
def test_scenario_loader_on_any_text(text: str) -> None:
    try:
        parse_scenario(text, source="fuzz.toml")
    except ScenarioError as exc:
        _one_line(str(exc))


# --------------------------------------------------------------------------- CLI types


_TYPES: list[Callable[[str], object]] = [
    argtypes.exit_code,
    argtypes.relative_path,
    argtypes.agent_name,
    argtypes.agent_command,
    argtypes.rate,
    argtypes.count,
    argtypes.positive_int,
    argtypes.input_file,
]


@FUZZ
@given(parse=st.sampled_from(_TYPES), text=_hostile_text)
def test_cli_types(parse: Callable[[str], object], text: str) -> None:
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as exc:
        _one_line(str(exc)[:5000])
        return
    if parse is argtypes.exit_code:
        assert isinstance(value, int) and -64 <= value <= 255
    if parse is argtypes.relative_path:
        assert isinstance(value, str) and ".." not in Path(value).parts
        assert not value.startswith("/")


def _main(args: list[str]) -> tuple[object, str, str]:
    """``orch-recovery ARGS`` in-process: status (argparse's SystemExit too), stdout, stderr."""
    from pytest_orch_recovery.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: object = main(args)
        except SystemExit as exc:
            status = exc.code  # argparse's usage error
    return status, out.getvalue(), err.getvalue()


@settings(max_examples=25, deadline=None)
@given(code=_hostile_text)
def test_classify_cli_exit_code(code: str) -> None:
    status, out, err = _main(["classify", f"--exit-code={code.replace(chr(0), '')}"])
    assert status in (0, 2)
    if status == 2:  # argparse style: the usage, then one error line
        last = err.strip().splitlines()[-1]
        assert (
            last.startswith(
                "orch-recovery classify: error: argument --exit-code: invalid exit code"
            )
            and len(last) < 400
            and "Traceback" not in err
        )
    else:
        assert json.loads(out)["reason"]


# --------------------------------------------------------------------------- documents


@FUZZ
@given(st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode())))
def test_bounded_json(raw: bytes) -> None:
    try:
        doc = validation.loads_json(raw)
    except validation.DocumentError as exc:
        _one_line(exc.describe())
        return
    validation.check_document(doc)


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            _json.map(lambda v: json.dumps(v)),
            st.fixed_dictionaries(
                {
                    "seq": st.just(1),
                    "kind": st.sampled_from(
                        [
                            "task_submitted",
                            "task_succeeded",
                            "decision",
                            "attempt_launched",
                            "bogus",
                        ]
                    ),
                    "time": _scalar,
                    "task_id": _scalar,
                    "agent": _scalar,
                    "attempt": _scalar,
                    "data": _json,
                }
            ).map(lambda d: json.dumps(d)),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_journal_and_report(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.jsonl"
        path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
        try:
            replay(path)
        except JournalError as exc:
            _one_line(str(exc))
        status, out, err = _main(["report", "--journal", str(path), "--format", "json"])
        assert status in (0, 2)
        if status == 0:
            assert "NaN" not in out and "Infinity" not in out
            json.loads(out)
        else:
            _one_line(err)


# --------------------------------------------------------------------------- hooks, checkpoints


@FUZZ
@given(payload=_json, cwd=_hostile_text, tool_path=_hostile_text)
def test_hook_input(payload: Any, cwd: str, tool_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "work").mkdir()
        documents = [
            payload,
            {
                "cwd": str(base / "work") if cwd.strip() == "" else cwd,
                "tool_name": "Write",
                "tool_input": {"file_path": tool_path},
                "tool_response": {"success": True},
            },
        ]
        for document in documents:
            try:
                record_hook_input(json.dumps(document), agent="a1", directory=base / "cp")
            except ValueError as exc:
                _one_line(str(exc))
            cp, problem = read_checkpoint_safely(base / "cp", "a1", None)
            assert cp is not None or problem is None or "\n" not in problem
        # Nothing written outside the checkpoint dir (the payload never chooses a path).
        written = {str(p) for p in base.rglob("*") if p.is_file()}
        assert all(p.startswith(str(base / "cp")) for p in written), written


@FUZZ
@given(st.binary(max_size=300))
def test_checkpoint_file_never_raises(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a1.json").write_bytes(raw)
        cp, problem = read_checkpoint_safely(tmp, "a1", Path(tmp))
        assert (cp is None) != (problem is None) or (cp is None and problem is None)


# --------------------------------------------------------------------------- command templates


@FUZZ
@given(st.text(max_size=80))
def test_any_template_is_parsed_or_refused(text: str) -> None:
    try:
        template = parse_template(text)
    except TemplateError as exc:
        _one_line(str(exc))
        return
    values = {name: "$(touch pwned) 'a b' \"c\" `d`" for name in PLACEHOLDERS}
    argv = template.render(values)
    assert len(argv) == len(template.words)  # no value adds or removes a word


@settings(max_examples=15, deadline=None)
@given(
    prompt=st.text(max_size=60).filter(lambda t: "\x00" not in t),
    title=st.text(max_size=30).filter(lambda t: "\x00" not in t),
)
def test_template_values_are_never_run(prompt: str, title: str) -> None:
    from pytest_orch_recovery.engine.model import Task
    from pytest_orch_recovery.engine.ports import LaunchSpec
    from pytest_orch_recovery.infra.agents import driver_for

    template = (
        f"{sys.executable} -c 'import json, os, sys; "
        'print(json.dumps([sys.argv[1:], os.environ["ORCH_PROMPT"]]))\' {prompt} '
        "--agent={agent}"
    )
    spec = LaunchSpec(
        task=Task("t1", title or "x", ("a.md",)),
        agent="task-agent-t1",
        attempt=1,
        agent_type="claude-code",
        strategy=None,
        prompt=prompt,
        work=(),
        key="k",
    )
    with tempfile.TemporaryDirectory() as tmp:
        argv = driver_for(template).argv(spec, prompt_file=Path(tmp) / "p.md")
        out = subprocess.run(
            argv, cwd=tmp, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert json.loads(out) == [[prompt, "--agent=task-agent-t1"], prompt]
        assert os.listdir(tmp) == []  # nothing created: no payload ran


# --------------------------------------------------------------------------- terminal, Markdown
#
# Text an agent controls (its output quoted as evidence, titles, file names, checkpoint next
# actions) reaches people through a terminal and through Markdown pages.

_CONTROL = st.sampled_from(
    ["\x1b", "\x1b[2J", "\x1b]52;c;aGk=\x07", "\x07", "\r", "\x08", "\x9b", "\x85", "\x00",
     "\u202e", "\u2066", "\x7f", "\t", "\n", "\\", "\\x1b"]
)  # fmt: skip
_MARKUP = st.sampled_from(
    ["<script>", "</details>", "<img src=x onerror=y>", "[a](javascript:b)", "![t](http://t)",
     "`", "``", "&lt;", "|", "<https://x>", "javascript:", "*", "_"]
)  # fmt: skip
_terminal_text = st.lists(st.one_of(st.text(max_size=8), _CONTROL, _MARKUP), max_size=12).map(
    "".join
)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


@FUZZ
@given(_terminal_text)
def test_terminal_text_holds_no_control_character(text: str) -> None:
    from pytest_orch_recovery.report.safetext import json_document, one_line, terminal

    assert not _UNSAFE.search(terminal(text))
    line = one_line(text, 40)
    assert not _UNSAFE.search(line) and len(line) <= 40
    document = json_document(json.dumps({"t": text}, ensure_ascii=False))
    assert json.loads(document) == {"t": text}  # the same JSON ...
    assert not _UNSAFE.search(document)  # ... and nothing a terminal obeys


@FUZZ
@given(title=_terminal_text, detail=_terminal_text, action=_terminal_text)
def test_fleet_views_print_no_control_character(title: str, detail: str, action: str) -> None:
    from events import JournalBuilder

    from pytest_orch_recovery.cli import failures, partial, status
    from pytest_orch_recovery.engine.model import PartialWork, Reason
    from pytest_orch_recovery.report.fleetview import FleetView

    j = JournalBuilder()
    script = j.task("t1", "a1", title=title or "x", deliverables=("d.md",))
    script.launch().fail_with(
        Reason.GIT_ERROR, detail=detail or "x", partial=PartialWork(deliverables_missing=("d.md",))
    )
    view = FleetView(j.events, budget=4)
    outputs = [
        status.render(view.statuses(now=j.clock), None, "table", j.clock),
        failures.render(view.failures(), "table", 3),
        partial.render(view.partial_work(), [((action,), None)], "table"),
    ]
    for out in outputs:
        assert not _UNSAFE.search(out.replace("\n", "")), out


@FUZZ
@given(_terminal_text)
def test_markdown_text_makes_no_html_link_or_code(text: str) -> None:
    from pytest_orch_recovery.report.safetext import markdown, markdown_code

    safe = markdown(text)
    assert "<" not in safe and ">" not in safe and not _UNSAFE.search(safe)
    assert not re.search(r"(?<!\\)[\[\]`|]", safe.replace("\\\\", ""))  # each one escaped
    span = markdown_code(text)
    fence = re.match(r"`+", span)
    assert fence is not None and span.endswith(fence.group())
    inner = span[len(fence.group()) : -len(fence.group())]
    assert fence.group() not in inner  # no run as long as the fence ends it early


# --------------------------------------------------------------------------- argv


@FUZZ
@given(st.one_of(_hostile_text, _terminal_text, st.sampled_from(
    ["--repo=attacker/evil", "-R", "--output=/tmp/x", "a..b", "x.lock", "@", "a@{1}", "a//b",
     ".hidden", "ok/branch", "main", "HEAD", "7", "refs/heads/x", "a/", "a."])))  # fmt: skip
def test_a_ref_name_that_passes_is_one_git_takes_and_no_option(text: str) -> None:
    try:
        name = validation.ref_name(text)
    except validation.RuleError as exc:
        _one_line(str(exc))
        return
    assert not name.startswith("-")
    check = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True, check=False
    )
    assert check.returncode == 0, name


@FUZZ
@given(st.one_of(_hostile_text, st.text(max_size=20).map(lambda t: t + "{agent}")))
def test_a_branch_pattern_that_passes_makes_ref_names(pattern: str) -> None:
    try:
        validation.branch_pattern(pattern)
    except validation.RuleError as exc:
        _one_line(str(exc))
        return
    for agent in ("a", "task-agent-7", "X_1"):
        validation.ref_name(pattern.format(agent=agent))


# --------------------------------------------------------------------------- stdin


@FUZZ
@given(data=st.binary(max_size=300), limit=st.integers(0, 200))
def test_a_stream_is_read_to_the_limit_and_no_further(data: bytes, limit: int) -> None:
    stream = io.BytesIO(data)
    try:
        got = validation.read_stream(stream, limit)
    except validation.RuleError as exc:
        _one_line(str(exc))
        assert len(data) > limit
    else:
        assert got == data and len(data) <= limit
    assert stream.tell() <= limit + 1  # never read past the byte that shows it is too long


# --------------------------------------------------------------------------- names, links, times
#
# File names in an outside orchestrator's results and logs folders.

_agent_part = st.one_of(
    st.sampled_from(["..", ".", "-R", "--help", "a..b", "x.lock", "task-agent-1", "A_b-9"]),
    st.text(alphabet="abc.-_", min_size=1, max_size=6),
)


def _found(results: Path, logs: Path) -> tuple[list[Any], list[str]]:
    from pytest_orch_recovery.ingest.results import find_runs

    problems: list[str] = []
    return find_runs(results, logs, problems), problems


@FUZZ
@given(agents=st.lists(_agent_part, min_size=1, max_size=4))
def test_ingest_takes_only_agent_names_of_the_alphabet(agents: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results, logs = Path(tmp) / "results", Path(tmp) / "logs"
        results.mkdir()
        logs.mkdir()
        for n, agent in enumerate(agents):
            (results / f"{agent}_results_{1_700_000_000_000 + n}-1.json").write_text("{}")
            (logs / f"{agent}_{1_700_000_000_000 + n}-1.log").write_text("")
        runs, problems = _found(results, logs)
        for run in runs:
            validation.agent_name(run.agent)
        assert len(problems) == 2 * sum(1 for a in agents if not _valid_agent(a))


def _valid_agent(name: str) -> bool:
    try:
        validation.agent_name(name)
    except validation.RuleError:
        return False
    return True


@FUZZ
@given(
    targets=st.lists(
        st.sampled_from(["inside", "../outside", "/etc/hostname", "sub/../inside", "nowhere",
                         "../logs/inside", "loop"]),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_ingest_never_takes_a_link_out_of_its_folder(targets: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results, logs = Path(tmp) / "results", Path(tmp) / "logs"
        results.mkdir()
        logs.mkdir()
        (logs / "inside").write_text("mine")
        (Path(tmp) / "outside").write_text("secret")
        for n, target in enumerate(targets):
            link = logs / f"a{n}_{1_700_000_000_000 + n}-1.log"
            link.symlink_to(link.name if target == "loop" else target)
        runs, _ = _found(results, logs)
        root = os.path.realpath(logs)
        for run in runs:
            assert run.log is not None
            assert os.path.commonpath([os.path.realpath(run.log), root]) == root


@FUZZ
@given(ms=st.lists(st.integers(0, 10**25), min_size=1, max_size=4))
def test_ingest_skips_far_future_runs_and_keeps_going(ms: list[int]) -> None:
    from pytest_orch_recovery.ingest.adoption import AdoptionSource, adopt
    from pytest_orch_recovery.store.journal import Journal

    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        for n, stamp in enumerate(ms):
            record = {"agent": f"a{n}", "status": "completed", "exit_code": 0}
            (results / f"a{n}_results_{stamp}-1.json").write_text(json.dumps(record))
        with Journal(Path(tmp) / "j.jsonl") as journal:
            report = adopt(journal, AdoptionSource(results=results))
            report = adopt(journal, AdoptionSource(results=results))  # every pass, not once
            times = [e.time for e in journal.events()]
        assert all(0 <= t <= validation.MAX_TIME for t in times)
        far = sum(1 for stamp in ms if stamp / 1000 > validation.MAX_TIME)
        assert sum("past the journal's limit" in p for p in report.problems) == far
