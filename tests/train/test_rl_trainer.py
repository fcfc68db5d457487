"""End-to-end RL: a few DAPO steps from a briefly SFT-ed micro model; resume; non-finite guard; CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_runner import run_thinkrl
from thinkrl.model import load_pretrained
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.train.config import RLRecipe, validate_recipe

MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 150, "num_test": 8, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}


def _rl_recipe(model: Path, out: Path, steps: int, rollout: dict | None = None, **trainer) -> RLRecipe:
    return validate_recipe({
        "name": "micro-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 24, "num_slots": 32},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_sampling_rounds": 2, **(rollout or {})},
        "reward": {"max_response_len": 24, "overlong_cache_len": 8},
        "algorithm": {"preset": "dapo", "num_mini_batches": 2},
        "optim": {"lr": 1e-3, "schedule": "constant"},
        "trainer": {"steps": steps, "micro_batch_tokens": 1024, "save_every": 1, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0, **trainer},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_pretrained(folder).state_dict()


def test_dapo_steps_train_and_log(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    # dynamic sampling off: every step trains (the micro model is right on ~1% of samples, so whether a group
    # with mixed outcomes turns up was up to the draws); the overlong penalty still varies rewards within a group
    final = run_rl(_rl_recipe(sft_model, tmp_path, steps=3, rollout={"dynamic_sampling": False}))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("reward", "accuracy", "response_length_mean", "response_length_max", "groups_dropped",
                "time/rollout", "tokens_per_s", "lr"):
        assert all(key in r for r in rows), key
    trained = [r for r in rows if "loss" in r]
    assert len(trained) == 3
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"], r["entropy"]])).all() for r in trained)
    assert any(r["grad_norm"] > 0 for r in trained)
    before, after = _weights(sft_model), _weights(final)
    assert any(not torch.equal(before[k], after[k]) for k in before), "weights did not change"
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "checkpoints" / "latest").read_text().strip().endswith("step-00000003")


def test_resume_reproduces_uninterrupted_run(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    straight = run_rl(_rl_recipe(sft_model, tmp_path / "a", steps=3))
    run_rl(_rl_recipe(sft_model, tmp_path / "b", steps=2))
    resumed = run_rl(_rl_recipe(sft_model, tmp_path / "b", steps=3, resume=True))
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]


def test_non_finite_loss_stops_before_the_weights_change(sft_model):
    from thinkrl.records import Trajectory
    from thinkrl.train.actor import Actor, NonFiniteError
    from thinkrl.train.batching import pack_trajectories
    from thinkrl.train.rl_step import compute_advantages

    model = load_pretrained(sft_model)
    trajs = [Trajectory([5, 6, 7], [8, 9], [float("nan"), -1.0], group_id=0, reward=r) for r in (1.0, -1.0)]
    recipe = _rl_recipe(sft_model, Path("unused"), steps=1)
    batch = compute_advantages(pack_trajectories(trajs), torch.tensor([0, 0]), recipe.algorithm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    actor = Actor(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), recipe.algorithm,
                  micro_batch_tokens=512, grad_clip=1.0, temperature=1.0, max_response_len=24)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteError, match="not finite"):
        actor.update(batch, __import__("random").Random(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_recipe_key_is_named_before_any_work(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tiny_dapo.yaml"
    proc = run_thinkrl("train", str(recipe), "algorithm.eps_hihg=0.3", cwd=tmp_path)
    assert proc.returncode != 0
    assert "eps_hihg" in proc.stderr and not (tmp_path / "runs").exists()
    proc = run_thinkrl("train", str(recipe), "algorithm.eps_low=2", cwd=tmp_path)
    assert proc.returncode != 0 and "algorithm.eps_low" in proc.stderr


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_prefilter_and_online_filter_shape_the_prompts_and_are_logged(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    recipe = _rl_recipe(sft_model, tmp_path, steps=3)
    # 40 prompts: the prefilter keeps a handful, so 3 steps revisit them and the online filter has to skip.
    data = {**DATA, "num_train": 40, "prefilter": {"k": 4, "low": 0.0, "high": 1.0},
            "online_filter": {"window": 1, "retry_after": 2}}
    recipe = recipe.model_copy(update={"data": type(recipe.data).model_validate(data)})
    run_rl(recipe)
    rows = _rows(tmp_path)
    head = rows[0]
    assert head["step"] == 0
    # The micro model solves some 2-term sums always and some never: the band (0, 1) drops both kinds.
    assert 0 < head["prefilter/kept"] < 40
    assert head["prefilter/too_hard"] + head["prefilter/too_easy"] + head["prefilter/kept"] == 40
    steps = [r for r in rows if r["step"] >= 1]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("data/prompts_skipped_total", "data/tracked_prompts", "data/epoch", "prompts_skipped"):
        assert all(key in r for r in steps), key
    assert 0 < steps[-1]["data/tracked_prompts"] <= head["prefilter/kept"]
    assert steps[-1]["data/prompts_skipped_total"] > 0
    assert sum(r["prompts_skipped"] for r in steps) == steps[-1]["data/prompts_skipped_total"]


def test_resume_with_prefilter_and_online_filter_reproduces_the_run(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    def recipe(out: Path, steps: int, **trainer) -> RLRecipe:
        base = _rl_recipe(sft_model, out, steps=steps, **trainer)
        data = {**DATA, "prefilter": {"k": 4}, "online_filter": {"window": 1, "retry_after": 2}}
        return base.model_copy(update={"data": type(base.data).model_validate(data)})

    straight = run_rl(recipe(tmp_path / "a", 3))
    run_rl(recipe(tmp_path / "b", 2))
    resumed = run_rl(recipe(tmp_path / "b", 3, resume=True))
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    last_a, last_b = _rows(tmp_path / "a")[-1], _rows(tmp_path / "b")[-1]
    assert last_a["data/prompts_skipped_total"] == last_b["data/prompts_skipped_total"]


def test_curriculum_moves_the_difficulty_during_training(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    base = _rl_recipe(sft_model, tmp_path, steps=4)
    # Window 4 groups = one step; target band (0.5, 0.9): the micro model solves ~1% of problems, far below the
    # band, so each window makes the next problems easier (smaller numbers). (The band used to be (0, 0.05), which
    # needed a solved problem within the run: up to the draws.)
    data = {**DATA, "curriculum": {"knobs": {"max_number": 3}, "target_low": 0.5, "target_high": 0.9,
                                   "window": 4}}
    recipe = base.model_copy(update={"data": type(base.data).model_validate(data)})
    run_rl(recipe)
    steps = [r for r in _rows(tmp_path) if r["step"] >= 1]
    levels = [r["curriculum/arithmetic/max_number"] for r in steps]
    assert levels[0] <= DATA["difficulty"]["max_number"]
    assert levels[-1] < DATA["difficulty"]["max_number"], levels
    assert steps[-1]["curriculum/arithmetic/changes"] >= 1


def test_sampled_thinking_tokens_match_a_count_of_the_response_ids(sft_model):
    from thinkrl.engine import LLMEngine
    from thinkrl.rollout import SamplingSpec, load_problems, sample_groups
    from thinkrl.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(sft_model)
    model = load_pretrained(sft_model)
    problems = load_problems(_rl_recipe(sft_model, Path("unused"), steps=1).data, "train")[:6]
    engine = LLMEngine(model, tokenizer, num_slots=16, max_seq_len=256, seed=0)
    sampling = SamplingSpec(max_new_tokens=24, thinking_budgets=[0, 4, -1])
    trajs = sample_groups(engine, tokenizer, problems, 3, sampling, seed=5, first_group_id=0)
    open_id = tokenizer.token_to_id(tokenizer.think_tags.open)
    close_id = tokenizer.token_to_id(tokenizer.think_tags.close)
    budgets = set()
    for t in trajs:
        ids = t.response_ids
        # Thinking = the tokens inside any open...close block; a budget-0 prompt starts in the answer; the stop
        # token that ends a response is not a thinking token.
        state, count = ("answer" if t.thinking_budget == 0 else "before"), 0
        body = ids[:-1] if t.finish_reason == "stop" else ids
        for token in body:
            if state != "thinking" and token == open_id:
                state = "thinking"
            elif state == "thinking" and token == close_id:
                state = "answer"
            elif state == "thinking":
                count += 1
        assert t.thinking_tokens == count, (t.text, t.thinking_budget)
        budget = t.thinking_budget
        assert t.kept_budget == (state != "thinking" and (budget < 0 or count <= budget))
        budgets.add(t.thinking_budget)
    assert budgets == {0, 4, -1}
    assert any(t.thinking_tokens > 0 for t in trajs)


def test_budget_aware_rl_logs_thinking_and_adherence(sft_model, tmp_path):
    from thinkrl.train.rl_loop import run_rl

    base = _rl_recipe(sft_model, tmp_path, steps=2)
    recipe = base.model_copy(update={
        "sampling": base.sampling.model_copy(update={"thinking_budgets": [0, 4, 8, -1]}),
        "reward": base.reward.model_copy(update={"budget_reward": "overlong"}),
    })
    run_rl(recipe)
    steps = [r for r in _rows(tmp_path) if r["step"] >= 1]
    assert len(steps) == 2
    # The SFT model thinks before it answers, and every step logs its adherence (by hand: test_rollout_metrics_by_hand).
    assert all("budget_adherence" in r for r in steps) and any(r["thinking_tokens_mean"] > 0 for r in steps)


def _engine_weights(run) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in run.engine.engine.model.named_parameters()}


def test_engine_weights_move_only_when_pushed_and_tokens_carry_the_version(sft_model, tmp_path):
    from thinkrl.train.rl_setup import build_run
    from thinkrl.train.rl_step import prepare_batch, update

    recipe = _rl_recipe(sft_model, tmp_path, steps=2)
    run = build_run(recipe)
    try:
        first = _kept(run, recipe, 1)
        assert all(set(t.token_versions) == {0} for t in first)
        before = _engine_weights(run)
        actor = dict(run.actor.model.named_parameters())
        assert all(torch.equal(before[n], actor[n]) for n in before)  # the engine starts from the policy
        batch = prepare_batch(first, run.actor, run.critic, run.ref_model)
        update(batch, run.actor, run.critic, seed=0, step=1)
        during = _engine_weights(run)
        assert all(torch.equal(before[n], during[n]) for n in before)  # the update did not touch the engine
        assert any(not torch.equal(during[n], actor[n]) for n in during)
        run.engine.update_weights(run.actor.weights(), version=1)
        after = _engine_weights(run)
        assert all(torch.equal(after[n], actor[n]) for n in after)  # the push made them equal
        second = _kept(run, recipe, 2)
        assert run.engine.version == 1 and all(set(t.token_versions) == {1} for t in second)
    finally:
        run.engine.stop()


def test_decoupled_ppo_is_chosen_by_the_recipe_and_on_policy_logprobs_agree(sft_model, tmp_path):
    from thinkrl.train.rl_setup import build_run
    from thinkrl.train.rl_step import prepare_batch, update

    base = _rl_recipe(sft_model, tmp_path, steps=2)
    recipe = base.model_copy(update={"algorithm": base.algorithm.model_copy(update={"off_policy": "decoupled"})})
    run = build_run(recipe)
    try:
        kept = _kept(run, recipe, 1)
        batch = prepare_batch(kept, run.actor, run.critic, run.ref_model)
        mask = batch.response_mask
        engine_logprobs = pack_engine_logprobs(kept, batch.behaviour_logprobs.shape[1])
        assert torch.equal(batch.behaviour_logprobs, engine_logprobs)  # behaviour = what the engine recorded
        # On policy, the trainer's proximal log-probs agree with the engine's (fp32, same weights).
        gap = (batch.old_logprobs - batch.behaviour_logprobs).abs()[mask]
        assert gap.max() < 1e-4, gap.max()
        row = update(batch, run.actor, run.critic, seed=0, step=1)
        assert abs(row["is_weight_mean"] - 1.0) < 1e-3
        assert row["logprob_gap_max"] == pytest.approx(float(gap.max())) and row["logprob_gap_max"] < 1e-4
        assert row["logprob_gap_mean"] == pytest.approx(float(gap.mean()))
        # A stale engine (no push): the next batch's behaviour policy is one update behind the proximal policy.
        stale = _kept(run, recipe, 2)
        stale_batch = prepare_batch(stale, run.actor, run.critic, run.ref_model)
        stale_gap = (stale_batch.old_logprobs - stale_batch.behaviour_logprobs).abs()[stale_batch.response_mask]
        assert stale_gap.max() > 1e-3
    finally:
        run.engine.stop()


def test_one_optimizer_step_takes_the_proximal_logprobs_from_its_own_forward(sft_model, tmp_path, monkeypatch):
    """Decoupled PPO with one epoch and one mini-batch: no scoring pass before the update; the proximal log-probs the
    loss used (written back for the log-prob gap) equal a separate pass's, and so does the update itself."""
    import copy

    from thinkrl.train.actor import Actor
    from thinkrl.train.rl_setup import build_run
    from thinkrl.train.rl_step import prepare_batch, update

    base = _rl_recipe(sft_model, tmp_path, steps=2)
    recipe = base.model_copy(update={"algorithm": base.algorithm.model_copy(
        update={"off_policy": "decoupled", "num_mini_batches": 1, "ppo_epochs": 1})})
    run = build_run(recipe)
    try:
        actor = run.actor
        assert actor.proximal_from_update
        kept = _kept(run, recipe, 1)
        state = copy.deepcopy((actor.model.state_dict(), actor.optimizer.state_dict(), actor.scheduler.state_dict()))
        batch = prepare_batch(kept, actor, run.critic, run.ref_model)
        mask = batch.response_mask
        assert batch.old_logprobs[mask].isnan().all() and (batch.old_logprobs[~mask] == 0).all()  # not scored yet
        separate = actor.logprobs(batch)  # what the scoring pass would have given, same weights
        row = update(batch, actor, run.critic, seed=0, step=1)
        torch.testing.assert_close(batch.old_logprobs[mask], separate[mask], rtol=0, atol=1e-5)
        gap = (separate - batch.behaviour_logprobs).abs()[mask]
        assert row["logprob_gap_max"] == pytest.approx(float(gap.max()), abs=1e-5) and row["logprob_gap_max"] < 1e-4
        shortcut = {k: v.clone() for k, v in actor.model.state_dict().items()}
        assert any(not torch.equal(shortcut[k], state[0][k]) for k in shortcut)  # the step changed the weights

        actor.model.load_state_dict(state[0])  # the same step again, with the scoring pass
        actor.optimizer.load_state_dict(state[1])
        actor.scheduler.load_state_dict(state[2])
        monkeypatch.setattr(Actor, "proximal_from_update", property(lambda self: False))
        scored = prepare_batch(kept, actor, run.critic, run.ref_model)
        torch.testing.assert_close(scored.old_logprobs[mask], separate[mask], rtol=0, atol=1e-6)
        update(scored, actor, run.critic, seed=0, step=1)
        for name, value in actor.model.state_dict().items():
            torch.testing.assert_close(value, shortcut[name], rtol=1e-5, atol=1e-6, msg=name)
    finally:
        run.engine.stop()


def _kept(run, recipe, step: int):
    """The kept trajectories of the first batch (over seeds) with a group that teaches something."""
    from thinkrl.rollout import collect_rollout_batch

    for seed in range(step * 100, step * 100 + 20):
        batch = collect_rollout_batch(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling,
                                      recipe.reward, seed=seed)
        if batch.trajectories:
            return batch.trajectories
    raise AssertionError("no mixed group in 20 batches")


def pack_engine_logprobs(trajs, width: int) -> torch.Tensor:
    out = torch.zeros(len(trajs), width)
    for i, t in enumerate(trajs):
        out[i, : len(t.logprobs)] = torch.tensor(t.logprobs)
    return out
