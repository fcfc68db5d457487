"""`thinkrl train` end to end on a streaming multi-turn tool-use recipe (`AgentStreamingDriver` behind the CLI), from
conftest's micro model fitted to a calculator transcript: the reward rises within the staleness bound, and Ctrl-C
ends a run whose engine lives in a rollout process, leaving no process behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from thinkrl.cli import FORCE_EXIT_S
from thinkrl.tasks.dataset import generate_dataset, write_jsonl
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.common import save_policy

TOK = load_tokenizer("builtin")
PROBLEMS = generate_dataset("big_arithmetic", 1, 0, "train", {"digits": 2})


@pytest.fixture(scope="module")
def fitted(calculator_policy):
    """conftest's micro model that reproduces the calculator transcript of ``PROBLEMS`` greedily."""
    return calculator_policy[4]


def _recipe_file(tmp_path: Path, fitted, steps: int, **changes) -> Path:
    """A streaming multi-turn DAPO recipe from the fitted model, training on the fitted problem (4 copies) and
    evaluating on it under another id (the held-out set may not share ids with the training set)."""
    save_policy(fitted, TOK, tmp_path / "fitted")
    write_jsonl([replace(PROBLEMS[0], id=f"train-{i}") for i in range(4)], tmp_path / "train.jsonl")
    write_jsonl([replace(PROBLEMS[0], id="held-out")], tmp_path / "test.jsonl")
    raw = {
        "name": "agent-stream", "model": {"path": str(tmp_path / "fitted"), "device": "cpu"},
        "data": {"task": "big_arithmetic", "train_file": str(tmp_path / "train.jsonl"),
                 "test_file": str(tmp_path / "test.jsonl")},
        "agent": {"environment": "big_arithmetic", "max_total_tokens": 300, "max_tokens_per_turn": 48},
        "sampling": {"temperature": 0.7, "max_new_tokens": 48, "num_slots": 16},  # T=0.7: often wrong at first
        "rollout": {"group_size": 8, "prompts_per_step": 2, "dynamic_sampling": False, "mode": "streaming",
                    "max_staleness": 1},
        "reward": {"overlong_penalty": False},
        "algorithm": {"preset": "dapo"},
        "optim": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "grad_clip": 1.0},
        "trainer": {"steps": steps, "micro_batch_tokens": 8192, "eval_every": steps, "eval_samples": 48,
                    "save_every": 0, "log_every": 1, "output_dir": str(tmp_path / "run")},
    }
    for key, value in changes.items():
        section, _, field = key.partition(".")
        raw[section][field] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(recipe: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "thinkrl", "train", str(recipe)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_thinkrl_train_streams_multi_turn_dapo_and_the_reward_rises(fitted, tmp_path) -> None:
    """20 streaming steps of 2 groups x 8 episodes; the same 96 seeded held-out episodes (T=0.7) are judged before
    the first step and after the last. (12 steps judged on 48 episodes gained +0.125 on a quiet box, and +0.04 to
    +0.25 beside two CPU hogs, whose timing changes what a push interrupts: 20 steps and 96 episodes gained +0.34
    quiet and +0.18 to +0.29 loaded, 2026-12-05.)"""
    # round_tokens: each weight version generates at most 600 tokens before the rollout pauses, interrupting the
    # turns in flight, so pushes always find turns to continue (without it, whether a push meets a turn in flight
    # depends on how fast the trainer is against the engine: a faster trainer left none in 20 steps). Measured
    # 2026-12-05: 182-221 continued turns, held-out accuracy +0.21 to +0.26 (256 tokens: +0.04; 1024: +0.17).
    proc = _train(_recipe_file(tmp_path, fitted, steps=20, **{"trainer.eval_samples": 96, "rollout.round_tokens": 600}))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    rows = _rows(tmp_path / "run")
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == list(range(1, 21))
    for r in steps:  # trained within the bound; the agent's metrics of the episodes completed since the last step
        assert r["version_lag_max"] <= 1 and "stream/continued" in r and "agent/turns_mean" in r
    assert all(r["agent/turns_mean"] > 1 for r in steps if r.get("response_length_mean", 0) > 0)  # tools were called
    assert sum(r["stream/continued"] for r in steps) > 0  # turns interrupted by pushes went on
    evals = {r["step"]: r["eval/accuracy"] for r in rows if "eval/accuracy" in r}
    assert evals[20] > evals[0] + 0.1, evals


def _interrupt(folder: Path, fitted, wait_for_step, delay_s: float = 0.0) -> None:
    """Start a long run with its engine in a rollout process and SIGINT it ``delay_s`` after step 2 is logged; the
    run must end on its own (the loop's cleanup, no forced exit) and leave no child behind."""
    run = folder / "run"
    proc = _train(_recipe_file(folder, fitted, steps=1000, **{"rollout.placement": "process",
                                                              "trainer.eval_every": 0}))
    try:
        wait_for_step(proc, run, 2)
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in children.stdout.split()]
        assert pids, "no rollout process"
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        # Past the CLI's own limit (FORCE_EXIT_S, then it exits printing each thread's stack): a cleanup that hung
        # fails below with that dump, not with a bare timeout.
        _, stderr = proc.communicate(timeout=FORCE_EXIT_S + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "interrupted" in stderr, stderr[-8000:]
    assert "exiting without waiting for the cleanup" not in stderr, stderr[-8000:]  # it ended within FORCE_EXIT_S
    deadline = time.monotonic() + 60  # generous: a failure must surface, never hang the suite
    while any(Path(f"/proc/{p}").exists() for p in pids):
        assert time.monotonic() < deadline, "the rollout process did not exit"
        time.sleep(0.01)


def test_ctrl_c_ends_a_streaming_agent_run_with_its_rollout_process(fitted, tmp_path, wait_for_step) -> None:
    """SIGINT to a real `thinkrl train` (engine in a child process, ``rollout.placement: process``) mid-run: it ends
    within seconds and leaves no process behind."""
    _interrupt(tmp_path, fitted, wait_for_step)


@pytest.mark.slow
def test_ctrl_c_at_random_points_of_agent_streaming_runs(fitted, tmp_path, wait_for_step) -> None:
    """The test above at 30 points in time (0-3 s after step 2, seeded): a cleanup that hangs once in a while (seen
    once in CI, 2026-12-05) fails here with each thread's stack. ~6 minutes: ``pytest -m slow -k random_points``."""
    rng = random.Random(0)
    for trial in range(30):
        folder = tmp_path / f"trial-{trial}"
        folder.mkdir()
        _interrupt(folder, fitted, wait_for_step, delay_s=rng.uniform(0.0, 3.0))
