"""`thinkrl train` with ``rollout.placement: process`` runs end to end and logs what the thread placement logs for
the same seed (sync mode): the same rollouts, rewards, losses and final weights, timings aside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from proc_table import children, cmdline, survivors  # tests/proc_table.py
from thinkrl.model import load_pretrained

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs with the same thread count: bit-identical maths


def _train(model: Path, out: Path, placement: str) -> list[dict]:
    recipe = {
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 16},
        # dynamic sampling off: every step trains and pushes (the micro model is right ~1% of the time, so with it
        # on whether any group has mixed rewards was up to the draws)
        "rollout": {"group_size": 4, "prompts_per_step": 4, "dynamic_sampling": False},
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
    assert all("loss" in r for r in process), "a step trained nothing: no push was exercised"
    assert [_without_timings(r) for r in process] == [_without_timings(r) for r in thread]
    a, b = (load_pretrained(tmp_path / name / "final").state_dict() for name in ("thread", "process"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_run_in_a_rollout_process_and_a_killed_rollout_process_ends_it_cleanly(sft_model, tmp_path,
                                                                                       wait_for_step):
    """Streaming mode with the engine in a child: pushed weights are the trainer's (fp32 log-prob agreement), the
    staleness bound holds; then the child is SIGKILLed mid-run: the run stops with the signal named, leaves no
    process behind, and its last checkpoint resumes."""
    out, eta = tmp_path / "run", 1
    recipe = {
        "name": "micro-stream", "model": {"path": str(sft_model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 16},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "mode": "streaming", "max_staleness": eta,
                    "dynamic_sampling": False, "placement": "process"},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo"}, "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": 1000, "micro_batch_tokens": 1024, "save_every": 2, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    proc = subprocess.Popen([sys.executable, "-m", "thinkrl.cli", "train", str(path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    try:
        wait_for_step(proc, out, 3, timeout_s=600)
        helpers = children(proc.pid)  # the rollout process, and multiprocessing's resource tracker
        (child,) = [pid for pid in helpers if "resource_tracker" not in cmdline(pid)]
        os.kill(child, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)  # generous: the failure is detected within a poll interval
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr[-3000:]  # a run failure: one line, no traceback (bad input exits 2)
    assert f"rollout process (pid {child}) was killed by signal SIGKILL" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    left = survivors(helpers, within_s=60)  # generous: helpers exit when their parent's pipe closes
    assert not [(pid, cmdline(pid)) for pid in left]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert all(r["version_lag_max"] <= eta for r in rows)
    gaps = [r for r in rows if "logprob_gap_mean" in r]
    assert gaps and all(r["logprob_gap_mean"] < 1e-4 and r["logprob_gap_max"] < 1e-3 for r in gaps), gaps
    saved = int((out / "checkpoints" / "latest").read_text().strip().rsplit("-", 1)[1])
    assert saved >= 2
    recipe["trainer"].update(steps=saved + 1, resume=True)
    path.write_text(json.dumps(recipe))
    resumed = subprocess.run([sys.executable, "-m", "thinkrl.cli", "train", str(path)], capture_output=True,
                             text=True, env=ENV, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()][-1] == saved + 1
