"""VAPO value pretraining: fit the critic to Monte-Carlo returns of the fixed cold-start policy before RL.

VAPO (Yue et al. 2025, arXiv 2504.05118, §3.1) observes that a critic initialised from
the policy (or with a fresh head) starts with values unrelated to the reward, and that
the advantages it produces early in training mislead the policy ("value
initialisation bias"). Before the first policy update it therefore samples responses
from the fixed SFT policy and regresses the critic on their Monte-Carlo returns
(GAE with lambda = 1 and gamma = 1: the outcome reward, on every token), until the
critic explains the returns well enough.

Each pretraining step samples a fresh batch (``prompts_per_step`` × ``group_size``,
no dynamic sampling, from its own prompt order so the RL run's prompts are unchanged),
measures the explained variance of the current critic on it *before* fitting it (an
honest, held-out number) and stops when the mean of the last ``EV_WINDOW`` (3) such
numbers reaches ``target_ev`` (one batch of a few prompts is a noisy estimate). Otherwise the batch
joins the pool of everything sampled so far — the policy is fixed, so every sample stays
a valid Monte-Carlo target — and the critic takes ``updates_per_step`` optimizer steps of
the unclipped value loss, each on a mini-batch of ``prompts_per_step × group_size``
responses drawn from the pool. The policy is never updated.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field, replace

import torch

from thinkrl.model.value_head import ValueModel
from thinkrl.records import Trajectory
from thinkrl.rl import ADVANTAGE_ESTIMATORS, AdvantageInputs
from thinkrl.rollout import GenerateClient, PromptSource, RewardSpec, RolloutSpec, SamplingSpec, collect_rollout_batch
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.batching import PackedBatch, pack_trajectories
from thinkrl.train.critic import compute_values, explained_variance, update_critic
from thinkrl.train.metrics import MetricsLogger

logger = logging.getLogger(__name__)

EV_WINDOW = 3
"""Pretraining stops when the mean explained variance of the last this-many fresh batches reaches the target."""


@dataclass
class ValuePretrainResult:
    """What value pretraining did.

    Fields:
        steps: sampled batches (each measured; all but a final successful one were fitted).
        explained_variance: per step, the critic's explained variance on that fresh batch
            before fitting it (NaN when the batch's returns had no variance).
        value_loss: per fitted step, the mean value loss.
        reached_target: the mean of the last ``EV_WINDOW`` measurements reached ``target_ev``.
    """

    steps: int = 0
    explained_variance: list[float] = field(default_factory=list)
    value_loss: list[float] = field(default_factory=list)
    reached_target: bool = False


def monte_carlo_batch(trajs: list[Trajectory], critic: ValueModel, micro_batch_tokens: int) -> PackedBatch:
    """Pack scored trajectories with the critic's current values and Monte-Carlo returns (gamma = lambda = 1)."""
    batch = pack_trajectories(trajs)
    values = compute_values(critic, batch, micro_batch_tokens)
    inputs = AdvantageInputs(rewards=batch.rewards, response_mask=batch.response_mask,
                             group_ids=torch.tensor([t.group_id for t in trajs]), values=values,
                             gamma=1.0, lam=1.0, lam_critic=1.0)
    out = ADVANTAGE_ESTIMATORS.get("gae")(inputs)
    return replace(batch, old_values=values, returns=out.returns)


def pretrain_value(critic: ValueModel, optimizer: torch.optim.Optimizer, client: GenerateClient,
                   tokenizer: TextTokenizer, cursor: PromptSource, rollout: RolloutSpec, sampling: SamplingSpec,
                   reward: RewardSpec, *, max_steps: int, target_ev: float, updates_per_step: int,
                   micro_batch_tokens: int, grad_clip: float | None, seed: int,
                   metrics: MetricsLogger | None = None) -> ValuePretrainResult:
    """Fit ``critic`` to Monte-Carlo returns of the engine's (fixed) policy; see the module docstring.

    Args:
        critic, optimizer: the value model and its optimizer (the RL run's own).
        client, tokenizer: sample from the engine's current policy, which is not changed.
        cursor: prompt order for pretraining (use one separate from the RL cursor).
        rollout, sampling, reward: batch sizes, sampling settings and rewards of the RL run; dynamic
            sampling is switched off (every response is a valid regression target).
        max_steps: most batches to sample (>= 1).
        target_ev: stop once the mean explained variance of the last ``EV_WINDOW`` fresh batches reaches this.
        updates_per_step: critic optimizer steps after each sampled batch (>= 1).
        micro_batch_tokens, grad_clip: as for the RL update.
        seed: seeds the sampling and the mini-batch draws.
        metrics: if given, each step logs ``value_pretrain/*`` at its pretraining step number.
    """
    if max_steps < 1 or updates_per_step < 1:
        raise ValueError(f"max_steps ({max_steps}) and updates_per_step ({updates_per_step}) must be >= 1")
    rollout = rollout.model_copy(update={"dynamic_sampling": False})
    result, pool, rng = ValuePretrainResult(), [], random.Random(seed)
    for step in range(1, max_steps + 1):
        batch = collect_rollout_batch(client, tokenizer, cursor, rollout, sampling, reward, seed=seed * 1009 + step)
        fresh = monte_carlo_batch(batch.trajectories, critic, micro_batch_tokens)
        assert fresh.old_values is not None and fresh.returns is not None  # monte_carlo_batch sets both
        ev = explained_variance(fresh.old_values, fresh.returns, fresh.response_mask)
        result.explained_variance.append(ev)
        recent = [x for x in result.explained_variance[-EV_WINDOW:] if math.isfinite(x)]
        result.steps = step
        result.reached_target = len(recent) == min(step, EV_WINDOW) and sum(recent) / len(recent) >= target_ev
        row = {"value_pretrain/explained_variance": ev,
               "value_pretrain/accuracy": sum(bool(t.correct) for t in batch.sampled) / max(1, len(batch.sampled))}
        pool += batch.trajectories
        if not result.reached_target:
            losses = [fit_on_pool(critic, optimizer, rng.sample(pool, min(len(pool), len(batch.trajectories))),
                                  micro_batch_tokens, grad_clip, rng) for _ in range(updates_per_step)]
            result.value_loss.append(sum(losses) / len(losses))
            row["value_pretrain/value_loss"] = result.value_loss[-1]
        if metrics is not None:
            metrics.log(step, row)
        logger.info("value pretraining step %d: explained variance %.3f", step, ev)
        if result.reached_target:
            break
    return result


def fit_on_pool(critic: ValueModel, optimizer: torch.optim.Optimizer, trajs: list[Trajectory],
                micro_batch_tokens: int, grad_clip: float | None, rng: random.Random) -> float:
    """One unclipped value-loss optimizer step on ``trajs`` (Monte-Carlo targets); returns the loss."""
    batch = monte_carlo_batch(trajs, critic, micro_batch_tokens)
    stats = update_critic(critic, optimizer, batch, epochs=1, num_mini_batches=1, micro_batch_tokens=micro_batch_tokens,
                          clip_range=None, grad_clip=grad_clip, rng=rng)
    return stats.value_loss
