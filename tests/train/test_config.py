"""Recipes: defaults, validation messages naming keys, presets, overrides, moved keys, resolved round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from thinkrl.train.config import (
    MOVED_KEYS,
    AlgorithmSpec,
    ModelSpec,
    OptimSpec,
    RewardSpec,
    RLRecipe,
    SamplingSpec,
    SFTRecipe,
    load_recipe,
    save_resolved,
    validate_recipe,
)

MINIMAL = {
    "name": "tiny",
    "model": {"init": {"architectures": ["SeedOssForCausalLM"], "hidden_size": 32}},
    "data": {"task": "countdown"},
    "sampling": {"max_new_tokens": 128},
    "reward": {"max_response_len": 128, "overlong_cache_len": 32},
}
PRESETS = {"dapo": {"eps_high": 0.28, "rollout.dynamic_sampling": True},
           "grpo": {"eps_high": 0.2, "rollout.dynamic_sampling": False, "loss_agg_mode": "seq-mean-token-mean"}}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_output_dir(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL), RLRecipe)
    assert recipe.algorithm.eps_low == 0.2 and recipe.algorithm.eps_high == 0.28
    assert recipe.algorithm.dual_clip == 3.0 and recipe.rollout.group_size == 8
    assert recipe.rollout.dynamic_sampling is True and recipe.reward.overlong_penalty is True
    assert recipe.critic.enabled is False and recipe.critic.lr is None
    assert recipe.sampling.thinking_budgets == [-1]
    assert recipe.tokenizer.path == "builtin"
    assert recipe.model.dtype == "float32" and recipe.model.device == "auto"
    assert recipe.optim.lr == 1e-3 and recipe.optim.schedule == "cosine"
    assert recipe.trainer.output_dir == str(Path("runs") / "tiny")


def test_unknown_key_is_named_with_known_keys(tmp_path: Path) -> None:
    data = {**MINIMAL, "algorithm": {"eps_hgh": 0.3}}
    with pytest.raises(ValueError) as info:
        load_recipe(write(tmp_path, data), RLRecipe)
    message = str(info.value)
    assert "algorithm.eps_hgh: unknown key" in message
    assert "eps_high" in message  # the known keys are listed


def test_unknown_top_level_section(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"algorithm: unknown key"):
        load_recipe(write(tmp_path, {k: v for k, v in MINIMAL.items()} | {"algorithm": {}}), SFTRecipe)


def test_all_problems_listed_in_one_error(tmp_path: Path) -> None:
    data = {
        **MINIMAL,
        "model": {"init": {}, "dtype": "float64"},
        "algorithm": {"eps_low": 1.5, "dual_clip": 0.5, "loss_agg_mode": "mean", "kl_kind": "k4"},
        "rollout": {"group_size": 0},
        "reward": {"budget_alpha": -1.0},
        "critic": {"value_clip": 0},
        "optim": {"betas": [0.9, 1.2]},
    }
    with pytest.raises(ValueError) as info:
        load_recipe(write(tmp_path, data), RLRecipe)
    message = str(info.value)
    for line in ("model.dtype:", "algorithm.eps_low:", "algorithm.dual_clip:", "algorithm.loss_agg_mode:",
                 "algorithm.kl_kind:", "rollout.group_size:", "reward.budget_alpha:", "critic.value_clip:",
                 "optim.betas:"):
        assert line in message, line
    assert "seq-mean-token-sum-norm" in message  # the allowed aggregation modes are listed


def test_model_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModelSpec()
    with pytest.raises(ValueError, match="exactly one"):
        ModelSpec(path="x", init={"hidden_size": 8})
    assert ModelSpec(path="x").init is None
    with pytest.raises(ValueError, match="device"):
        ModelSpec(path="x", device="tpu")


def test_algorithm_validators() -> None:
    with pytest.raises(ValueError, match=r"overlong_cache_len \(100\) must be < max_response_len \(100\)"):
        RewardSpec(max_response_len=100, overlong_cache_len=100)
    with pytest.raises(ValueError, match="eps_high"):
        AlgorithmSpec(eps_high=-0.1)
    assert AlgorithmSpec(dual_clip=None).dual_clip is None
    assert AlgorithmSpec(eps_low=0.0).eps_low == 0.0
    with pytest.raises(ValueError, match="thinking budgets"):
        SamplingSpec(thinking_budgets=[-2, 512])


def test_registry_names_are_checked(tmp_path: Path) -> None:
    data = {**MINIMAL, "data": {"task": "chess"}, "algorithm": {"advantage_estimator": "x"}}
    with pytest.raises(ValueError) as info:
        load_recipe(write(tmp_path, data), RLRecipe)
    assert "data.task: unknown task 'chess'; registered: " in str(info.value) and "countdown" in str(info.value)
    assert "algorithm.advantage_estimator: unknown advantage estimator 'x'" in str(info.value)


def test_literal_choices_match_the_rl_package() -> None:
    from typing import get_args

    from thinkrl import rl
    from thinkrl.train.specs import KLKind, LossAggMode

    assert set(get_args(LossAggMode)) == set(rl.AGG_MODES)
    assert set(get_args(KLKind)) == set(rl.KL_KINDS)
    for name, preset in rl.presets.ALGORITHM_PRESETS.items():  # every shipped preset validates in a recipe
        recipe = validate_recipe({**MINIMAL, "algorithm": {"preset": name}}, RLRecipe)
        assert recipe.algorithm.preset == name
        for key, value in preset.items():  # plain keys land in `algorithm`, dotted ones in their section
            section, _, field = key.rpartition(".")
            assert getattr(getattr(recipe, section or "algorithm"), field) == value, (name, key)


def test_response_len_must_fit_sampling(tmp_path: Path) -> None:
    data = {**MINIMAL, "reward": {"max_response_len": 256, "overlong_cache_len": 32}}
    with pytest.raises(ValueError, match=r"reward.max_response_len \(256\) exceeds sampling.max_new_tokens \(128\)"):
        load_recipe(write(tmp_path, data), RLRecipe)


def test_preset_applied_then_explicit_keys_win(tmp_path: Path) -> None:
    data = {**MINIMAL, "algorithm": {"preset": "grpo", "eps_high": 0.25}}
    recipe = load_recipe(write(tmp_path, data), RLRecipe, presets=PRESETS)
    assert recipe.algorithm.eps_high == 0.25  # explicit beats preset
    assert recipe.rollout.dynamic_sampling is False  # a dotted preset key, in its section (default is True)
    assert recipe.algorithm.loss_agg_mode == "seq-mean-token-mean"
    explicit = {**data, "rollout": {"dynamic_sampling": True}}  # explicit keys win in other sections too
    assert load_recipe(write(tmp_path, explicit), RLRecipe, presets=PRESETS).rollout.dynamic_sampling is True
    with pytest.raises(ValueError, match=r"unknown preset 'ppo'; known presets: dapo, grpo"):
        validate_recipe({**MINIMAL, "algorithm": {"preset": "ppo"}}, RLRecipe, presets=PRESETS)


def test_builtin_presets_are_used_without_context() -> None:
    raw = {**MINIMAL, "reward": {"max_response_len": 64, "overlong_cache_len": 8}, "algorithm": {"preset": "vapo"}}
    vapo = validate_recipe(raw, RLRecipe)
    assert vapo.critic.enabled is True and vapo.algorithm.advantage_estimator == "gae"
    assert vapo.algorithm.length_adaptive_alpha == 0.05 and vapo.algorithm.positive_lm_coef == 0.1
    assert vapo.rollout.dynamic_sampling is False  # the preset turns off what the defaults turn on
    assert vapo.reward.overlong_penalty is False
    assert vapo.reward.max_response_len == 64  # run settings stay explicit
    grpo = validate_recipe({**MINIMAL, "algorithm": {"preset": "grpo", "kl_coef": 0.0}}, RLRecipe).algorithm
    assert grpo.eps_high == 0.2 and grpo.dual_clip is None and grpo.kl_coef == 0.0


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    overrides = ["algorithm.eps_high=0.3", "rollout.dynamic_sampling=false", "sampling.thinking_budgets=[0,32]",
                 "algorithm.dual_clip=null", "model.init.num_hidden_layers=3", "trainer.output_dir=out/x",
                 "data.difficulty.size=4", "critic.lr=2e-3", "reward.wrong_reward=0"]
    recipe = load_recipe(write(tmp_path, MINIMAL), RLRecipe, overrides)
    assert recipe.algorithm.eps_high == 0.3
    assert recipe.rollout.dynamic_sampling is False
    assert recipe.critic.lr == 2e-3 and recipe.reward.wrong_reward == 0.0
    assert recipe.sampling.thinking_budgets == [0, 32]
    assert recipe.algorithm.dual_clip is None
    assert recipe.model.init == {"architectures": ["SeedOssForCausalLM"], "hidden_size": 32, "num_hidden_layers": 3}
    assert recipe.trainer.output_dir == "out/x"
    assert recipe.data.difficulty == {"size": 4}


def test_override_errors_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ValueError, match=r"unknown key 'eps_hi' in algorithm"):
        load_recipe(path, RLRecipe, ["algorithm.eps_hi=0.3"])
    with pytest.raises(ValueError, match=r"unknown key 'optimizer' in top level"):
        load_recipe(path, RLRecipe, ["optimizer.lr=1"])
    with pytest.raises(ValueError, match="must look like"):
        load_recipe(path, RLRecipe, ["algorithm.eps_high"])
    with pytest.raises(ValueError, match="not a section"):
        load_recipe(path, RLRecipe, ["name.x=1"])
    with pytest.raises(ValueError, match=r"algorithm.eps_low:"):  # well-formed override, bad value
        load_recipe(path, RLRecipe, ["algorithm.eps_low=2"])


def test_moved_keys_name_their_new_place_at_load(tmp_path: Path) -> None:
    data = {**MINIMAL, "algorithm": {"eps_high": 0.3, "group_size": 4, "use_critic": True},
            "optim": {"lr": 1e-3, "critic_lr": 2e-3}}
    with pytest.raises(ValueError) as info:
        load_recipe(write(tmp_path, data), RLRecipe)
    message = str(info.value)
    assert "(3 keys moved)" in message
    for line in ("algorithm.group_size: moved to rollout.group_size", "algorithm.use_critic: moved to critic.enabled",
                 "optim.critic_lr: moved to critic.lr"):
        assert line in message, line
    assert "eps_high" not in message and "optim.lr" not in message  # keys that did not move are not listed
    # Every old key of the table is caught, and names a place that exists now (and did not stay where it was).
    old_layout: dict[str, dict[str, object]] = {}
    for old in MOVED_KEYS:
        section, key = old.split(".")
        old_layout.setdefault(section, {})[key] = 1
    with pytest.raises(ValueError) as info:
        validate_recipe({**MINIMAL, **old_layout}, RLRecipe)
    assert f"({len(MOVED_KEYS)} keys moved)" in str(info.value)
    for old, new in MOVED_KEYS.items():
        assert f"{old}: moved to {new}" in str(info.value)
        old_section, old_key = old.split(".")
        new_section, new_key = new.split(".")
        assert new_key in RLRecipe.model_fields[new_section].annotation.model_fields, new
        assert old_key not in RLRecipe.model_fields[old_section].annotation.model_fields, old


def test_moved_keys_name_their_new_place_in_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ValueError, match=r"override 'algorithm.group_size=4': algorithm.group_size moved to "
                                         r"rollout.group_size"):
        load_recipe(path, RLRecipe, ["algorithm.group_size=4"])
    with pytest.raises(ValueError, match=r"optim.critic_lr moved to critic.lr"):
        load_recipe(path, RLRecipe, ["optim.critic_lr=0.1"])
    with pytest.raises(ValueError, match=r"algorithm.value_pretrain_steps moved to critic.pretrain_steps"):
        load_recipe(path, RLRecipe, ["trainer.steps=3", "algorithm.value_pretrain_steps=2"])
    assert load_recipe(path, RLRecipe, ["rollout.group_size=4"]).rollout.group_size == 4  # the new place works


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_recipe(tmp_path / "missing.yaml", RLRecipe)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(ValueError) as error:
        load_recipe(bad, RLRecipe)
    # one line (the command line prints it as is), naming the file, the place and the problem
    assert str(error.value) == (f"recipe {bad} is not valid YAML: line 3, column 1: expected ',' or ']', "
                                "but got '<stream end>'")
    with pytest.raises(ValueError) as error:  # an override's value is YAML too (was a yaml traceback)
        load_recipe(write(tmp_path, MINIMAL), RLRecipe, ["trainer.steps=["])
    assert str(error.value) == ("override 'trainer.steps=[' is not valid YAML: line 1, column 2: expected the node "
                                "content, but found '<stream end>'")
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(bad, RLRecipe)
    bad.write_text("")
    with pytest.raises(ValueError, match=r"name: required key is missing"):
        load_recipe(bad, RLRecipe)


def test_save_resolved_round_trip(tmp_path: Path) -> None:
    data = {**MINIMAL, "algorithm": {"preset": "dapo", "eps_high": 0.3}}
    recipe = load_recipe(write(tmp_path, data), RLRecipe, ["optim.betas=[0.8,0.9]"], presets=PRESETS)
    out = save_resolved(recipe, tmp_path / "run" / "resolved.yaml")
    raw = yaml.safe_load(out.read_text())
    assert raw["algorithm"]["kl_kind"] == "k3"  # every default is written out
    assert raw["critic"]["value_clip"] == 0.5 and raw["reward"]["budget_reward"] == "none"
    assert raw["rollout"]["dynamic_sampling"] is True  # the preset's value, resolved
    again = load_recipe(out, RLRecipe, presets=PRESETS)
    assert again == recipe
    assert again.optim.betas == (0.8, 0.9)


def test_sft_recipe() -> None:
    recipe = validate_recipe({"name": "sft", "model": {"path": "ckpt"}, "data": {"task": "countdown"},
                              "trace_noise": 0.2, "epochs": 2, "optim": {"schedule": "linear"}}, SFTRecipe)
    assert recipe.trace_noise == 0.2 and recipe.epochs == 2
    assert recipe.optim == OptimSpec(schedule="linear")
    with pytest.raises(ValueError, match="trace_noise"):
        validate_recipe({"name": "s", "model": {"path": "p"}, "data": {"task": "arithmetic"}, "trace_noise": 2},
                        SFTRecipe)


def test_every_key_is_documented() -> None:
    """docs/configuration.md has a table row for every key of every section."""
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    from thinkrl.train import config

    for cls in (config.ModelSpec, config.TokenizerSpec, config.DataSpec, config.PrefilterSpec,
                config.OnlineFilterSpec, config.CurriculumSpec, config.SamplingSpec, config.RolloutSpec,
                config.RewardSpec, config.AlgorithmSpec, config.CriticSpec, config.OptimSpec, config.TrainerSpec,
                SFTRecipe, RLRecipe):
        for name in cls.model_fields:
            documented = f"| `{name}` |" in docs or f"### `{name}` (" in docs  # a key or a section
            assert documented, f"{cls.__name__}.{name} is not documented"


def test_documented_defaults_match_the_code() -> None:
    """Each `| key | default |` row under a `### ... (ClassName...)` heading shows the real default."""
    import re

    from pydantic_core import PydanticUndefined

    from thinkrl.train import config

    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    checked = 0
    for section in re.split(r"^### ", docs, flags=re.M)[1:]:
        match = re.match(r"`\w+` \((\w+)", section)
        if not match:
            continue
        cls = getattr(config, match.group(1))
        for key, default in re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, flags=re.M):
            field = cls.model_fields[key]
            value = field.default_factory() if field.default_factory else field.default
            assert value is not PydanticUndefined
            expected = list(value) if isinstance(value, tuple) else value
            assert yaml.safe_load(default) == expected, f"{cls.__name__}.{key}"
            checked += 1
    assert checked >= 60


def test_documented_example_recipe_is_valid() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    example = docs.split("## Example RL recipe", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    recipe = validate_recipe(yaml.safe_load(example), RLRecipe)
    assert recipe.algorithm.preset == "dapo" and recipe.reward.overlong_cache_len == 64


def test_a_value_based_estimator_of_ones_own_needs_a_critic(tmp_path) -> None:
    from thinkrl.rl import ADVANTAGE_ESTIMATORS, VALUE_ESTIMATORS

    gae = ADVANTAGE_ESTIMATORS.get("gae")
    ADVANTAGE_ESTIMATORS.register("my_gae")(lambda inputs: gae(inputs))
    VALUE_ESTIMATORS.add("my_gae")
    try:
        data = {**MINIMAL, "algorithm": {"advantage_estimator": "my_gae"}}
        with pytest.raises(ValueError, match="'my_gae' needs critic values: set critic.enabled true"):
            load_recipe(write(tmp_path, data), RLRecipe)
        recipe = load_recipe(write(tmp_path, {**data, "critic": {"enabled": True},
                                              "rollout": {"group_size": 1, "dynamic_sampling": False}}), RLRecipe)
        assert recipe.rollout.group_size == 1  # a critic baseline allows groups of one
    finally:
        VALUE_ESTIMATORS.discard("my_gae")
        ADVANTAGE_ESTIMATORS.unregister("my_gae")
