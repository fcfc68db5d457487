"""The critic of PPO/VAPO in the RL loop: build it, read its values, fit it with the clipped value loss.

Values are read at the same packed positions as the policy's log-probs
(``PackedBatch.response_index``): the value of response token t is ``V(s_t)``, the
state that has seen the prompt and tokens < t, i.e. the state the policy acted in.
The critic has its own AdamW and learning rate (``critic.lr``; VAPO: 2x the
actor's) and is trained on the same mini-batches as the policy, with the PPO clipped
value loss (`thinkrl.rl.value_loss`) against the targets of the advantage estimator
(``PackedBatch.returns``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from thinkrl.model import CausalLM
from thinkrl.model.value_head import ValueModel, load_value_model
from thinkrl.rl import masked_var, value_loss
from thinkrl.train.batching import PackedBatch, split_micro_batches
from thinkrl.train.common import clipped_step
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import CriticSpec, OptimSpec

if TYPE_CHECKING:  # torch.distributed is imported only where a run is sharded
    from thinkrl.train.distributed import DataParallel

_MIN_VARIANCE = 1e-8


class CriticNonFiniteError(FloatingPointError):
    """The value loss or the critic's gradient norm was NaN/inf; the step was not applied."""


@dataclass
class CriticStats:
    """Token-weighted means over one critic update (plain floats for logging).

    Fields:
        value_loss: mean clipped value loss per optimizer step.
        value_clip_frac: share of tokens where the clipped error was the larger one.
        value_mse: mean squared error of the values before clipping.
        grad_norm: mean gradient norm (before clipping) over optimizer steps.
        num_tokens: response tokens the loss saw, summed over epochs.
    """

    value_loss: float = 0.0
    value_clip_frac: float = 0.0
    value_mse: float = 0.0
    grad_norm: float = 0.0
    num_tokens: int = 0


def build_critic(policy: CausalLM, path: str | None = None) -> ValueModel:
    """The critic: ``path`` (a value-model or policy folder) if given, else a copy of ``policy``.

    Both ways the value head of a folder without one is zero, so V starts at 0. The critic
    lives on the policy's device and in its dtype.
    """
    if path is None:
        return ValueModel.from_policy(policy)
    return load_value_model(path, device=policy.device, dtype=policy.dtype)


def value_positions(critic: ValueModel, batch: PackedBatch) -> torch.Tensor:
    """(S, R) float32 values at the states in which each response token was sampled, with grad.

    Entries past a sequence's response length are garbage (read position 0); mask them.
    """
    out = critic(batch.input_ids, batch.position_ids, batch.cu_seqlens)
    return out.values[batch.response_index]  # [S, R]


@torch.no_grad()
def compute_values(critic: ValueModel, batch: PackedBatch, micro_batch_tokens: int) -> torch.Tensor:
    """(S, R) float32 critic values of ``batch`` on the CPU, 0 on padding (micro-batched, no grad)."""
    out = torch.zeros(batch.response_ids.shape, dtype=torch.float32)
    for part in split_micro_batches(batch.seq_lengths, micro_batch_tokens):
        sub = batch.select(part).to(critic.device)
        values = value_positions(critic, sub).cpu()
        out[part, : values.shape[1]] = torch.where(sub.response_mask.cpu(), values, 0.0)
    return out


def explained_variance(values: torch.Tensor, returns: torch.Tensor, response_mask: torch.Tensor) -> float:
    """``1 - Var[G - V] / Var[G]`` over the valid tokens: 1 is perfect, 0 no better than a constant.

    Args:
        values: (S, R) float — critic predictions.
        returns: (S, R) float — value targets.
        response_mask: (S, R) bool — True for tokens that count.

    Returns:
        a float; NaN when the returns have no variance (fewer than 2 valid tokens or all equal).
    """
    if values.shape != returns.shape or returns.shape != response_mask.shape:
        raise ValueError(f"values {tuple(values.shape)}, returns {tuple(returns.shape)} and response_mask "
                         f"{tuple(response_mask.shape)} must have the same shape")
    if int(response_mask.sum()) < 2:
        return float("nan")
    target_var = float(masked_var(returns.float(), response_mask))
    if target_var <= _MIN_VARIANCE:  # constant returns (up to rounding): nothing to explain
        return float("nan")
    return 1.0 - float(masked_var(returns.float() - values.float(), response_mask)) / target_var


