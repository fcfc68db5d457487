"""VAPO and the critic in the RL loop: explained variance, critic values and updates, positive LM loss,
value pretraining on a real micro run, every preset through the trainer, resume with a critic."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from thinkrl.model import load_pretrained
from thinkrl.model.value_head import ValueModel
from thinkrl.records import Trajectory
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.train.batching import pack_trajectories
from thinkrl.train.config import RLRecipe, SFTRecipe, validate_recipe
from thinkrl.train.critic import CriticNonFiniteError, compute_values, explained_variance, update_critic

MICRO = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
# 24 two-term problems on 1..4: a micro model memorises most of them in a few seconds of SFT, and 30% noisy
# traces make its samples right about 2/3 of the time, so returns vary and a critic has something to explain.
DATA = {"task": "arithmetic", "num_train": 24, "num_test": 4, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 4}}


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory) -> Path:
    from thinkrl.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft")
    recipe = validate_recipe({
        "name": "micro-sft", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 400,
        "trace_noise": 0.3, "optim": {"lr": 5e-3, "warmup_steps": 5},
        "trainer": {"steps": 250, "micro_batch_tokens": 384, "save_every": 0, "output_dir": str(out),
                    "log_every": 50},
    }, SFTRecipe)
    return run_sft(recipe)


def _recipe(model: Path, out: Path, preset: str, steps: int = 2, *, algorithm: dict | None = None,
            rollout: dict | None = None, critic: dict | None = None, **trainer) -> RLRecipe:
    return validate_recipe({
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 16, "num_slots": 32},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_sampling_rounds": 2, **(rollout or {})},
        "reward": {"max_response_len": 16, "overlong_cache_len": 4},
        "algorithm": {"preset": preset, "num_mini_batches": 2, **(algorithm or {})},
        "critic": {"lr": 2e-3, **(critic or {})},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": steps, "micro_batch_tokens": 512, "save_every": 1, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0, **trainer},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def _trajs(rewards: list[float], lengths: list[int], seed: int = 0) -> list[Trajectory]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, (reward, n) in enumerate(zip(rewards, lengths, strict=True)):
        prompt = torch.randint(3, 60, (3 + i,), generator=gen).tolist()
        response = torch.randint(3, 60, (n,), generator=gen).tolist()
        out.append(Trajectory(prompt, response, [-1.0] * n, group_id=i // 2, reward=reward, correct=reward > 0))
    return out


def test_explained_variance_hand_values():
    returns = torch.tensor([[1.0, 1.0, -1.0], [-1.0, -1.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, -1.0], [-1.0, 0.0, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # returns 1,1,-1,-1,-1: unbiased var 1.2; residuals .5,0,0,0,-1: var 0.3; EV = 1 - 0.3/1.2
    assert explained_variance(values, returns, mask) == pytest.approx(0.75)
    assert explained_variance(torch.zeros(2, 3), returns, mask) == pytest.approx(0.0)
    assert explained_variance(values, torch.ones(2, 3), mask) != explained_variance(values, torch.ones(2, 3), mask)
    with pytest.raises(ValueError, match="same shape"):
        explained_variance(values[:1], returns, mask)


def test_compute_values_reads_the_state_each_token_was_sampled_in(sft_model):
    critic = ValueModel.from_policy(load_pretrained(sft_model))
    with torch.no_grad():
        critic.value_head.weight.normal_(generator=torch.Generator().manual_seed(0))
    trajs = _trajs([1.0, -1.0, 1.0], [4, 7, 2])
    batch = pack_trajectories(trajs)
    values = compute_values(critic, batch, micro_batch_tokens=16)  # forces several micro-batches
    for i, t in enumerate(trajs):
        ids = torch.tensor(t.prompt_ids + t.response_ids)
        alone = critic(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)], dtype=torch.int32)).values
        p, n = len(t.prompt_ids), len(t.response_ids)
        torch.testing.assert_close(values[i, :n], alone[p - 1 : p - 1 + n].detach(), atol=1e-5, rtol=1e-5)
        assert torch.all(values[i, n:] == 0)


def test_update_critic_fits_returns_and_stops_on_non_finite(sft_model):
    critic = ValueModel.from_policy(load_pretrained(sft_model))
    trajs = _trajs([1.0, -1.0, 1.0, -1.0], [3, 5, 4, 2])
    batch = pack_trajectories(trajs)
    returns = torch.where(batch.response_mask, batch.rewards[:, None], 0.0)
    optimizer = torch.optim.AdamW(critic.parameters(), lr=3e-3)
    mse = []
    for step in range(15):
        old = compute_values(critic, batch, 512)
        mse.append(float(((old - returns)[batch.response_mask]).square().mean()))
        stats = update_critic(critic, optimizer, replace(batch, old_values=old, returns=returns), epochs=1,
                              num_mini_batches=2, micro_batch_tokens=512, clip_range=0.5, grad_clip=1.0,
                              rng=random.Random(step))
        assert stats.num_tokens == batch.num_tokens and stats.grad_norm > 0
    assert mse[0] == pytest.approx(1.0) and mse[-1] < 0.2
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    bad = replace(batch, old_values=old, returns=torch.full_like(returns, float("nan")))
    with pytest.raises(CriticNonFiniteError):
        update_critic(critic, optimizer, bad, epochs=1, num_mini_batches=1, micro_batch_tokens=512,
                      clip_range=None, grad_clip=1.0, rng=random.Random(0))
    assert all(torch.equal(before[k], v) for k, v in critic.state_dict().items())


def test_positive_lm_loss_adds_mu_times_the_token_mean_nll_of_correct_responses(sft_model):
    from thinkrl.train.actor import Actor
    from thinkrl.train.common import forward_responses

    model = load_pretrained(sft_model)
    trajs = _trajs([1.0, -1.0, 1.0], [4, 6, 3])
    batch = pack_trajectories(trajs, is_correct=[True, False, True])  # advantages are all 0: PPO loss is 0
    with torch.no_grad():
        logprobs = forward_responses(model, batch).logprobs
    correct = batch.response_mask & batch.is_correct[:, None]
    nll = float(-(logprobs * correct).sum() / correct.sum())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for coef in (0.0, 0.1):
        algo = _recipe(sft_model, Path("unused"), "vapo", algorithm={"positive_lm_coef": coef}).algorithm
        assert algo.positive_lm_coef == coef and algo.dual_clip is None  # the vapo preset, coef explicit
        actor = Actor(model, optimizer, scheduler, algo, micro_batch_tokens=512, grad_clip=1.0, temperature=1.0,
                      max_response_len=16)
        micro = actor.micro_batch_loss(batch, {"num_tokens": batch.num_tokens}, int(correct.sum()), 1.0)
        assert float(micro.loss.detach()) == pytest.approx(coef * nll, rel=1e-5, abs=1e-7)
        if coef:
            assert float(micro.positive_nll_sum) == pytest.approx(nll * int(correct.sum()), rel=1e-5)


def test_compute_advantages_uses_the_critic_values_and_can_whiten_them():
    from thinkrl.train.rl_step import compute_advantages

    trajs = _trajs([1.0, -1.0, 1.0], [3, 2, 4])
    values = torch.tensor([[0.5, 0.2, -0.1, 0.0], [0.3, 0.4, 0.0, 0.0], [0.0, 0.1, 0.2, 0.9]])
    batch = replace(pack_trajectories(trajs), old_values=values)
    algo = _recipe(Path("unused"), Path("unused"), "ppo", algorithm={"lam": 0.0, "lam_critic": 1.0}).algorithm
    assert algo.advantage_estimator == "gae"  # from the preset
    group_ids = torch.tensor([t.group_id for t in trajs])
    out = compute_advantages(batch, group_ids, algo)
    # lam 0: one-step TD errors V(s_t+1) - V(s_t), plus the reward on the last token; lam_critic 1: returns = R
    torch.testing.assert_close(out.advantages[0, :3], torch.tensor([-0.3, -0.3, 1.1]))
    torch.testing.assert_close(out.advantages[1, :2], torch.tensor([0.1, -1.4]))
    torch.testing.assert_close(out.returns, torch.where(batch.response_mask, batch.rewards[:, None], 0.0))
    whitened = compute_advantages(batch, group_ids, algo.model_copy(update={"whiten_advantages": True})).advantages
    valid = whitened[batch.response_mask]
    assert float(valid.mean()) == pytest.approx(0.0, abs=1e-5) and float(valid.std()) == pytest.approx(1.0, rel=1e-4)


def test_value_pretraining_raises_explained_variance_on_real_samples(sft_model):
    from thinkrl.engine import LLMEngine
    from thinkrl.rollout import PromptCursor, load_problems
    from thinkrl.train.common import build_tokenizer
    from thinkrl.train.critic import build_critic
    from thinkrl.train.schedule import build_optimizer
    from thinkrl.train.value_pretrain import pretrain_value

    recipe = _recipe(sft_model, Path("unused"), "vapo", rollout={"prompts_per_step": 8})
    torch.manual_seed(0)
    tokenizer, policy = build_tokenizer(recipe.tokenizer), load_pretrained(sft_model)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    critic = build_critic(policy)
    optimizer = build_optimizer(critic.parameters(), recipe.optim, lr=3e-3)
    engine = LLMEngine(policy, tokenizer, num_slots=32, max_seq_len=96, seed=0)
    result = pretrain_value(critic, optimizer, engine, tokenizer, PromptCursor(load_problems(recipe.data, "train"), 1),
                            recipe.rollout, recipe.sampling, recipe.reward, max_steps=10, target_ev=0.99,
                            updates_per_step=6, micro_batch_tokens=2048, grad_clip=1.0, seed=0)
    evs = result.explained_variance  # each measured on a fresh batch before the critic saw it
    assert result.steps == 10 and not result.reached_target and len(result.value_loss) == 10
    assert evs[0] == pytest.approx(0.0, abs=1e-6)  # the zero head predicts a constant
    first, last = sum(evs[:3]) / 3, sum(evs[-3:]) / 3
    assert last > 0.3 and last > first + 0.25, evs
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items()), "pretraining changed the policy"


@pytest.mark.parametrize("preset", sorted(ALGORITHM_PRESETS))
def test_every_preset_runs_two_steps_through_the_trainer(sft_model, tmp_path, preset):
    from thinkrl.train.rl_loop import run_rl

    extra = {"pretrain_steps": 2} if preset == "vapo" else {}
    final = run_rl(_recipe(sft_model, tmp_path, preset, critic=extra))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss" in r]
    assert trained, f"{preset}: no step trained"
    for row in trained:
        assert all(torch.isfinite(torch.tensor(float(v))) for k, v in row.items() if k != "explained_variance")
    before, after = load_pretrained(sft_model).state_dict(), load_pretrained(final).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{preset}: weights did not change"
    saved = _checkpoint_keys(tmp_path / "checkpoints" / "step-00000002")
    if ALGORITHM_PRESETS[preset]["critic.enabled"]:
        assert all("value_loss" in r and "explained_variance" in r for r in trained)
        assert {"critic", "critic_optimizer"} <= saved
    else:
        assert "critic" not in saved and not any("value_loss" in r for r in rows)
    if preset == "vapo":
        assert "positive_nll" in trained[0]
        assert any("value_pretrain/steps" in r for r in rows)
        assert len((tmp_path / "value_pretrain" / "metrics.jsonl").read_text().splitlines()) >= 1


def test_vapo_without_group_sampling_trains_groups_of_one(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    run_rl(_recipe(sft_model, tmp_path, "vapo", steps=1, rollout={"group_size": 1, "prompts_per_step": 8}))
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["groups_sampled"] == 8 and row["groups_kept_trained"] == 8 and "value_loss" in row


def test_vapo_resume_restores_critic_and_reproduces_the_run(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    straight = run_rl(_recipe(sft_model, tmp_path / "a", "vapo", steps=3))
    run_rl(_recipe(sft_model, tmp_path / "b", "vapo", steps=2))
    resumed = run_rl(_recipe(sft_model, tmp_path / "b", "vapo", steps=3, resume=True))
    a, b = load_pretrained(straight).state_dict(), load_pretrained(resumed).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    ca, cb = (_critic_weights(p / "checkpoints" / "step-00000003", sft_model) for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.allclose(ca[k], cb[k], atol=1e-6) for k in ca)


def _checkpoint_keys(step_dir: Path) -> set[str]:
    """The top-level parts of a (DCP) checkpoint: "model", "model_optimizer", "critic", ..."""
    from torch.distributed.checkpoint import FileSystemReader

    return {key.split(".")[0] for key in FileSystemReader(str(step_dir)).read_metadata().state_dict_metadata}


def _critic_weights(step_dir: Path, sft_model: Path) -> dict[str, torch.Tensor]:
    """The critic's weights saved in a (DCP) checkpoint."""
    from thinkrl.train.dcp import Trained, load_sharded

    critic = ValueModel.from_policy(load_pretrained(sft_model))
    load_sharded(step_dir, parts={"critic": Trained(critic)}, data_parallel=None, rng=False)
    return critic.state_dict()


