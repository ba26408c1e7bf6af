"""The recovery design's open root-cause question, settled from who sent the signal.

The recovery design's "Root Cause Analysis Log" leaves task-agent-5030's SIGINT pending with three
hypotheses and "Investigation: Check system logs, tmux history":

1. Manual Ctrl-C in tmux session
2. System signal during resource pressure
3. Timeout mechanism sending wrong signal

The launch wrapper records each signal's ``siginfo`` (typed at the terminal, or ``kill()`` from
pid N and its command line) and the cgroup's OOM-kill counter, so the verdict is read off the
attribution instead of investigated by hand. :func:`theory` says which hypothesis held.
"""

from __future__ import annotations

from pytest_orch_recovery.engine.model import Attribution, Reason, SignalOrigin

HYPOTHESES: tuple[str, str, str] = (
    "Manual Ctrl-C in tmux session",
    "System signal during resource pressure",
    "Timeout mechanism sending wrong signal",
)


def theory(attribution: Attribution) -> str:
    """Which of the recovery design's hypotheses the recorded sender supports ("" when none
    applies).

    >>> from pytest_orch_recovery.engine.model import SignalSender
    >>> theory(Attribution(Reason.SIGINT, 0.9, sender=SignalSender(
    ...     2, SignalOrigin.TTY, 0x80, clients=1)))  # doctest: +ELLIPSIS
    'hypothesis 1 (Manual Ctrl-C in tmux session) held: SIGINT typed in the pane (tty; 1 ...'
    """
    if attribution.reason not in (Reason.SIGINT, Reason.KILLED, Reason.TIMEOUT):
        return ""
    sender = attribution.sender
    if attribution.oom_killed:
        return (
            f"hypothesis 2 ({HYPOTHESES[1]}) held: killed by the OOM killer "
            "(the cgroup's oom_kill count rose); 1 and 3 ruled out"
        )
    if sender is None:
        return ""
    said = sender.describe()
    if sender.origin is SignalOrigin.TTY:
        if sender.clients == 0:
            return (
                f"hypothesis 1 ({HYPOTHESES[0]}) held in part: {said}; the keystroke came "
                "through the pane's terminal, but no person was attached to type it "
                "(tmux keyboard input from a program); 2 and 3 ruled out"
            )
        return f"hypothesis 1 ({HYPOTHESES[0]}) held: {said}; 2 and 3 ruled out"
    if sender.from_timeout:
        return f"hypothesis 3 ({HYPOTHESES[2]}) held: {said}; 1 and 2 ruled out"
    if sender.origin is SignalOrigin.KERNEL:
        return f"hypothesis 2 ({HYPOTHESES[1]}) held: {said}; 1 and 3 ruled out"
    return (
        f"hypothesis 2 ({HYPOTHESES[1]}) held in part: {said}, sent with kill() by "
        "another process, though no OOM kill was recorded; not typed in the pane (1), not "
        "a time-limit program (3)"
    )
