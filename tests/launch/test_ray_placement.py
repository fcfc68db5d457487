"""Ray placement on a local Ray cluster started here: 2 FSDP2 trainer ranks (gloo) + rollout workers train exactly
as the single-process `run_rl` does (same recipe and seeds), and their sharded checkpoints resume either way;
placement and CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import ray
import torch

from thinkrl.cli import main
from thinkrl.launch.ray_loop import run_rl_on_ray
from thinkrl.launch.ray_placement import RayPlacement, place_run, split_evenly
from thinkrl.model import load_pretrained
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.train.config import RLRecipe, validate_recipe

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
COMPARED = ["reward", "accuracy", "response_length_mean", "groups_kept_trained", "version_lag_max", "loss",
            "grad_norm", "entropy", "clip_frac", "approx_kl", "lr"]
CRITIC = ["value_loss", "value_mse", "explained_variance", "critic_grad_norm", "positive_nll"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster for this module (4 logical CPUs: 2 trainer + 2 rollout bundles), shut down after."""
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)  # never a running one
    yield
    ray.shutdown()


def _recipe(model: Path, out: Path, steps: int = 3, preset: str = "dapo", **sections) -> RLRecipe:
    raw = {
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 32},
        # Without dynamic sampling every step trains: the micro model is rarely right, and the soft overlong
        # punishment gives the responses of a group different rewards even when all are wrong.
        "rollout": {"group_size": 4, "prompts_per_step": 4, "dynamic_sampling": False},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": preset, "num_mini_batches": 2},
        "optim": {"lr": 1e-3, "schedule": "linear", "min_lr_ratio": 0.5},
        "trainer": {"steps": steps, "micro_batch_tokens": 256, "save_every": 1, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return validate_recipe(raw, RLRecipe, presets=ALGORITHM_PRESETS)


def _checkpoints_up_to(source: Path, target: Path, step: int) -> None:
    """``target/checkpoints`` holding ``source``'s checkpoints up to ``step``, the latest being ``step``."""
    shutil.copytree(source / "checkpoints", target / "checkpoints")
    for folder in (target / "checkpoints").glob("step-*"):
        if int(folder.name.removeprefix("step-")) > step:
            shutil.rmtree(folder)
    (target / "checkpoints" / "latest").write_text(f"step-{step:08d}\n")


def _assert_same_run(rows_a: list[dict], rows_b: list[dict], keys: list[str]) -> None:
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for a, b in zip(rows_a, rows_b, strict=True):
        assert ("loss" in a) == ("loss" in b)
        for key in keys:
            if key in a:  # (NaN where both are undefined, e.g. explained variance of constant returns)
                expected = pytest.approx(a[key], rel=1e-5, abs=1e-6, nan_ok=True)
                assert b[key] == expected, (a["step"], key, a[key], b[key])


def _assert_same_weights(folder_a: Path, folder_b: Path) -> None:
    a, b = load_pretrained(folder_a).state_dict(), load_pretrained(folder_b).state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a), \
        max(float((a[k] - b[k]).abs().max()) for k in a)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_ray_run_equals_single_process_run(sft_model, local_ray, tmp_path):
    """DAPO, 3 steps: 2 ranks + 2 workers = 1 process; the Ray run's step-2 checkpoint resumes in one process."""
    from thinkrl.train.rl_loop import run_rl

    local = run_rl(_recipe(sft_model, tmp_path / "local"))
    placed = run_rl_on_ray(_recipe(sft_model, tmp_path / "ray"), RayPlacement(num_trainers=2, num_rollout_workers=2))
    rows_local, rows_ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert [r["step"] for r in rows_ray] == [1, 2, 3]
    assert all("loss" in r for r in rows_local)
    _assert_same_run(rows_local, rows_ray, COMPARED)
    # Every step samples with the weights pushed after the step before (the workers' version advanced each time).
    assert [r["version_lag_max"] for r in rows_ray] == [0, 0, 0]
    start = load_pretrained(sft_model).state_dict()
    moved = load_pretrained(local).state_dict()
    assert max(float((moved[k] - start[k]).abs().max()) for k in moved) > 1e-4, "the run did not change the weights"
    _assert_same_weights(local, placed)
    # The 2-rank Ray checkpoint of step 2, resumed by the single-process loop, ends where the runs ended.
    _checkpoints_up_to(tmp_path / "ray", tmp_path / "resumed", 2)
    resumed = run_rl(_recipe(sft_model, tmp_path / "resumed", trainer={"resume": True}))
    _assert_same_run(rows_local[2:], _rows(tmp_path / "resumed"), COMPARED)
    _assert_same_weights(local, resumed)