def test_algorithm_rules_for_critics_and_groups_of_one():
    def recipe(preset: str, **sections: dict) -> RLRecipe:
        return validate_recipe({"name": "r", "model": {"path": "unused"}, "data": DATA,
                                "algorithm": {"preset": preset}, **sections}, RLRecipe, presets=ALGORITHM_PRESETS)

    assert recipe("vapo", rollout={"group_size": 1}).rollout.group_size == 1
    with pytest.raises(ValueError, match=r"rollout.group_size 1 needs algorithm.advantage_estimator 'gae'"):
        recipe("dapo", rollout={"group_size": 1})
    with pytest.raises(ValueError, match=r"rollout.group_size 1 needs .* rollout.dynamic_sampling false"):
        recipe("vapo", rollout={"group_size": 1, "dynamic_sampling": True})
    with pytest.raises(ValueError, match=r"'gae' needs critic values: set critic.enabled true"):
        recipe("ppo", critic={"enabled": False})
    with pytest.raises(ValueError, match=r"critic.pretrain_steps \(3\) needs critic.enabled true"):
        recipe("dapo", critic={"pretrain_steps": 3})
    with pytest.raises(ValueError, match=r"critic.value_clip:"):
        recipe("vapo", critic={"value_clip": 0})


def test_a_critic_run_whose_every_group_was_dropped_still_finishes(tmp_path):
    from thinkrl.model import ModelConfig, build_model, save_pretrained
    from thinkrl.tokenizer import load_tokenizer
    from thinkrl.train.metrics import read_metrics
    from thinkrl.train.rl_loop import run_rl

    # A random policy answers every problem wrong: dynamic sampling drops every group, nothing is trained, and no
    # explained variance is logged. The run still ends with its final model and its curves (it used to raise).
    save_pretrained(build_model(ModelConfig(vocab_size=load_tokenizer("builtin").vocab_size, **MICRO), seed=0),
                    tmp_path / "random")
    recipe = _recipe(tmp_path / "random", tmp_path / "run", "vapo", steps=1, critic={"pretrain_steps": 0},
                     rollout={"dynamic_sampling": True, "max_sampling_rounds": 1})
    final = run_rl(recipe)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["groups_kept_trained"] for r in rows if "groups_kept_trained" in r] == [0]
    assert not any("explained_variance" in r for r in rows)
    assert (final / "config.json").exists() and (tmp_path / "run" / "curves.png").stat().st_size > 0
