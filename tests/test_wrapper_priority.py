"""The launch wrapper lowers its pane's scheduling group even when the kernel puts it off.

Without CAP_SYS_ADMIN the kernel takes one autogroup change per 100 ms from the whole machine
and refuses the others with EAGAIN (measured here as an unprivileged user: of five sessions
started at once, the first got its nice value, the other four EAGAIN). A fleet launching
agents faster than that must not leave their groups at full weight: the wrapper tries again
while its agent runs. The refusals are simulated here (the suite runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orch_recovery.runtime.wrapper import WrapperSpec

_DRIVER = """
import json, os, sys
from pytest_orch_recovery.runtime import wrapper
os.setsid()  # a session of its own, as in a tmux pane
real, tries = wrapper.lower_session_group, []
def put_off_twice(nice):
    tries.append(nice)
    return len(tries) > 2 and real(nice)
wrapper.lower_session_group = put_off_twice
wrapper.lower_priority = lambda nice: False  # its first try, at start, put off too
info = wrapper.run(wrapper.WrapperSpec.load(wrapper.Path(sys.argv[1])))
print(json.dumps({"tries": tries, "status": info.status}))
"""


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups")
def test_a_put_off_group_change_is_tried_again_while_the_agent_runs(tmp_path: Path) -> None:
    seen = tmp_path / "group.txt"
    spec = WrapperSpec(
        agent="a1",
        attempt=1,
        key="k-a1",
        # Long enough for the retries; it then reports its own group, which is the wrapper's.
        argv=("sh", "-c", f"sleep 1.5; cat /proc/self/autogroup > {seen}"),
        env=dict(os.environ),
        cwd=str(tmp_path),
        exit_file=str(tmp_path / "a1.exit.json"),
        fifo=None,
        nice=6,
    )
    spec_file = tmp_path / "a1.launch.json"
    spec_file.write_text(json.dumps(spec.to_json()))
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(spec_file)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"tries": [6, 6, 6], "status": 0}
    assert seen.read_text().strip().endswith(" nice 6")
