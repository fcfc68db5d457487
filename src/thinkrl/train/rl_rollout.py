"""Synchronous group rollout for RL: sample G responses per prompt, score them, apply DAPO dynamic sampling.

(The asynchronous streaming rollout with partial rollouts lives in ``thinkrl.rollout``;
this is the simple on-policy path the DAPO recipe uses by default.)

Prompts come from a `thinkrl.train.curriculum.PromptSource` (a fixed `PromptCursor`, an
`OnlineFilter` or a `Curriculum`); every sampled group's correctness is reported back to it with
``observe``, including the groups dynamic sampling drops. `estimate_pass_rates` and
`prefilter_problems` are the offline side: k samples per prompt with the current policy, then
`filter_by_pass_rate`.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.budget import ThinkingBudgetController, budget_vocab
from thinkrl.records import Trajectory
from thinkrl.rewards import score_response
from thinkrl.rewards.external import task_for
from thinkrl.rl import budget_overlong_penalty, budget_penalty, group_has_variance, soft_overlong_penalty
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.config import AlgorithmSpec, PrefilterSpec, SamplingSpec
from thinkrl.train.curriculum import SKIPPED_TOTAL, FilterResult, PromptCursor, PromptSource, filter_by_pass_rate

__all__ = ["PromptCursor", "RolloutBatch", "collect_rollout_batch", "estimate_pass_rates", "prefilter_problems",
           "sample_groups", "score_trajectories", "within_budget"]

logger = logging.getLogger(__name__)


@dataclass
class RolloutBatch:
    """What one RL step trains on, plus what it cost to get it.

    Fields:
        trajectories: kept responses (whole groups), scored.
        num_groups_sampled / num_groups_dropped: dynamic-sampling counts over all rounds.
        num_rounds: sampling rounds used.
        sampled_correct: correctness of every sampled response (kept or not), for accuracy metrics.
        sampled_lengths: response lengths of every sampled response.
        sampled_within_budget: `within_budget` of every sampled response with a finite budget.
        sampled_thinking_tokens: thinking tokens of every sampled response that was counted.
        reasons: verifier reasons over every sampled response.
        num_prompts_skipped: prompts the source skipped while filling this batch (online filter).
        data_metrics: the prompt source's `metrics()` after this batch (``data/...``,
            ``curriculum/<task>/...``), to log as they are.
    """

    trajectories: list[Trajectory]
    num_groups_sampled: int = 0
    num_groups_dropped: int = 0
    num_rounds: int = 0
    sampled_correct: list[bool] = field(default_factory=list)
    sampled_lengths: list[int] = field(default_factory=list)
    sampled_within_budget: list[bool] = field(default_factory=list)
    sampled_thinking_tokens: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    num_prompts_skipped: int = 0
    data_metrics: dict[str, float] = field(default_factory=dict)


def sample_groups(engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem], group_size: int,
                  sampling: SamplingSpec, seed: int, first_group_id: int) -> list[Trajectory]:
    """G seeded samples for each problem; ``metadata`` carries the problem and its thinking budget."""
    rng = random.Random(seed)
    # With finite budgets in play, a counting controller (no enforcement) rides along with every request:
    # it counts thinking tokens by the engine's rule for budget shaping and adherence metrics.
    count = any(b >= 0 for b in sampling.thinking_budgets)
    vocab = budget_vocab(tokenizer) if count else None
    requests = []
    for g, problem in enumerate(problems):
        budget = rng.choice(sampling.thinking_budgets)
        text = tokenizer.apply_chat_template([{"role": "user", "content": problem.prompt}],
                                             add_generation_prompt=True, thinking_budget=budget)
        prompt_ids = tokenizer.encode(text)
        opened = tokenizer.think_tags.ends_inside_thinking(text)
        for k in range(group_size):
            params = SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                    top_p=sampling.top_p, top_k=sampling.top_k, seed=rng.getrandbits(62))
            meta = {"problem": problem, "group_id": first_group_id + g, "thinking_budget": budget}
            controller = None
            if vocab is not None:
                controller = ThinkingBudgetController(vocab, budget, enforce=False, thinking_open=opened)
                meta["budget_counter"] = controller
            requests.append(Request(prompt_ids, params, request_id=(first_group_id + g, k), metadata=meta,
                                    controller=controller))
    trajs = engine.generate(requests)
    for traj in trajs:
        counter = traj.metadata.pop("budget_counter", None)
        if counter is not None:
            traj.metadata["thinking_tokens"] = counter.thinking_tokens
            traj.metadata["kept_budget"] = counter.kept_budget
    return trajs


def within_budget(traj: Trajectory) -> bool | None:
    """`ThinkingBudgetController.kept_budget` of a sampled response, recorded by `sample_groups`
    (None when the budget is unlimited or the thinking tokens were not counted)."""
    if traj.metadata.get("thinking_budget", -1) < 0 or "kept_budget" not in traj.metadata:
        return None
    return bool(traj.metadata["kept_budget"])


def judge_trajectories(trajs: list[Trajectory], tokenizer: TextTokenizer) -> None:
    """Set ``metadata["correct"]`` and ``reward_reason`` of each trajectory with its task's verifier."""
    for traj in trajs:
        problem: Problem = traj.metadata["problem"]
        score = score_response(task_for(problem.task), problem, traj.text, tokenizer.think_tags,
                               finished=traj.finish_reason == "stop")
        traj.metadata["correct"] = score.correct
        traj.reward_reason = score.reason


