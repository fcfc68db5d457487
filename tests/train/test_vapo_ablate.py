"""`thinkrl ablate`: grid files, the statistics of the table, and a tiny end-to-end grid that resumes."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pytest
import yaml

from thinkrl.experiments.ablate import (
    AblationGrid,
    as_overrides,
    build_cells,
    check_recipes,
    format_table,
    load_grid,
    steps_to_target,
    summarise,
    write_report,
)
from thinkrl.train.config import RLRecipe, apply_overrides

ROOT = Path(__file__).resolve().parents[2]
GRIDS = [ROOT / "recipes" / "ablations" / "dapo_grid.yaml", ROOT / "recipes" / "ablations" / "vapo_grid.yaml"]


def _value(recipe: RLRecipe, key: str) -> object:
    """The value of a preset key in ``recipe``: plain keys are ``algorithm`` keys, dotted ones name their section."""
    section, _, field = key.rpartition(".")
    return getattr(getattr(recipe, section or "algorithm"), field)


def test_shipped_grids_validate_for_every_cell():
    grids = [load_grid(path) for path in GRIDS]
    assert [len(g.variants) for g in grids] == [5, 9]  # VAPO: the full recipe, 7 parts removed, paper alpha
    assert grids[0].sft == grids[1].sft  # one cold-start model per seed for both grids
    cells = build_cells(grids, [0, 1, 2], {s: "runs/x/final" for s in range(3)}, Path("runs/t"), [], False)
    assert len(cells) == 42 and [c.seed for c in cells[:14]] == [0] * 14  # seed-major
    assert len({c.folder for c in cells}) == 42
    check_recipes([c for c in cells if c.seed == 0])


def test_vapo_sampling_grid_is_vapo_with_dynamic_sampling_and_shares_the_cold_start():
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import load_recipe

    grid = load_grid(ROOT / "recipes" / "ablations" / "vapo_sampling_grid.yaml")
    vapo = load_grid(GRIDS[1])
    assert grid.sft == vapo.sft and grid.rl == vapo.rl and grid.name != vapo.name
    (variant,) = grid.variants
    recipe = load_recipe(grid.rl, RLRecipe, as_overrides(variant.overrides), presets=ALGORITHM_PRESETS)
    base = load_recipe(vapo.rl, RLRecipe, [], presets=ALGORITHM_PRESETS)
    assert recipe.rollout.dynamic_sampling and not base.rollout.dynamic_sampling
    assert recipe.algorithm == base.algorithm and recipe.critic == base.critic and recipe.reward == base.reward
    assert recipe.rollout.model_copy(update={"dynamic_sampling": False}) == base.rollout


def test_dapo_grid_adds_one_component_per_row_and_ends_at_the_dapo_preset():
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import load_recipe

    grid = load_grid(GRIDS[0])
    recipes = [load_recipe(grid.rl, RLRecipe, as_overrides(v.overrides), presets=ALGORITHM_PRESETS)
               for v in grid.variants]
    keys = ("eps_high", "reward.overlong_penalty", "loss_agg_mode", "rollout.dynamic_sampling")
    changed = [[k for k in keys if _value(a, k) != _value(b, k)] for a, b in zip(recipes, recipes[1:], strict=False)]
    assert changed == [["eps_high"], ["reward.overlong_penalty"], ["loss_agg_mode"], ["rollout.dynamic_sampling"]]
    for a, b in zip(recipes, recipes[1:], strict=False):  # nothing else moves between rows
        assert a.critic == b.critic and a.sampling == b.sampling and a.optim == b.optim
    dapo = ALGORITHM_PRESETS["dapo"]
    assert all(_value(recipes[-1], k) == v for k, v in dapo.items())


def test_overrides_round_trip_through_the_recipe_parser():
    mapping = {"algorithm.length_adaptive_alpha": None, "algorithm.loss_agg_mode": "seq-mean-token-mean",
               "algorithm.eps_high": 0.2, "rollout.dynamic_sampling": False, "sampling.thinking_budgets": [-1, 0],
               "critic.pretrain_steps": 0}
    raw = apply_overrides({"algorithm": {}}, as_overrides(mapping), RLRecipe)
    assert raw["algorithm"] == {"length_adaptive_alpha": None, "loss_agg_mode": "seq-mean-token-mean",
                                "eps_high": 0.2}
    assert raw["rollout"] == {"dynamic_sampling": False} and raw["critic"] == {"pretrain_steps": 0}
    assert raw["sampling"]["thinking_budgets"] == [-1, 0]
    with pytest.raises(ValueError, match="algorithm.dynamic_sampling moved to rollout.dynamic_sampling"):
        apply_overrides({}, as_overrides({"algorithm.dynamic_sampling": False}), RLRecipe)  # a grid of the old layout


def test_steps_to_target():
    curve = [(0, 0.4), (10, 0.55), (20, 0.61), (30, 0.58)]
    assert steps_to_target(curve, 0.6) == 20
    assert steps_to_target(curve, 0.4) == 0
    assert steps_to_target(curve, 0.7) is None


def _grid() -> AblationGrid:
    return AblationGrid.model_validate({"name": "g", "sft": "s.yaml", "rl": "r.yaml", "target_accuracy": 0.6,
                                        "reference": "A", "variants": [{"name": "A"}, {"name": "B"}]})


def _results() -> list[dict]:
    curves = {("A", 0): [(0, 0.4), (10, 0.6)], ("A", 1): [(0, 0.5), (10, 0.5)], ("A", 2): [(0, 0.45), (10, 0.7)],
              ("B", 0): [(0, 0.4), (10, 0.3)], ("B", 1): [(0, 0.5), (10, 0.4)]}
    return [{"grid": "g", "variant": v, "seed": s, "curve": c, "final_accuracy": c[-1][1],
             "steps_to_target": steps_to_target(c, 0.6)} for (v, s), c in curves.items()]


def test_summary_statistics_and_table():
    rows = summarise(_grid(), _results())
    a, b = rows
    assert a.accuracies == [0.6, 0.5, 0.7] and a.mean == pytest.approx(0.6)
    assert a.std == pytest.approx(statistics.stdev([0.6, 0.5, 0.7])) and a.std == pytest.approx(0.1)
    assert a.steps == [10, None, 10] and a.start_accuracy == pytest.approx(0.45)
    assert b.mean == pytest.approx(0.35) and b.steps == [None, None]
    table = format_table(_grid(), rows)
    assert "| A | 0.600 ± 0.100 | 0.600 / 0.500 / 0.700 |  | 10 (2/3) |" in table
    assert "| B | 0.350 ± 0.071 | 0.300 / 0.400 |" in table and "| -25.0 | not reached (0/2) |" in table


def test_report_writes_markdown_and_png(tmp_path):
    text = write_report([_grid()], _results(), tmp_path / "a.md", tmp_path / "a.png", command="thinkrl ablate g")
    assert (tmp_path / "a.md").read_text() == text and "0.600 ± 0.100" in text
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_errors_are_named(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text(yaml.safe_dump({"name": "g", "sft": "s", "rl": "r", "target_accuracy": 0.6,
                                   "variants": [{"name": "A"}, {"name": "A"}]}))
    with pytest.raises(ValueError, match="unique"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"name": "g", "sft": "s", "rl": "r", "target_accuracy": 0.6, "reference": "Z",
                                   "variants": [{"name": "A"}]}))
    with pytest.raises(ValueError, match="reference 'Z'"):
        load_grid(bad)


def test_tiny_grid_end_to_end_then_resumes(tmp_path, monkeypatch):
    """Two variants × one seed × two RL steps of a micro model; a second call reuses every result."""
    from thinkrl.experiments import ablate

    data = {"task": "arithmetic", "num_train": 60, "num_test": 4, "seed": 0,
            "difficulty": {"num_terms": 2, "max_number": 9}}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump({
        "name": "s", "model": {"init": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                        "num_attention_heads": 2, "num_key_value_heads": 1}, "device": "cpu"},
        "data": data, "optim": {"lr": 3e-3}, "trainer": {"steps": 5, "micro_batch_tokens": 512}}))
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump({
        "name": "r", "model": {"path": "unset", "device": "cpu"}, "data": data,
        "sampling": {"max_new_tokens": 12, "num_slots": 16},
        "rollout": {"group_size": 2, "prompts_per_step": 4},
        "reward": {"max_response_len": 12, "overlong_cache_len": 4},
        "algorithm": {"preset": "vapo"},
        "trainer": {"steps": 2, "eval_every": 1, "eval_samples": 1, "micro_batch_tokens": 1024}}))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "sft": "sft.yaml", "rl": "rl.yaml", "target_accuracy": 0.5, "reference": "VAPO",
        "overrides": {"trainer.save_every": 0},
        "variants": [{"name": "VAPO", "overrides": {"critic.pretrain_steps": 1}},
                     {"name": "PPO", "overrides": {"algorithm.preset": "ppo"}}]}))
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(grids=["grid.yaml"], seeds="3", name="abl", workers=1, rl_override=[],
                              sft_override=[], keep_models=False)
    assert ablate.run(args) == 0
    root = tmp_path / "runs" / "abl"
    results = json.loads((root / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in results] == [("VAPO", 3), ("PPO", 3)]
    for r in results:
        assert [step for step, _ in r["curve"]] == [0, 1, 2]
        # greedy accuracy on the 4 test problems, one sample each: a count of 4, and the curve's last point
        assert all(acc * 4 == round(acc * 4) and 0 <= round(acc * 4) <= 4 for _, acc in r["curve"]), r["curve"]
        assert r["final_accuracy"] == r["curve"][-1][1]
    assert results[0]["value_pretrain"]["steps"] == 1.0 and results[1]["value_pretrain"] == {}
    cell = root / "tiny" / "vapo" / "seed-3"
    assert (cell / "result.json").exists() and not (cell / "final").exists()
    assert (root / "sft" / "seed-3" / "final" / "config.json").exists()
    assert "| VAPO |" in (root / "ablations.md").read_text() and (root / "ablations.png").stat().st_size > 0
    assert "thinkrl ablate grid.yaml --seeds 3 --name abl" in (root / "ablations.md").read_text()
    stamp = (cell / "result.json").stat().st_mtime_ns
    assert ablate.run(args) == 0  # everything is reused
    assert (cell / "result.json").stat().st_mtime_ns == stamp


def test_the_report_names_the_command_that_reproduces_it():
    from thinkrl.experiments.ablate import rerun_command

    args = argparse.Namespace(grids=["a.yaml", "b c.yaml"], seeds="0,1", name="x", workers=4,
                              rl_override=["trainer.steps=5", "algorithm.eps_high=0.3"],
                              sft_override=["optim.lr=1e-3"], keep_models=True)
    assert rerun_command(args) == ("thinkrl ablate a.yaml 'b c.yaml' --seeds 0,1 --name x --rl-override "
                                   "trainer.steps=5 --rl-override algorithm.eps_high=0.3 --sft-override optim.lr=1e-3 "
                                   "--keep-models")
