"""Advantage estimators against hand-computed values and independent loop implementations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from thinkrl.rl import (
    ADVANTAGE_ESTIMATORS,
    AdvantageInputs,
    last_token_mask,
    length_adaptive_lambda,
)

T, F = True, False

# Five responses, R = 3. Group 7 = rows 0-2 (rewards 1, -1, -1); group 3 = rows 3-4 (2, 2: all equal).
REWARDS = torch.tensor([1.0, -1.0, -1.0, 2.0, 2.0])
GROUP_IDS = torch.tensor([7, 7, 7, 3, 3])
MASK = torch.tensor([[T, T, F], [T, T, T], [T, F, F], [T, T, T], [T, F, F]])


def run(name: str, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = AdvantageInputs(
        rewards=kwargs.pop("rewards", REWARDS),
        response_mask=kwargs.pop("response_mask", MASK),
        group_ids=kwargs.pop("group_ids", GROUP_IDS),
        **kwargs,
    )
    out = ADVANTAGE_ESTIMATORS.get(name)(inputs)
    return out.advantages, out.returns


def per_token(scores: list[float], mask: torch.Tensor = MASK) -> torch.Tensor:
    """Expected (B, R) tensor: score of row b on its valid tokens, 0 elsewhere."""
    return torch.tensor([[s if m else 0.0 for m in row] for s, row in zip(scores, mask.tolist(), strict=True)])


# ---- group estimators ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grpo", "dapo"])
def test_grpo_hand_computed(name: str) -> None:
    # group 7: mean = (1 - 1 - 1)/3 = -1/3; deviations 4/3, -2/3, -2/3;
    # unbiased var = (16/9 + 4/9 + 4/9) / (3 - 1) = 4/3; std = 2/sqrt(3).
    std = 2 / math.sqrt(3)
    eps = 1e-6
    # group 3: rewards all equal -> deviations 0 -> advantage 0.
    expected = per_token([(4 / 3) / (std + eps), (-2 / 3) / (std + eps), (-2 / 3) / (std + eps), 0.0, 0.0])
    advantages, returns = run(name)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected)
    assert advantages.dtype == torch.float32


def test_grpo_std_eps_is_added_to_std() -> None:
    # group [1, -1]: mean 0, unbiased std = sqrt((1 + 1) / 1) = sqrt(2); eps 0.5 -> 1 / (sqrt(2) + 0.5).
    mask = torch.ones(2, 3, dtype=torch.bool)
    advantages, _ = run(
        "grpo", rewards=torch.tensor([1.0, -1.0]), group_ids=torch.tensor([0, 0]), response_mask=mask, norm_eps=0.5
    )
    value = 1 / (math.sqrt(2) + 0.5)  # 0.5224...
    torch.testing.assert_close(advantages, torch.tensor([[value] * 3, [-value] * 3]))


def test_dr_grpo_hand_computed() -> None:
    # R - group mean, no std: group 7 -> 1+1/3, -1+1/3, -1+1/3; group 3 -> 0.
    advantages, returns = run("dr_grpo")
    expected = per_token([4 / 3, -2 / 3, -2 / 3, 0.0, 0.0])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected)


def test_rloo_hand_computed() -> None:
    # row 0: 1 - mean(-1, -1) = 2; row 1: -1 - mean(1, -1) = -1; row 2 likewise -1; group 3: 2 - 2 = 0.
    advantages, _ = run("rloo")
    torch.testing.assert_close(advantages, per_token([2.0, -1.0, -1.0, 0.0, 0.0]))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_singleton_group_gets_zero_advantage(name: str) -> None:
    rewards = torch.tensor([1.0, 0.0, 5.0])
    group_ids = torch.tensor([0, 0, 1])  # row 2 is alone in its group
    mask = torch.ones(3, 2, dtype=torch.bool)
    advantages, _ = run(name, rewards=rewards, group_ids=group_ids, response_mask=mask)
    assert torch.equal(advantages[2], torch.zeros(2))
    assert advantages[0, 0] > 0 > advantages[1, 0]


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_group_estimators_reject_token_rewards(name: str) -> None:
    with pytest.raises(ValueError, match="token_rewards"):
        run(name, token_rewards=torch.zeros(5, 3))


# ---- REINFORCE++ ---------------------------------------------------------------------------------


def whiten_reference(values: list[float], eps: float = 1e-6) -> list[float]:
    mean, std = statistics.mean(values), statistics.stdev(values)
    return [(v - mean) / (std + eps) for v in values]


def test_reinforce_pp_hand_computed() -> None:
    # gamma 1: every valid token's return is its outcome reward. Valid tokens, row by row:
    # [1, 1], [-1, -1, -1], [-1], [2, 2, 2], [2]; sum 6 over 10 tokens -> mean 0.6;
    # squared deviations 2*0.16 + 4*2.56 + 4*1.96 = 18.4; unbiased var 18.4/9; std = 1.42984.
    std = math.sqrt(18.4 / 9)
    adv = [(r - 0.6) / (std + 1e-6) for r in [1.0, -1.0, -1.0, 2.0, 2.0]]
    advantages, returns = run("reinforce_pp")
    torch.testing.assert_close(advantages, per_token(adv))
    torch.testing.assert_close(returns, advantages)
    assert abs(std - 1.42984) < 1e-5


def test_reinforce_pp_discount_skips_masked_tokens() -> None:
    # One row, mask [T, F, T, T], outcome 1, gamma 0.5: valid-token returns 0.25, 0.5, 1
    # (the masked token is not a step), then whitened over those three values.
    mask = torch.tensor([[T, F, T, T]])
    advantages, _ = run(
        "reinforce_pp", rewards=torch.tensor([1.0]), group_ids=torch.tensor([0]), response_mask=mask, gamma=0.5
    )
    w = whiten_reference([0.25, 0.5, 1.0])
    torch.testing.assert_close(advantages, torch.tensor([[w[0], 0.0, w[1], w[2]]]))


def test_reinforce_pp_token_rewards_are_added() -> None:
    # Row rewards: token_rewards [-0.1, -0.2] plus outcome 1 on the last token; gamma 1:
    # returns = [1 - 0.1 - 0.2, 1 - 0.2] = [0.7, 0.8]; the masked token's -9 is ignored.
    mask = torch.tensor([[T, T, F]])
    token_rewards = torch.tensor([[-0.1, -0.2, -9.0]])
    advantages, _ = run(
        "reinforce_pp",
        rewards=torch.tensor([1.0]),
        group_ids=torch.tensor([0]),
        response_mask=mask,
        token_rewards=token_rewards,
    )
    w = whiten_reference([0.7, 0.8])
    torch.testing.assert_close(advantages, torch.tensor([[w[0], w[1], 0.0]]))


def test_reinforce_pp_baseline_hand_computed() -> None:
    # Centred rewards (dr_grpo values) 4/3, -2/3, -2/3, 0, 0, broadcast over the 10 valid tokens,
    # then whitened over all of them.
    centred = [4 / 3, -2 / 3, -2 / 3, 0.0, 0.0]
    tokens = [c for c, row in zip(centred, MASK.tolist(), strict=True) for m in row if m]
    mean, std = statistics.mean(tokens), statistics.stdev(tokens)
    expected = per_token([(c - mean) / (std + 1e-6) for c in centred])
    advantages, _ = run("reinforce_pp_baseline")
    torch.testing.assert_close(advantages, expected)


# ---- GAE -----------------------------------------------------------------------------------------


def test_gae_hand_computed_lam_one_and_zero() -> None:
    # One row, values [0.5, 0.2, 0.1], outcome 1 on the last token, gamma 1.
    values = torch.tensor([[0.5, 0.2, 0.1]])
    common = dict(rewards=torch.tensor([1.0]), group_ids=torch.tensor([0]), response_mask=torch.ones(1, 3).bool())
    # lam 1: A_t = R - V_t = [0.5, 0.8, 0.9]; lam_critic 1: returns = A + V = [1, 1, 1].
    advantages, returns = run("gae", values=values, lam=1.0, **common)
    torch.testing.assert_close(advantages, torch.tensor([[0.5, 0.8, 0.9]]))
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 1.0]]))
    # lam 0: A_t = delta_t = r_t + V_{t+1} - V_t = [0.2 - 0.5, 0.1 - 0.2, 1 - 0.1] = [-0.3, -0.1, 0.9];
    # returns still use lam_critic = 1 (decoupled GAE).
    advantages, returns = run("gae", values=values, lam=0.0, **common)
    torch.testing.assert_close(advantages, torch.tensor([[-0.3, -0.1, 0.9]]))
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 1.0]]))
    # lam_critic 0: returns = delta + V = r_t + V_{t+1} = [0.2, 0.1, 1].
    _, returns = run("gae", values=values, lam=0.0, lam_critic=0.0, **common)
    torch.testing.assert_close(returns, torch.tensor([[0.2, 0.1, 1.0]]))


def gae_reference(
    rewards: list[float],
    values: list[list[float]],
    mask: list[list[bool]],
    gamma: float,
    lams: list[float],
    token_rewards: list[list[float]] | None = None,
) -> list[list[float]]:
    """Textbook GAE on the compacted valid tokens of each row, outcome on the last one."""
    out = []
    for b, row_mask in enumerate(mask):
        idx = [t for t, m in enumerate(row_mask) if m]
        r = [token_rewards[b][t] if token_rewards else 0.0 for t in idx]
        if idx:
            r[-1] += rewards[b]
        v = [values[b][t] for t in idx] + [0.0]
        adv = [0.0] * len(idx)
        running = 0.0
        for k in reversed(range(len(idx))):
            delta = r[k] + gamma * v[k + 1] - v[k]
            running = delta + gamma * lams[b] * running
            adv[k] = running
        full = [0.0] * len(row_mask)
        for k, t in enumerate(idx):
            full[t] = adv[k]
        out.append(full)
    return out


@pytest.mark.parametrize("lam", [0.0, 1.0, 0.95])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_gae_matches_loop_reference(lam: float, gamma: float) -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, generator=gen)
    values = torch.randn(4, 6, generator=gen)
    token_rewards = 0.1 * torch.randn(4, 6, generator=gen)
    # interior masked tokens (forced), padding, and an empty row
    mask = torch.tensor([[T, T, T, T, T, T], [T, F, T, T, F, F], [F, F, F, F, F, F], [T, T, F, T, F, T]])
    advantages, returns = run(
        "gae",
        rewards=rewards,
        group_ids=torch.arange(4),
        response_mask=mask,
        values=values,
        token_rewards=token_rewards,
        gamma=gamma,
        lam=lam,
        lam_critic=1.0,
    )
    args = (rewards.tolist(), values.tolist(), mask.tolist(), gamma)
    expected_adv = gae_reference(*args, [lam] * 4, token_rewards.tolist())
    critic_adv = gae_reference(*args, [1.0] * 4, token_rewards.tolist())
    expected_ret = [
        [a + v if m else 0.0 for a, v, m in zip(ra, rv, rm, strict=True)]
        for ra, rv, rm in zip(critic_adv, values.tolist(), mask.tolist(), strict=True)
    ]
    torch.testing.assert_close(advantages, torch.tensor(expected_adv))
    torch.testing.assert_close(returns, torch.tensor(expected_ret))


def test_length_adaptive_lambda_hand_computed_and_clamped() -> None:
    # alpha 0.5: l = 3 -> 1 - 1/1.5 = 1/3; l = 1 -> 1 - 1/0.5 = -1 -> clamped to 0;
    # l = 0 -> -inf -> 0; l = 40 -> 1 - 1/20 = 0.95.
    mask = torch.zeros(4, 40, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, :1] = True
    mask[3, :] = True
    lam = length_adaptive_lambda(mask, alpha=0.5)
    torch.testing.assert_close(lam, torch.tensor([1 / 3, 0.0, 0.0, 0.95]))


def test_gae_length_adaptive_matches_loop_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    rewards = torch.tensor([1.0, -1.0, 1.0])
    values = torch.randn(3, 50, generator=gen)
    lengths = [50, 30, 10]
    mask = torch.arange(50)[None, :] < torch.tensor(lengths)[:, None]
    alpha = 0.05  # VAPO: lam = 1 - 1/(0.05 l): l=50 -> 0.6, l=30 -> 1/3, l=10 -> -1 -> 0
    advantages, returns = run(
        "gae",
        rewards=rewards,
        group_ids=torch.tensor([0, 0, 0]),
        response_mask=mask,
        values=values,
        length_adaptive_alpha=alpha,
    )
    lams = [0.6, 1 / 3, 0.0]
    args = (rewards.tolist(), values.tolist(), mask.tolist(), 1.0)
    torch.testing.assert_close(advantages, torch.tensor(gae_reference(*args, lams)))
    # critic targets with lam_critic 1, gamma 1: the outcome reward on every valid token
    torch.testing.assert_close(returns, torch.where(mask, rewards[:, None], 0.0).expand(3, 50))


def test_gae_whitening_and_values_required() -> None:
    values = torch.tensor([[0.5, 0.2, 0.1], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[T, T, T], [T, T, F]])
    common = dict(rewards=torch.tensor([1.0, 0.0]), group_ids=torch.tensor([0, 1]), response_mask=mask)
    # lam 1 raw advantages: row 0 [0.5, 0.8, 0.9], row 1 [0, 0]; whitened over those 5 values.
    advantages, _ = run("gae", values=values, whiten_advantages=True, **common)
    w = whiten_reference([0.5, 0.8, 0.9, 0.0, 0.0])
    torch.testing.assert_close(advantages, torch.tensor([[w[0], w[1], w[2]], [w[3], w[4], 0.0]]))
    with pytest.raises(ValueError, match="values"):
        run("gae", **common)


def test_last_token_mask() -> None:
    mask = torch.tensor([[T, T, F], [T, F, T], [F, F, F]])
    expected = torch.tensor([[F, T, F], [F, F, T], [F, F, F]])
    assert torch.equal(last_token_mask(mask), expected)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="rewards"):
        AdvantageInputs(rewards=torch.zeros(4), response_mask=MASK, group_ids=GROUP_IDS)
    with pytest.raises(TypeError, match="response_mask"):
        AdvantageInputs(rewards=REWARDS, response_mask=MASK.float(), group_ids=GROUP_IDS)
    with pytest.raises(ValueError, match="lam"):
        AdvantageInputs(rewards=REWARDS, response_mask=MASK, group_ids=GROUP_IDS, lam=1.5)
    with pytest.raises(ValueError, match="norm_eps"):
        AdvantageInputs(rewards=REWARDS, response_mask=MASK, group_ids=GROUP_IDS, norm_eps=0.0)


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
def test_discounted_returns_match_loop(gamma: float) -> None:
    from thinkrl.rl import compute_discounted_returns

    gen = torch.Generator().manual_seed(2)
    rewards = torch.randn(3, 7, generator=gen)
    mask = torch.tensor([[T] * 7, [T, F, T, F, F, T, F], [F] * 7])
    rewards = torch.where(mask, rewards, 0.0)
    expected = []
    for row_r, row_m in zip(rewards.tolist(), mask.tolist(), strict=True):
        out, running = [0.0] * 7, 0.0
        for t in reversed(range(7)):
            if row_m[t]:
                running = row_r[t] + gamma * running
                out[t] = running
        expected.append(out)
    torch.testing.assert_close(compute_discounted_returns(rewards, mask, gamma), torch.tensor(expected))
