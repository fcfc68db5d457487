"""`agg_loss`: the one reduction from a per-token loss matrix to a scalar loss.

Modes (B rows, valid tokens given by the mask; a "sequence" is a row with at
least one valid token):

* ``token-mean`` — sum over all valid tokens / number of valid tokens
  (DAPO token-level loss, arXiv 2503.14476 §3.3: long responses weigh by
  their length). With gradient accumulation pass ``num_tokens`` = the valid
  token count of the whole mini-batch, so each micro-batch divides by the
  same global count and the accumulated gradient equals the full-batch one.
* ``seq-mean-token-mean`` — mean over sequences of each sequence's token mean
  (original GRPO, arXiv 2402.03300).
* ``seq-mean-token-sum`` — mean over sequences of each sequence's token sum.
* ``seq-mean-token-sum-norm`` — mean over sequences of token sum /
  ``max_response_len``, a constant (Dr. GRPO, arXiv 2503.20783: removes the
  1/|o_i| length bias). Pass the generation limit so the constant does not
  change between micro-batches; default: the R of ``loss_mat``.

For the three ``seq-mean-*`` modes pass ``num_sequences`` (the mini-batch
sequence count) for gradient accumulation. Masked elements never reach the
result nor receive gradient, even if they hold inf or NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from thinkrl.rl._checks import check_range, check_tensor

AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


def _denominator(name: str, given: float | Tensor | None, counted: Tensor) -> Tensor:
    """A global count when given (checked > 0 if a Python number), else the local count."""
    if given is None:
        return counted.clamp_min(1).float()
    if isinstance(given, Tensor):
        return given.to(device=counted.device, dtype=torch.float32)
    check_range(name, given, low=0.0, low_inclusive=False)
    return torch.tensor(float(given), device=counted.device)


def agg_loss(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    max_response_len: int | None = None,
) -> Tensor:
    """Reduce a per-token loss matrix to a scalar (see the module docstring for the modes).

    Args:
        loss_mat: (B, R) float — per-token loss.
        mask: (B, R) bool — True for tokens that enter the loss.
        mode: one of `AGG_MODES`.
        num_tokens: "token-mean" only — divide by this (global valid-token
            count of the mini-batch) instead of the local count.
        num_sequences: "seq-mean-*" only — divide by this (global sequence
            count) instead of the local number of rows with a valid token.
        max_response_len: "seq-mean-token-sum-norm" only — the constant length
            normaliser, >= 1; default R.

    Returns:
        0-dim float32 loss; 0 (still connected to the graph) when no token is valid.
    """
    check_tensor("loss_mat", loss_mat, kind="float", ndim=2)
    check_tensor("mask", mask, kind="bool", shape=loss_mat.shape)
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; allowed: {', '.join(AGG_MODES)}")
    if num_tokens is not None and mode != "token-mean":
        raise ValueError(f"num_tokens applies to mode 'token-mean' only, not {mode!r}; use num_sequences")
    if num_sequences is not None and mode == "token-mean":
        raise ValueError("num_sequences applies to the 'seq-mean-*' modes only; use num_tokens")
    if max_response_len is not None and mode != "seq-mean-token-sum-norm":
        raise ValueError(f"max_response_len applies to mode 'seq-mean-token-sum-norm' only, not {mode!r}")
    masked = torch.where(mask, loss_mat.float(), 0.0)  # [B, R]
    if mode == "token-mean":
        return masked.sum() / _denominator("num_tokens", num_tokens, mask.sum())
    token_sum = masked.sum(dim=-1)  # [B]
    lengths = mask.sum(dim=-1)  # [B]
    if mode == "seq-mean-token-mean":
        per_sequence = token_sum / lengths.clamp_min(1)
    elif mode == "seq-mean-token-sum":
        per_sequence = token_sum
    else:
        norm = loss_mat.shape[-1] if max_response_len is None else max_response_len
        check_range("max_response_len", norm, low=1)
        per_sequence = token_sum / norm
    return per_sequence.sum() / _denominator("num_sequences", num_sequences, (lengths > 0).sum())
