"""Policy, value and auxiliary losses, and per-token log-prob / entropy / KL helpers.

Every loss returns ``(loss, metrics)``: a 0-dim float32 loss with autograd
history, and a dataclass of detached 0-dim metric tensors (no ``.item()``, so
no host sync; call ``metrics.to_dict()`` for logging). Per-token losses are
reduced by `agg_loss` with the recipe's ``loss_agg_mode``. Masked tokens get
exactly zero gradient, even when their log-probs hold garbage (inf, NaN).

Policy losses are registered in `POLICY_LOSSES` with the signature
``fn(inputs: PolicyLossInputs) -> (Tensor, PolicyLossMetrics)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from thinkrl.registry import Registry
from thinkrl.rl._checks import check_range, check_tensor
from thinkrl.rl.aggregation import AGG_MODES, agg_loss
from thinkrl.rl.masked import masked_mean

#: Log-ratios are clamped to [-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP] before exp, so
#: a wildly off-policy token gives a large finite ratio, not inf.
LOG_RATIO_CLAMP = 20.0

KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3")


class _Metrics:
    """Mixin: ``to_dict()`` for the metric dataclasses (names -> detached 0-dim tensors)."""

    def to_dict(self) -> dict[str, Tensor]:
        """The metrics as ``{field name: detached 0-dim tensor}``, for loggers."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class PolicyLossInputs:
    """Inputs of a policy loss. Checked on construction.

    Fields:
        logprobs: (B, R) float — log pi_theta of the sampled tokens (with grad).
        old_logprobs: (B, R) float — log pi_old, the policy the ratio is taken
            against (the sampler, or the proximal policy in decoupled PPO).
        advantages: (B, R) float — per-token advantages.
        response_mask: (B, R) bool — True for tokens that enter the loss.
        eps_low: lower clip, ratio >= 1 - eps_low; in [0, 1).
        eps_high: upper clip, ratio <= 1 + eps_high; >= 0 (DAPO clip-higher: 0.28).
        dual_clip: c > 1 or None — for A < 0 the loss is capped at ``-c * A``.
        agg_mode: one of `AGG_MODES`.
        num_tokens / num_sequences / max_response_len: passed to `agg_loss`.
        behaviour_logprobs: (B, R) float or None — log-probs of the policy that
            actually sampled the tokens, when it differs from ``old_logprobs``
            (streamed / partial rollouts). Each token's loss is then weighted by
            ``w = pi_old / pi_behaviour`` (decoupled PPO, Hilton et al. 2021,
            arXiv 2110.00641).
        behaviour_is_cap: > 0 or None — truncate ``w`` at this value
            (truncated importance sampling); needs ``behaviour_logprobs``.
    """

    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    response_mask: Tensor
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 3.0
    agg_mode: str = "token-mean"
    num_tokens: float | Tensor | None = None
    num_sequences: float | Tensor | None = None
    max_response_len: int | None = None
    behaviour_logprobs: Tensor | None = None
    behaviour_is_cap: float | None = None

    def __post_init__(self) -> None:
        check_tensor("response_mask", self.response_mask, kind="bool", ndim=2)
        for name in ("logprobs", "old_logprobs", "advantages", "behaviour_logprobs"):
            value = getattr(self, name)
            if value is not None:
                check_tensor(name, value, kind="float", shape=self.response_mask.shape)
        check_range("eps_low", self.eps_low, low=0.0, high=1.0, high_inclusive=False)
        check_range("eps_high", self.eps_high, low=0.0)
        if self.dual_clip is not None:
            check_range("dual_clip", self.dual_clip, low=1.0, low_inclusive=False)
        if self.agg_mode not in AGG_MODES:
            raise ValueError(f"unknown agg_mode {self.agg_mode!r}; allowed: {', '.join(AGG_MODES)}")
        if self.behaviour_is_cap is not None:
            check_range("behaviour_is_cap", self.behaviour_is_cap, low=0.0, low_inclusive=False)
            if self.behaviour_logprobs is None:
                raise ValueError("behaviour_is_cap is set but behaviour_logprobs is None")


