"""The long-running commands' log: text lines for people, JSON lines for shippers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pytest_orch_recovery.cli.logsetup import configure


@pytest.fixture(autouse=True)
def _package_logger_restored() -> Iterator[None]:
    """configure() takes the package's logger over (its own handler, no propagation): put it
    back as it was, or later tests' caplog would see nothing of the package."""
    logger = logging.getLogger("pytest_orch_recovery")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def _emit(log_format: str, level: str = "info") -> str:
    out = io.StringIO()
    configure("supervise", log_format, level, stream=out)
    logger = logging.getLogger("pytest_orch_recovery.fleet.supervisor")
    logger.info("launched t1 \x1b]52;c;aGk=\x07 attempt 1\nsecond line")
    logger.warning("on_escalate exited 3")
    logger.debug("not shown at info")
    return out.getvalue()


def test_text_lines_name_the_command_and_mark_warnings() -> None:
    lines = _emit("text").splitlines()
    assert lines[0].startswith("supervise: launched t1")
    assert "supervise: warning: on_escalate exited 3" in lines
    assert not any("not shown" in line for line in lines)


def test_json_lines_are_one_object_each_with_escaped_text() -> None:
    text = _emit("json", "debug")
    lines = text.splitlines()
    assert len(lines) == 3  # the message's own newline stays inside its string
    entries = [json.loads(line) for line in lines]
    assert [e["level"] for e in entries] == ["info", "warning", "debug"]
    assert entries[0]["message"] == "launched t1 \x1b]52;c;aGk=\x07 attempt 1\nsecond line"
    assert "\x1b" not in text and "\x07" not in text  # escaped on the wire
    assert all(e["logger"].startswith("pytest_orch_recovery.") for e in entries)
    assert all(e["time"].endswith("+00:00") for e in entries)
