"""The engine-alone bound of `bench streaming` (benchmarks/_streaming_bound.py): its arithmetic by hand, and the
two loads it measures the engine under (sync's batches, streaming's rows kept in flight)."""

from __future__ import annotations

import pytest

from _streaming_bound import build_engine, engine_bound, interpolate, isolated_step

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "tie_word_embeddings": True}


def test_the_bound_is_a_batch_per_steps_times_the_engine_alone() -> None:
    # 32 samples every 100 steps of 0.5 ms = 50 ms a batch: 640 samples/s, twice a sync at 320
    bound = engine_bound(steps_per_batch=100.0, rows_per_step=12.0, isolated_ms=0.5, batch=32,
                         best_sync_samples_per_s=320.0, ideal_sync_samples_per_s=400.0)
    assert bound["samples_per_s_bound"] == pytest.approx(640.0)
    assert bound["ratio_bound_vs_best_sync"] == pytest.approx(2.0)
    assert bound["ratio_ideal"] == pytest.approx(1.6)


def test_interpolate_between_two_loads() -> None:
    points = [{"rows": 14.0, "ms_per_step": 1.4}, {"rows": 10.0, "ms_per_step": 1.0}]
    assert interpolate(points, 12.0) == pytest.approx(1.2)  # type: ignore[arg-type]
    assert interpolate(points, 15.0) == pytest.approx(1.5)  # type: ignore[arg-type]
    same = [{"rows": 4.0, "ms_per_step": 1.0}, {"rows": 4.0, "ms_per_step": 1.2}]
    assert interpolate(same, 5.0) == pytest.approx(1.1)  # type: ignore[arg-type]


def test_sync_load_samples_whole_batches() -> None:
    # batches of 4 requests of exactly 10 tokens (no stop token): each batch is 10 steps of 4 sampled tokens
    engine = build_engine(TINY, slots=8, max_seq_len=64, compile_decode=False)  # type: ignore[arg-type]
    load = isolated_step(engine, rows=0, batch=4, group=2, length=lambda i: 10, steps=40, warmup=0)
    assert load["rows"] == 4.0
    assert load["ms_per_step"] > 0
    assert not engine.has_unfinished()  # what was left in flight is aborted


def test_streaming_load_keeps_its_rows_in_flight() -> None:
    # groups of 2 topped up to at least 6 in flight, 10 tokens each: 6 or 7 sequences sample in every step
    engine = build_engine(TINY, slots=16, max_seq_len=64, compile_decode=False)  # type: ignore[arg-type]
    load = isolated_step(engine, rows=6, batch=4, group=2, length=lambda i: 10, steps=60, warmup=20)
    assert 6.0 <= load["rows"] <= 7.0
    assert not engine.has_unfinished()