@dataclass(frozen=True)
class PolicyLossMetrics(_Metrics):
    """Detached 0-dim float32 metrics of a policy loss, means over valid tokens.

    Fields:
        clip_frac_high: fraction of tokens with A > 0 and ratio > 1 + eps_high
            (upper clip active: no gradient).
        clip_frac_low: fraction with A < 0 and ratio < 1 - eps_low (lower clip active).
        dual_clip_frac: fraction with A < 0 and ratio > dual_clip (dual clip active).
        approx_kl: k3 estimate of KL(pi_old || pi_theta): mean of
            ``(ratio - 1) - log(ratio)``, unbiased for tokens sampled from pi_old
            and always >= 0.
        ratio_mean: mean of ratio = pi_theta / pi_old.
        ratio_max: max of ratio (0 when no token is valid).
        is_weight_mean: mean behaviour importance weight (1 without behaviour_logprobs).
    """

    clip_frac_high: Tensor
    clip_frac_low: Tensor
    dual_clip_frac: Tensor
    approx_kl: Tensor
    ratio_mean: Tensor
    ratio_max: Tensor
    is_weight_mean: Tensor


PolicyLoss = Callable[[PolicyLossInputs], tuple[Tensor, PolicyLossMetrics]]
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")


def _behaviour_weights(inputs: PolicyLossInputs) -> Tensor | None:
    """Detached importance weights pi_old / pi_behaviour, (B, R), 1 on masked tokens."""
    if inputs.behaviour_logprobs is None:
        return None
    mask = inputs.response_mask
    log_weight = torch.where(mask, inputs.old_logprobs.detach() - inputs.behaviour_logprobs.detach(), 0.0)
    weight = log_weight.float().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()
    if inputs.behaviour_is_cap is not None:
        weight = weight.clamp(max=inputs.behaviour_is_cap)
    return weight


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(inputs: PolicyLossInputs) -> tuple[Tensor, PolicyLossMetrics]:
    """PPO clipped surrogate with clip-higher and dual-clip.

    Per token, with ``r = exp(logprobs - old_logprobs)``:
    ``l = max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high))`` (Schulman et
    al. 2017, arXiv 1707.06347, Eq. 7, negated; asymmetric eps from DAPO
    "clip-higher", arXiv 2503.14476 §3.1). With ``dual_clip = c`` and A < 0,
    ``l = min(l, -c * A)`` (Ye et al. 2020, arXiv 1912.09729), bounding
    the loss of a very unlikely-now token. Optional behaviour importance
    weights multiply ``l`` (see `PolicyLossInputs`). Reduced by `agg_loss`.

    Returns:
        (loss, `PolicyLossMetrics`).
    """
    mask = inputs.response_mask
    advantages = inputs.advantages.detach().float()
    log_ratio = torch.where(mask, inputs.logprobs.float() - inputs.old_logprobs.detach().float(), 0.0)
    ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()  # [B, R]
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - inputs.eps_low, 1.0 + inputs.eps_high)
    loss_mat = torch.maximum(unclipped, clipped)
    negative = advantages < 0
    if inputs.dual_clip is not None:
        loss_mat = torch.where(negative, torch.minimum(loss_mat, -inputs.dual_clip * advantages), loss_mat)
    weights = _behaviour_weights(inputs)
    if weights is not None:
        loss_mat = loss_mat * weights
    loss = agg_loss(loss_mat, mask, inputs.agg_mode, inputs.num_tokens, inputs.num_sequences, inputs.max_response_len)
    with torch.no_grad():
        ratio_d = ratio.detach()
        dual = inputs.dual_clip
        metrics = PolicyLossMetrics(
            clip_frac_high=masked_mean(((ratio_d > 1 + inputs.eps_high) & (advantages > 0)).float(), mask),
            clip_frac_low=masked_mean(((ratio_d < 1 - inputs.eps_low) & negative).float(), mask),
            dual_clip_frac=masked_mean(
                (negative & (ratio_d > dual)).float() if dual is not None else torch.zeros_like(ratio_d), mask
            ),
            approx_kl=masked_mean(ratio_d - 1 - log_ratio.detach().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP), mask),
            ratio_mean=masked_mean(ratio_d, mask),
            ratio_max=torch.where(mask, ratio_d, 0.0).max(),
            is_weight_mean=(
                masked_mean(weights, mask) if weights is not None else torch.ones((), device=ratio_d.device)
            ),
        )
    return loss, metrics


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) for tokens sampled from pi_theta.

    Schulman, "Approximating KL divergence" (2020), with ``d = logprobs - ref_logprobs``:

    * ``k1 = d`` — unbiased, high variance, can be negative.
    * ``k2 = d**2 / 2`` — biased, low variance, >= 0.
    * ``k3 = exp(-d) - (-d) - 1`` = ``exp(ref - logp) - (ref - logp) - 1`` —
      unbiased, low variance, >= 0 (the KL term of GRPO, arXiv 2402.03300).

    ``d`` is clamped to [-20, 20] before ``exp`` so k3 stays finite.

    Args:
        logprobs: (...) float — log pi_theta of the sampled tokens.
        ref_logprobs: (...) float — log pi_ref of the same tokens, same shape.
        kind: one of `KL_KINDS`.

    Returns:
        (...) float32 per-token penalty; reduce it with `agg_loss`.
    """
    check_tensor("logprobs", logprobs, kind="float")
    check_tensor("ref_logprobs", ref_logprobs, kind="float", shape=logprobs.shape)
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL kind {kind!r}; allowed: {', '.join(KL_KINDS)}")
    diff = logprobs.float() - ref_logprobs.float()
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    neg = (-diff).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return neg.exp() - neg - 1.0


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the categorical distribution softmax(logits), in nats, computed in float32.

    ``H = logsumexp(z) - sum_v softmax(z)_v * z_v`` (equal to ``-sum p log p``).

    Args:
        logits: (..., V) float.

    Returns:
        (...) float32.
    """
    check_tensor("logits", logits, kind="float")
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def token_logprobs(logits: Tensor, target_ids: Tensor) -> Tensor:
    """Log-probability of each target token: ``log_softmax(logits)[target]``, in float32.

    Computed as ``logits[target] - logsumexp(logits)`` so no (..., V)
    log-softmax tensor is kept for backward beyond the float32 logits.

    Args:
        logits: (..., V) float — e.g. (B, R, V) next-token logits aligned with the targets.
        target_ids: (...) int — token ids in [0, V), shape ``logits.shape[:-1]``.

    Returns:
        (...) float32.
    """
    check_tensor("logits", logits, kind="float")
    check_tensor("target_ids", target_ids, kind="int", shape=logits.shape[:-1])
    logits = logits.float()
    picked = logits.gather(-1, target_ids.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


@dataclass(frozen=True)
class ValueLossMetrics(_Metrics):
    """Detached 0-dim float32 metrics of the value loss, means over valid tokens.

    Fields:
        clip_frac: fraction of tokens where the clipped error is the larger one
            (the clipped branch is active: no gradient).
        mse: mean of (values - returns)**2, unclipped.
        value_mean: mean predicted value.
    """

    clip_frac: Tensor
    mse: Tensor
    value_mean: Tensor


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    response_mask: Tensor,
    clip_range: float | None = 0.2,
    agg_mode: str = "token-mean",
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    max_response_len: int | None = None,
) -> tuple[Tensor, ValueLossMetrics]:
    """PPO clipped value loss: ``0.5 * agg(max((V - G)**2, (V_clip - G)**2))``.

    ``V_clip = V_old + clip(V - V_old, -clip_range, clip_range)`` keeps the new
    value near the one the returns were computed with (as in OpenAI baselines'
    PPO2 and verl); ``clip_range=None`` gives the plain ``0.5 * (V - G)**2``.

    Args:
        values: (B, R) float — critic values being trained (with grad).
        old_values: (B, R) float — values at rollout time.
        returns: (B, R) float — value targets (e.g. `AdvantageOutputs.returns`).
        response_mask: (B, R) bool — True for tokens that enter the loss.
        clip_range: > 0 or None.
        agg_mode, num_tokens, num_sequences, max_response_len: see `agg_loss`.

    Returns:
        (loss, `ValueLossMetrics`).
    """
    check_tensor("response_mask", response_mask, kind="bool", ndim=2)
    for name, value in (("values", values), ("old_values", old_values), ("returns", returns)):
        check_tensor(name, value, kind="float", shape=response_mask.shape)
    mask = response_mask
    values_f = torch.where(mask, values.float(), 0.0)
    old = torch.where(mask, old_values.detach().float(), 0.0)
    targets = torch.where(mask, returns.detach().float(), 0.0)
    error = (values_f - targets).square()
    if clip_range is None:
        loss_mat, clipped_active = error, torch.zeros_like(mask)
    else:
        check_range("clip_range", clip_range, low=0.0, low_inclusive=False)
        clipped_values = old + (values_f - old).clamp(-clip_range, clip_range)
        clipped_error = (clipped_values - targets).square()
        loss_mat = torch.maximum(error, clipped_error)
        clipped_active = clipped_error > error
    loss = 0.5 * agg_loss(loss_mat, mask, agg_mode, num_tokens, num_sequences, max_response_len)
    with torch.no_grad():
        metrics = ValueLossMetrics(
            clip_frac=masked_mean(clipped_active.float(), mask),
            mse=masked_mean(error.detach(), mask),
            value_mean=masked_mean(values_f.detach(), mask),
        )
    return loss, metrics


