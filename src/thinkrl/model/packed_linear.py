"""Prepacked (oneDNN) weights for the linear layers of a model used for CPU inference.

A skinny fp32 matmul on CPU (a decode step: 64 rows times a 256 x 768 weight) spends a large part of its time
re-laying out the weight for the kernel on every call; measured on the 2-core dev box, the layers of a 3.3M model
run at ~62-68 GFLOP/s through ``F.linear`` against ~87 GFLOP/s with the weights reordered once for oneDNN
(``torch.ops.mkldnn._reorder_linear_weight``) and multiplied by ``torch.ops.mkldnn._linear_pointwise``.
`pack_linears` installs that on every ``nn.Linear`` of a model. It is a pure speed change: the products agree
with ``F.linear`` to fp32 rounding (different summation order), not bit for bit.

Each packed layer keeps an eye on its weight: when the weight tensor was changed in place (its version counter
moved, as ``copy_`` does in ``update_weights``) or replaced, the packed copy is rebuilt before the next call. Calls
that need autograd (grad mode on and a weight or input that requires grad) take ``F.linear``, so a model with packed
linears still trains correctly. Costs one extra copy of the linear weights in memory.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def packed_linears_unsupported_reason(model: nn.Module) -> str | None:
    """Why `pack_linears` cannot serve ``model`` (None when it can): CPU, float32, a torch with oneDNN."""
    param = next(model.parameters(), None)
    if param is None:
        return "the model has no parameters"
    if param.device.type != "cpu":
        return f"the model is on {param.device.type}, packed linears are for CPU"
    if param.dtype != torch.float32:
        return f"the model is {param.dtype}, packed linears are float32 only"
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return "this torch build has no oneDNN (mkldnn) linear"
    return None


class _PackedForward:
    """The ``forward`` of one ``nn.Linear``: oneDNN on its reordered weight, F.linear when autograd is needed."""

    def __init__(self, linear: nn.Linear, batch_hint: int) -> None:
        self.linear, self.batch_hint = linear, batch_hint
        self.stamp: tuple[int, int, int] | None = None
        self.packed: torch.Tensor | None = None
        self.packs = 0  # how many times the weight was (re)packed; tests read it

    def _fresh_packed(self) -> torch.Tensor:
        weight = self.linear.weight
        stamp = (id(weight), weight.data_ptr(), weight._version)
        if stamp != self.stamp or self.packed is None:
            with torch.no_grad():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), self.batch_hint)
            self.stamp, self.packs = stamp, self.packs + 1
        return self.packed

    def __deepcopy__(self, memo: dict) -> _PackedForward:
        """A copied model gets its own (not yet packed) forward bound to the copied linear."""
        return _PackedForward(copy.deepcopy(self.linear, memo), self.batch_hint)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in_features) -> (..., out_features)."""
        weight, bias = self.linear.weight, self.linear.bias
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return F.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x, self._fresh_packed(), bias, "none", [], "")


def pack_linears(model: nn.Module, batch_hint: int = 64) -> list[nn.Linear]:
    """Route every ``nn.Linear`` of ``model`` through prepacked oneDNN weights (see the module docstring).

    ``batch_hint``: the typical number of rows per call (the oneDNN layout is chosen for it; any row count works).
    Returns the linears changed; `unpack_linears` undoes it.

    Raises:
        ValueError: the model is not a float32 CPU model or torch has no oneDNN (the reason is named).
    """
    reason = packed_linears_unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"pack_linears: {reason}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in linears:
        linear.forward = _PackedForward(linear, batch_hint)  # type: ignore[method-assign]
    return linears


def unpack_linears(model: nn.Module) -> None:
    """Back to the class's ``forward`` for every linear that `pack_linears` changed."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and isinstance(module.__dict__.get("forward"), _PackedForward):
            del module.forward
