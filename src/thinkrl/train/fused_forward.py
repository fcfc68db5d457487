"""The policy's packed forward with the LM head fused into the log-prob computation (see `thinkrl.model.lm_head`).

`forward_responses` (``train/common.py``) materialises (S, R, V) float32 logits for every response slot,
padding included, and autograd keeps them (and a log-softmax's worth) for the backward. `fused_forward_responses`
gives the same `ResponseForward` from the real response positions only (``j < response_lengths[i]``), chunked,
keeping one chunk of logits at a time; the loss is unchanged to float32 rounding
(``tests/train/test_fused_logprobs.py``). Log-probs and entropy are 0 at padding.
"""

from __future__ import annotations

import torch

from thinkrl.model import CausalLM, response_logprobs
from thinkrl.train.batching import PackedBatch
from thinkrl.train.common import ResponseForward

LOGPROB_CHUNK = 1024
"""Response positions per LM-head chunk: peak extra memory ~ LOGPROB_CHUNK x V float32 (2 MiB at V = 512)."""


def fused_forward_responses(model: CausalLM, batch: PackedBatch, temperature: float = 1.0,
                            chunk_size: int = LOGPROB_CHUNK) -> ResponseForward:
    """Packed forward; log-probs (S, R) and entropy (S, R) at the real response positions, 0 on padding."""
    out = model(batch.input_ids, batch.position_ids, batch.cu_seqlens)
    width = batch.response_ids.shape[1]
    real = torch.arange(width, device=batch.response_ids.device)[None, :] < batch.response_lengths[:, None]  # [S, R]
    head = model.lm_head
    logprobs, entropy = response_logprobs(
        out.hidden[batch.response_index[real]], head.weight, batch.response_ids[real],  # [M, C], (V, C), [M]
        temperature if temperature > 0 else 1.0, head.bias, chunk_size)
    zeros = torch.zeros(real.shape, dtype=torch.float32, device=logprobs.device)  # [S, R]
    return ResponseForward(zeros.masked_scatter(real, logprobs), zeros.masked_scatter(real, entropy), out.aux_loss)
