"""A sandboxed program does not outlive the process that runs it. bubblewrap mode has ``--die-with-parent``; the
rlimits fallback (no bubblewrap) used to leave the program running when its parent was killed (SIGKILL, or the
SIGTERM of a plain script): a program that sleeps uses no CPU, so no rlimit ever ended it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proc_table import alive, cmdline, descendants, kill_all, survivors  # tests/ is on pytest's pythonpath

DEADLINE_S = 30  # generous: the kernel signals the program when its parent dies

PARENT = """
import sys
from thinkrl.rewards.sandbox import SandboxLimits, SandboxPool

if __name__ == "__main__":
    limits = SandboxLimits(timeout_s=600, isolation=sys.argv[1], allow_unisolated=True)
    with SandboxPool(2, limits=limits) as pool:  # programs started from the pool's threads
        pool.run_programs(["import time\\ntime.sleep(500)"] * 2)
"""


def _signal_parent(argv: list[str], watch: Callable[[int], list[int]], ready: Callable[[list[int]], bool],
                   signum: signal.Signals) -> tuple[int, list[int]]:
    """Start ``argv`` (a parent that runs sandboxed programs), wait until ``ready(watch(parent pid))``, send the
    parent ``signum``; returns its exit status and the watched pids still alive ``DEADLINE_S`` later (everything
    is killed on the way out)."""
    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not ready(watched):
            assert parent.poll() is None and time.monotonic() < deadline, "the sandboxed processes did not start"
            watched = watch(parent.pid)
            time.sleep(0.05)
        time.sleep(0.5)  # asleep in their code
        parent.send_signal(signum)
        parent.wait(timeout=DEADLINE_S)
        left = survivors(watched, DEADLINE_S)
    finally:
        kill_all([parent.pid, *watched])
        parent.wait()
    return parent.returncode, left


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_killed_parent_leaves_no_sandboxed_program_in_the_rlimits_fallback(tmp_path: Path,
                                                                              signum: signal.Signals) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    status, left = _signal_parent(
        [sys.executable, str(script), "rlimits"],
        watch=lambda pid: [p for p in descendants(pid) if "_runner.py" in cmdline(p)],
        ready=lambda programs: len(programs) >= 2, signum=signum)
    assert status == -signum
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
    _, left = _signal_parent(
        [sys.executable, str(script)], watch=lambda pid: [p for p in descendants(pid) if alive(p)],
        ready=lambda below: any("time.sleep(500)" in cmdline(pid) for pid in below), signum=signal.SIGKILL)
    assert left == [], f"still running after the parent was killed: {left}"
