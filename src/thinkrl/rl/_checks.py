"""Argument checks shared by the public functions of `thinkrl.rl`.

They run once at a public boundary (never inside a per-token loop) and raise
`ValueError`/`TypeError` naming the argument, what it was and what is allowed.
None of them synchronises with the device: only shapes and dtypes are read.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

DtypeKind = Literal["float", "bool", "int"]


def check_tensor(
    name: str,
    value: object,
    *,
    kind: DtypeKind,
    ndim: int | None = None,
    shape: tuple[int, ...] | torch.Size | None = None,
) -> Tensor:
    """Return ``value`` after checking it is a tensor of the given dtype kind and shape.

    Args:
        name: argument name used in the error message.
        value: the object to check.
        kind: "float" (any floating dtype), "bool", or "int" (any integer dtype, not bool).
        ndim: required number of dimensions, if any.
        shape: required exact shape, if any.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    dtype = value.dtype
    ok = {
        "float": dtype.is_floating_point,
        "bool": dtype == torch.bool,
        "int": not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool,
    }[kind]
    if not ok:
        raise TypeError(f"{name} must have a {kind} dtype, got {dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` after checking it is a real number inside the given interval."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high or value != value:  # value != value catches NaN
        left = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low}"
        right = "inf)" if high is None else f"{high}" + ("]" if high_inclusive else ")")
        raise ValueError(f"{name} must be in {left}, {right}, got {value}")
    return value
