"""Per-group statistics of rewards, and the DAPO dynamic-sampling filter.

A *group* is the set of responses sampled for one prompt; responses share a
``group_id``. Group ids are arbitrary integers (they need not be contiguous or
sorted). These functions are pure: the train/rollout loops decide what to do
with the masks and statistics (drop groups, re-sample, adjust difficulty).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from thinkrl.rl._checks import check_range, check_tensor


@dataclass(frozen=True)
class GroupStats:
    """Reward statistics of each group in a batch.

    Fields (N = number of distinct groups):
        group_ids: (N,) long — the distinct group ids, sorted ascending.
        index: (B,) long — for each response, the row of its group in the
            per-group tensors, so ``stats.mean[stats.index]`` is the (B,) mean
            of each response's group.
        mean: (N,) float32 — mean reward of the group.
        std: (N,) float32 — unbiased (Bessel-corrected, n - 1) standard
            deviation; 0 for a group of one response.
        size: (N,) long — number of responses in the group.
    """

    group_ids: Tensor
    index: Tensor
    mean: Tensor
    std: Tensor
    size: Tensor


def _check_group_inputs(rewards: Tensor, group_ids: Tensor) -> None:
    check_tensor("rewards", rewards, kind="float", ndim=1)
    check_tensor("group_ids", group_ids, kind="int", shape=rewards.shape)


def group_stats(rewards: Tensor, group_ids: Tensor) -> GroupStats:
    """Per-group mean, unbiased std and size of the rewards.

    The std is the sample std with Bessel's correction (divide by n - 1), the
    same as ``torch.std``'s default, which verl and TRL use for GRPO. A group of
    one response has std 0 (not NaN).

    Args:
        rewards: (B,) float — outcome reward of each response.
        group_ids: (B,) int — responses to the same prompt share an id.

    Returns:
        `GroupStats`; statistics are float32.
    """
    _check_group_inputs(rewards, group_ids)
    unique_ids, index = torch.unique(group_ids, sorted=True, return_inverse=True)
    num_groups = unique_ids.shape[0]
    values = rewards.detach().float()
    size = torch.zeros(num_groups, dtype=torch.long, device=rewards.device).index_add_(0, index, torch.ones_like(index))
    total = torch.zeros(num_groups, device=rewards.device).index_add_(0, index, values)
    mean = total / size
    squared = (values - mean[index]).square()
    sum_squared = torch.zeros(num_groups, device=rewards.device).index_add_(0, index, squared)
    std = (sum_squared / (size - 1).clamp_min(1)).sqrt()
    return GroupStats(group_ids=unique_ids, index=index, mean=mean, std=std, size=size)


def group_has_variance(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """For each response, whether the rewards of its group are not all equal.

    DAPO dynamic sampling (arXiv 2503.14476 §3.2, the constraint
    ``0 < |{o_i : is_equivalent(a, o_i)}| < G``) keeps only such groups: a group
    whose rewards are all equal has zero group-normalised advantage and gives
    no gradient. A group "varies" when ``max - min > eps``; a group of one
    response never varies.

    Args:
        rewards: (B,) float — outcome reward of each response.
        group_ids: (B,) int — responses to the same prompt share an id.
        eps: tolerance, >= 0, below which rewards count as equal.

    Returns:
        (B,) bool — True for responses whose group has reward variance.
    """
    _check_group_inputs(rewards, group_ids)
    check_range("eps", eps, low=0.0)
    unique_ids, index = torch.unique(group_ids, return_inverse=True)
    values = rewards.detach().float()
    num_groups = unique_ids.shape[0]
    high = torch.full((num_groups,), -torch.inf, device=rewards.device)
    low = torch.full((num_groups,), torch.inf, device=rewards.device)
    high = high.scatter_reduce(0, index, values, reduce="amax")
    low = low.scatter_reduce(0, index, values, reduce="amin")
    return (high - low)[index] > eps
