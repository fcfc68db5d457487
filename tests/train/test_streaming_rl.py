"""Streaming RL end to end (``rollout.mode: streaming``): a real run from a briefly SFT-ed micro model trains within
the staleness bound with decoupled PPO on by default and fp32 log-prob agreement; a trainer-side exception and
Ctrl-C (SIGINT to a real ``thinkrl train`` process) end the run promptly with no rollout thread left, and the last
checkpoint resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from thinkrl.cli import FORCE_EXIT_S
from thinkrl.rl import ADVANTAGE_ESTIMATORS, ALGORITHM_PRESETS, AdvantageInputs, AdvantageOutputs
from thinkrl.train.config import RLRecipe, validate_recipe

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
FAILING = "streaming_test_failing_estimator"
# The CLI exits regardless FORCE_EXIT_S after a Ctrl-C, printing where each thread was: wait past that, so that a
# cleanup that hung fails the assertions below with its thread dump (not a bare timeout).
SIGINT_DEADLINE_S = FORCE_EXIT_S + 30


def _raw(model: Path, out: Path, steps: int, eta: int = 1, **changes) -> dict:
    raw = {
        "name": "micro-stream", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 16},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_sampling_rounds": 2, "mode": "streaming",
                    "max_staleness": eta},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo"},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": steps, "micro_batch_tokens": 1024, "save_every": 1, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0},
    }
    for key, value in changes.items():
        section, _, field = key.partition(".")
        raw[section][field] = value
    return raw


def _recipe(raw: dict) -> RLRecipe:
    return validate_recipe(raw, RLRecipe, presets=ALGORITHM_PRESETS)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _thinkrl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("thinkrl-") and t.is_alive()]


def test_streaming_defaults_to_decoupled_ppo_and_refuses_uncorrected_staleness(tmp_path):
    raw = _raw(Path("m"), tmp_path, 1)
    assert _recipe(raw).algorithm.off_policy == "decoupled"
    raw["algorithm"]["off_policy"] = "none"
    with pytest.raises(ValueError, match="off_policy 'none' with rollout.mode 'streaming'"):
        _recipe(raw)
    raw["rollout"]["max_staleness"] = 0
    assert _recipe(raw).algorithm.off_policy == "none"  # eta 0 trains on the current policy only
    raw["rollout"]["mode"] = "sync"
    del raw["algorithm"]["off_policy"]
    assert _recipe(raw).algorithm.off_policy == "none"  # the synchronous default is unchanged


def test_streaming_run_trains_within_the_bound_with_fp32_logprob_agreement(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    eta = 1  # every group trains (no dynamic sampling), so every step pushes and the versions move
    run_rl(_recipe(_raw(sft_model, tmp_path, steps=4, eta=eta, **{"rollout.dynamic_sampling": False})))
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert r["version_lag_max"] <= eta and r["stream/version_lag_mean"] <= eta
        # every group fresh exactly when no trained token lags (the trainer's own count, from the trajectories)
        assert (r["stream/fresh_share"] == 1.0) == (r["version_lag_max"] == 0), r
        assert r["stream/dropped_stale"] == 0  # eta 1 with wait_for_due: nothing goes stale
        assert r["stream/buffer_wait_s"] >= 0 and r["stream/tokens_generated"] >= 0  # (0: the batch was ready)
    assert sum(r["stream/tokens_generated"] for r in rows) > 0
    trained = [r for r in rows if "loss" in r]
    assert trained and all("is_weight_mean" in r for r in trained)  # decoupled PPO, on by default
    gaps = [r for r in trained if "logprob_gap_mean" in r]
    assert gaps  # tokens of the trainer's current version reached the batch
    # Trainer and engine compute the current version's log-probs from the same fp32 weights: noise only.
    assert all(r["logprob_gap_mean"] < 1e-4 and r["logprob_gap_max"] < 1e-3 for r in gaps), gaps
    assert not _thinkrl_threads()


def _failing(inputs: AdvantageInputs) -> AdvantageOutputs:
    raise FloatingPointError("the trainer failed at its update")


def test_a_trainer_exception_stops_the_rollout_thread(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    ADVANTAGE_ESTIMATORS.register(FAILING)(_failing)
    try:
        recipe = _recipe(_raw(sft_model, tmp_path, steps=3, **{"algorithm.advantage_estimator": FAILING}))
        with pytest.raises(FloatingPointError, match="the trainer failed"):
            run_rl(recipe)
    finally:
        ADVANTAGE_ESTIMATORS.unregister(FAILING)
    assert not _thinkrl_threads()


def test_ctrl_c_ends_the_run_promptly_and_the_last_checkpoint_resumes(sft_model, tmp_path, wait_for_step):
    from thinkrl.train.rl_loop import run_rl

    out = tmp_path / "run"
    raw = _raw(sft_model, out, steps=1000, **{"trainer.save_every": 2})
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "thinkrl", "train", str(recipe_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Step 3 is logged: the checkpoint of step 2 is on disk and step 4 (no save) is under way.
        wait_for_step(proc, out, 3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=SIGINT_DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-8000:]  # 128 + SIGINT
    assert "interrupted: the rollout and the engine stop" in stderr, stderr[-8000:]  # the loop's cleanup ran
    assert "exiting without waiting for the cleanup" not in stderr, stderr[-8000:]  # ... and ended in time
    assert stderr.splitlines()[-1] == "thinkrl train: interrupted (SIGINT)" and "Traceback" not in stderr
    saved = int((out / "checkpoints" / "latest").read_text().strip().rsplit("-", 1)[1])
    record = json.loads((out / "checkpoints" / f"step-{saved:08d}" / "trainer_state.json").read_text())
    cursor = record["trainer_state"]["cursor"]  # the prompt stream as the rollout thread left it
    assert cursor["epoch"] * DATA["num_train"] + cursor["index"] >= saved * raw["rollout"]["prompts_per_step"]
    raw["trainer"].update(steps=saved + 1, resume=True)
    run_rl(_recipe(raw))
    steps = [r["step"] for r in _rows(out)]
    assert steps[-1] == saved + 1 and steps.count(saved + 1) == 1
    assert not _thinkrl_threads()


@pytest.mark.parametrize("variant", ["curriculum_budgets", "online_filter"])
def test_data_sources_and_budget_rl_work_unchanged_in_streaming(sft_model, tmp_path, variant):
    """The rollout thread reports every finished group to the prompt source (the curriculum's window fills, the
    online filter skips prompts it saw solved or failed) and thinking budgets / budget rewards apply per prompt."""
    from thinkrl.train.rl_loop import run_rl

    raw = _raw(sft_model, tmp_path, steps=3)
    if variant == "curriculum_budgets":
        raw["data"] = {**DATA, "curriculum": {"knobs": {"max_number": 1}, "window": 4}}
        raw["sampling"]["thinking_budgets"] = [0, 8, -1]
        raw["reward"]["budget_reward"] = "limit"
    else:
        raw["data"] = {**DATA, "num_train": 12, "online_filter": {"window": 1, "retry_after": 2}}
    run_rl(_recipe(raw))
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    if variant == "curriculum_budgets":
        assert all("curriculum/arithmetic/window_pass_rate" in r for r in rows)  # the window filled from step 1
        assert any("budget_adherence" in r for r in rows)
    else:  # 12 prompts, >= 4 groups a step: by step 3 the filter has seen prompts again and skipped some
        assert rows[-1]["data/prompts_skipped_total"] > 0
    assert not _thinkrl_threads()
