"""Length-based reward shaping: DAPO soft overlong punishment, L1/LCPO budget penalty.

Both return a per-response term that the reward stage *adds* to the outcome
reward before advantages are computed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from thinkrl.rl._checks import check_range, check_tensor


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO soft overlong punishment (Yu et al. 2025, arXiv 2503.14476 §3.4).

    With ``L_max = max_len`` and ``L_cache = cache_len``::

        R_length(l) = 0                               if l <= L_max - L_cache
                      ((L_max - L_cache) - l) / L_cache  if L_max - L_cache < l <= L_max
                      -1                              if l > L_max

    The middle piece falls linearly from 0 to -1, so the function is
    continuous. Paper values: L_max 20480, L_cache 4096.

    Args:
        lengths: (B,) int — response lengths in tokens.
        max_len: L_max, >= 1.
        cache_len: L_cache, in [1, max_len].

    Returns:
        (B,) float32 penalty in [-1, 0].
    """
    check_tensor("lengths", lengths, kind="int", ndim=1)
    check_range("max_len", max_len, low=1)
    check_range("cache_len", cache_len, low=1, high=max_len)
    free = max_len - cache_len
    ramp = (free - lengths.float()) / cache_len
    penalty = torch.where(lengths <= free, torch.zeros_like(ramp), ramp)
    return torch.where(lengths > max_len, torch.full_like(ramp, -1.0), penalty)


def budget_penalty(lengths: Tensor, budget: int | Tensor, alpha: float) -> Tensor:
    """L1 / LCPO-Exact length penalty (Aggarwal & Welleck 2025, arXiv 2503.04697).

    ``-alpha * |budget - used|``: penalises both overshooting and undershooting
    the requested number of tokens (LCPO's reward is
    ``correct - alpha * |n_gold - n_y|``). A negative budget means "unlimited"
    (Seed-OSS convention, -1) and gets no penalty.

    Args:
        lengths: (B,) int — tokens used (e.g. thinking tokens).
        budget: int, or (B,) int tensor of per-response budgets.
        alpha: penalty per token, >= 0 (L1 paper: 0.0003).

    Returns:
        (B,) float32 penalty, <= 0.
    """
    check_tensor("lengths", lengths, kind="int", ndim=1)
    check_range("alpha", alpha, low=0.0)
    if isinstance(budget, Tensor):
        budgets = check_tensor("budget", budget, kind="int", shape=lengths.shape)
    elif isinstance(budget, int) and not isinstance(budget, bool):
        budgets = torch.full_like(lengths, budget)
    else:
        raise TypeError(f"budget must be an int or a (B,) int tensor, got {type(budget).__name__}")
    penalty = -alpha * (budgets - lengths).abs().float()
    return torch.where(budgets < 0, torch.zeros_like(penalty), penalty)


def budget_limit_penalty(thinking_tokens: Tensor, budgets: Tensor) -> Tensor:
    """A hard thinking-budget limit: 0 within each response's budget, -1 past it.

    With weight ``w = correct - wrong reward`` (2 for +1/-1 rewards) a response that stays within its budget never
    scores below one that overran it, whatever the two verdicts (a correct overrun scores ``1 - 2 = -1``, the same as
    a wrong answer within the budget, so overrunning never pays), and a correct answer within the budget keeps its
    full reward however close to the limit it ends. `budget_overlong_penalty`'s ramp instead charges in-budget
    answers near the limit: at its end a correct answer scores like an overrun.

    Args:
        thinking_tokens: (B,) int — thinking tokens each response used.
        budgets: (B,) int — each response's budget (-1 unlimited: never penalised; 0: any thinking token is over).

    Returns:
        (B,) float32 penalty in {-1, 0}.
    """
    check_tensor("thinking_tokens", thinking_tokens, kind="int", ndim=1)
    check_tensor("budgets", budgets, kind="int", shape=thinking_tokens.shape)
    over = (budgets >= 0) & (thinking_tokens > budgets)
    return torch.where(over, -1.0, 0.0).to(torch.float32)


def budget_overlong_penalty(thinking_tokens: Tensor, budgets: Tensor, cache_frac: float) -> Tensor:
    """DAPO's soft overlong punishment with each response's thinking budget as the limit.

    Budget-aware RL (Seed-OSS thinking budget): a response rendered with budget ``B > 0`` is
    punished like `soft_overlong_penalty` with ``L_max = B`` and ``L_cache = max(1, ceil(cache_frac·B))``,
    applied to its *thinking* tokens: 0 up to ``B - L_cache``, a linear ramp to -1 at ``B``, -1 beyond.
    Budget 0 (answer at once): -1 for any thinking token. Budget -1 (unlimited): 0.

    Args:
        thinking_tokens: (B,) int — thinking tokens each response used.
        budgets: (B,) int — each response's budget (-1 unlimited, 0, or a positive count).
        cache_frac: in (0, 1] — the ramp's share of the budget (DAPO's paper values give 0.2).

    Returns:
        (B,) float32 penalty in [-1, 0].
    """
    check_tensor("thinking_tokens", thinking_tokens, kind="int", ndim=1)
    check_tensor("budgets", budgets, kind="int", shape=thinking_tokens.shape)
    check_range("cache_frac", cache_frac, low=0.0, high=1.0, low_inclusive=False)
    used = thinking_tokens.float()
    limit = budgets.float()
    cache = torch.ceil(cache_frac * limit).clamp_min(1.0)
    free = limit - cache
    ramp = (free - used) / cache
    penalty = torch.where(used <= free, torch.zeros_like(ramp), ramp)
    penalty = torch.where(used > limit, torch.full_like(ramp, -1.0), penalty)
    penalty = torch.where((budgets == 0) & (used == 0), torch.zeros_like(penalty), penalty)  # no ramp at 0
    return torch.where(budgets < 0, torch.zeros_like(penalty), penalty)
