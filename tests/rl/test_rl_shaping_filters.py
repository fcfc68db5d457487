"""Reward shaping and group filters against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from thinkrl.rl import (
    budget_limit_penalty,
    budget_overlong_penalty,
    budget_penalty,
    group_has_variance,
    group_stats,
    soft_overlong_penalty,
)


def test_soft_overlong_penalty_boundaries() -> None:
    # L_max 10, L_cache 4 -> free up to 6; (6 - l) / 4 on (6, 10]; -1 beyond 10.
    lengths = torch.tensor([0, 6, 7, 8, 10, 11, 100])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0])
    torch.testing.assert_close(soft_overlong_penalty(lengths, max_len=10, cache_len=4), expected)


def test_soft_overlong_penalty_paper_values() -> None:
    # DAPO: L_max 20480, L_cache 4096 -> penalty starts after 16384; 18432 is half-way (-0.5).
    lengths = torch.tensor([16384, 16385, 18432, 20480, 20481])
    out = soft_overlong_penalty(lengths, max_len=20480, cache_len=4096)
    torch.testing.assert_close(out, torch.tensor([0.0, -1 / 4096, -0.5, -1.0, -1.0]))


def test_soft_overlong_penalty_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cache_len"):
        soft_overlong_penalty(torch.tensor([1]), max_len=10, cache_len=11)
    with pytest.raises(TypeError, match="lengths"):
        soft_overlong_penalty(torch.tensor([1.0]), max_len=10, cache_len=4)


def test_budget_penalty() -> None:
    lengths = torch.tensor([100, 300, 200])
    # -alpha |budget - used| = -0.001 * [100, 100, 0]
    torch.testing.assert_close(budget_penalty(lengths, 200, 0.001), torch.tensor([-0.1, -0.1, 0.0]))
    # per-response budgets; -1 (unlimited) has no penalty: -0.001 * [|50 - 100|, 0, |1000 - 200|]
    budgets = torch.tensor([50, -1, 1000])
    torch.testing.assert_close(budget_penalty(lengths, budgets, 0.001), torch.tensor([-0.05, 0.0, -0.8]))
    with pytest.raises(TypeError, match="budget"):
        budget_penalty(lengths, 2.5, 0.001)  # type: ignore[arg-type]


def test_budget_overlong_penalty_uses_each_budget_as_the_limit() -> None:
    # Budget 16, frac 0.25 -> L_cache 4, free up to 12: 12 -> 0, 13 -> -0.25, 14 -> -0.5, 16 -> -1, 17 -> -1.
    # Budget 10, frac 0.25 -> L_cache ceil(2.5) = 3, free up to 7: 8 -> -1/3.
    # Budget 1 -> L_cache 1, free 0: 0 -> 0, 1 -> -1.  Budget 0: any thinking -> -1.  Budget -1: never.
    used = torch.tensor([12, 13, 14, 16, 17, 8, 0, 1, 0, 3, 500])
    budgets = torch.tensor([16, 16, 16, 16, 16, 10, 1, 1, 0, 0, -1])
    expected = torch.tensor([0.0, -0.25, -0.5, -1.0, -1.0, -1 / 3, 0.0, -1.0, 0.0, -1.0, 0.0])
    torch.testing.assert_close(budget_overlong_penalty(used, budgets, 0.25), expected)
    # cache_frac 1: the ramp spans the whole budget (8 of 16 used -> -0.5).
    torch.testing.assert_close(budget_overlong_penalty(torch.tensor([8]), torch.tensor([16]), 1.0),
                               torch.tensor([-0.5]))
    with pytest.raises(ValueError, match="cache_frac"):
        budget_overlong_penalty(used, budgets, 0.0)
    with pytest.raises(ValueError, match="budgets"):
        budget_overlong_penalty(used, budgets[:3], 0.25)


def test_group_has_variance() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 3.0])
    group_ids = torch.tensor([4, 4, 9, 9, 9, 2, 2, 5])  # group 5 is a singleton
    expected = torch.tensor([False, False, True, True, True, False, False, False])
    assert torch.equal(group_has_variance(rewards, group_ids), expected)
    # a difference below eps counts as equal
    near = torch.tensor([1.0, 1.0 + 5e-7])  # representable in float32, below eps=1e-6
    assert not group_has_variance(near, torch.tensor([0, 0])).any()
    assert group_has_variance(near, torch.tensor([0, 0]), eps=0.0).all()


def test_group_stats() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.5])
    group_ids = torch.tensor([4, 4, 9, 9, 9, 2])
    stats = group_stats(rewards, group_ids)
    assert stats.group_ids.tolist() == [2, 4, 9]
    assert stats.size.tolist() == [1, 2, 3]
    # group 9: mean 1/3, unbiased var ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3; singleton std 0
    torch.testing.assert_close(stats.mean, torch.tensor([0.5, 1.0, 1 / 3]))
    torch.testing.assert_close(stats.std, torch.tensor([0.0, 0.0, math.sqrt(1 / 3)]))
    torch.testing.assert_close(stats.mean[stats.index], torch.tensor([1.0, 1.0, 1 / 3, 1 / 3, 1 / 3, 0.5]))


def test_group_inputs_validated() -> None:
    with pytest.raises(ValueError, match="group_ids"):
        group_stats(torch.zeros(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="group_ids"):
        group_has_variance(torch.zeros(3), torch.zeros(3))


def test_masked_reductions() -> None:
    from thinkrl.rl import masked_mean, masked_sum, masked_var, masked_whiten

    values = torch.tensor([[1.0, 2.0, float("nan")], [3.0, float("inf"), 6.0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    # valid: 1, 2, 3, 6 -> sum 12, mean 3, unbiased var (4 + 1 + 0 + 9) / 3 = 14/3
    torch.testing.assert_close(masked_sum(values, mask), torch.tensor(12.0))
    torch.testing.assert_close(masked_mean(values, mask), torch.tensor(3.0))
    torch.testing.assert_close(masked_var(values, mask), torch.tensor(14 / 3))
    std = math.sqrt(14 / 3)
    expected = torch.tensor([[-2 / (std + 0.1), -1 / (std + 0.1), 0.0], [0.0, 0.0, 3 / (std + 0.1)]])
    torch.testing.assert_close(masked_whiten(values, mask, eps=0.1), expected)
    # fewer than two valid elements: variance 0, empty mean 0
    assert masked_var(values, torch.tensor([[True, False, False], [False] * 3])).item() == 0.0
    assert masked_mean(values, torch.zeros(2, 3, dtype=torch.bool)).item() == 0.0


def test_budget_limit_penalty_is_a_hard_limit() -> None:
    # Budget 16: 16 thinking tokens are within it (0), 17 are over (-1). Budget 0: any thinking is over.
    # Budget -1: never penalised.
    used = torch.tensor([0, 15, 16, 17, 0, 1, 10_000])
    budgets = torch.tensor([16, 16, 16, 16, 0, 0, -1])
    expected = torch.tensor([0.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0])
    torch.testing.assert_close(budget_limit_penalty(used, budgets), expected)
    with pytest.raises(ValueError, match="budgets"):
        budget_limit_penalty(used, budgets[:2])


def test_with_weight_two_an_in_budget_answer_never_scores_below_an_overrun() -> None:
    # Rewards +1/-1 plus 2 x penalty, for every verdict pair and every in-budget length up to the limit of 16.
    budget = torch.tensor([16])
    within = [v + 2 * float(budget_limit_penalty(torch.tensor([n]), budget)) for v in (1.0, -1.0) for n in range(17)]
    over = [v + 2 * float(budget_limit_penalty(torch.tensor([n]), budget)) for v in (1.0, -1.0) for n in (17, 40)]
    assert min(within) >= max(over) == -1.0
    assert all(v == 1.0 for v in within[:17])  # a correct answer keeps its full reward up to the very limit
    # The ramp of budget_overlong_penalty does not have this property: at the limit a correct answer scores -1.
    assert 1.0 + 2 * float(budget_overlong_penalty(torch.tensor([16]), budget, 0.25)) == -1.0
