"""bench_streaming_quality's statistics (t-interval, streaming - sync differences) against hand-computed values,
and its argument checks. The training itself is the benchmark's job (docs/results/streaming.md)."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def bench():
    import bench_streaming_quality  # benchmarks/ is on pytest's pythonpath

    return bench_streaming_quality


def test_t_interval_matches_hand_computed(bench):
    # [70, 72, 74]: mean 72, sample sd 2, t_{0.975, 2} = 4.303 -> half width 4.303 * 2 / sqrt(3) = 4.9687
    interval = bench.t_interval([70.0, 72.0, 74.0])
    assert interval.mean == pytest.approx(72.0)
    assert interval.half_width == pytest.approx(4.9687, abs=1e-4)
    # two values: t_{0.975, 1} = 12.706, sd of [1, 3] = sqrt(2) -> 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert bench.t_interval([1.0, 3.0]).half_width == pytest.approx(12.706)
    assert bench.t_interval([5.0, 5.0, 5.0]).half_width == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        bench.t_interval([1.0])


def _row(greedy: float, avg: float, seconds: float = 100.0) -> dict:
    return {"eval": {"greedy_accuracy": greedy, "accuracy": avg, "pass_at_k": avg + 0.1},
            "rl_seconds": seconds, "trained_samples": 1000}


def test_summary_differences_per_seed(bench):
    results = {(0, "sync"): _row(0.80, 0.70), (0, "stream_eta1"): _row(0.79, 0.72),
               (1, "sync"): _row(0.75, 0.60), (1, "stream_eta1"): _row(0.70, 0.57),
               (2, "sync"): _row(0.70, 0.65), (2, "stream_eta1"): _row(0.72, 0.65)}
    summary = bench.summarize(results, [0, 1, 2], ["sync", "stream_eta1"])
    greedy = summary["diff_points"]["stream_eta1"]["greedy"]
    assert greedy["per_seed"] == [-1.0, -5.0, 2.0]  # points, streaming - sync
    assert greedy["mean"] == pytest.approx(-4.0 / 3)
    sd = math.sqrt(((-1 + 4 / 3) ** 2 + (-5 + 4 / 3) ** 2 + (2 + 4 / 3) ** 2) / 2)
    assert greedy["half_width"] == pytest.approx(4.303 * sd / math.sqrt(3))
    assert greedy["within_2_points"] is True  # mean -1.33 >= -2
    avg = summary["diff_points"]["stream_eta1"]["avg_at_k"]
    assert avg["per_seed"] == [2.0, -3.0, 0.0] and avg["within_2_points"] is True
    assert summary["arms"]["sync"]["avg_at_k"]["mean"] == pytest.approx(65.0)
    results[(1, "stream_eta1")] = _row(0.60, 0.57)  # greedy diffs -1, -15, 2: mean -4.67
    assert bench.summarize(results, [0, 1, 2], ["sync", "stream_eta1"])["diff_points"]["stream_eta1"][
        "greedy"]["within_2_points"] is False


@pytest.mark.parametrize("argv, message", [
    (["--arms", "sync,async"], "unknown arm(s) async"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--steps", "0"], "--steps and --eval-samples must be >= 1"),
    (["--sft-model", "/nonexistent"], "not a model folder"),
])
def test_bad_arguments_exit_2_naming_the_problem(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
