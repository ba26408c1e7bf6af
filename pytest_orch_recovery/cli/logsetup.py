"""Where a long-running command's log goes: stderr, as text lines or as JSON lines.

Text keeps the lines an operator reads (``supervise: launched t1 ...``); JSON lines are for log
shippers (one object per line: time, level, logger, message). The package logs under the
``pytest_orch_recovery`` logger; only a command decides handlers and levels, never a module.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


class JsonLines(logging.Formatter):
    """One JSON object per record; the message is data, so newlines and control characters
    in it stay escaped inside the string."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


class _Text(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self._prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"{self._prog}: {level}{record.getMessage()}"


def add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text lines for people (default) or JSON lines for a log shipper",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        default="info",
        help="the least severe level logged (default: info)",
    )


def configure(prog: str, log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send the package's log records to ``stream`` (stderr) in ``log_format``; replaces the
    handlers an earlier call installed, so a command can be run twice in one process."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else _Text(prog))
    logger = logging.getLogger("pytest_orch_recovery")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
