"""`thinkrl tune profile` measures collectives in ranks it spawns (`thinkrl.tune.profile_measure`). Interrupted
(SIGINT to the measuring process alone, as ``kill -INT`` or a process manager sends it), the process ends promptly
and takes its ranks with it, instead of waiting at exit for ranks that still have minutes of collectives to time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proc_table import children, cmdline, kill_all, survivors  # tests/proc_table.py

DEADLINE_S = 60  # "ends within seconds": generous slack for a loaded 2-core machine

PARENT = """
from thinkrl.tune.profile_measure import _collective_curve

if __name__ == "__main__":
    print("measuring", flush=True)
    _collective_curve("all_reduce", 2, [1 << 22] * 4000, "wall", "cpu")  # 24000 all-reduces of 16 MiB: minutes
"""


def test_an_interrupted_profile_ends_with_its_measuring_ranks(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ranks: list[int] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "measuring\n"
        deadline = time.monotonic() + 120
        while len(ranks) < 2:  # both ranks started (a spawned interpreter importing torch takes seconds)
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            ranks = [pid for pid in children(proc.pid) if "spawn_main" in cmdline(pid)]
            time.sleep(0.1)
        time.sleep(3)  # the ranks are in their all-reduces
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=DEADLINE_S)
        left = [(pid, cmdline(pid)) for pid in survivors(ranks, DEADLINE_S)]
    finally:
        kill_all([proc.pid, *ranks])
        proc.communicate()
    assert not left, f"measuring ranks outlived the interrupted profile: {left}"
    assert proc.returncode != 0 and stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-3000:]
