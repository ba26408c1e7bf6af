"""Helpers for tests of the files read commands keep beside a journal (``report/kept.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def forge_rows(kept: Path, change: Callable[[bytes], bytes]) -> None:
    """The kept file with each section of rows changed by ``change`` (bytes -> bytes), the
    header's byte counts made to fit again: a file someone else wrote."""
    data = kept.read_bytes()
    header = json.loads(data.split(b"\n", 1)[0])
    sizes = [int(header[f"{name}_bytes"]) for name in header["sections"]]
    at = len(data) - sum(sizes)
    head, sections = data[:at], []
    for name, size in zip(header["sections"], sizes, strict=True):
        sections.append(change(data[at : at + size]))
        header[f"{name}_bytes"] = len(sections[-1])
        at += size
    rest = head.split(b"\n", 1)[1]
    kept.write_bytes(json.dumps(header).encode() + b"\n" + rest + b"".join(sections))


DAMAGES = ("cut short", "longer", "other code", "another journal", "not json", "fifo", "directory")


def damage(journal: Path, kept: Path, how: str) -> None:
    """Make the kept file beside ``journal`` one that does not fit it, ``how`` (one of
    :data:`DAMAGES`)."""
    from events import seed_incident

    from pytest_orch_recovery.store.journal import journal_text

    data = kept.read_bytes()
    if how == "cut short":
        kept.write_bytes(data[:-10])
    elif how == "longer":
        kept.write_bytes(data + b"x\x00y\n")
    elif how == "other code":
        header, rest = data.split(b"\n", 1)
        fields = json.loads(header)
        fields["code"] = "0" * 16
        kept.write_bytes(json.dumps(fields).encode() + b"\n" + rest)
    elif how == "another journal":
        journal.write_text(journal_text(seed_incident().events))
    elif how == "not json":
        kept.write_bytes(b"{" + data)
    elif how == "fifo":
        kept.unlink()
        os.mkfifo(kept)
    else:
        kept.unlink()
        kept.mkdir()
