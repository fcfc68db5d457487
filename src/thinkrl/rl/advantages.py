"""Advantage estimators: outcome rewards (and critic values) -> per-token advantages.

Every estimator is registered in `ADVANTAGE_ESTIMATORS` and has the signature
``fn(inputs: AdvantageInputs) -> AdvantageOutputs``; a recipe picks one by name.

Conventions shared by all estimators:

* The outcome reward of a response is placed on its **last valid token** (the
  last True of ``response_mask``); ``token_rewards`` (e.g. a per-token KL
  penalty) are added on valid tokens where an estimator supports them.
* Tokens with ``response_mask`` False (padding, or tokens forced by the
  thinking-budget controller) are **skipped**: they are not steps of the
  decision process, so discounting and GAE run over the valid tokens only, as
  if the masked tokens were removed. Their advantages and returns are 0.
* Every std is the unbiased sample std (Bessel's correction, ``n - 1``),
  matching ``torch.std``'s default as used by verl and TRL for GRPO; a group of
  one response has std 0. A group of one also has nothing to compare against,
  so every group-baseline estimator gives it advantage 0, like a group whose
  rewards are all equal.
* Results are float32 and carry no autograd history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from thinkrl.registry import Registry
from thinkrl.rl._checks import check_range, check_tensor
from thinkrl.rl.filters import group_stats
from thinkrl.rl.masked import masked_whiten


@dataclass(frozen=True)
class AdvantageInputs:
    """Everything an advantage estimator may read. Checked on construction.

    Fields:
        rewards: (B,) float — outcome reward of each response.
        response_mask: (B, R) bool — True for tokens sampled by the policy
            (they enter the loss); False for padding and forced tokens.
        group_ids: (B,) int — responses to the same prompt share an id.
        values: (B, R) float or None — critic values V(s_t); required by "gae".
        token_rewards: (B, R) float or None — extra per-token rewards (e.g.
            ``-beta * KL`` to the reference policy), added to the outcome
            reward; read by "gae", "reinforce_pp", "reinforce_pp_baseline".
            Values on masked tokens are ignored.
        gamma: discount in [0, 1] (per valid token).
        lam: GAE lambda of the policy advantages, in [0, 1] ("gae").
        lam_critic: GAE lambda of the value targets, in [0, 1] ("gae"; VAPO: 1.0).
        length_adaptive_alpha: > 0 or None ("gae"). When set it *replaces*
            ``lam``: each sequence uses ``lam_policy = 1 - 1/(alpha * l)`` (VAPO).
        whiten_advantages: "gae" only — normalise the advantages over all valid
            tokens of the batch to mean 0, std 1.
        norm_eps: > 0, added to every std before dividing.
    """

    rewards: Tensor
    response_mask: Tensor
    group_ids: Tensor
    values: Tensor | None = None
    token_rewards: Tensor | None = None
    gamma: float = 1.0
    lam: float = 1.0
    lam_critic: float = 1.0
    length_adaptive_alpha: float | None = None
    whiten_advantages: bool = False
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        check_tensor("response_mask", self.response_mask, kind="bool", ndim=2)
        batch_size = self.response_mask.shape[0]
        check_tensor("rewards", self.rewards, kind="float", shape=(batch_size,))
        check_tensor("group_ids", self.group_ids, kind="int", shape=(batch_size,))
        for name in ("values", "token_rewards"):
            value = getattr(self, name)
            if value is not None:
                check_tensor(name, value, kind="float", shape=self.response_mask.shape)
        for name in ("gamma", "lam", "lam_critic"):
            check_range(name, getattr(self, name), low=0.0, high=1.0)
        if self.length_adaptive_alpha is not None:
            check_range("length_adaptive_alpha", self.length_adaptive_alpha, low=0.0, low_inclusive=False)
        check_range("norm_eps", self.norm_eps, low=0.0, low_inclusive=False)


@dataclass(frozen=True)
class AdvantageOutputs:
    """Result of an advantage estimator.

    Fields:
        advantages: (B, R) float32 — per-token advantage; 0 on masked tokens.
        returns: (B, R) float32 — value targets for the critic; equal to
            ``advantages`` for value-free estimators; 0 on masked tokens.
    """

    advantages: Tensor
    returns: Tensor


AdvantageEstimator = Callable[[AdvantageInputs], AdvantageOutputs]
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")
VALUE_ESTIMATORS: set[str] = {"gae"}
"""Names of the estimators that read critic values (``AdvantageInputs.values``): a recipe choosing one must train a
critic, and it may use groups of one. Add the name of your own value-based estimator here when you register it."""


def _reject_token_rewards(inputs: AdvantageInputs, estimator: str) -> None:
    if inputs.token_rewards is not None:
        raise ValueError(
            f"advantage estimator {estimator!r} uses outcome rewards only and would ignore token_rewards; "
            "use 'gae', 'reinforce_pp' or 'reinforce_pp_baseline', or put the KL term in the loss"
        )


def _outcome_only(scores: Tensor, mask: Tensor) -> AdvantageOutputs:
    """Broadcast per-response scores (B,) over the valid tokens of each response."""
    advantages = torch.where(mask, scores[:, None], 0.0)  # [B, R]
    return AdvantageOutputs(advantages=advantages, returns=advantages)


def last_token_mask(response_mask: Tensor) -> Tensor:
    """One-hot of the last valid token of each row.

    Args:
        response_mask: (B, R) bool.

    Returns:
        (B, R) bool — True only at the last True of each row (all False for a
        row with no valid token).
    """
    counts = response_mask.long().cumsum(dim=-1)  # [B, R]
    return response_mask & (counts == counts[:, -1:])


def _token_level_rewards(inputs: AdvantageInputs, outcome: Tensor) -> Tensor:
    """Outcome (B,) on the last valid token plus optional token rewards, (B, R) float32."""
    mask = inputs.response_mask
    rewards = torch.where(last_token_mask(mask), outcome.float()[:, None], 0.0)
    if inputs.token_rewards is not None:
        rewards = rewards + torch.where(mask, inputs.token_rewards.detach().float(), 0.0)
    return rewards


def compute_discounted_returns(rewards: Tensor, response_mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go over valid tokens: ``G_t = r_t + gamma * G_next``.

    ``G_next`` is the return at the next *valid* token (masked tokens are
    skipped), 0 after the last one. ``gamma == 1`` is a reverse cumsum; other
    gammas run a reverse scan over R, vectorised over B.

    Args:
        rewards: (B, R) float — per-token rewards (0 on masked tokens).
        response_mask: (B, R) bool.
        gamma: discount in [0, 1].

    Returns:
        (B, R) float32; 0 on masked tokens.
    """
    check_tensor("response_mask", response_mask, kind="bool", ndim=2)
    check_tensor("rewards", rewards, kind="float", shape=response_mask.shape)
    check_range("gamma", gamma, low=0.0, high=1.0)
    if gamma == 1.0:  # skipping masked tokens does not matter undiscounted: a reverse cumsum
        valid_rewards = torch.where(response_mask, rewards.float(), 0.0)
        suffix_sums = valid_rewards.flip(-1).cumsum(-1).flip(-1)  # [B, R]
        return torch.where(response_mask, suffix_sums, 0.0)
    returns = torch.zeros_like(rewards, dtype=torch.float32)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        valid = response_mask[:, t]
        running = torch.where(valid, rewards[:, t].float() + gamma * running, running)
        returns[:, t] = torch.where(valid, running, 0.0)
    return returns


