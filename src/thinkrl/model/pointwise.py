"""Opt-in ``torch.compile`` of the decoder's pointwise pieces: RMSNorm, rotary embedding, SwiGLU's activation.

Eagerly, each of these is several full passes over an (N, C) activation (RMSNorm: square, mean, rsqrt, two
multiplies; rope: slice, negate, cat, two multiplies, add; SwiGLU: silu, multiply) and as many again in the
backward. On CPU at training sizes (N ~ 10K tokens) those passes are memory-bound and cost a large share of a step;
compiled (Inductor, C++ with vectorised loops) each piece is one pass forward and one backward. Only these small
functions are compiled, with dynamic shapes, so a packed batch of any length reuses them; the first call of each
compiles (tens of seconds on a 2-core CPU), so it pays in training runs and benchmarks, not in short tests.
Results equal the eager ones to float32 rounding (``tests/model/test_pointwise.py``, marked slow).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import torch
from torch import nn

from thinkrl.model.decoder import Attention
from thinkrl.model.layers import RMSNorm, SwiGLU, apply_rope, rms_norm, silu_mul


def rope_pair(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
              sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q (..., H, D), k (..., K, D) rotated by cos/sin (..., D) -> (q, k)."""
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin)


class _Kernels(NamedTuple):
    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    rope: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    silu_mul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@cache
def _compiled() -> _Kernels:
    """The compiled kernels, built once per process (compilation itself happens at the first call)."""
    return _Kernels(rms_norm=torch.compile(rms_norm, dynamic=True), rope=torch.compile(rope_pair, dynamic=True),
                    silu_mul=torch.compile(silu_mul, dynamic=True))


def compile_pointwise(model: nn.Module) -> int:
    """Route the pointwise pieces of every RMSNorm, attention and SwiGLU of ``model`` through compiled kernels.

    Returns how many modules were changed; `uncompile_pointwise` undoes it.
    """
    kernels = _compiled()
    changed = 0
    for module in model.modules():
        if isinstance(module, RMSNorm):
            module.kernel = kernels.rms_norm
        elif isinstance(module, SwiGLU):
            module.activation = kernels.silu_mul
        elif isinstance(module, Attention):
            module.rope_kernel = kernels.rope
        else:
            continue
        changed += 1
    return changed


def uncompile_pointwise(model: nn.Module) -> None:
    """Back to the eager pointwise functions."""
    for module in model.modules():
        if isinstance(module, RMSNorm):
            module.kernel = rms_norm
        elif isinstance(module, SwiGLU):
            module.activation = silu_mul
        elif isinstance(module, Attention):
            module.rope_kernel = None
