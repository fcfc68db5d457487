"""Every recipe shipped in recipes/ validates against the current sections, and an old-layout recipe is refused with
the new place of each moved key (at load, in an override and at the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli_runner import run_thinkrl
from thinkrl.experiments.ablate import build_cells, check_recipes, load_grid
from thinkrl.experiments.learning_config import LearningConfig, load_learning_config
from thinkrl.train.config import MOVED_KEYS, RLRecipe, SFTRecipe, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _is_learning_config(path: Path) -> bool:
    """A `thinkrl learn --config` file (its keys are LearningConfig's; recipes have a name)."""
    raw = yaml.safe_load(path.read_text())
    return "name" not in raw and set(raw) <= set(LearningConfig.model_fields)


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.rglob("*.yaml")
                                        if "grid" not in p.name and not _is_learning_config(p)), ids=str)
def test_every_shipped_recipe_validates(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cls = RLRecipe if {"algorithm", "rollout", "reward", "sampling"} & set(raw) else SFTRecipe
    recipe = load_recipe(path, cls)
    assert recipe.name == raw["name"]


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*grid*.yaml")), ids=str)
def test_every_shipped_grid_validates(path: Path, tmp_path: Path) -> None:
    grid = load_grid(path)
    cells = build_cells([grid], [0], {0: "unused"}, tmp_path, [], keep_models=False)
    check_recipes(cells)
    assert len(cells) == len(grid.variants)


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.rglob("*.yaml") if _is_learning_config(p)), ids=str)
def test_every_shipped_learning_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(RECIPES.parent)  # its rl_recipe is relative to the repository root
    config, recipe = load_learning_config(path)
    assert recipe.is_file()
    assert config.model_dump(exclude_unset=True).keys() == yaml.safe_load(path.read_text()).keys()


def test_old_layout_is_refused_with_the_new_place_of_each_key(tmp_path: Path) -> None:
    old = yaml.safe_load((RECIPES / "tiny_dapo.yaml").read_text())
    old["algorithm"].update(group_size=8, overlong_penalty=True, use_critic=False)
    old["optim"]["critic_lr"] = 1e-4
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ValueError) as info:
        load_recipe(path, RLRecipe)
    message = str(info.value)
    for line in ("algorithm.group_size: moved to rollout.group_size",
                 "algorithm.overlong_penalty: moved to reward.overlong_penalty",
                 "algorithm.use_critic: moved to critic.enabled", "optim.critic_lr: moved to critic.lr"):
        assert line in message
    with pytest.raises(ValueError, match=r"algorithm.value_pretrain_steps moved to critic.pretrain_steps"):
        load_recipe(RECIPES / "tiny_dapo.yaml", RLRecipe, ["algorithm.value_pretrain_steps=3"])
    assert MOVED_KEYS["algorithm.max_response_len"] == "reward.max_response_len"


def test_old_key_at_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_thinkrl("train", str(RECIPES / "tiny_dapo.yaml"), "algorithm.group_size=4", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "algorithm.group_size moved to rollout.group_size" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


def test_several_bad_values_at_the_command_line_are_one_line_naming_each(tmp_path: Path) -> None:
    proc = run_thinkrl("train", str(RECIPES / "tiny_dapo.yaml"), "sampling.admit_batch=999", "rollout.group_size=0",
                       cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "(2 problems): sampling: admit_batch (999) must be at most num_slots" in proc.stderr
    assert "; rollout.group_size: Input should be greater than or equal to 1 (got 0)" in proc.stderr
    assert not (tmp_path / "runs").exists()