def compute_gae(rewards: Tensor, values: Tensor, response_mask: Tensor, gamma: float, lam: Tensor) -> Tensor:
    """Generalized Advantage Estimation (Schulman et al. 2016, arXiv 1506.02438, Eq. 16).

    Over the valid tokens of each row (masked tokens skipped):
    ``delta_t = r_t + gamma * V_next - V_t`` and
    ``A_t = delta_t + gamma * lam * A_next``, with ``V_next = A_next = 0``
    after the last valid token (the response ends the episode). Several
    lambdas are evaluated in one reverse scan.

    Args:
        rewards: (B, R) float — per-token rewards.
        values: (B, R) float — critic values.
        response_mask: (B, R) bool.
        gamma: discount in [0, 1].
        lam: (K, B) float — K lambdas per row (e.g. policy and critic).

    Returns:
        (K, B, R) float32 advantages; 0 on masked tokens.
    """
    check_tensor("response_mask", response_mask, kind="bool", ndim=2)
    check_tensor("rewards", rewards, kind="float", shape=response_mask.shape)
    check_tensor("values", values, kind="float", shape=response_mask.shape)
    check_tensor("lam", lam, kind="float", ndim=2)
    check_range("gamma", gamma, low=0.0, high=1.0)
    num_lams, batch_size = lam.shape
    if batch_size != response_mask.shape[0]:
        raise ValueError(f"lam must have shape (K, {response_mask.shape[0]}), got {tuple(lam.shape)}")
    rewards, values, lam = rewards.float(), values.detach().float(), lam.float()
    steps: list[Tensor] = []
    next_value = torch.zeros(batch_size, device=rewards.device)
    next_advantage = torch.zeros(num_lams, batch_size, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        valid = response_mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # [B]
        advantage = delta + gamma * lam * next_advantage  # [K, B]
        steps.append(torch.where(valid, advantage, 0.0))
        next_value = torch.where(valid, values[:, t], next_value)
        next_advantage = torch.where(valid, advantage, next_advantage)
    return torch.stack(steps[::-1], dim=-1)  # [K, B, R]


@ADVANTAGE_ESTIMATORS.register("grpo")
@ADVANTAGE_ESTIMATORS.register("dapo")
def compute_grpo_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """GRPO / DAPO group-normalised advantage (Shao et al. 2024, arXiv 2402.03300 §4.1.2;
    DAPO arXiv 2503.14476).

    ``A_i = (R_i - mean_g R) / (std_g R + norm_eps)`` for every valid token of
    response i, where g is its group and std the unbiased sample std. Registered
    as "grpo" and "dapo" (same estimator; DAPO changes the loss and sampling).
    """
    _reject_token_rewards(inputs, "grpo")
    stats = group_stats(inputs.rewards, inputs.group_ids)
    centred = inputs.rewards.detach().float() - stats.mean[stats.index]
    scores = centred / (stats.std[stats.index] + inputs.norm_eps)
    return _outcome_only(scores, inputs.response_mask)


@ADVANTAGE_ESTIMATORS.register("dr_grpo")
def compute_dr_grpo_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """Dr. GRPO advantage (Liu et al. 2025, arXiv 2503.20783): ``A_i = R_i - mean_g R``.

    No division by the group std (it up-weights too-easy and too-hard prompts);
    pair it with the "seq-mean-token-sum-norm" loss aggregation.
    """
    _reject_token_rewards(inputs, "dr_grpo")
    stats = group_stats(inputs.rewards, inputs.group_ids)
    scores = inputs.rewards.detach().float() - stats.mean[stats.index]
    return _outcome_only(scores, inputs.response_mask)


@ADVANTAGE_ESTIMATORS.register("rloo")
def compute_rloo_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """RLOO leave-one-out baseline (Ahmadian et al. 2024, arXiv 2402.14740).

    ``A_i = R_i - (1/(n-1)) * sum_{j != i} R_j`` over the n responses of the
    group; 0 for a group of one.
    """
    _reject_token_rewards(inputs, "rloo")
    stats = group_stats(inputs.rewards, inputs.group_ids)
    rewards = inputs.rewards.detach().float()
    size = stats.size[stats.index].float()
    others_sum = stats.mean[stats.index] * size - rewards
    baseline = torch.where(size > 1, others_sum / (size - 1).clamp_min(1), rewards)
    return _outcome_only(rewards - baseline, inputs.response_mask)


@ADVANTAGE_ESTIMATORS.register("reinforce_pp")
def compute_reinforce_pp_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262): globally normalised returns.

    Token rewards ``r_t`` are the outcome reward on the last valid token plus
    ``token_rewards``; returns ``G_t = sum_{k >= t} gamma^(k-t) r_k`` over valid
    tokens; then ``A = (G - mean) / (std + norm_eps)`` with mean and unbiased
    std over **all valid tokens of the batch** (no per-prompt baseline).
    """
    rewards = _token_level_rewards(inputs, inputs.rewards.detach())
    returns = compute_discounted_returns(rewards, inputs.response_mask, inputs.gamma)
    advantages = masked_whiten(returns, inputs.response_mask, inputs.norm_eps)
    return AdvantageOutputs(advantages=advantages, returns=advantages)


@ADVANTAGE_ESTIMATORS.register("reinforce_pp_baseline")
def compute_reinforce_pp_baseline_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """REINFORCE++-baseline (Hu et al. 2025, arXiv 2501.03262): group-mean baseline, global norm.

    The outcome reward is first centred within its group, ``R_i - mean_g R``,
    then treated exactly as in "reinforce_pp" (placed on the last valid token,
    plus ``token_rewards``, discounted, normalised over all valid tokens of the
    batch). Normalising by the batch std instead of the group std avoids
    GRPO's blow-up on low-variance groups.
    """
    stats = group_stats(inputs.rewards, inputs.group_ids)
    centred = inputs.rewards.detach().float() - stats.mean[stats.index]
    rewards = _token_level_rewards(inputs, centred)
    returns = compute_discounted_returns(rewards, inputs.response_mask, inputs.gamma)
    advantages = masked_whiten(returns, inputs.response_mask, inputs.norm_eps)
    return AdvantageOutputs(advantages=advantages, returns=advantages)


def length_adaptive_lambda(response_mask: Tensor, alpha: float) -> Tensor:
    """VAPO length-adaptive GAE lambda (Yue et al. 2025, arXiv 2504.05118).

    ``lam_policy = 1 - 1/(alpha * l)`` with l the number of valid tokens of the
    response, so ``sum_t lam^t ~= 1/(1 - lam) = alpha * l`` scales with length.
    For ``l <= 1/alpha`` the formula gives a value <= 0 (and -inf for l = 0),
    which is not a valid lambda: it is clamped to [0, 1], i.e. short responses
    use ``lam = 0`` (one-step TD advantages).

    Args:
        response_mask: (B, R) bool.
        alpha: > 0 (VAPO: 0.05).

    Returns:
        (B,) float32 lambda per row.
    """
    check_range("alpha", alpha, low=0.0, low_inclusive=False)
    lengths = response_mask.sum(dim=-1).float()
    return (1.0 - 1.0 / (alpha * lengths)).clamp(0.0, 1.0)


@ADVANTAGE_ESTIMATORS.register("gae")
def compute_gae_advantages(inputs: AdvantageInputs) -> AdvantageOutputs:
    """PPO/VAPO token-level GAE with decoupled and length-adaptive lambda.

    Rewards: outcome on the last valid token plus ``token_rewards``. Value
    targets use ``lam_critic`` (VAPO decoupled GAE, arXiv 2504.05118:
    ``lam_critic = 1`` gives unbiased Monte-Carlo targets):
    ``returns = GAE(lam_critic) + V``. Advantages use ``lam`` or, when
    ``length_adaptive_alpha`` is set, the per-sequence `length_adaptive_lambda`.
    With ``whiten_advantages`` the advantages are normalised over all valid
    tokens of the batch. Requires ``values``.
    """
    if inputs.values is None:
        raise ValueError("advantage estimator 'gae' needs critic values: set AdvantageInputs.values")
    mask = inputs.response_mask
    batch_size = mask.shape[0]
    if inputs.length_adaptive_alpha is not None:
        lam_policy = length_adaptive_lambda(mask, inputs.length_adaptive_alpha)
    else:
        lam_policy = torch.full((batch_size,), float(inputs.lam), device=mask.device)
    lam_critic = torch.full((batch_size,), float(inputs.lam_critic), device=mask.device)
    rewards = _token_level_rewards(inputs, inputs.rewards.detach())
    both = compute_gae(rewards, inputs.values, mask, inputs.gamma, torch.stack([lam_policy, lam_critic]))
    advantages, critic_advantages = both[0], both[1]  # [B, R] each
    returns = torch.where(mask, critic_advantages + inputs.values.detach().float(), 0.0)
    if inputs.whiten_advantages:
        advantages = masked_whiten(advantages, mask, inputs.norm_eps)
    return AdvantageOutputs(advantages=advantages, returns=returns)
