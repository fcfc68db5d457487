"""Named algorithm presets: plain config values, no code.

An RL recipe's ``algorithm.preset`` applies a preset first and lets every key
written in the recipe override it. Every preset sets every key below, so a
preset fully determines the algorithm. Plain keys belong to the recipe's
``algorithm`` section; dotted keys name another section (``rollout.``,
``reward.``, ``critic.``).

Keys:
    advantage_estimator: name in `thinkrl.rl.ADVANTAGE_ESTIMATORS` ("grpo",
        "dapo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae").
    eps_low: PPO lower clip, the ratio is clipped at ``1 - eps_low``.
    eps_high: PPO upper clip, ``1 + eps_high``; > eps_low is DAPO "clip-higher".
    dual_clip: dual-clip constant c > 1 capping the loss at ``-c * A`` for A < 0
        (Ye et al. 2020), or None for off.
    loss_agg_mode: one of `thinkrl.rl.AGG_MODES`, how `agg_loss` reduces the
        per-token loss ("token-mean" is DAPO's token-level loss).
    rollout.dynamic_sampling: DAPO dynamic sampling — drop groups whose rewards are all
        equal (`group_has_variance`) and sample more until the batch is full.
    reward.overlong_penalty: add DAPO's `soft_overlong_penalty` to the reward. Its
        L_max / L_cache are run settings (the paper uses 20480 / 4096), not part
        of the preset, because they must fit the run's generation limit.
    kl_coef: weight of the KL-to-reference term *in the loss*; 0 means no
        reference model is needed.
    kl_kind: `kl_penalty` estimator, "k1" / "k2" / "k3".
    lam: GAE lambda of the policy advantages (estimator "gae" only).
    lam_critic: GAE lambda of the value targets (VAPO decoupled GAE: 1.0).
    length_adaptive_alpha: VAPO length-adaptive lambda
        ``1 - 1/(alpha * length)``, or None; when set it replaces ``lam``.
    positive_lm_coef: weight mu of VAPO's `positive_lm_loss` on correct
        responses; 0 is off.
    critic.enabled: train a value model (needed by "gae").

Values come from the papers where they state them (DAPO arXiv 2503.14476,
VAPO arXiv 2504.05118, GRPO arXiv 2402.03300, Dr. GRPO arXiv 2503.20783);
where a paper is silent the value is the common open-source default and is
marked "convention" in docs/algorithms.md.
"""

from __future__ import annotations

from typing import Any

_NO_EXTRAS: dict[str, Any] = {
    "rollout.dynamic_sampling": False,
    "reward.overlong_penalty": False,
    "kl_coef": 0.0,
    "kl_kind": "k3",
    "lam": 1.0,
    "lam_critic": 1.0,
    "length_adaptive_alpha": None,
    "positive_lm_coef": 0.0,
    "critic.enabled": False,
}

ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    # DAPO: group-normalised advantage, clip-higher, token-level loss, dynamic
    # sampling, soft overlong punishment, no KL. Dual-clip is an addition (verl-style).
    "dapo": {
        **_NO_EXTRAS,
        "advantage_estimator": "grpo",
        "eps_low": 0.2,
        "eps_high": 0.28,
        "dual_clip": 3.0,
        "loss_agg_mode": "token-mean",
        "rollout.dynamic_sampling": True,
        "reward.overlong_penalty": True,
    },
    # GRPO as in DeepSeekMath: symmetric clip, per-sequence mean, k3 KL in the loss.
    "grpo": {
        **_NO_EXTRAS,
        "advantage_estimator": "grpo",
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": None,
        "loss_agg_mode": "seq-mean-token-mean",
        "kl_coef": 0.04,
        "kl_kind": "k3",
    },
    # Dr. GRPO: no std normalisation, constant length normaliser, no KL.
    "dr_grpo": {
        **_NO_EXTRAS,
        "advantage_estimator": "dr_grpo",
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": None,
        "loss_agg_mode": "seq-mean-token-sum-norm",
    },
    # RLOO leave-one-out baseline with the PPO clipped loss (convention).
    "rloo": {
        **_NO_EXTRAS,
        "advantage_estimator": "rloo",
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": None,
        "loss_agg_mode": "token-mean",
    },
    # REINFORCE++: globally normalised returns; the paper folds the KL into the
    # reward, here it is a small k2 term in the loss (convention).
    "reinforce_pp": {
        **_NO_EXTRAS,
        "advantage_estimator": "reinforce_pp",
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": None,
        "loss_agg_mode": "token-mean",
        "kl_coef": 0.001,
        "kl_kind": "k2",
    },
    # PPO with a critic and GAE(gamma=1, lambda=0.95) for both policy and critic.
    "ppo": {
        **_NO_EXTRAS,
        "advantage_estimator": "gae",
        "eps_low": 0.2,
        "eps_high": 0.2,
        "dual_clip": None,
        "loss_agg_mode": "token-mean",
        "lam": 0.95,
        "lam_critic": 0.95,
        "critic.enabled": True,
    },
    # VAPO: PPO + decoupled GAE (critic lambda 1), length-adaptive policy
    # lambda (alpha 0.05), clip-higher, token-level loss, positive-example LM loss (mu 0.1).
    "vapo": {
        **_NO_EXTRAS,
        "advantage_estimator": "gae",
        "eps_low": 0.2,
        "eps_high": 0.28,
        "dual_clip": None,
        "loss_agg_mode": "token-mean",
        "lam_critic": 1.0,
        "length_adaptive_alpha": 0.05,
        "positive_lm_coef": 0.1,
        "critic.enabled": True,
    },
}
