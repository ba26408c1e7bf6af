"""The one exception base of the package, as libtmux's ``exc.py``.

Every exception class the package defines derives from :class:`OrchRecoveryError`, so a caller
can catch "anything this package raised on purpose" in one clause. A class that also means a
built-in kind of error keeps that base as well (``CheckpointError`` is a ``ValueError``,
``TmuxError`` a ``RuntimeError``), so callers that catch the built-in keep working.
"""

from __future__ import annotations

__all__ = [
    "InvalidState",
    "InvalidType",
    "InvalidValue",
    "OrchRecoveryError",
    "UsageError",
]


class OrchRecoveryError(Exception):
    """Base class of every exception pytest-orch-recovery defines."""


class UsageError(OrchRecoveryError):
    """A command line or setting the user has to change: reported as one line that says
    which and why, with exit status 2."""


class InvalidValue(OrchRecoveryError, ValueError):
    """A value given to the package (an argument, a field read from a file) that it does not
    accept; the message names the field and what was expected."""


class InvalidType(OrchRecoveryError, TypeError):
    """A value of a kind the package cannot take where it was given (e.g. an object a JSON
    document cannot hold); the message names the kind."""


class InvalidState(OrchRecoveryError, RuntimeError):
    """An operation asked of an object at a moment it cannot happen (e.g. launching an attempt
    of an agent whose previous attempt still runs)."""
