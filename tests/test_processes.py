"""The one /proc reader, on real processes: names, parents, working directories, and the stale
index.lock remedy that trusts them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitrepo import GitSandbox, isolate_git
from waiting import wait_until

from pytest_orch_recovery.infra.processes import (
    ProcessTable,
    parent_pid,
    pids_named,
    pids_with_env,
    process_alive,
    process_cwd,
    process_start_time,
)
from pytest_orch_recovery.infra.remedies import remove_stale_index_lock


def test_a_child_is_found_by_name_parent_and_directory(tmp_path: Path) -> None:
    name = Path(sys.executable).name[:15]  # the kernel keeps 15 bytes of the exec'd file name
    child = subprocess.Popen(
        [sys.executable, "-c", "print('up', flush=True); import sys; sys.stdin.read()"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "up\n"  # it runs: the exec is complete
        assert child.pid in pids_named(name)
        assert parent_pid(child.pid) == os.getpid()
        assert process_cwd(child.pid) == tmp_path.resolve()
        assert process_alive(child.pid, process_start_time(child.pid))
    finally:
        child.stdin.close()
        child.wait()
        child.stdout.close()
    assert child.pid not in pids_named(name)
    assert parent_pid(child.pid) is None and process_cwd(child.pid) is None


def test_processes_are_found_by_a_marker_in_their_environment_and_by_age() -> None:
    marker = f"orch-test-{os.getpid()}-{time.monotonic_ns()}"
    child = subprocess.Popen(
        [sys.executable, "-c", "print('up', flush=True); import sys; sys.stdin.read()"],
        env={**os.environ, "ORCH_TEST_MARKER": marker},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "up\n"
        start = process_start_time(child.pid)
        assert start is not None
        assert pids_with_env("ORCH_TEST_MARKER", marker) == [child.pid]
        assert pids_with_env("ORCH_TEST_MARKER", marker, started_since=start) == [child.pid]
        # Started before the cut-off: not even read.
        assert pids_with_env("ORCH_TEST_MARKER", marker, started_since=start + 1) == []
        assert pids_with_env("ORCH_TEST_MARKER", marker + "x") == []
    finally:
        child.stdin.close()
        child.wait()
        child.stdout.close()
    assert pids_with_env("ORCH_TEST_MARKER", marker) == []


def test_index_lock_is_kept_while_git_runs_in_the_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_git(monkeypatch, tmp_path)
    box = GitSandbox.create(tmp_path / "box")
    worktree = box.worktree("a1")
    git_dir = Path(
        subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"],
            cwd=worktree,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    lock = git_dir / "index.lock"
    lock.write_text("")
    # A live git in the worktree, answering one object name per line until stdin closes.
    busy = subprocess.Popen(
        ["git", "cat-file", "--batch-check"],
        cwd=worktree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert busy.stdin is not None and busy.stdout is not None
    try:
        busy.stdin.write("HEAD\n")
        busy.stdin.flush()
        assert " commit " in busy.stdout.readline()  # git answered: it is running
        kept = remove_stale_index_lock(worktree)
        assert lock.exists() and f"pids {busy.pid}" in kept, kept
    finally:
        busy.stdin.close()
        busy.wait()
        busy.stdout.close()
    done = remove_stale_index_lock(worktree)
    assert not lock.exists() and done.startswith("removed stale"), done


def test_a_process_table_counts_a_tree_by_the_work_its_descendants_do() -> None:
    # A grandchild in a session of its own burns CPU: the tree's ticks grow with it.
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'],"
            " start_new_session=True)\n"
            "print(child.pid, flush=True); sys.stdin.read(); child.kill(); child.wait()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert busy.stdout is not None
        grandchild = int(busy.stdout.readline())
        before = ProcessTable.read()
        assert grandchild in before.children[busy.pid]
        wait_until(
            lambda: ProcessTable.read().tree_cpu_ticks(busy.pid) > before.tree_cpu_ticks(busy.pid),
            "CPU shown by the busy grandchild",
        )
        assert before.tree_cpu_ticks(-1) == 0  # no such process, no ticks
    finally:
        assert busy.stdin is not None and busy.stdout is not None
        busy.stdin.close()
        busy.wait(timeout=60)
        busy.stdout.close()
