"""argparse ``type=`` validators shared by the pytest options and the CLI: a bad value is a
usage error that names the value and what was expected. Standard library only (and the package's own
standard-library-only rules), so the plugin can import this while ``--orch-chaos`` is off."""

from __future__ import annotations

import argparse
import math
import os
import stat
from collections.abc import Callable
from types import ModuleType

from pytest_orch_recovery.infra.placeholders import BUILTIN_AGENTS, is_template, known


def rate(text: str) -> float:
    """A fraction in [0, 1], written as a fraction (0.9) or a percentage (90%).

    >>> rate("0.9"), rate("1"), rate("95%")
    (0.9, 1.0, 0.95)
    """
    raw = text.strip()
    try:
        value = float(raw.removesuffix("%")) / (100.0 if raw.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: use 0.9 or 90%") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate within [0, 1] (0%..100%)")
    return value


def integer(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value

    parse.__name__ = f"integer>={minimum}"
    return parse


def seconds(low: float, high: float, *, open_range: bool = False) -> Callable[[str], float]:
    """A number of seconds within [low, high], or (low, high) with ``open_range``; NaN never
    lies within either."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if open_range and not low < value < high:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be more than {low:g} and under {high:g} seconds"
            )
        if not open_range and not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be between {low:g} and {high:g} seconds"
            )
        return value

    parse.__name__ = "seconds"
    return parse


count = integer(0)
positive_int = integer(1)


def exit_code(text: str) -> int:
    """An exit status a process can have: 0..255, or -1..-64 (killed by signal N).

    >>> exit_code("130"), exit_code("-2")
    (130, -2)
    """
    from pytest_orch_recovery.store import validation  # the plugin imports this module at start

    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid exit code {text[:40]!r}: not an integer"
        ) from None
    try:
        return validation.exit_status(value)
    except validation.RuleError:
        raise argparse.ArgumentTypeError(
            f"invalid exit code {text!r}: an exit status is 0..255, or -1..-64 for a "
            "process killed by a signal"
        ) from None


def _by_rule(check: Callable[[ModuleType], str], prefix: str = "") -> str:
    """``check(validation)``: a value checked by one of the validation rules, whose refusal
    becomes a usage error. The rules are imported here, not at the top, because the plugin
    imports this module at every pytest start."""
    from pytest_orch_recovery.store import validation

    try:
        return check(validation)
    except validation.RuleError as exc:
        raise argparse.ArgumentTypeError(f"{prefix}{exc}") from None


def relative_path(text: str) -> str:
    """A path relative to its root that does not leave it (``..``, absolute: refused)."""
    return _by_rule(lambda rules: rules.relative_path(text))


def agent_name(text: str) -> str:
    """An agent name in the safe alphabet (a file, branch and tmux session name)."""
    return _by_rule(lambda rules: rules.agent_name(text))


def ref_name(text: str) -> str:
    """A branch or ref git takes as one and never as an option (``--base``)."""
    return _by_rule(lambda rules: rules.ref_name(text))


def branch_pattern(text: str) -> str:
    """A branch pattern with ``{agent}`` (``--branch``)."""
    return _by_rule(lambda rules: rules.branch_pattern(text))


def host_name(text: str) -> str:
    """A host's name in a fleet store, in the safe alphabet (it appears in logs and rows)."""
    return _by_rule(lambda rules: rules.name(text, what="host name"))


def store_url(text: str) -> str:
    """A fleet store URL (``postgresql://...``)."""
    return _by_rule(lambda rules: rules.store_url(text), prefix="store URL ")


def _printable(text: str) -> str:
    """A file name as typed when it prints on one line, else quoted (newlines, NULs)."""
    return text if text.isprintable() else repr(text)


def input_file(text: str) -> str:
    """``-`` (standard input) or an existing regular file of bounded size; devices, FIFOs and
    directories are refused before anything reads them."""
    from pytest_orch_recovery.store import validation  # the plugin imports this module at start

    if text == "-":
        return text
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError(f"{_printable(text)} is not a file name")
    try:
        info = os.stat(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot read {_printable(text)}: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise argparse.ArgumentTypeError(
            f"{_printable(text)}: not a regular file ({validation.file_kind(info.st_mode)})"
        )
    if info.st_size > validation.MAX_DOCUMENT_BYTES:
        raise argparse.ArgumentTypeError(
            f"{_printable(text)}: is {info.st_size} bytes; the limit is "
            f"{validation.MAX_DOCUMENT_BYTES}"
        )
    return text


def agent_command(text: str) -> str:
    """``sim``, ``claude-code``, or a command template that is safe to fill (see
    :mod:`pytest_orch_recovery.infra.command_template`).

    >>> agent_command("sim"), agent_command("aider --message {prompt}")
    ('sim', 'aider --message {prompt}')
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the agent must not be empty")
    if text in BUILTIN_AGENTS:
        return text
    if not is_template(text):
        raise argparse.ArgumentTypeError(
            f"unknown agent {text!r}: use {', '.join(BUILTIN_AGENTS)}, or a command template "
            f"(a command with arguments, placeholders {known()})"
        )
    from pytest_orch_recovery.infra.command_template import TemplateError, parse_template

    try:
        parse_template(text)
    except TemplateError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text
