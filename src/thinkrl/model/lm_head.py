"""Log-probabilities of target tokens through the LM head, fused and chunked (no (M, V) logits kept).

The training losses need, at each response position, only ``log softmax(h W^T / tau)[target]`` and the entropy
of that distribution. Computing ``logits = h W^T`` for every position at once and letting autograd keep them
stores M x V floats for the backward (and a second M x V for the log-softmax); with a real vocabulary
(155K for Seed-OSS) that dominates the step's memory. `response_logprobs` walks the positions in chunks, keeps
only the per-position log-sum-exp for the backward, and recomputes each chunk's logits there: peak extra memory is
one chunk of logits, for one extra (chunk x C x V) matmul in the backward.

Shapes: M positions, C hidden size, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _chunk_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, temperature: float) -> Tensor:
    """(m, C) x (V, C) -> (m, V) logits (float32, or float64 for float64 inputs) divided by the temperature."""
    logits = torch.nn.functional.linear(hidden, weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits / temperature if temperature != 1.0 else logits


class _ResponseLogprobs(torch.autograd.Function):
    """Forward: per-chunk logits -> (log-prob of target, entropy, log-sum-exp); backward recomputes the logits."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, target_ids: Tensor,
                temperature: float, chunk_size: int) -> tuple[Tensor, Tensor]:
        m, dtype = hidden.shape[0], torch.promote_types(hidden.dtype, torch.float32)
        logprobs, entropy, lse = (hidden.new_empty(m, dtype=dtype) for _ in range(3))
        for start in range(0, m, chunk_size):
            end = min(m, start + chunk_size)
            logits = _chunk_logits(hidden[start:end], weight, bias, temperature)  # [m, V]
            chunk_lse = torch.logsumexp(logits, dim=-1)  # [m]
            lse[start:end] = chunk_lse
            logprobs[start:end] = logits.gather(-1, target_ids[start:end, None]).squeeze(-1) - chunk_lse
            entropy[start:end] = chunk_lse - (logits.softmax(-1) * logits).sum(-1)  # as rl.entropy_from_logits
        ctx.save_for_backward(hidden, weight, bias, target_ids, lse)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx: Any, grad_logprobs: Tensor, _grad_entropy: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, target_ids, lse = ctx.saved_tensors
        temperature, chunk = ctx.temperature, ctx.chunk_size
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_h else None
        dtype = lse.dtype  # accumulate the head's gradient in float32 (float64 for float64 inputs)
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_w else None
        grad_bias = torch.zeros(weight.shape[0], dtype=dtype, device=weight.device) if need_b else None
        for start in range(0, hidden.shape[0], chunk):
            end = min(hidden.shape[0], start + chunk)
            logits = _chunk_logits(hidden[start:end], weight, bias, temperature)  # [m, V]
            g = grad_logprobs[start:end]  # [m]
            # d logprob / d logits = onehot(target) - softmax; times the incoming grad, over the temperature
            grad_logits = (logits - lse[start:end, None]).exp_().mul_(-g[:, None])  # [m, V]
            grad_logits.scatter_add_(-1, target_ids[start:end, None], g[:, None])
            if temperature != 1.0:
                grad_logits.div_(temperature)
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[start:end] = grad_logits @ weight  # [m, C]
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.t().to(dtype), hidden[start:end].to(dtype))  # [V, C]
            if grad_bias is not None:
                grad_bias += grad_logits.to(dtype).sum(0)
        return (grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(bias.dtype), None, None, None)


def response_logprobs(hidden: Tensor, weight: Tensor, target_ids: Tensor, temperature: float = 1.0,
                      bias: Tensor | None = None, chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Log-probability and entropy of each target under ``softmax((hidden @ weight.T + bias) / temperature)``.

    hidden: (M, C) float — final-normed hidden states at the positions that predict the targets;
    weight: (V, C) — the LM head (tied or not); target_ids: (M,) int in [0, V); bias: (V,) or None;
    temperature > 0; chunk_size: positions per chunk (peak extra memory ~ chunk_size x V floats).
    Returns (logprobs (M,) with grad to hidden/weight/bias, entropy (M,) without grad), float32 (float64 for
    float64 inputs).
    Equal to ``token_logprobs(lm_head(hidden) / temperature, target_ids)`` to float32 rounding.
    """
    if hidden.dim() != 2 or target_ids.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be (M, C) and target_ids (M,), got {tuple(hidden.shape)} and "
                         f"{tuple(target_ids.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must be (V, {hidden.shape[1]}), got {tuple(weight.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _ResponseLogprobs.apply(hidden, weight, bias, target_ids.long(), float(temperature), int(chunk_size))
