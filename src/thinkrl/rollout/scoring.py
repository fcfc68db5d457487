"""Verdicts and rewards: each trajectory's task verifier sets ``correct``; the ``reward`` section shapes the reward.

reward = outcome (``correct_reward`` / ``wrong_reward``) + DAPO's soft overlong punishment on the response length
+ the thinking-budget shaping on the thinking tokens used (relative to the budget the prompt was rendered with).
The parts are kept in ``Trajectory.reward_parts``.
"""

from __future__ import annotations

import torch

from thinkrl.records import RewardParts, Trajectory
from thinkrl.rewards import score_response
from thinkrl.rewards.external import task_for
from thinkrl.rl import budget_limit_penalty, budget_overlong_penalty, budget_penalty, soft_overlong_penalty
from thinkrl.rollout.specs import RewardSpec
from thinkrl.tokenizer import TextTokenizer


def judge(trajs: list[Trajectory], tokenizer: TextTokenizer) -> None:
    """Set ``correct`` and ``reward_reason`` of each trajectory with its problem's task verifier."""
    for traj in trajs:
        if traj.problem is None:
            raise ValueError("judge needs trajectories sampled from problems (Trajectory.problem is None)")
        score = score_response(task_for(traj.problem.task), traj.problem, traj.text, tokenizer.think_tags,
                               finished=traj.finish_reason == "stop")
        traj.correct = score.correct
        traj.reward_reason = score.reason


def score_trajectories(trajs: list[Trajectory], tokenizer: TextTokenizer, spec: RewardSpec) -> None:
    """`judge`, then set ``reward`` and ``reward_parts``: the outcome reward, plus DAPO's soft overlong punishment
    (``spec.overlong_penalty``), plus the budget shaping of ``spec.budget_reward``."""
    judge(trajs, tokenizer)
    if not trajs:
        return
    overlong = [0.0] * len(trajs)
    if spec.overlong_penalty:
        lengths = torch.tensor([len(t.response_ids) for t in trajs])
        overlong = soft_overlong_penalty(lengths, spec.max_response_len, spec.overlong_cache_len).tolist()
    budget = [0.0] * len(trajs)
    if spec.budget_reward != "none":
        if any(t.thinking_tokens is None for t in trajs):
            raise ValueError("budget_reward needs thinking-token counts: sample through thinkrl.rollout.sample")
        used = torch.tensor([int(t.thinking_tokens) for t in trajs])  # type: ignore[arg-type]
        budgets = torch.tensor([t.thinking_budget for t in trajs])
        if spec.budget_reward == "overlong":
            shaped = budget_overlong_penalty(used, budgets, spec.budget_cache_frac)
            budget = (spec.budget_overlong_coef * shaped).tolist()
        elif spec.budget_reward == "limit":
            budget = (spec.budget_overlong_coef * budget_limit_penalty(used, budgets)).tolist()
        else:
            budget = budget_penalty(used, budgets, spec.budget_alpha).tolist()
    for traj, o, b in zip(trajs, overlong, budget, strict=True):
        outcome = spec.correct_reward if traj.correct else spec.wrong_reward
        traj.reward_parts = RewardParts(outcome, float(o), float(b))
        traj.reward = float(outcome) + float(o) + float(b)