def score_trajectories(trajs: list[Trajectory], tokenizer: TextTokenizer, algo: AlgorithmSpec) -> None:
    """Set ``reward`` and ``reward_reason``: the rule reward (+1/-1), plus DAPO's soft overlong punishment, plus
    the budget shaping of ``algo.budget_reward`` (relative to each response's ``thinking_budget``)."""
    judge_trajectories(trajs, tokenizer)
    for traj in trajs:
        traj.reward = algo.correct_reward if traj.metadata["correct"] else algo.wrong_reward
    if algo.overlong_penalty and trajs:
        lengths = torch.tensor([len(t.response_ids) for t in trajs])
        penalty = soft_overlong_penalty(lengths, algo.max_response_len, algo.overlong_cache_len).tolist()
        for traj, p in zip(trajs, penalty, strict=True):
            traj.reward = float(traj.reward) + p
    if algo.budget_reward != "none" and trajs:
        if any("thinking_tokens" not in t.metadata for t in trajs):
            raise ValueError("budget_reward needs thinking-token counts: sample with finite thinking budgets")
        used = torch.tensor([int(t.metadata["thinking_tokens"]) for t in trajs])
        budgets = torch.tensor([int(t.metadata["thinking_budget"]) for t in trajs])
        if algo.budget_reward == "overlong":
            shaped = algo.budget_overlong_coef * budget_overlong_penalty(used, budgets, algo.budget_cache_frac)
        else:
            shaped = budget_penalty(used, budgets, algo.budget_alpha)
        for traj, p in zip(trajs, shaped.tolist(), strict=True):
            traj.reward = float(traj.reward) + p
            traj.metadata["budget_penalty"] = p


def _group_outcomes(trajs: list[Trajectory]) -> list[tuple[Problem, list[bool]]]:
    """(problem, correctness of each response) per group, in first-seen order."""
    groups: dict[int, tuple[Problem, list[bool]]] = {}
    for t in trajs:
        groups.setdefault(t.group_id, (t.metadata["problem"], []))[1].append(bool(t.metadata["correct"]))
    return list(groups.values())


