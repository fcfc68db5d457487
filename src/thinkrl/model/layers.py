"""Building blocks of the decoder: RMSNorm, rotary embeddings, SwiGLU and MoE FFNs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32 (as HF does), then cast back to the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.kernel: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = rms_norm  # or a compiled one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., C) -> (..., C)."""
        return self.kernel(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x (..., C) normalised by its root mean square in fp32, cast back, times weight (C,)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:  # one call, bit for bit the same (a decode step
        return F.rms_norm(x, weight.shape, weight, eps)  # runs five of these on a few rows: call overhead matters)
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU's activation: silu(gate) * up, same shapes."""
    return F.silu(gate) * up


def rope_inverse_frequencies(head_dim: int, theta: float, scaling: dict[str, Any] | None) -> torch.Tensor:
    """Inverse frequencies (D/2,) fp32 for default, linear or llama3 rope scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(is_medium, smoothed, scaled)
    raise ValueError(f"rope type {kind!r} is not supported; supported: default, linear, llama3")


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """cos, sin of shape (*positions.shape, D) for absolute ``positions`` (any shape, long)."""
    freqs = positions.unsqueeze(-1).float() * inv_freq  # [..., D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [..., D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., heads, D) by cos/sin (..., D) (rotate-half convention of HF Llama)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # [..., 1, D]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); names match HF so checkpoints load without renaming."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)
        # gate/up as one prepacked projection, set by `thinkrl.model.pack_linears` (returns None under autograd)
        self.fused_gate_up: Callable[[torch.Tensor], torch.Tensor | None] | None = None
        self.activation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = silu_mul  # or a compiled one

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C) -> ((N, C), aux_loss ()) — the zero aux loss keeps one signature with `MoE`."""
        gate_up = self.fused_gate_up(x) if self.fused_gate_up is not None else None  # [N, 2 I]
        gate, up = gate_up.chunk(2, dim=-1) if gate_up is not None else (self.gate_proj(x), self.up_proj(x))
        return self.down_proj(self.activation(gate, up)), x.new_zeros(())


class MoE(nn.Module):
    """Top-k mixture of SwiGLU experts with softmax gating and an optional shared expert.

    Router probabilities are computed in fp32. The load-balancing auxiliary loss is the
    Switch-Transformer one, ``E * sum_e f_e * P_e`` (f_e: share of routed slots that went
    to expert e, P_e: mean router probability of e); the caller scales it by
    ``router_aux_loss_coef``.
    """

    def __init__(
        self,
        hidden_size: int,
        moe_intermediate_size: int,
        num_experts: int,
        num_experts_per_tok: int,
        shared_expert_intermediate_size: int = 0,
        norm_topk_prob: bool = True,
    ) -> None:
        super().__init__()
        self.num_experts, self.top_k, self.norm_topk_prob = num_experts, num_experts_per_tok, norm_topk_prob
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(hidden_size, moe_intermediate_size) for _ in range(num_experts))
        self.shared_expert = (
            SwiGLU(hidden_size, shared_expert_intermediate_size) if shared_expert_intermediate_size else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C) -> (output (N, C), aux_loss ())."""
        probs = self.gate(x).float().softmax(-1)  # [N, E]
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [N, k]
        if self.norm_topk_prob:
            weights = weights / weights.sum(-1, keepdim=True)
        weights = weights.to(x.dtype)
        out = torch.zeros_like(x)
        flat_chosen = chosen.reshape(-1)  # [N*k]
        token_index = torch.arange(x.shape[0], device=x.device).repeat_interleave(self.top_k)  # [N*k]
        flat_weights = weights.reshape(-1)  # [N*k]
        order = flat_chosen.argsort()
        counts = torch.bincount(flat_chosen, minlength=self.num_experts).tolist()
        start = 0
        for expert, count in zip(self.experts, counts, strict=True):
            if count:
                idx = order[start : start + count]
                rows = token_index[idx]
                y, _ = expert(x[rows])
                out.index_add_(0, rows, y * flat_weights[idx, None])
            start += count
        if self.shared_expert is not None:
            out = out + self.shared_expert(x)[0]
        routed_share = torch.bincount(flat_chosen, minlength=self.num_experts).float() / flat_chosen.numel()
        aux = self.num_experts * (routed_share * probs.mean(0)).sum()
        return out, aux
