"""Runtimes the coordinator drives: in-process simulation and real tmux."""

from __future__ import annotations

from .base import AttemptExit, Clock, LaunchSpec, Runtime

__all__ = ["AttemptExit", "Clock", "LaunchSpec", "Runtime"]
