"""Groups of samples per prompt for RL: sample G responses per prompt, score them, keep the groups that teach
(DAPO dynamic sampling), and tell the prompt source how each group went.

Prompts come from a `thinkrl.rollout.sources.PromptSource` (a fixed `PromptCursor`, an `OnlineFilter` or a
`Curriculum`); every sampled group's correctness is reported back to it with ``observe``, including the groups
dynamic sampling drops. `estimate_pass_rates` and `prefilter_problems` are the offline side: k samples per
prompt with the current policy, then `filter_by_pass_rate`.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from thinkrl.records import Trajectory
from thinkrl.rl import group_has_variance
from thinkrl.rollout.requests import GenerateClient, SampleRequest, render_prompt, sample, sampling_params
from thinkrl.rollout.scoring import judge, score_trajectories
from thinkrl.rollout.sources import SKIPPED_TOTAL, FilterResult, PromptSource, filter_by_pass_rate
from thinkrl.rollout.specs import PrefilterSpec, RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)


@dataclass
class RolloutBatch:
    """What one RL step trains on, plus what it cost to get it.

    Fields:
        trajectories: kept responses (whole groups), scored.
        sampled: every response sampled for this batch, kept or not (for accuracy and length metrics).
        num_groups_sampled / num_groups_dropped: dynamic-sampling counts over all rounds.
        num_rounds: sampling rounds used.
        num_prompts_skipped: prompts the source skipped while filling this batch (online filter).
        data_metrics: the prompt source's `metrics()` after this batch (``data/...``,
            ``curriculum/<task>/...``), to log as they are.
        stream_metrics: the streaming rollout's metrics for this batch (``stream/...``; empty when synchronous),
            to log as they are.
    """

    trajectories: list[Trajectory]
    sampled: list[Trajectory] = field(default_factory=list)
    num_groups_sampled: int = 0
    num_groups_dropped: int = 0
    num_rounds: int = 0
    num_prompts_skipped: int = 0
    data_metrics: dict[str, float] = field(default_factory=dict)
    stream_metrics: dict[str, float] = field(default_factory=dict)


def sample_groups(client: GenerateClient, tokenizer: TextTokenizer, problems: list[Problem], group_size: int,
                  sampling: SamplingSpec, seed: int, first_group_id: int) -> list[Trajectory]:
    """G seeded samples for each problem, each prompt rendered with a budget drawn from
    ``sampling.thinking_budgets``; group ids count up from ``first_group_id``."""
    rng = random.Random(seed)
    items = []
    for g, problem in enumerate(problems):
        prompt = render_prompt(tokenizer, problem, rng.choice(sampling.thinking_budgets))
        for k in range(group_size):
            items.append(SampleRequest(prompt, sampling_params(sampling, rng.getrandbits(62)),
                                       group_id=first_group_id + g, request_id=(first_group_id + g, k)))
    return sample(client, tokenizer, items)


def within_budget(traj: Trajectory) -> bool | None:
    """``kept_budget`` of a response with a finite budget (None when the budget is unlimited or not counted)."""
    return None if traj.thinking_budget < 0 else traj.kept_budget


def _group_outcomes(trajs: list[Trajectory]) -> list[tuple[Problem, list[bool]]]:
    """(problem, correctness of each response) per group, in first-seen order."""
    groups: dict[int, tuple[Problem, list[bool]]] = {}
    for t in trajs:
        groups.setdefault(t.group_id, (t.problem, []))[1].append(bool(t.correct))  # type: ignore[arg-type]
    return list(groups.values())


def estimate_pass_rates(client: GenerateClient, tokenizer: TextTokenizer, problems: list[Problem], k: int,
                        sampling: SamplingSpec, seed: int = 0) -> dict[str, float]:
    """Pass rate of each problem under the engine's current policy: the fraction of ``k`` seeded samples
    (at ``sampling``'s temperature, length and thinking budgets) its verifier judges correct.

    Returns problem id -> rate in [0, 1] (a problem listed twice gets the mean over its 2k samples).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    trajs = sample_groups(client, tokenizer, problems, k, sampling, seed=seed, first_group_id=0)
    judge(trajs, tokenizer)
    solved: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in trajs:
        counts = solved[t.problem.id]  # type: ignore[union-attr]
        counts[0] += int(bool(t.correct))
        counts[1] += 1
    return {pid: right / total for pid, (right, total) in solved.items()}


def prefilter_problems(client: GenerateClient, tokenizer: TextTokenizer, problems: list[Problem],
                       spec: PrefilterSpec, sampling: SamplingSpec, seed: int = 0) -> FilterResult:
    """`estimate_pass_rates` with ``spec.k`` samples, then `filter_by_pass_rate` with ``spec``'s band.

    Call it before training (and before restoring a checkpoint: the same initial policy and seed
    give the same kept set). Raises ValueError when no problem is kept.
    """
    rates = estimate_pass_rates(client, tokenizer, problems, spec.k, sampling, seed)
    result = filter_by_pass_rate(problems, rates, spec.low, spec.high, spec.min_variance)
    logger.info("prefilter kept %d of %d prompts (too hard %d, too easy %d, low variance %d; mean pass rate %.3f)",
                len(result.kept), len(problems), result.num_too_hard, result.num_too_easy, result.num_low_variance,
                result.mean_pass_rate)
    if not result.kept:
        raise ValueError(f"the prefilter kept none of {len(problems)} prompts (mean pass rate "
                         f"{result.mean_pass_rate:.3f}); widen data.prefilter low/high or lower min_variance")
    return result


def collect_rollout_batch(client: GenerateClient, tokenizer: TextTokenizer, source: PromptSource,
                          rollout: RolloutSpec, sampling: SamplingSpec, reward: RewardSpec, seed: int) -> RolloutBatch:
    """Sample and score until ``rollout.prompts_per_step`` groups are kept (DAPO dynamic sampling).

    With dynamic sampling, groups whose responses are all correct or all wrong carry no gradient under
    group-normalised advantages and are dropped; more prompts are sampled, for at most ``max_sampling_rounds``
    rounds (then the step trains on what it has). ``source`` hears the outcome of every sampled group.
    """
    batch = RolloutBatch(trajectories=[])
    skipped_before = source.metrics().get(SKIPPED_TOTAL, 0)
    kept_groups = 0
    rounds = rollout.max_sampling_rounds if rollout.dynamic_sampling else 1
    for round_index in range(rounds):
        need = rollout.prompts_per_step - kept_groups
        if need <= 0:
            break
        problems = source.take(need)
        trajs = sample_groups(client, tokenizer, problems, rollout.group_size, sampling,
                              seed=seed * 7919 + round_index, first_group_id=batch.num_groups_sampled)
        score_trajectories(trajs, tokenizer, reward)
        for problem, correct in _group_outcomes(trajs):
            source.observe(problem, correct)
        batch.num_rounds += 1
        batch.num_groups_sampled += len(problems)
        batch.sampled += trajs
        if rollout.dynamic_sampling:
            scores = torch.tensor([float(bool(t.correct)) for t in trajs])
            keep = group_has_variance(scores, torch.tensor([t.group_id for t in trajs])).tolist()
            dropped = len({t.group_id for t, k in zip(trajs, keep, strict=True) if not k})
            batch.num_groups_dropped += dropped
            trajs = [t for t, k in zip(trajs, keep, strict=True) if k]
            kept_groups += len(problems) - dropped
        else:
            kept_groups += len(problems)
        batch.trajectories += trajs
    batch.data_metrics = source.metrics()
    batch.num_prompts_skipped = int(batch.data_metrics.get(SKIPPED_TOTAL, 0) - skipped_before)
    return batch


def rollout_metrics(batch: RolloutBatch) -> dict[str, float]:
    """The step's sampling metrics: reward of the kept responses; accuracy, lengths, truncation, thinking tokens
    and budget adherence over every sampled one; group counts. With nothing sampled since the last step (a
    streaming batch taken wholly from groups buffered earlier) the per-sample metrics are left out, not logged as 0."""
    kept, sampled = batch.trajectories, batch.sampled
    row: dict[str, float] = {
        "reward": sum(float(t.reward or 0.0) for t in kept) / max(1, len(kept)),  # (kept ones are scored)
        "groups_sampled": batch.num_groups_sampled,
        "groups_dropped": batch.num_groups_dropped,
        "groups_kept_trained": len({t.group_id for t in kept}),
        "sampling_rounds": batch.num_rounds,
        "prompts_skipped": batch.num_prompts_skipped,
    }
    if not sampled:
        return row
    n, lengths = len(sampled), [len(t.response_ids) for t in sampled]
    row.update({
        "accuracy": sum(bool(t.correct) for t in sampled) / n,
        "response_length_mean": sum(lengths) / n,
        "response_length_max": max(lengths),
        "truncated_frac": sum(t.reward_reason == "truncated" for t in sampled) / n,
        "thinking_tokens_mean": sum(int(t.thinking_tokens or 0) for t in sampled) / n,
    })
    kept_budget = [k for t in sampled if (k := within_budget(t)) is not None]
    if kept_budget:
        row["budget_adherence"] = sum(kept_budget) / len(kept_budget)
    return row