def update_critic(critic: ValueModel, optimizer: torch.optim.Optimizer, batch: PackedBatch, *,
                  epochs: int, num_mini_batches: int, micro_batch_tokens: int, clip_range: float | None,
                  grad_clip: float | None, rng: random.Random,
                  data_parallel: DataParallel | None = None) -> CriticStats:
    """``epochs`` × ``num_mini_batches`` critic steps of the clipped value loss on ``batch``.

    ``batch.returns`` are the targets and ``batch.old_values`` the values at sampling time
    (the centre of the clip). The loss is token-mean over each mini-batch (global count, so
    micro-batching does not change it). Raises `CriticNonFiniteError` before the optimizer
    step on a NaN/inf loss or gradient norm. Sharded (``data_parallel``, FSDP2): as `Actor.update` — every rank
    holds the same batch and RNG and runs its share of each mini-batch under the global token count, its loss
    multiplied by the number of ranks (FSDP2 averages gradients); the statistics are summed over ranks.
    """
    if batch.returns is None or batch.old_values is None:
        raise ValueError("update_critic needs batch.returns and batch.old_values")
    critic.train()
    stats, sums, norms = CriticStats(), {"loss": 0.0, "clip": 0.0, "mse": 0.0}, []
    for _ in range(epochs):
        order = list(range(batch.num_sequences))
        rng.shuffle(order)
        for mini in (order[i::num_mini_batches] for i in range(num_mini_batches)):
            if not mini:
                continue
            mini_batch = batch.select(mini)
            num_tokens = max(1, mini_batch.num_tokens)
            optimizer.zero_grad(set_to_none=True)
            parts = (split_micro_batches(mini_batch.seq_lengths, micro_batch_tokens) if data_parallel is None
                     else data_parallel.micro_batches(mini_batch.seq_lengths, micro_batch_tokens))
            for part in parts:
                # An empty part (data parallel) is a zero-weight step on one sequence: the collectives line up.
                sub = mini_batch.select(part or [0]).to(critic.device)
                out = critic(sub.input_ids, sub.position_ids, sub.cu_seqlens)
                assert sub.old_values is not None and sub.returns is not None  # checked on batch; select keeps them
                loss, metrics = value_loss(out.values[sub.response_index], sub.old_values, sub.returns,
                                           sub.response_mask, clip_range=clip_range, num_tokens=num_tokens)
                loss = loss + out.aux_loss * (len(part) / len(mini))
                if not torch.isfinite(loss) and data_parallel is None:  # (sharded: the global norm catches it)
                    optimizer.zero_grad(set_to_none=True)
                    raise CriticNonFiniteError("value loss is not finite; the critic step was not applied")
                scale = 1.0 if data_parallel is None else data_parallel.loss_scale
                (loss * (scale if part else 0.0)).backward()
                if not part:
                    continue
                n = int(sub.response_mask.sum())
                sums["loss"] += float(loss.detach())
                sums["clip"] += float(metrics.clip_frac) * n
                sums["mse"] += float(metrics.mse) * n
                stats.num_tokens += n
            norms.append(clipped_step(optimizer, critic.parameters(), grad_clip, CriticNonFiniteError,
                                      "critic gradient"))
    if data_parallel is not None:  # this rank's sums -> the global batch's
        totals = data_parallel.all_reduce_sum([sums["loss"], sums["clip"], sums["mse"], stats.num_tokens])
        sums = dict(zip(["loss", "clip", "mse"], totals[:3], strict=True))
        stats.num_tokens = round(totals[3])
    tokens = max(1, stats.num_tokens)
    stats.value_loss = sums["loss"] / max(1, len(norms))
    stats.value_clip_frac, stats.value_mse = sums["clip"] / tokens, sums["mse"] / tokens
    stats.grad_norm = sum(norms) / max(1, len(norms))
    return stats


@dataclass
class Critic:
    """The value model of a PPO/VAPO run with its own optimizer and learning-rate schedule.

    Fields:
        model: the value model.
        optimizer / scheduler: its AdamW (``critic.lr``, default ``optim.lr``) and schedule.
        spec: the ``critic`` section.
        micro_batch_tokens / grad_clip: as for the actor.
        data_parallel: this rank's group when ``model`` is sharded with FSDP2 (None: one process).
    """

    model: ValueModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    spec: CriticSpec
    micro_batch_tokens: int
    grad_clip: float | None
    data_parallel: DataParallel | None = None

    def values(self, batch: PackedBatch) -> torch.Tensor:
        """(S, R) values at every response token (no grad). Sharded: each rank computes its share of the sequences
        and the rows are all-gathered (`score_across_ranks`)."""
        if self.data_parallel is not None:
            from thinkrl.train.distributed import score_across_ranks

            return score_across_ranks(batch, self.data_parallel, self.micro_batch_tokens,
                                      lambda sub: compute_values(self.model, sub, 1 << 40))  # one forward each
        return compute_values(self.model, batch, self.micro_batch_tokens)

    def update(self, batch: PackedBatch, *, epochs: int, num_mini_batches: int, rng: random.Random) -> CriticStats:
        """`update_critic` with the section's value clip, then one scheduler step."""
        stats = update_critic(self.model, self.optimizer, batch, epochs=epochs, num_mini_batches=num_mini_batches,
                              micro_batch_tokens=self.micro_batch_tokens, clip_range=self.spec.value_clip,
                              grad_clip=self.grad_clip, rng=rng, data_parallel=self.data_parallel)
        self.scheduler.step()
        return stats

def make_critic(spec: CriticSpec, policy: CausalLM, optim: OptimSpec, steps: int, micro_batch_tokens: int,
                data_parallel: DataParallel | None = None, offload: bool = False) -> Critic:
    """The critic of ``spec`` (a copy of ``policy`` — give the unsharded one — or ``spec.path``), sharded with
    FSDP2 like the actor when ``data_parallel`` is set, its AdamW at ``spec.lr`` (default ``optim.lr``) and a
    schedule over ``steps``."""
    model = build_critic(policy, spec.path)
    if data_parallel is not None:
        from thinkrl.train.distributed import shard_module

        shard_module(model, model.backbone.model.layers, data_parallel, offload=offload)
    optimizer = build_optimizer(model.parameters(), optim, lr=spec.lr or optim.lr)
    return Critic(model, optimizer, build_scheduler(optimizer, optim, steps), spec, micro_batch_tokens,
                  optim.grad_clip, data_parallel)