@dataclass(frozen=True)
class PositiveLMLossMetrics(_Metrics):
    """Detached 0-dim float32 metrics of the positive-example LM loss.

    Fields:
        num_correct: number of correct responses in the batch.
        nll: mean NLL per valid token of the correct responses (0 if none).
    """

    num_correct: Tensor
    nll: Tensor


def positive_lm_loss(
    logprobs: Tensor,
    response_mask: Tensor,
    is_correct: Tensor,
    agg_mode: str = "token-mean",
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    max_response_len: int | None = None,
) -> tuple[Tensor, PositiveLMLossMetrics]:
    """VAPO positive-example LM loss (Yue et al. 2025, arXiv 2504.05118).

    ``L_NLL = -(1 / sum_{i in T} |o_i|) * sum_{i in T} sum_t log pi_theta(o_{i,t})``
    over the set T of correct responses (token-normalised with "token-mean");
    the total objective is ``L_PPO + mu * L_NLL`` (VAPO: mu = 0.1). With no
    correct response the loss is 0 (and its gradient zero). With gradient
    accumulation, ``num_tokens`` must count the valid tokens of the *correct*
    responses of the mini-batch.

    Args:
        logprobs: (B, R) float — log pi_theta of the sampled tokens (with grad).
        response_mask: (B, R) bool — True for tokens that enter the loss.
        is_correct: (B,) bool — True for responses the verifier accepted.
        agg_mode, num_tokens, num_sequences, max_response_len: see `agg_loss`.

    Returns:
        (loss, `PositiveLMLossMetrics`).
    """
    check_tensor("response_mask", response_mask, kind="bool", ndim=2)
    check_tensor("logprobs", logprobs, kind="float", shape=response_mask.shape)
    check_tensor("is_correct", is_correct, kind="bool", shape=response_mask.shape[:1])
    mask = response_mask & is_correct[:, None]  # [B, R]
    nll = torch.where(mask, -logprobs.float(), 0.0)
    loss = agg_loss(nll, mask, agg_mode, num_tokens, num_sequences, max_response_len)
    with torch.no_grad():
        metrics = PositiveLMLossMetrics(num_correct=is_correct.sum().float(), nll=masked_mean(nll.detach(), mask))
    return loss, metrics
