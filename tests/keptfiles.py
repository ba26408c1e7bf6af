"""Helpers for tests of the files read commands keep beside a journal (``report/kept.py``)."""

from __future__ import annotations

import json
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
