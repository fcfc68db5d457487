"""`bench generate`'s transformers sides: the static-cache setup really generates with a static cache and a compiled
forward (on CPU too: the bench asks for it with a CompileConfig), and both setups produce every requested token."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch._dynamo.utils import counters

import bench_generate as bench  # benchmarks/ is on pytest's pythonpath
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
