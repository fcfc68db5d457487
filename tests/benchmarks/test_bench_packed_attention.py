"""`thinkrl bench packed-attention` on a tiny workload: both layouts run on the same batches and give the same
outputs; the long tail makes the grouped side split. The speed is the benchmark's figure (docs/model.md)."""

from __future__ import annotations

import json

from cli_runner import run_thinkrl


def test_a_tiny_run_times_both_layouts_on_the_same_attention() -> None:
    done = run_thinkrl("bench", "packed-attention", "--seqs", "12", "--short-len", "16", "--batches", "2", "--repeats",
                       "1", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(record["ms_per_forward_backward"]) == {"grouped", "one_buffer"}
    assert all(v > 0 for v in record["ms_per_forward_backward"].values())
    assert record["max_abs_diff"] < 1e-5
    assert len(record["groups_per_batch"]) == 2 and max(record["groups_per_batch"]) > 1


def test_a_bad_value_is_one_line() -> None:
    done = run_thinkrl("bench", "packed-attention", "--seqs", "0", timeout=120)
    assert done.returncode == 2 and "--seqs must be at least 1" in done.stderr