def test_ray_resumes_a_single_process_checkpoint_with_critic_and_kl(sft_model, local_ray, tmp_path):
    """VAPO (critic sharded over the ranks, positive-example LM loss) with a KL term (sharded reference policy):
    resumed on Ray (2 ranks + 1 worker) from the single-process run's step-1 checkpoint, steps 2-3 equal that run."""
    from thinkrl.train.rl_loop import run_rl

    sections = {"algorithm": {"kl_coef": 0.05}}
    local = run_rl(_recipe(sft_model, tmp_path / "local", preset="vapo", **sections))
    rows_local = _rows(tmp_path / "local")
    assert all("value_loss" in r and "loss" in r for r in rows_local)
    _checkpoints_up_to(tmp_path / "local", tmp_path / "ray", 1)
    placed = run_rl_on_ray(_recipe(sft_model, tmp_path / "ray", preset="vapo", trainer={"resume": True}, **sections),
                           RayPlacement(num_trainers=2, num_rollout_workers=1))
    _assert_same_run(rows_local[1:], _rows(tmp_path / "ray"), COMPARED + CRITIC)
    _assert_same_weights(local, placed)


def test_placement_errors(sft_model, local_ray, tmp_path):
    recipe = _recipe(sft_model, tmp_path)
    with pytest.raises(ValueError, match=r"did not grant the trainer placement group \(8 x \{'CPU': 1.0\}\) within "
                       r"2 s; the cluster has \{'CPU': '4 free of 4'\}"):
        place_run(recipe, RayPlacement(num_trainers=8, timeout_s=2), [])
    assert not ray.util.placement_group_table() or all(
        g["state"] == "REMOVED" for g in ray.util.placement_group_table().values())
    with pytest.raises(ValueError, match="gpus_per_trainer must be 0 or a whole number"):
        RayPlacement(gpus_per_trainer=0.5)
    with pytest.raises(ValueError, match="rollout.mode 'streaming'"):
        run_rl_on_ray(_recipe(sft_model, tmp_path, rollout={"mode": "streaming"}), RayPlacement())
    with pytest.raises(ValueError, match="critic.pretrain_steps"):
        run_rl_on_ray(_recipe(sft_model, tmp_path, preset="vapo", critic={"pretrain_steps": 2}), RayPlacement())
    trainer = {"steps": 3, "micro_batch_tokens": 256, "output_dir": str(tmp_path), "eval_every": 0}
    for layout in ({"tensor_parallel": 2}, {"fsdp_shard_size": 1}):  # torchrun layouts, not silently dropped
        with pytest.raises(ValueError, match="launch these layouts with torchrun"):
            run_rl_on_ray(_recipe(sft_model, tmp_path, trainer={**trainer, **layout}), RayPlacement())


def test_split_evenly_keeps_order():
    assert split_evenly(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_evenly([1], 2) == [[1], []]


def test_cli_without_ray_installed_says_how(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["train", "recipes/tiny_dapo.yaml", "--ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'thinkrl[ray]'" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "recipes/tiny_dapo.yaml", "--ray", "--layout", "layout.yaml"]) == 2
    assert "--ray does not take --layout" in capsys.readouterr().err
