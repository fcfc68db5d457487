"""`thinkrl ablate --workers 2` interrupted (SIGINT or SIGTERM to the command's process, as a process manager or
``kill`` sends it): the command ends promptly with one line, and its worker processes, busy with cells that would
run for minutes, are stopped with it instead of being waited for or left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from proc_table import children, cmdline, kill_all, survivors  # tests/proc_table.py

DEADLINE_S = 60  # "ends within seconds": generous slack for a loaded 2-core machine
MICRO = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1}
DATA = {"task": "arithmetic", "num_train": 60, "num_test": 4, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}


def _grid(tmp_path: Path) -> Path:
    """A grid whose SFT stage (one cell per seed, so both workers are busy) would run 10^6 steps."""
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump({
        "name": "s", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 100_000,
        "optim": {"lr": 3e-3, "warmup_steps": 0}, "trainer": {"steps": 1_000_000, "micro_batch_tokens": 256,
                                                              "log_every": 1, "save_every": 0}}))
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump({
        "name": "r", "model": {"path": "unset", "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 12, "num_slots": 16}, "rollout": {"group_size": 2, "prompts_per_step": 4},
        "reward": {"max_response_len": 12, "overlong_cache_len": 4}, "algorithm": {"preset": "dapo"},
        "trainer": {"steps": 2, "eval_every": 0, "micro_batch_tokens": 1024}}))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({
        "name": "g", "sft": "sft.yaml", "rl": "rl.yaml", "target_accuracy": 0.5, "variants": [{"name": "A"}]}))
    return tmp_path / "grid.yaml"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_ablation_stops_its_worker_processes(tmp_path: Path, signum: signal.Signals) -> None:
    grid = _grid(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"  # files, not pipes: the workers share them and would outlive a pipe's reader
    with open(tmp_path / "stdout.txt", "wb") as out, open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "thinkrl.cli", "ablate", str(grid), "--seeds", "0,1",
                                 "--workers", "2", "--name", "abl"], cwd=tmp_path, env=env, stdout=out, stderr=err)
    metrics = [tmp_path / "runs" / "abl" / "sft" / f"seed-{s}" / "metrics.jsonl" for s in (0, 1)]
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not all(m.exists() and '"step": 2,' in m.read_text() for m in metrics):  # both cells are training
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the SFT cells did not start within 300 s"
            time.sleep(0.1)
        workers = [pid for pid in children(proc.pid) if "resource_tracker" not in cmdline(pid)]
        assert len(workers) == 2, [(pid, cmdline(pid)) for pid in workers]
        proc.send_signal(signum)
        proc.wait(timeout=DEADLINE_S)
        left = [(pid, cmdline(pid)) for pid in survivors(workers, DEADLINE_S)]
    finally:
        kill_all([proc.pid, *workers])
        proc.wait()
    stderr = log.read_text()
    assert not left, f"worker processes outlived `thinkrl ablate`: {left}"
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert stderr.splitlines()[-1] == f"thinkrl ablate: interrupted ({signal.Signals(signum).name})", stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
