"""`thinkrl train` with ``rollout.placement: process`` runs end to end and logs what the thread placement logs for
the same seed (sync mode): the same rollouts, rewards, losses and final weights, timings aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from thinkrl.model import load_pretrained

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs with the same thread count: bit-identical maths


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory) -> Path:
    """A micro model that learned the answer format (and some answers) in ~10 s of SFT, so RL groups have mixed
    rewards and the weights are pushed after every step."""
    from thinkrl.train.config import SFTRecipe, validate_recipe
    from thinkrl.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft")
    recipe = validate_recipe({
        "name": "micro-sft", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 12,
        "optim": {"lr": 3e-3, "warmup_steps": 5}, "trainer": {"micro_batch_tokens": 384, "save_every": 0,
                                                              "output_dir": str(out), "log_every": 5},
    }, SFTRecipe)
    return run_sft(recipe)


def _train(model: Path, out: Path, placement: str) -> list[dict]:
    recipe = {
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 16},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_sampling_rounds": 2},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo", "num_mini_batches": 2},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": 3, "micro_batch_tokens": 1024, "save_every": 0, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0},
    }
    path = out.with_suffix(".yaml")
    path.write_text(json.dumps(recipe))  # JSON is YAML
    proc = subprocess.run([sys.executable, "-m", "thinkrl.cli", "train", str(path), f"rollout.placement={placement}"],
                          capture_output=True, text=True, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without_timings(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("time") and k != "tokens_per_s"}


def test_process_placement_trains_like_the_thread_placement(sft_model, tmp_path):
    thread = _train(sft_model, tmp_path / "thread", "thread")
    process = _train(sft_model, tmp_path / "process", "process")
    assert [r["step"] for r in process] == [1, 2, 3]
    assert any("loss" in r for r in process[:-1]), "no update before the last step: no push was exercised"
    assert [_without_timings(r) for r in process] == [_without_timings(r) for r in thread]
    a, b = (load_pretrained(tmp_path / name / "final").state_dict() for name in ("thread", "process"))
    assert all(torch.equal(a[k], b[k]) for k in a)
