"""The actor: the policy being trained, its optimizer and schedule, its log-probs and its update.

This is the one part of the RL system that holds trainable policy weights (and so the part FSDP2 will wrap).
The update is ``ppo_epochs`` × ``num_mini_batches`` optimizer steps of the recipe's registered policy loss
(``algorithm.policy_loss``, `thinkrl.rl.POLICY_LOSSES`): clip-higher, dual-clip and the recipe's aggregation over
the whole mini-batch (micro-batch gradients add up to the mini-batch loss), optional KL to a reference policy and
VAPO's positive-example LM loss. With ``algorithm.off_policy: decoupled`` the ratio is taken against the actor's own
log-probs before the update (the proximal policy) and each token is weighted by proximal / behaviour.
The engine never sees these weights except through `weights` (pushed by the loop after each step).
With ``data_parallel`` set (FSDP2, `thinkrl.train.distributed`), every rank gets the same global batch and RNG and
runs its share of each mini-batch under the global mini-batch's loss normalisers, so the summed gradients equal
the 1-rank gradient.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from thinkrl.model import CausalLM
from thinkrl.rl import POLICY_LOSSES, PolicyLossInputs, PolicyLossMetrics, agg_loss, kl_penalty, positive_lm_loss
from thinkrl.train.batching import PackedBatch, split_micro_batches
from thinkrl.train.common import ResponseForward, clipped_step
from thinkrl.train.fused_forward import fused_forward_responses
from thinkrl.train.specs import AlgorithmSpec

if TYPE_CHECKING:  # torch.distributed is imported only where a run is sharded
    from thinkrl.train.distributed import DataParallel


_ONE_FORWARD = 1 << 40
"""A token budget no micro-batch reaches: score a (rank's) micro-batch in exactly one forward."""


class NonFiniteError(FloatingPointError):
    """A loss or gradient was NaN/inf; the optimizer step was not taken."""


@dataclass
class UpdateStats:
    """Token-weighted means over one update's micro-batches (plain floats for logging)."""

    loss: float = 0.0
    clip_frac: float = 0.0
    approx_kl: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0
    positive_nll: float = 0.0
    is_weight_mean: float = 1.0
    num_tokens: int = 0


@dataclass
class MicroBatchLoss:
    """The loss of one micro-batch and what is logged from it.

    Fields:
        loss: () float32 with grad — policy loss (+ KL) (+ mu * positive-example NLL) + MoE aux loss.
        forward: the policy's forward on the micro-batch.
        metrics: the policy loss metrics.
        positive_nll_sum: () detached — summed NLL of the correct responses' tokens (0 when off).
    """

    loss: torch.Tensor
    forward: ResponseForward
    metrics: PolicyLossMetrics
    positive_nll_sum: torch.Tensor


@torch.no_grad()
def batch_logprobs(model: CausalLM, batch: PackedBatch, micro_batch_tokens: int, temperature: float) -> torch.Tensor:
    """(S, R) float32 log-probs of the response tokens under ``model`` (no grad), micro-batched; 0 on padding."""
    out = torch.zeros_like(batch.old_logprobs)
    for part in split_micro_batches(batch.seq_lengths, micro_batch_tokens):
        sub = batch.select(part).to(model.device)
        out[part, : sub.response_ids.shape[1]] = fused_forward_responses(model, sub, temperature).logprobs.cpu()
    return out


def _agg_normalisers(algo: AlgorithmSpec, num_tokens: int, num_sequences: int,
                     max_response_len: int) -> dict[str, int]:
    """Global denominators of the mini-batch, so micro-batch gradients add up to the mini-batch loss."""
    if algo.loss_agg_mode == "token-mean":
        return {"num_tokens": num_tokens}
    if algo.loss_agg_mode == "seq-mean-token-sum-norm":
        return {"num_sequences": num_sequences, "max_response_len": max_response_len}
    return {"num_sequences": num_sequences}


@dataclass
class Actor:
    """The trained policy and how it learns.

    Fields:
        model: the policy (trainable).
        optimizer / scheduler: its AdamW and learning-rate schedule.
        algo: the ``algorithm`` section (loss, clip ranges, epochs, mini-batches...).
        micro_batch_tokens: token budget of one forward/backward.
        grad_clip: global gradient-norm clip (None: off).
        temperature: the sampling temperature (log-probs are taken at it, as the engine's are).
        max_response_len: the normaliser of "seq-mean-token-sum-norm" (Dr. GRPO's constant).
        data_parallel: this rank's data-parallel group when ``model`` is sharded with FSDP2 (None: one process).
    """

    model: CausalLM
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    algo: AlgorithmSpec
    micro_batch_tokens: int
    grad_clip: float | None
    temperature: float
    max_response_len: int
    data_parallel: DataParallel | None = None

    def weights(self) -> list[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` pairs of the policy: what is pushed to the engine after each update (sharded: the
        full tensors, gathered on every rank)."""
        if self.data_parallel is not None:
            from thinkrl.train.distributed import full_weights

            return full_weights(self.model)
        return [(name, param.detach()) for name, param in self.model.named_parameters()]

    @property
    def proximal_from_update(self) -> bool:
        """Decoupled PPO takes its proximal log-probs from the update's own forward, detached, instead of a scoring
        pass before it: the same values when the batch gets exactly one optimizer step (one epoch, one mini-batch) in
        one process (ratio 1, the plain policy gradient, as TRL and verl do on-policy). `update` writes them into
        ``batch.old_logprobs`` as it goes, for `logprob_gap`."""
        return self.algo.ppo_epochs * self.algo.num_mini_batches == 1 and self.data_parallel is None

    def logprobs(self, batch: PackedBatch, model: CausalLM | None = None) -> torch.Tensor:
        """(S, R) log-probs of ``batch``'s response tokens under the current policy, or under ``model`` (the KL
        reference policy, sharded like the actor), no grad. Sharded: each rank scores its share of the sequences and
        the rows are all-gathered (`score_across_ranks`)."""
        model = self.model if model is None else model
        if self.data_parallel is not None:
            from thinkrl.train.distributed import score_across_ranks

            return score_across_ranks(batch, self.data_parallel, self.micro_batch_tokens, lambda sub: batch_logprobs(
                model, sub, _ONE_FORWARD, self.temperature))
        return batch_logprobs(model, batch, self.micro_batch_tokens, self.temperature)

    def micro_batch_loss(self, sub: PackedBatch, norm: dict[str, int], num_correct_tokens: int,
                         share: float) -> MicroBatchLoss:
        """Loss of one micro-batch of a mini-batch (``norm``: the mini-batch's global denominators;
        ``num_correct_tokens``: valid tokens of its correct responses; ``share``: its fraction of the sequences)."""
        algo = self.algo
        fwd = fused_forward_responses(self.model, sub, self.temperature)  # LM head fused, response positions only
        proximal = sub.behaviour_logprobs is not None and self.proximal_from_update
        loss, metrics = POLICY_LOSSES.get(algo.policy_loss)(PolicyLossInputs(
            fwd.logprobs, fwd.logprobs.detach() if proximal else sub.old_logprobs, sub.advantages, sub.response_mask,
            eps_low=algo.eps_low, eps_high=algo.eps_high, dual_clip=algo.dual_clip, agg_mode=algo.loss_agg_mode,
            behaviour_logprobs=sub.behaviour_logprobs, behaviour_is_cap=algo.behaviour_is_cap, **norm))
        if algo.kl_coef > 0 and sub.ref_logprobs is not None:
            kl = kl_penalty(fwd.logprobs, sub.ref_logprobs, algo.kl_kind)
            loss = loss + algo.kl_coef * agg_loss(kl, sub.response_mask, algo.loss_agg_mode, **norm)
        nll_sum = torch.zeros((), device=loss.device)
        if algo.positive_lm_coef > 0 and num_correct_tokens > 0:
            lm_loss, _ = positive_lm_loss(fwd.logprobs, sub.response_mask, sub.is_correct, "token-mean",
                                          num_tokens=num_correct_tokens)
            loss = loss + algo.positive_lm_coef * lm_loss
            nll_sum = lm_loss.detach() * num_correct_tokens
        return MicroBatchLoss(loss + fwd.aux_loss * share, fwd, metrics, nll_sum)

    def update(self, batch: PackedBatch, rng: random.Random) -> UpdateStats:
        """``ppo_epochs`` × ``num_mini_batches`` optimizer steps on ``batch`` (then one scheduler step).

        Raises `NonFiniteError` (before ``optimizer.step``) on a NaN/inf loss or gradient norm.
        """
        algo, device = self.algo, self.model.device
        stats = UpdateStats()
        sums = {"loss": 0.0, "clip": 0.0, "kl": 0.0, "ent": 0.0, "nll": 0.0, "is": 0.0, "correct_tokens": 0}
        grad_norms = []
        for _ in range(algo.ppo_epochs):
            order = list(range(batch.num_sequences))
            rng.shuffle(order)
            for mini in (order[i :: algo.num_mini_batches] for i in range(algo.num_mini_batches)):
                if not mini:
                    continue
                mini_batch = batch.select(mini)
                norm = _agg_normalisers(algo, max(1, mini_batch.num_tokens), len(mini), self.max_response_len)
                correct_tokens = int((mini_batch.response_mask & mini_batch.is_correct[:, None]).sum())
                self.optimizer.zero_grad(set_to_none=True)
                for part in self._micro_batches(mini_batch):
                    # An empty part (data parallel) is a zero-weight step on one sequence: collectives line up.
                    sub = mini_batch.select(part or [0]).to(device)
                    micro = self.micro_batch_loss(sub, norm, correct_tokens, len(part) / len(mini))
                    if part and sub.behaviour_logprobs is not None and self.proximal_from_update:
                        rows = [mini[i] for i in part]  # the proximal log-probs the loss used, for logprob_gap
                        batch.old_logprobs[rows, : sub.response_ids.shape[1]] = micro.forward.logprobs.detach().cpu()
                    if not torch.isfinite(micro.loss) and self.data_parallel is None:  # (sharded: the global
                        self.optimizer.zero_grad(set_to_none=True)  # gradient norm catches it on every rank)
                        raise NonFiniteError("policy loss is not finite; the step was not applied")
                    (micro.loss * self._loss_scale(bool(part))).backward()
                    if not part:
                        continue
                    n = int(sub.response_mask.sum())
                    sums["loss"] += float(micro.loss.detach())
                    sums["clip"] += float(micro.metrics.clip_frac_high + micro.metrics.clip_frac_low) * n
                    sums["kl"] += float(micro.metrics.approx_kl) * n
                    sums["is"] += float(micro.metrics.is_weight_mean) * n
                    sums["ent"] += float((micro.forward.entropy * sub.response_mask).sum())
                    sums["nll"] += float(micro.positive_nll_sum)
                    stats.num_tokens += n
                sums["correct_tokens"] += correct_tokens
                grad_norms.append(clipped_step(self.optimizer, self.model.parameters(), self.grad_clip,
                                               NonFiniteError))
        self.scheduler.step()
        if self.data_parallel is not None:  # this rank's sums -> the global batch's
            keys = ["loss", "clip", "kl", "ent", "nll", "is"]
            totals = self.data_parallel.all_reduce_sum([sums[key] for key in keys] + [stats.num_tokens])
            sums.update(zip(keys, totals[:-1], strict=True))
            stats.num_tokens = round(totals[-1])
        tokens = max(1, stats.num_tokens)
        stats.loss = sums["loss"] / max(1, algo.ppo_epochs * algo.num_mini_batches)
        stats.clip_frac, stats.approx_kl = sums["clip"] / tokens, sums["kl"] / tokens
        stats.entropy, stats.is_weight_mean = sums["ent"] / tokens, sums["is"] / tokens
        stats.positive_nll = sums["nll"] / max(1, sums["correct_tokens"])
        stats.grad_norm = sum(grad_norms) / max(1, len(grad_norms))
        return stats

    def _micro_batches(self, mini_batch: PackedBatch) -> list[list[int]]:
        """This process's micro-batches of a mini-batch (sharded: its share, as many as every other rank's)."""
        if self.data_parallel is None:
            return split_micro_batches(mini_batch.seq_lengths, self.micro_batch_tokens)
        return self.data_parallel.micro_batches(mini_batch.seq_lengths, self.micro_batch_tokens)

    def _loss_scale(self, real: bool) -> float:
        if not real:
            return 0.0
        return 1.0 if self.data_parallel is None else self.data_parallel.loss_scale
