"""The memory model against measured peaks of real training steps (fresh processes; 2 ranks = torchrun + gloo +
FSDP2). The full table is `thinkrl bench tune-memory` (docs/results/autotuner.md); these are its quick rows."""

from __future__ import annotations

import pytest


def _bench():
    import bench_tune_memory  # benchmarks/ is on pytest's pythonpath

    return bench_tune_memory


@pytest.mark.parametrize("name", [pytest.param("m4-mb512", marks=pytest.mark.slow), "m4-mb1024-recompute",
                                  "m4-mb1024-fsdp2"])
def test_predicted_peak_within_15_percent_of_measured(name):
    bench = _bench()
    rows = bench._spawn(name, "alloc")  # one result per rank
    assert len(rows) == bench.CONFIGS[name][1]
    measured = max(row["peak_bytes"] for row in rows)
    assert all(row["peak_bytes"] > row["live_bytes"] * 1.5 for row in rows)  # the step itself allocated a lot
    memory, _ = bench.predict(name, gflops=50.0, comm_gbps=None)
    assert abs(memory["train_peak"] / measured - 1) < 0.15, (memory["train_peak"], measured)
