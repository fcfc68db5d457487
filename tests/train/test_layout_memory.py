"""Memory of a tp=2 layout as the trainer splits the model (`shard_model` with `trainer.tensor_parallel`), measured
in a real 2-rank torchrun (gloo): one rank holds well under the unsplit model's peak, and the tuner's per-term
formulas for tensor parallelism without sequence parallelism predict it within 15%. The full table:
`thinkrl bench tune-memory-tp` (docs/results/autotuner.md)."""

from __future__ import annotations


def _bench():
    import bench_tune_memory_tp  # benchmarks/ is on pytest's pythonpath (it imports its sibling bench_tune_memory)

    return bench_tune_memory_tp


def test_tp2_peak_per_rank_is_split_and_predicted_within_15_percent() -> None:
    bench = _bench()
    rows = bench._spawn("m4-mb2048-tp2", "alloc", "wall")
    assert sorted(row["rank"] for row in rows) == [0, 1]
    measured = max(row["peak_bytes"] for row in rows)
    unsplit = bench.base.predict("m4-mb2048", gflops=50.0, comm_gbps=None)[0]["train_peak"]  # 1 rank, same batch
    assert measured < 0.85 * unsplit, (measured, unsplit)  # the layers' weights and activations are split
    predicted = bench.predict_without_sp("m4-mb2048-tp2")
    assert abs(predicted / measured - 1) < 0.15, (predicted, measured)
