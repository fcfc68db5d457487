"""Masked reductions used by the advantage estimators, the losses and metrics.

Every function takes a value tensor and a bool mask of the same shape (True =
the element counts) and ignores masked-out elements completely: they neither
enter the result nor receive gradient, even when they hold inf or NaN.
Statistics are computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from thinkrl.rl._checks import check_range, check_tensor


def _checked(values: Tensor, mask: Tensor) -> Tensor:
    check_tensor("values", values, kind="float")
    check_tensor("mask", mask, kind="bool", shape=values.shape)
    return torch.where(mask, values.float(), 0.0)


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of the valid elements.

    Args:
        values: (...) float.
        mask: (...) bool, same shape — True for elements that count.

    Returns:
        0-dim float32 tensor.
    """
    return _checked(values, mask).sum()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of the valid elements; 0 when no element is valid.

    Args:
        values: (...) float.
        mask: (...) bool, same shape — True for elements that count.

    Returns:
        0-dim float32 tensor.
    """
    total = _checked(values, mask).sum()
    return total / mask.sum().clamp_min(1)


def masked_var(values: Tensor, mask: Tensor) -> Tensor:
    """Unbiased (Bessel-corrected, divide by n - 1) variance of the valid elements.

    Computed in two passes (mean first, then squared deviations) for accuracy.
    With fewer than two valid elements the variance is defined as 0.

    Args:
        values: (...) float.
        mask: (...) bool, same shape — True for elements that count.

    Returns:
        0-dim float32 tensor.
    """
    mean = masked_mean(values, mask)
    deviations = torch.where(mask, values.float() - mean, 0.0)
    count = mask.sum()
    return deviations.square().sum() / (count - 1).clamp_min(1)


def masked_whiten(values: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise the valid elements to zero mean and unit (unbiased) std.

    ``out = (x - mean) / (std + eps)`` on valid elements, 0 elsewhere; ``mean``
    and ``std`` are taken over all valid elements of the tensor (the whole batch).

    Args:
        values: (...) float.
        mask: (...) bool, same shape — True for elements that count.
        eps: added to the std, > 0, so an all-equal input maps to 0 instead of NaN.

    Returns:
        (...) float32 tensor, same shape as ``values``.
    """
    check_range("eps", eps, low=0.0, low_inclusive=False)
    mean = masked_mean(values, mask)
    std = masked_var(values, mask).sqrt()
    return torch.where(mask, (values.float() - mean) / (std + eps), 0.0)
