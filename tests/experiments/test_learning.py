"""The learning protocol (`thinkrl learn`): disjoint per-seed splits, the FLOP accounting against hand-computed
values and an independent parameter count, the seed t-interval against table values, and a tiny end-to-end run of
every stage producing the report (seconds)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from thinkrl.cli import main
from thinkrl.experiments.learning_arms import token_batches
from thinkrl.experiments.learning_compute import (
    ComputeLedger,
    FlopModel,
    rl_step_compute,
    seed_interval,
    t_quantile,
)
from thinkrl.experiments.learning_config import (
    ColdStartSettings,
    LearningConfig,
    SweepSettings,
    check_run_settings,
)
from thinkrl.experiments.learning_data import Splits, check_disjoint, make_splits
from thinkrl.model import ModelConfig, build_model, load_pretrained

REPO = Path(__file__).resolve().parents[2]
SMALL = {"num_train": 60, "num_val": 20, "num_test": 20}
DIFFICULTY = {"num_numbers": 3, "max_number": 12, "min_target": 10, "max_target": 60, "min_used": 2}


def test_splits_are_disjoint_by_id_and_text_and_differ_across_seeds() -> None:
    a = make_splits("countdown", DIFFICULTY, 0, **SMALL)
    b = make_splits("countdown", DIFFICULTY, 1, **SMALL)
    assert (len(a.train), len(a.val), len(a.test)) == (60, 20, 20)
    for splits in (a, b):
        groups = [splits.train, splits.val, splits.test]
        ids = [{p.id for p in g} for g in groups]
        prompts = [{p.prompt for p in g} for g in groups]
        assert sum(map(len, ids)) == len(set().union(*ids)) == 100
        assert sum(map(len, prompts)) == len(set().union(*prompts)) == 100
    assert {p.id for p in a.test} != {p.id for p in b.test}
    assert {p.id for p in a.train} != {p.id for p in b.train}
    again = make_splits("countdown", DIFFICULTY, 0, **SMALL)
    assert [p.id for p in again.test] == [p.id for p in a.test]  # a seed's splits are reproducible


def test_check_disjoint_names_a_problem_in_two_splits() -> None:
    a = make_splits("countdown", DIFFICULTY, 0, **SMALL)
    leaked = Splits(train=a.train, val=a.val, test=[*a.test, a.train[3]], data_seed=0)
    with pytest.raises(ValueError, match=f"{a.train[3].id}.*both train and test"):
        check_disjoint(leaked)


TINY = ModelConfig(vocab_size=10, hidden_size=4, intermediate_size=6, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, tie_word_embeddings=True)


def test_flops_of_a_tiny_config_match_hand_computed_values() -> None:
    flops = FlopModel.of(TINY)
    # per layer: q 4*4 + k 4*2 + v 4*2 + o 4*4 + SwiGLU 3*4*6 = 120; two layers 240; LM head 4*10 = 40
    assert (flops.matmul_params, flops.num_layers, flops.attention_width) == (280, 2, 4)
    # forward over 3 tokens: 2*280*3 + attention sum_t 4*2*(t+1)*4 for t = 0, 1, 2 = 1680 + 32*6
    assert flops.forward(3) == 1680 + 192
    assert flops.train(3) == 3 * 1872
    assert flops.sample(1, 2) == 1872


def test_matmul_parameter_count_equals_the_built_models_weight_matrices() -> None:
    model = build_model(TINY, device="cpu", seed=0)
    matrices = {id(p): p.numel() for p in model.parameters() if p.dim() == 2}  # tied embedding counted once
    assert FlopModel.of(TINY).matmul_params == sum(matrices.values())


def test_rl_step_compute_charges_every_sampled_and_every_kept_response() -> None:
    flops = FlopModel.of(TINY)
    ledger = ComputeLedger(flops)
    rl_step_compute(ledger, {"groups_sampled": 3, "groups_kept_trained": 1, "response_length_mean": 5.2},
                    group_size=2, prompt_tokens=4)
    assert ledger.sampled_sequences == 6 and ledger.trained_sequences == 2
    assert ledger.sampling_flops == 6 * flops.forward(9)
    assert ledger.training_flops == 2 * 3 * flops.forward(9)
    assert ledger.total == ledger.to_dict()["total_flops"]


def test_t_quantiles_match_the_table() -> None:
    for df, table in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281)):
        assert t_quantile(0.975, df) == pytest.approx(table, abs=2e-4)


def test_seed_interval_matches_a_hand_computed_t_interval() -> None:
    interval = seed_interval([0.1, 0.2, 0.6])
    half = 4.302653 * math.sqrt(0.07) / math.sqrt(3)  # s^2 = (0.04 + 0.01 + 0.09) / 2
    assert interval.mean == pytest.approx(0.3)
    assert interval.low == pytest.approx(0.3 - half, abs=1e-5) and interval.high == pytest.approx(0.3 + half, abs=1e-5)
    single = seed_interval([0.4])
    assert (single.low, single.high, single.text()) == (None, None, "0.400")


def test_token_batches_cover_every_example_once_within_the_budget() -> None:
    examples = [([0] * n, [True] * n) for n in (5, 7, 3, 9, 4, 6)]
    batches = token_batches(examples, 12, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(sum(len(examples[i][0]) for i in b) <= 12 for b in batches)


def _tiny_settings(tmp_path: Path) -> list[str]:
    model = {"architectures": "SeedOssForCausalLM", "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "max_position_embeddings": 256, "tie_word_embeddings": True}
    sets = ["num_train=40", "num_val=8", "num_test=8", f"model={json.dumps(model)}", "cold.num_problems=20",
            "cold.steps=4", "cold.curve_every=2",
            "cold.optim={lr: 3.0e-3, warmup_steps: 1}", f"rl_recipe={REPO / 'recipes/learning/rl.yaml'}",
            "rl_overrides=[trainer.steps=2, trainer.eval_every=0, rollout.prompts_per_step=4, rollout.group_size=2,"
            " rollout.max_sampling_rounds=1, rollout.dynamic_sampling=false]",
            "rft={prompts: 8, samples: 2, epochs: 1}", "sweep={seeds: [0], rl_lr: [1.0e-4], sft_lr: [1.0e-3, 3.0e-3],"
            " rft_lr: [1.0e-3]}", "eval_samples=2", "max_new_tokens=24", "batch_tokens=256"]
    return [arg for s in sets for arg in ("--set", s)]


def test_tiny_end_to_end_run_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["learn", "--seeds", "0,1", "--name", "tiny", "--docs", "docs", *_tiny_settings(tmp_path)])
    assert code == 0
    root, docs = tmp_path / "runs" / "tiny", tmp_path / "docs"
    sweep = json.loads((root / "sweep.json").read_text())
    assert set(sweep["chosen_lr"]) == {"rl", "sft_more", "rft"} and len(sweep["rows"]) == 4
    for seed in (0, 1):
        rl = json.loads((root / f"seed-{seed}/test/rl.json").read_text())
        budget = rl["compute"]["total_flops"]
        assert budget > 0
        cold = load_pretrained(root / f"seed-{seed}/cold/final").config
        one_batch = FlopModel.of(cold).train(256)  # >= the FLOPs of any batch of <= 256 tokens
        for arm in ("sft_more", "rft"):
            record = json.loads((root / f"seed-{seed}/test/{arm}.json").read_text())
            spent = record["compute"]["total_flops"]
            assert budget <= spent  # both controls train until the first step that reaches RL's FLOPs ...
            if arm == "sft_more":
                assert spent - one_batch < budget  # ... and no further
            arm_dir = root / f"seed-{seed}/arms/{arm}/lr={record['lr']:g}"
            log = json.loads((arm_dir / "result.json").read_text())
            assert log["budget_flops"] == budget
        test = rl["test"]
        assert set(test["pass_at"]) == {"1", "2"} and test["num_problems"] == 8
        assert test["pass_at"]["1"] == pytest.approx(test["avg_at_k"])
        assert test["pass_at"]["2"] >= test["pass_at"]["1"]
    text = (docs / "learning.md").read_text()
    for heading in ("## Verdict", "## Test split", "## Validation sweep", "## Cold start", "## Response length"):
        assert heading in text
    assert sorted(p.name for p in (docs / "raw").glob("learning_*.json")) == sorted(
        [f"learning_s{s}_{m}.json" for s in (0, 1) for m in ("cold", "sft_more", "rft", "rl")]
        + ["learning_sweep.json"])
    assert (docs / "img" / "learning_sft_plateau.png").stat().st_size > 0
    assert (docs / "img" / "learning_rl_length.png").stat().st_size > 0
    # A hand-written reading below the generated part survives the report being generated again.
    reading = "## Reading (hand-written; everything above is generated)\n\nRL did what it did.\n"
    (docs / "learning.md").write_text(text + "\n" + reading)
    assert main(["learn", "--seeds", "0,1", "--name", "tiny", "--docs", "docs", "--stage", "report",
                 *_tiny_settings(tmp_path)]) == 0
    text = (docs / "learning.md").read_text()
    assert text.endswith(reading) and text.count("## Reading (hand-written") == 1 and text.count("## Verdict") == 1
    # The report stage alone, under another name: the same tables, its own files, the first report untouched.
    before = text
    assert main(["learn", "--seeds", "0,1", "--name", "tiny", "--docs", "docs", "--stage", "report", "--report",
                 "other", *_tiny_settings(tmp_path)]) == 0
    assert (docs / "learning.md").read_text() == before
    other = (docs / "other.md").read_text()
    assert "## Verdict" in other and "img/other_rl_length.png" in other and "raw/other_s<seed>" in other
    assert "--name tiny --report other --seeds 0,1`" in other  # the command re-runs this very report
    assert "--name tiny --seeds 0,1`" in before
    assert len(list((docs / "raw").glob("other_*.json"))) == 9
    assert (docs / "img" / "other_sft_plateau.png").stat().st_size > 0


def test_bad_seeds_are_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # nothing is read or written: the seeds are checked first
    assert main(["learn", "--seeds", "0,x", "--stage", "report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds must be comma-separated integers" in err[0]


def test_a_run_folder_refuses_other_settings_and_names_them(tmp_path: Path) -> None:
    recipe = tmp_path / "rl.yaml"
    recipe.write_text("name: x\n")
    root = tmp_path / "runs" / "search"
    first = LearningConfig(search_attempts=4)
    check_run_settings(root, first, recipe)
    check_run_settings(root, first, recipe)  # the same settings: the cached stages are reused
    check_run_settings(root, first.model_copy(update={"sweep": SweepSettings(rl_lr=[1e-3])}), recipe)  # per-lr cache
    with pytest.raises(ValueError, match=r"\(max_new_tokens, search_attempts differ\)"):
        check_run_settings(root, LearningConfig(search_attempts=0, max_new_tokens=64), recipe)
    with pytest.raises(ValueError, match=r"\(cold.steps differ\)"):  # the nested setting by its own name
        check_run_settings(root, first.model_copy(update={"cold": ColdStartSettings(steps=30)}), recipe)
    recipe.write_text("name: y\n")
    with pytest.raises(ValueError, match=r"\(rl_recipe_sha256 differ\)"):
        check_run_settings(root, first, recipe)


def test_a_cold_start_warmup_longer_than_its_steps_is_refused_before_the_run_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["learn", "--name", "w", "--stage", "cold", "--seeds", "0", "--set", "cold.steps=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cold.optim.warmup_steps (20) must be <= cold.steps (5)" in err[0]
    assert not (tmp_path / "runs" / "w").exists()  # so the corrected command is not refused as "other settings"


def test_a_setting_added_later_counts_as_its_default_in_an_older_run_folder(tmp_path: Path) -> None:
    recipe = tmp_path / "rl.yaml"
    recipe.write_text("name: x\n")
    root = tmp_path / "runs" / "old"
    check_run_settings(root, LearningConfig(), recipe)
    saved = json.loads((root / "settings.json").read_text())
    del saved["terse_share"]  # as written before the setting existed
    (root / "settings.json").write_text(json.dumps(saved))
    check_run_settings(root, LearningConfig(), recipe)  # made without it = made at its default
    with pytest.raises(ValueError, match=r"\(terse_share differ\)"):
        check_run_settings(root, LearningConfig(terse_share=0.5), recipe)


def test_other_settings_under_an_old_name_are_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "learning" / "rl.yaml"
    check_run_settings(tmp_path / "runs" / "old", LearningConfig(rl_recipe=str(recipe)), recipe)
    code = main(["learn", "--name", "old", "--stage", "cold", "--seeds", "0", "--set", f"rl_recipe={recipe}",
                 "--set", "search_attempts=2"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search_attempts differ" in err[0]
    assert not (tmp_path / "runs" / "old" / "seed-0").exists()  # refused before any stage ran
