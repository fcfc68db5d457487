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
linears still trains correctly; so do calls traced by ``torch.compile``. Costs one extra copy of the linear weights in
memory.

A oneDNN call also costs ~12 us more than ``F.linear``'s, which only a large enough weight earns back. Measured on the
same box (fp32, 1 thread, `thinkrl bench engine-cpu`): a 64 x 256 weight takes 17.7 us packed against 7.8 us plain
at 13 rows, and a decode step of a model whose layers are all under 32K weights is 8-29% faster unpacked; from 64K
weights (256 x 256) packing wins inside a model's decode step, where the weights are no longer hot in cache as in a
one-layer loop. ``min_weights`` leaves the smaller layers plain.
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


class _PackedGroup:
    """Linears that read the same input, packed as one oneDNN weight (their output rows concatenated).

    Called with x (..., in_features): their outputs concatenated on the last dim, or None when autograd is needed
    (the caller then runs the linears one by one). One linear: `_PackedLinear`.
    """

    def __init__(self, linears: list[nn.Linear], batch_hint: int) -> None:
        self.linears, self.batch_hint = linears, batch_hint
        self.stamp: tuple[tuple[int, int, int], ...] | None = None  # (id, address, version) of each tensor
        self.packed: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.packs = 0  # how many times the weights were (re)packed; tests read it

    def _fresh_packed(self) -> torch.Tensor:
        stamp = tuple((id(t), t.data_ptr(), t._version) for m in self.linears for t in (m.weight, m.bias)
                      if t is not None)
        if stamp != self.stamp or self.packed is None:
            with torch.no_grad():
                weight = torch.cat([m.weight.detach() for m in self.linears])  # [sum out, in]
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, self.batch_hint)
                biases = [m.bias for m in self.linears]
                self.bias = None if all(b is None for b in biases) else torch.cat([
                    m.weight.new_zeros(m.out_features) if m.bias is None else m.bias.detach() for m in self.linears])
            self.stamp, self.packs = stamp, self.packs + 1
        return self.packed

    def __deepcopy__(self, memo: dict) -> _PackedGroup:
        """A copied model gets its own (not yet packed) group bound to the copied linears."""
        return type(self)([copy.deepcopy(m, memo) for m in self.linears], self.batch_hint)

    def needs_autograd(self, x: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (x.requires_grad or any(m.weight.requires_grad for m in self.linears))

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """x: (..., in_features) -> (..., sum of out_features), or None under autograd.

        Traced by ``torch.compile`` (the engine's compiled CPU decode step), it is None too (the linears one by one):
        Inductor generates its own matmul calls, and the version checks here would break its graph."""
        if torch.compiler.is_compiling() or self.needs_autograd(x):
            return None
        packed = self._fresh_packed()
        return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")


class _PackedLinear(_PackedGroup):
    """A group of one linear, installed as its ``forward``: the same signature as ``nn.Linear.forward`` (``input``
    may be passed by name) and never None (F.linear under autograd or ``torch.compile``)."""

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        out = super().__call__(input)
        return F.linear(input, self.linears[0].weight, self.linears[0].bias) if out is None else out


FUSED_GROUPS = {"fused_qkv": ("q_proj", "k_proj", "v_proj"), "fused_gate_up": ("gate_proj", "up_proj")}
"""Module attribute that receives a packed group -> the linears (child names) it concatenates. A module opts in by
defining the attribute (None) and using its output when it is not None (`Attention`, `SwiGLU`)."""


PACK_MIN_WEIGHTS = 1 << 16
"""Fewest weights (in x out; a fused group: all of its weights) for which packing pays (module docstring)."""


def pack_linears(model: nn.Module, batch_hint: int = 64, min_weights: int = 0) -> int:
    """Route every ``nn.Linear`` of ``model`` with at least ``min_weights`` weights through prepacked oneDNN weights
    (see the module docstring), and give each module that declares a fused group (`FUSED_GROUPS`: q/k/v, gate/up)
    of at least ``min_weights`` weights together one packed weight for it.

    ``batch_hint``: the typical number of rows per call (the oneDNN layout is chosen for it; any row count works).
    Returns how many packed weights were installed (linears and fused groups; 0: every layer was too small);
    `unpack_linears` undoes it.

    Raises:
        ValueError: the model is not a float32 CPU model or torch has no oneDNN (the reason is named).
    """
    reason = packed_linears_unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"pack_linears: {reason}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.numel() >= min_weights]
    for linear in linears:
        linear.forward = _PackedLinear([linear], batch_hint)  # type: ignore[method-assign]  # on purpose: per instance
    installed = len(linears)
    for module in model.modules():
        for attribute, names in FUSED_GROUPS.items():
            group = [getattr(module, n) for n in names] if hasattr(module, attribute) else []
            if group and sum(m.weight.numel() for m in group) >= min_weights:
                setattr(module, attribute, _PackedGroup(group, batch_hint))
                installed += 1
    return installed


def unpack_linears(model: nn.Module) -> None:
    """Back to the plain ``forward`` of every linear and no fused groups."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and isinstance(module.__dict__.get("forward"), _PackedGroup):
            del module.forward
        for attribute in FUSED_GROUPS:
            if isinstance(getattr(module, attribute, None), _PackedGroup):
                setattr(module, attribute, None)
