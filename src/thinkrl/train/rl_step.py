"""One RL update on a kept rollout: pack → values → advantages → (reference, proximal log-probs) → actor update →
critic update. Pure training: it never talks to the engine (the loop pushes the weights afterwards)."""

from __future__ import annotations

import random
from dataclasses import replace

import torch

from thinkrl.model import CausalLM
from thinkrl.records import Trajectory
from thinkrl.rl import ADVANTAGE_ESTIMATORS, AdvantageInputs
from thinkrl.train.actor import Actor
from thinkrl.train.batching import PackedBatch, pack_trajectories
from thinkrl.train.critic import Critic, explained_variance
from thinkrl.train.specs import AlgorithmSpec


def compute_advantages(batch: PackedBatch, group_ids: torch.Tensor, algo: AlgorithmSpec) -> PackedBatch:
    """``batch`` with ``advantages`` and ``returns`` from the registered estimator (``algo.advantage_estimator``).

    ``group_ids``: (S,) long. ``batch.old_values`` (the critic's values, or None) are the estimator's ``values``;
    gamma is 1.
    """
    inputs = AdvantageInputs(rewards=batch.rewards, response_mask=batch.response_mask, group_ids=group_ids,
                             values=batch.old_values, lam=algo.lam, lam_critic=algo.lam_critic,
                             length_adaptive_alpha=algo.length_adaptive_alpha,
                             whiten_advantages=algo.whiten_advantages)  # estimators that whiten read it (gae)
    out = ADVANTAGE_ESTIMATORS.get(algo.advantage_estimator)(inputs)
    return replace(batch, advantages=out.advantages, returns=out.returns)


def prepare_batch(trajs: list[Trajectory], actor: Actor, critic: Critic | None,
                  ref_model: CausalLM | None) -> PackedBatch:
    """The packed training batch of scored trajectories, with everything the update reads: critic values,
    advantages, reference log-probs (KL on), and for decoupled PPO the proximal log-probs in ``old_logprobs``
    with the engine's in ``behaviour_logprobs`` (when the update takes them from its own forward, NaN on the loss
    tokens until it has run)."""
    algo = actor.algo
    batch = pack_trajectories(trajs)
    if critic is not None:
        batch = replace(batch, old_values=critic.values(batch))
    batch = compute_advantages(batch, torch.tensor([t.group_id for t in trajs]), algo)
    if ref_model is not None:
        batch = replace(batch, ref_logprobs=actor.logprobs(batch, model=ref_model))  # each rank scores its share
    if algo.off_policy == "decoupled":
        if actor.proximal_from_update:  # NaN until the update's own forward writes them (`Actor.proximal_from_update`)
            proximal = torch.where(batch.response_mask, float("nan"), 0.0)
        else:
            proximal = actor.logprobs(batch)
        batch = replace(batch, behaviour_logprobs=batch.old_logprobs, old_logprobs=proximal)
    return batch


def logprob_gap(batch: PackedBatch, current_version: int | None = None) -> dict[str, float]:
    """Mean and max |trainer log-prob − engine log-prob| over the sampled tokens of weight version
    ``current_version`` (the actor's current weights; None: the batch's newest version): ``old_logprobs`` (the
    actor's, before the update) against ``behaviour_logprobs`` (the engine's). Both come from the same weights, so in
    fp32 the gap is numerical noise; a large one means a mismatch. (A streaming batch may hold no token of the
    current version: then there is nothing to compare.)"""
    assert batch.behaviour_logprobs is not None and batch.token_versions is not None
    if current_version is None:
        current_version = int(batch.token_versions[batch.response_mask].max())
    current = batch.response_mask & (batch.token_versions == current_version)
    gap = (batch.old_logprobs - batch.behaviour_logprobs).abs()[current]
    if gap.numel() == 0:
        return {}
    return {"logprob_gap_mean": float(gap.mean()), "logprob_gap_max": float(gap.max())}


def update(batch: PackedBatch, actor: Actor, critic: Critic | None, *, seed: int, step: int,
           current_version: int | None = None) -> dict[str, float]:
    """The actor's update, then the critic's, on ``batch``; returns the step's training metrics. ``current_version``:
    the weight version of the actor before the update (for `logprob_gap`; None: the batch's newest)."""
    stats = actor.update(batch, random.Random(seed * 1_000_003 + step))
    row = {"loss": stats.loss, "clip_frac": stats.clip_frac, "approx_kl": stats.approx_kl,
           "entropy": stats.entropy, "grad_norm": stats.grad_norm}
    if actor.algo.positive_lm_coef > 0:
        row["positive_nll"] = stats.positive_nll
    if batch.behaviour_logprobs is not None:
        row["is_weight_mean"] = stats.is_weight_mean
        row.update(logprob_gap(batch, current_version))
    if critic is not None:
        critic_stats = critic.update(batch, epochs=actor.algo.ppo_epochs, num_mini_batches=actor.algo.num_mini_batches,
                                     rng=random.Random(seed * 1_000_033 + step))
        values, returns, mask = batch.old_values, batch.returns, batch.response_mask
        assert values is not None and returns is not None  # critic.update refuses a batch without them
        row.update(value_loss=critic_stats.value_loss, value_clip_frac=critic_stats.value_clip_frac,
                   value_mse=critic_stats.value_mse, critic_grad_norm=critic_stats.grad_norm,
                   explained_variance=explained_variance(values, returns, mask),
                   value_mean=float((values * mask).sum() / max(1, batch.num_tokens)))
    return row
