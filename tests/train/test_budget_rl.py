"""Budget-aware RL: the reward is shaped relative to each prompt's sampled thinking budget."""

from __future__ import annotations

import random

import pytest

from thinkrl.records import RewardParts, Trajectory
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout import RewardSpec, score_trajectories, within_budget
from thinkrl.tasks import get_task
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.config import RLRecipe, validate_recipe


def _correct_response(tokenizer, problem, thinking: str) -> str:
    """The assistant turn as the chat template renders it (what a well-trained model writes)."""
    answer = str(problem.ground_truth["answer"])
    messages = [{"role": "user", "content": problem.prompt},
                {"role": "assistant", "content": answer, "reasoning_content": thinking}]
    prompt = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, thinking_budget=16)
    full = tokenizer.apply_chat_template(messages, add_generation_prompt=False, thinking_budget=16)
    return full[len(prompt):]


def _trajectory(text: str, problem, budget: int, used: int) -> Trajectory:
    """What `sample_groups` records for a response whose thinking closed after ``used`` tokens."""
    return Trajectory([1], [5, 6], [0.0, 0.0], text=text, problem=problem, thinking_budget=budget,
                      thinking_tokens=used, kept_budget=budget < 0 or used <= budget)


@pytest.mark.parametrize("mode", ["overlong", "l1", "limit"])
def test_score_trajectories_shapes_correct_answers_by_budget(mode):
    tokenizer = load_tokenizer("builtin")
    problem = get_task("arithmetic").generate(random.Random(3), num_terms=2, max_number=9)
    text = _correct_response(tokenizer, problem, "a short thought")
    reward = RewardSpec(overlong_penalty=False, budget_reward=mode, budget_cache_frac=0.25, budget_alpha=0.01,
                        budget_overlong_coef=1.0)
    cases = [(16, 10), (16, 14), (16, 20), (0, 0), (-1, 50)]  # (budget, thinking tokens used)
    trajs = [_trajectory(text, problem, b, u) for b, u in cases]
    score_trajectories(trajs, tokenizer, reward)
    assert all(t.correct for t in trajs)
    expected = {
        # budget 16, L_cache 4 -> free to 12: 10 -> 0; 14 -> -0.5; 20 -> -1. Budget 0 with 0 used: 0. -1: 0.
        "overlong": [1.0, 0.5, 0.0, 1.0, 1.0],
        # 1 - 0.01 |16 - used|: 6, 2, 4 tokens off; budget 0 exactly kept; -1 never shaped.
        "l1": [0.94, 0.98, 0.96, 1.0, 1.0],
        # hard limit, weight 1: only the 20 tokens of budget 16 are over (1 - 1).
        "limit": [1.0, 1.0, 0.0, 1.0, 1.0],
    }[mode]
    assert [round(t.reward, 6) for t in trajs] == pytest.approx(expected)
    for t, total in zip(trajs, expected, strict=True):  # the parts: outcome +1, no overlong term, the budget shaping
        assert t.reward_parts == RewardParts(1.0, 0.0, pytest.approx(total - 1.0, abs=1e-6))
    assert [within_budget(t) for t in trajs] == [True, True, False, True, None]


def test_budget_overlong_coef_scales_the_punishment():
    tokenizer = load_tokenizer("builtin")
    problem = get_task("arithmetic").generate(random.Random(3), num_terms=2, max_number=9)
    text = _correct_response(tokenizer, problem, "a short thought")
    reward = RewardSpec(overlong_penalty=False, budget_reward="overlong")
    assert reward.budget_overlong_coef == 2.0  # the default: an overrun correct answer is no better than a wrong one
    trajs = [_trajectory(text, problem, 16, used) for used in (10, 14, 20)]
    score_trajectories(trajs, tokenizer, reward)
    # 1 + 2 * [0, -0.5, -1]
    assert [t.reward for t in trajs] == pytest.approx([1.0, 0.0, -1.0])


def test_score_trajectories_without_counts_is_a_clear_error():
    tokenizer = load_tokenizer("builtin")
    problem = get_task("arithmetic").generate(random.Random(3), num_terms=2, max_number=9)
    traj = Trajectory([1], [5], [0.0], text="7", problem=problem, thinking_budget=8)
    reward = RewardSpec(budget_reward="overlong")
    with pytest.raises(ValueError, match="thinking-token counts"):
        score_trajectories([traj], tokenizer, reward)


def test_recipe_rejects_budget_reward_without_a_finite_budget():
    raw = {"name": "x", "model": {"path": "unused"}, "data": {"task": "arithmetic"},
           "sampling": {"thinking_budgets": [-1]}, "reward": {"budget_reward": "l1"}, "algorithm": {"preset": "dapo"}}
    with pytest.raises(ValueError, match=r"reward.budget_reward 'l1' .* no finite budget"):
        validate_recipe(raw, RLRecipe, presets=ALGORITHM_PRESETS)
    raw["sampling"] = {"thinking_budgets": [-1, 16]}  # one finite budget is enough
    assert validate_recipe(raw, RLRecipe, presets=ALGORITHM_PRESETS).reward.budget_reward == "l1"
