"""thinkrl.rl: the RL maths as small pure tensor functions.

Advantage estimators, policy/value/auxiliary losses, the loss reduction,
reward shaping, group filters and algorithm presets. Nothing here knows about
models, engines or I/O; it imports only torch and `thinkrl.registry`. The
formulas, with the paper each comes from, are in docs/algorithms.md.

A value-free RL step reads::

    keep = group_has_variance(rewards, group_ids)                  # DAPO dynamic sampling
    rewards = rewards + soft_overlong_penalty(lengths, max_len, cache_len)
    adv = ADVANTAGE_ESTIMATORS.get("grpo")(AdvantageInputs(rewards, response_mask, group_ids))
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(
        PolicyLossInputs(logprobs, old_logprobs, adv.advantages, response_mask))
"""

from thinkrl.rl.advantages import (
    ADVANTAGE_ESTIMATORS,
    VALUE_ESTIMATORS,
    AdvantageInputs,
    AdvantageOutputs,
    compute_discounted_returns,
    compute_dr_grpo_advantages,
    compute_gae,
    compute_gae_advantages,
    compute_grpo_advantages,
    compute_reinforce_pp_advantages,
    compute_reinforce_pp_baseline_advantages,
    compute_rloo_advantages,
    last_token_mask,
    length_adaptive_lambda,
)
from thinkrl.rl.aggregation import AGG_MODES, agg_loss
from thinkrl.rl.filters import GroupStats, group_has_variance, group_stats
from thinkrl.rl.losses import (
    KL_KINDS,
    POLICY_LOSSES,
    PolicyLossInputs,
    PolicyLossMetrics,
    PositiveLMLossMetrics,
    ValueLossMetrics,
    entropy_from_logits,
    kl_penalty,
    positive_lm_loss,
    ppo_clip_loss,
    token_logprobs,
    value_loss,
)
from thinkrl.rl.masked import masked_mean, masked_sum, masked_var, masked_whiten
from thinkrl.rl.presets import ALGORITHM_PRESETS
from thinkrl.rl.shaping import (
    budget_limit_penalty,
    budget_overlong_penalty,
    budget_penalty,
    soft_overlong_penalty,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "VALUE_ESTIMATORS",
    "AGG_MODES",
    "ALGORITHM_PRESETS",
    "KL_KINDS",
    "POLICY_LOSSES",
    "AdvantageInputs",
    "AdvantageOutputs",
    "GroupStats",
    "PolicyLossInputs",
    "PolicyLossMetrics",
    "PositiveLMLossMetrics",
    "ValueLossMetrics",
    "agg_loss",
    "budget_limit_penalty",
    "budget_overlong_penalty",
    "budget_penalty",
    "compute_dr_grpo_advantages",
    "compute_gae_advantages",
    "compute_grpo_advantages",
    "compute_reinforce_pp_advantages",
    "compute_reinforce_pp_baseline_advantages",
    "compute_rloo_advantages",
    "compute_discounted_returns",
    "entropy_from_logits",
    "compute_gae",
    "group_has_variance",
    "group_stats",
    "kl_penalty",
    "last_token_mask",
    "length_adaptive_lambda",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "positive_lm_loss",
    "ppo_clip_loss",
    "soft_overlong_penalty",
    "token_logprobs",
    "value_loss",
]