def estimate_pass_rates(engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem], k: int,
                        sampling: SamplingSpec, seed: int = 0) -> dict[str, float]:
    """Pass rate of each problem under the engine's current policy: the fraction of ``k`` seeded samples
    (at ``sampling``'s temperature, length and thinking budgets) its verifier judges correct.

    Returns problem id -> rate in [0, 1] (a problem listed twice gets the mean over its 2k samples).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    trajs = sample_groups(engine, tokenizer, problems, k, sampling, seed=seed, first_group_id=0)
    judge_trajectories(trajs, tokenizer)
    solved: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in trajs:
        counts = solved[t.metadata["problem"].id]
        counts[0] += int(t.metadata["correct"])
        counts[1] += 1
    return {pid: right / total for pid, (right, total) in solved.items()}


def prefilter_problems(engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem], spec: PrefilterSpec,
                       sampling: SamplingSpec, seed: int = 0) -> FilterResult:
    """`estimate_pass_rates` with ``spec.k`` samples, then `filter_by_pass_rate` with ``spec``'s band.

    Call it before training (and before restoring a checkpoint: the same initial policy and seed
    give the same kept set). Raises ValueError when no problem is kept.
    """
    rates = estimate_pass_rates(engine, tokenizer, problems, spec.k, sampling, seed)
    result = filter_by_pass_rate(problems, rates, spec.low, spec.high, spec.min_variance)
    logger.info("prefilter kept %d of %d prompts (too hard %d, too easy %d, low variance %d; mean pass rate %.3f)",
                len(result.kept), len(problems), result.num_too_hard, result.num_too_easy, result.num_low_variance,
                result.mean_pass_rate)
    if not result.kept:
        raise ValueError(f"the prefilter kept none of {len(problems)} prompts (mean pass rate "
                         f"{result.mean_pass_rate:.3f}); widen data.prefilter low/high or lower min_variance")
    return result


def collect_rollout_batch(engine: LLMEngine, tokenizer: TextTokenizer, cursor: PromptSource,
                          algo: AlgorithmSpec, sampling: SamplingSpec, seed: int) -> RolloutBatch:
    """Sample and score until ``prompts_per_step`` groups are kept (DAPO dynamic sampling).

    With dynamic sampling, groups whose responses are all correct or all wrong carry no
    gradient under group-normalised advantages and are dropped; more prompts are sampled,
    for at most ``max_sampling_rounds`` rounds (then the step trains on what it has).
    ``cursor`` (any `PromptSource`) hears the outcome of every sampled group.
    """
    batch = RolloutBatch(trajectories=[])
    skipped_before = cursor.metrics().get(SKIPPED_TOTAL, 0)
    kept_groups = 0
    rounds = algo.max_sampling_rounds if algo.dynamic_sampling else 1
    for round_index in range(rounds):
        need = algo.prompts_per_step - kept_groups
        if need <= 0:
            break
        problems = cursor.take(need)
        trajs = sample_groups(engine, tokenizer, problems, algo.group_size, sampling,
                              seed=seed * 7919 + round_index, first_group_id=batch.num_groups_sampled)
        score_trajectories(trajs, tokenizer, algo)
        for problem, correct in _group_outcomes(trajs):
            cursor.observe(problem, correct)
        batch.num_rounds += 1
        batch.num_groups_sampled += len(problems)
        for t in trajs:
            batch.sampled_correct.append(bool(t.metadata["correct"]))
            batch.sampled_lengths.append(len(t.response_ids))
            kept_budget = within_budget(t)
            if kept_budget is not None:
                batch.sampled_within_budget.append(kept_budget)
            if "thinking_tokens" in t.metadata:
                batch.sampled_thinking_tokens.append(int(t.metadata["thinking_tokens"]))
            batch.reasons[t.reward_reason] = batch.reasons.get(t.reward_reason, 0) + 1
        if algo.dynamic_sampling:
            correct = torch.tensor([float(t.metadata["correct"]) for t in trajs])
            keep = group_has_variance(correct, torch.tensor([t.group_id for t in trajs])).tolist()
            dropped = len({t.group_id for t, k in zip(trajs, keep, strict=True) if not k})
            batch.num_groups_dropped += dropped
            trajs = [t for t, k in zip(trajs, keep, strict=True) if k]
            kept_groups += len(problems) - dropped
        else:
            kept_groups += len(problems)
        batch.trajectories += trajs
    batch.data_metrics = cursor.metrics()
    batch.num_prompts_skipped = int(batch.data_metrics.get(SKIPPED_TOTAL, 0) - skipped_before)
    return batch
