"""Every benchmark rejects a bad argument with one `parser.error` line naming it (exit status 2), before it runs
anything: a count below its minimum, an unknown name, a device or dtype torch does not know, a report file written
by another benchmark (these were tracebacks: ZeroDivisionError, KeyError, AttributeError ...)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import pytest

import _cli  # benchmarks/ is on pytest's pythonpath

RAW = Path(__file__).resolve().parents[2] / "docs" / "results" / "raw"

CASES = [
    ("bench_streaming", ["--steps", "0"], "--steps must be at least 1, got 0"),
    ("bench_engine_cpu", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
    ("bench_streaming", ["--short-len", "3"], "--short-len must be at least 4, got 3"),
    ("bench_generate", ["--device", "-1"], "--device '-1' is not a torch device"),
    ("bench_generate", ["--dtype", "bf16"], "--dtype 'bf16' is not a torch dtype"),
    ("bench_generate", ["--models", "demo,huge"], "--models: unknown 'huge'; known: demo, small, medium"),
    ("bench_generate", ["--transformers-setups", "dynamic,compiled"],
     "--transformers-setups: unknown 'compiled'; known: dynamic, static-compile"),
    ("bench_rl_step", ["--group-size", "1"], "--group-size must be at least 2, got 1"),
    ("bench_budget_overhead", ["--budget", "-1"], "--budget must be at least 0, got -1"),
    ("bench_serve", ["--clients", "0"], "--clients must be at least 1, got 0"),
    ("bench_weight_push", ["--sizes", "demo,1b"], "--sizes: unknown '1b'"),
    ("bench_streaming_sim", ["--gpus", "0"], "--gpus must be at least 1, got 0"),
    ("bench_streaming_sim", ["--calibration", str(RAW / "streaming_sim.json")],
     "not a report of `thinkrl bench streaming` (bench: 'streaming-sim')"),
    ("bench_tune_memory", ["--only", "m4-mb512,nope"], "--only: unknown configuration(s) ['nope']"),
    ("bench_tune_memory_tp", ["--time-table", str(RAW / "autotuner_cpu.json")],
     "not a report of `thinkrl bench tune-memory-tp` (benchmark: 'tune-memory')"),
]


@pytest.mark.parametrize(("module", "argv", "message"), CASES, ids=[f"{m}{' '.join(a[:1])}" for m, a, _ in CASES])
def test_a_bad_argument_is_one_line_and_exit_2(module, argv, message, monkeypatch, capsys):
    bench = importlib.import_module(module)
    monkeypatch.setattr(sys, "argv", [f"{module}.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and "Traceback" not in err


def test_a_report_of_the_right_benchmark_loads_and_a_missing_file_is_named(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="bench")
    saved = RAW / "streaming_steady_run7.json"
    assert _cli.load_report(parser, "--calibration", str(saved), "streaming", key="bench") == json.loads(
        saved.read_text())
    with pytest.raises(SystemExit) as exit_info:
        _cli.load_report(parser, "--table", str(tmp_path / "none.json"), "tune-memory")
    assert exit_info.value.code == 2
    assert f"--table {tmp_path / 'none.json'}: cannot read a JSON report" in capsys.readouterr().err
