"""A sandboxed program does not outlive the process that runs it. bubblewrap mode has ``--die-with-parent``; the
rlimits fallback (no bubblewrap) used to leave the program running when its parent was killed (SIGKILL, or the
SIGTERM of a plain script): a program that sleeps uses no CPU, so no rlimit ever ended it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proc_table import alive, cmdline, descendants  # tests/ is on pytest's pythonpath

DEADLINE_S = 30  # generous: the kernel signals the program when its parent dies

PARENT = """
import sys
from thinkrl.rewards.sandbox import SandboxLimits, SandboxPool

if __name__ == "__main__":
    limits = SandboxLimits(timeout_s=600, isolation=sys.argv[1], allow_unisolated=True)
    with SandboxPool(2, limits=limits) as pool:  # programs started from the pool's threads
        pool.run_programs(["import time\\ntime.sleep(500)"] * 2)
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_killed_parent_leaves_no_sandboxed_program_in_the_rlimits_fallback(tmp_path: Path,
                                                                              signum: signal.Signals) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), "rlimits"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    programs: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(programs) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the programs did not start"
            programs = [pid for pid in descendants(parent.pid) if "_runner.py" in cmdline(pid)]
            time.sleep(0.05)
        time.sleep(0.5)  # the programs are asleep in their solutions
        parent.send_signal(signum)
        parent.wait(timeout=DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while any(alive(pid) for pid in programs) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in programs if alive(pid)]
    finally:
        for pid in [parent.pid, *programs]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert parent.returncode == -signum
    assert not left, f"sandboxed programs outlived their parent: {left}"


GRANDPARENT = """
import sys
from thinkrl.rewards.sandbox import SandboxLimits, SandboxPool

PROGRAM = '''
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(500)"])  # the program's own child
time.sleep(500)
'''

if __name__ == "__main__":
    limits = SandboxLimits(timeout_s=600, isolation="rlimits", allow_unisolated=True)
    with SandboxPool(1, limits=limits) as pool:
        pool.run_programs([PROGRAM])
"""


def test_a_killed_parent_leaves_no_child_of_the_program_in_the_rlimits_fallback(tmp_path: Path) -> None:
    """The kernel kills the runner with its parent, but not the processes the program started; the runner's watcher
    (same process group) kills them once the runner is gone."""
    script = tmp_path / "parent.py"
    script.write_text(GRANDPARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    below: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not any("time.sleep(500)" in cmdline(pid) for pid in below):
            assert parent.poll() is None and time.monotonic() < deadline, "the program's child did not start"
            below = [pid for pid in descendants(parent.pid) if alive(pid)]
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in below if alive(pid)]
    finally:
        for pid in [parent.pid, *below]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert left == [], f"still running after the parent was killed: {left}"
