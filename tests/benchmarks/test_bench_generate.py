"""`bench generate`'s transformers sides: the static-cache setup really generates with a static cache and a compiled
forward (on CPU too: the bench asks for it with a CompileConfig), and both setups produce every requested token; a
tiny run end to end prints a progress line per repeat on stderr and the JSON alone on stdout."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch._dynamo.utils import counters

import bench_generate as bench  # benchmarks/ is on pytest's pythonpath
from cli_runner import run_thinkrl
from thinkrl.model import build_model, save_pretrained


@pytest.mark.parametrize("setup, static", [("dynamic", False), ("static-compile", True)])
def test_each_transformers_setup_runs_with_its_cache(setup, static, tmp_path, monkeypatch) -> None:
    save_pretrained(build_model(bench.MODELS["demo"], seed=0), tmp_path)
    made = []
    original = transformers.StaticCache.__init__

    def spy(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.StaticCache, "__init__", spy)
    prompts = bench._prompts(3, seed=0)
    graphs_before = counters["stats"]["unique_graphs"]
    rate = bench.bench_transformers(str(tmp_path), prompts, 5, "cpu", torch.float32, setup)
    assert rate > 0  # (the function itself asserts that every prompt got all 5 new tokens)
    assert bool(made) is static
    assert (counters["stats"]["unique_graphs"] > graphs_before) is static  # Dynamo compiled the forward


def test_a_tiny_run_prints_a_progress_line_per_repeat() -> None:
    done = run_thinkrl("bench", "generate", "--models", "demo", "--prompts", "2", "--new-tokens", "4", "--repeats", "2",
                       "--skip-transformers", "--skip-long-tail", "--device", "cpu", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)  # stdout holds the JSON line alone; progress goes to stderr
    prefix = "thinkrl bench generate ["
    lines = [line.split("] ", 1)[1] for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert [line.split(":")[0] for line in lines] == ["demo repeat 1/2", "demo repeat 2/2"]
    rates = record["results"]["demo"]["repeats_tokens_per_s"]
    assert lines[1] == (f"demo repeat 2/2: thinkrl {rates['ours'][1]:.1f}, "
                        f"thinkrl unpacked {rates['plain'][1]:.1f} tokens/s")
