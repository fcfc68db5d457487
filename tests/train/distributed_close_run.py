"""Run by tests/train/test_distributed.py under torchrun (2 ranks, gloo): how `close_data_parallel` ends a run.

One rank is late (it sleeps, then writes a marker file, as rank 0 writes the final files of a run); the other, the
prompt rank, closes at once with ``synchronize=True`` and records whether the marker existed when its close
returned. ``--case together``: the late rank is 0 and closes with ``synchronize=True`` after its work.
``--case missing``: the late rank is 1 and never closes (it exits after its work); the prompt rank 0 must give up
after its 1 s timeout, warn, and return.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from thinkrl.train.distributed import close_data_parallel, init_data_parallel

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["together", "missing"], required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = Path(args.dir)
    data_parallel = init_data_parallel("gloo")
    late = 0 if args.case == "together" else 1
    if data_parallel.rank == late:
        time.sleep(5)
        (folder / "late-work-done").write_text("")
        if args.case == "together":
            close_data_parallel(synchronize=True)
    else:
        close_data_parallel(synchronize=True, timeout_s=60 if args.case == "together" else 1)
        (folder / "prompt.json").write_text(json.dumps({"late_done_when_closed": (folder / "late-work-done").exists()}))
