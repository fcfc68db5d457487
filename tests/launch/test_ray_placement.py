"""Ray placement on a local Ray cluster started here: 2 FSDP2 trainer ranks (gloo) + 2 rollout workers train exactly
as the single-process `run_rl` does (same recipe and seeds); placement and CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import torch

from thinkrl.cli import main
from thinkrl.launch.ray_loop import run_rl_on_ray
from thinkrl.launch.ray_placement import RayPlacement, place_run, split_evenly
from thinkrl.model import load_pretrained
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.train.config import RLRecipe, SFTRecipe, validate_recipe

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
COMPARED = ["reward", "accuracy", "response_length_mean", "groups_kept_trained", "version_lag_max", "loss",
            "grad_norm", "entropy", "clip_frac", "approx_kl", "lr"]


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory) -> Path:
    """A micro model that learned the answer format (so groups have mixed outcomes) in ~10 s of SFT."""
    from thinkrl.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft")
    recipe = validate_recipe({
        "name": "micro-sft", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 12,
        "optim": {"lr": 3e-3, "warmup_steps": 5}, "trainer": {"micro_batch_tokens": 384, "save_every": 0,
                                                              "output_dir": str(out), "log_every": 5},
    }, SFTRecipe)
    return run_sft(recipe)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster for this module (4 logical CPUs: 2 trainer + 2 rollout bundles), shut down after."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _recipe(model: Path, out: Path, steps: int = 3) -> RLRecipe:
    return validate_recipe({
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 32},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_sampling_rounds": 2},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo", "num_mini_batches": 2},
        "optim": {"lr": 1e-3, "schedule": "linear", "min_lr_ratio": 0.5},
        "trainer": {"steps": steps, "micro_batch_tokens": 256, "save_every": 0, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_ray_run_equals_single_process_run(sft_model, local_ray, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    local = run_rl(_recipe(sft_model, tmp_path / "local"))
    placed = run_rl_on_ray(_recipe(sft_model, tmp_path / "ray"),
                           RayPlacement(num_trainers=2, num_rollout_workers=2))
    rows_local, rows_ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert [r["step"] for r in rows_ray] == [1, 2, 3]
    trained = [r for r in rows_local if "loss" in r]
    assert len(trained) >= 2, "fewer than 2 steps found a group with mixed outcomes"
    for a, b in zip(rows_local, rows_ray, strict=True):
        assert ("loss" in a) == ("loss" in b)
        for key in COMPARED:
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key, a[key], b[key])
    # Each step samples with the weights of the last step that trained (pushed to the workers as its version).
    pushed = 0
    for row in rows_ray:
        assert row["version_lag_max"] == row["step"] - 1 - pushed, row
        pushed = row["step"] if "loss" in row else pushed
    assert pushed >= 2
    start, a, b = load_pretrained(sft_model).state_dict(), load_pretrained(local).state_dict(), \
        load_pretrained(placed).state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-4, "the run did not change the weights"
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a), \
        max(float((a[k] - b[k]).abs().max()) for k in a)


def test_placement_errors(sft_model, local_ray, tmp_path):
    recipe = _recipe(sft_model, tmp_path)
    with pytest.raises(ValueError, match=r"did not grant the trainer placement group \(8 x \{'CPU': 1.0\}\) within "
                       r"2 s; the cluster has \{'CPU': '4 free of 4'\}"):
        place_run(recipe, RayPlacement(num_trainers=8, timeout_s=2), [])
    assert not ray.util.placement_group_table() or all(
        g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())
    with pytest.raises(ValueError, match="gpus_per_trainer must be 0 or a whole number"):
        RayPlacement(gpus_per_trainer=0.5)
    with pytest.raises(ValueError, match="critic.enabled"):
        run_rl_on_ray(recipe.model_copy(update={"critic": recipe.critic.model_copy(update={"enabled": True})}),
                      RayPlacement())


def test_split_evenly_keeps_order():
    assert split_evenly(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_evenly([1], 2) == [[1], []]


def test_cli_without_ray_installed_says_how(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["train", "recipes/tiny_dapo.yaml", "--ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'thinkrl[ray]'" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "recipes/tiny_dapo.yaml", "--ray", "--resume"]) == 2
    assert "--ray does not take --layout or --resume" in capsys.readouterr().err
