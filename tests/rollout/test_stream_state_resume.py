"""``--resume`` of a streaming ``thinkrl train`` run keeps every prompt: the groups buffered or in flight at the
checkpoint are trained after the resume instead of skipped.

The accounting: every prompt the source handed out (its cursor) is, at a checkpoint, either trained (a group of a
batch so far), or held by the rollout (buffered, in flight, or queued to be sampled again after a staleness drop),
so ``cursor == groups trained + groups held`` at every checkpoint of an uninterrupted run (dynamic sampling off:
no group is dropped for its rewards). A run resumed from step k must keep it exactly; one resumed from the same
checkpoint without the rollout state (as written before it was saved: still resumes) misses it by exactly the
groups held at step k, the prompts it loses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout.stream_state import STATE_KEY
from thinkrl.train.config import RLRecipe, validate_recipe

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}


def _raw(model: Path, out: Path, steps: int, placement: str = "thread") -> dict:
    return {
        "name": "micro-stream-resume", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 8},
        "rollout": {"group_size": 2, "prompts_per_step": 3, "mode": "streaming", "max_staleness": 1,
                    "dynamic_sampling": False, "placement": placement},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo"},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": steps, "micro_batch_tokens": 1024, "save_every": 1, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0, "resume": True},
    }


def _run(raw: dict) -> None:
    from thinkrl.train.rl_loop import run_rl

    run_rl(validate_recipe(raw, RLRecipe, presets=ALGORITHM_PRESETS))


def _state_file(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}" / "trainer_state.json"


def _cursor(out: Path, step: int) -> dict:
    return json.loads(_state_file(out, step).read_text())["trainer_state"]["cursor"]


def _taken(out: Path, step: int) -> int:
    cursor = _cursor(out, step)
    assert cursor["epoch"] == 0  # (the runs are far from an epoch: the index counts every prompt handed out)
    return cursor["index"]


def _held(out: Path, step: int) -> int:
    saved = _cursor(out, step)[STATE_KEY]
    return len(saved["buffered"]) + len(saved["in_flight"]) + len(saved["retry"])


def _trained(out: Path, step: int) -> int:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return sum(r["groups_kept_trained"] for r in rows if "groups_kept_trained" in r and r["step"] <= step)


def test_resumed_streaming_run_trains_the_groups_held_at_the_checkpoint(sft_model, tmp_path):
    out = tmp_path / "run"
    _run(_raw(sft_model, out, steps=2))
    for step in (1, 2):  # the accounting holds in an uninterrupted run
        assert _taken(out, step) == _trained(out, step) + _held(out, step)
    held = _held(out, 2)
    assert held > 0, "the scenario needs groups buffered or in flight at the checkpoint"

    old = tmp_path / "old"  # the same checkpoint as an older thinkrl wrote it: no rollout state
    shutil.copytree(out, old)
    record = json.loads(_state_file(old, 2).read_text())
    del record["trainer_state"]["cursor"][STATE_KEY]
    _state_file(old, 2).write_text(json.dumps(record))

    # resumed with the rollout in its own process: the held groups go to the child as continuation requests
    _run(_raw(sft_model, out, steps=4, placement="process"))
    for step in (3, 4):
        assert _taken(out, step) == _trained(out, step) + _held(out, step)

    _run(_raw(sft_model, old, steps=3))  # backward compatible: resumes, and skips what was held
    assert _taken(old, 3) == _trained(old, 3) + _held(old, 3) + held
