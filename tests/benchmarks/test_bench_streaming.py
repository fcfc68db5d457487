"""`thinkrl bench streaming` end to end on a tiny workload: every mode trains the same number of samples, and the
pipeline's fill is excluded by default (eta + 1 unmeasured steps). The speed figures are the benchmark's job
(docs/results/streaming.md)."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import run_thinkrl


def test_a_tiny_run_measures_each_mode_after_its_pipeline_fill(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_thinkrl("bench", "streaming", "--steps", "2", "--rounds", "1", "--modes", "sync,stream_eta1,stream_eta2",
                       "--short-len", "4", "--prompts", "2", "--group", "2", "--slots", "8", "--out", str(out),
                       timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["warmup_steps"] == {"sync": 1, "stream_eta1": 2, "stream_eta2": 3}
    for mode in ("sync", "stream_eta1", "stream_eta2"):
        assert record["results"][mode]["samples"] == 2 * 2 * 2  # steps x prompts x group, nothing lost
    assert set(record["ratio_samples_per_s"]) == {"stream_eta1", "stream_eta2"}
    ratio = record["results"]["stream_eta1"]["samples_per_s"] / record["results"]["sync"]["samples_per_s"]
    assert abs(record["ratio_samples_per_s"]["stream_eta1"] - ratio) < 1e-12
    # one round: each round's ratio over that round's best sync is the run's ratio over the best sync
    for mode in ("stream_eta1", "stream_eta2"):
        assert abs(record["ratio_median_of_rounds_vs_best_sync"][mode] - record["ratio_vs_best_sync"][mode]) < 1e-9
    # The engine-alone bound: each streaming mode priced at its own steps per batch, over sync priced the same way
    bound, sync = record["bound"], record["results"]["sync"]
    assert set(bound["modes"]) == {"stream_eta1", "stream_eta2"}
    sync_ms = bound["sync_load_alone"]["sync"]["ms_per_step"]
    ideal = 4 / (sync["engine_steps"] / (sync["samples"] / 4) * sync_ms / 1e3 + sync["train_s_per_batch"])
    assert abs(bound["ideal_sync_samples_per_s"] - ideal) < 1e-9 * ideal
    for mode, figures in bound["modes"].items():
        steps = record["results"][mode]["engine_steps"] / (record["results"][mode]["samples"] / 4)
        assert abs(figures["steps_per_batch"] - steps) < 1e-9
        assert abs(figures["samples_per_s_bound"] - 4 / (steps * figures["isolated_ms_per_step"] / 1e3)) < 1e-6
        assert abs(figures["ratio_ideal"] - figures["samples_per_s_bound"] / ideal) < 1e-9
    # Progress: one stderr line per mode and round as each ends, then one per bound; stdout holds the JSON alone.
    prefix = "thinkrl bench streaming ["
    lines = [line.split("] ", 1)[1] for line in done.stderr.splitlines() if line.startswith(prefix)]
    modes = ("sync", "stream_eta1", "stream_eta2")
    assert [line.split(":")[0] for line in lines] == [f"round 1/1 {mode}" for mode in modes] + [
        "bound stream_eta1", "bound stream_eta2"]
    assert json.loads(done.stdout) == record


def test_too_few_slots_is_a_clear_error() -> None:
    done = run_thinkrl("bench", "streaming", "--slots", "4", timeout=120)
    assert done.returncode == 2 and "--slots must be at least 5" in done.stderr


def test_an_unusable_device_is_a_clear_error() -> None:
    done = run_thinkrl("bench", "streaming", "--device", "gpu", timeout=120)
    assert done.returncode == 2 and "--device must be cpu, or cuda[:N]" in done.stderr


def test_each_mode_is_compared_with_the_sync_of_its_engine_and_placement() -> None:
    from bench_streaming import same_engine_sync

    names = {"sync": ("sync", "thread"), "sync_compiled": ("sync_compiled", "thread"),
             "stream_eta2": ("stream_eta2", "thread"), "stream_eta2_compiled": ("stream_eta2_compiled", "thread"),
             "sync@process": ("sync", "process"),
             "stream_eta2_compiled@process": ("stream_eta2_compiled", "process")}
    assert same_engine_sync("stream_eta2", names) == "sync"
    assert same_engine_sync("stream_eta2_compiled", names) == "sync_compiled"
    assert same_engine_sync("stream_eta2_compiled@process", names) == "sync@process"  # no compiled sync there
