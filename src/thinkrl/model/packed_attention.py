"""Causal attention inside each sequence of a packed row (the training forward's attention).

On CUDA in half precision it is ``torch.nn.attention.varlen`` (flash, no padding). Elsewhere q/k/v are scattered
into (S, T) buffers, padded to the longest sequence, for causal SDPA: with long-tail lengths (most responses short,
a few long) one buffer would pad every sequence to the longest, and causal attention costs rows x T^2, so the
sequences are split into groups of similar length (`thinkrl.model.length_groups`), one SDPA call each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import cast

import torch
import torch.nn.functional as F

from thinkrl.model.length_groups import length_groups

ATTENTION_CALL_COST: float = 64 * 64 * 4
"""What one more padded SDPA call costs, in (rows x T^2) units of score work: about four 64-token sequences' worth.
Causal SDPA forward + backward with the micro policy's heads (4 query, 2 KV, 16 wide) on the 2-core CPU box: 71 us
for one 8-token sequence, then ~0.012 us per score unit, so a call is worth 5.7K-18K units (docs/model.md). A
wider model makes a score dearer, so this splits less there than it could."""


@dataclass
class AttentionGroup:
    """Sequences whose attention runs as one padded call.

    Fields:
        tokens: (N_g,) long — the packed tokens of the group's sequences, sequence after sequence (None: every
            token, in order: the layout has one group).
        num_seqs: sequences in the group.
        max_seqlen: the group's longest sequence (its padded length).
        pad_index: (N_g,) long — each of those tokens' flat index in a (num_seqs * max_seqlen) buffer.
    """

    tokens: torch.Tensor | None
    num_seqs: int
    max_seqlen: int
    pad_index: torch.Tensor


@dataclass
class PackedLayout:
    """Index bookkeeping for packed attention, built once per forward.

    Fields:
        cu_seqlens: (S+1,) int32 — sequence boundaries in the packed row.
        max_seqlen: int — longest sequence.
        call_cost: `length_groups`'s cost of one more padded call.
    The padded path's calls (`groups`, `restore`) are worked out at its first use, so the flash path never pays
    for them.
    """

    cu_seqlens: torch.Tensor
    max_seqlen: int
    call_cost: float = ATTENTION_CALL_COST

    @classmethod
    def build(cls, cu_seqlens: torch.Tensor, call_cost: float | None = None) -> PackedLayout:
        """The layout of the packed row ``cu_seqlens`` (S+1,); ``call_cost``: `ATTENTION_CALL_COST` when None
        (read at each call: ``thinkrl bench packed-attention`` sets it to infinity for one padded call)."""
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        max_seqlen = int(lengths.max()) if lengths.numel() else 0
        return cls(cu_seqlens.int(), max_seqlen, ATTENTION_CALL_COST if call_cost is None else call_cost)

    @property
    def num_seqs(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def groups(self) -> list[AttentionGroup]:
        """The padded SDPA calls (`AttentionGroup`), shortest sequences first."""
        return self._padded_calls[0]

    @property
    def restore(self) -> torch.Tensor | None:
        """(N,) long — where each packed token's output is in the groups' outputs concatenated (None: one group)."""
        return self._padded_calls[1]

    @cached_property
    def _padded_calls(self) -> tuple[list[AttentionGroup], torch.Tensor | None]:
        device = self.cu_seqlens.device
        lengths = (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).tolist()
        starts = self.cu_seqlens[:-1].tolist()
        split = length_groups(lengths, self.call_cost, power=2)
        if len(split) <= 1:  # one call: the sequences in packed order (a merged group lists them bucket by bucket)
            split = [list(range(len(lengths)))]
        groups = [_group([starts[i] for i in seqs], [lengths[i] for i in seqs], device, whole=len(split) == 1)
                  for seqs in split]
        if len(groups) == 1:
            return groups, None
        order = torch.cat([g.tokens for g in groups if g.tokens is not None])
        return groups, torch.empty_like(order).index_copy_(0, order, torch.arange(order.numel(), device=device))


def _group(starts: list[int], lengths: list[int], device: torch.device, whole: bool) -> AttentionGroup:
    """The `AttentionGroup` of the sequences at ``starts`` with ``lengths`` (``whole``: all of them, in order)."""
    longest = max(lengths, default=0)
    counts = torch.tensor(lengths, device=device)
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)  # [N_g]
    first = torch.cumsum(counts, 0) - counts  # each sequence's first token within the group
    offset = torch.arange(int(counts.sum()), device=device) - first[seq]
    tokens = None if whole else torch.tensor(starts, device=device)[seq] + offset
    return AttentionGroup(tokens, len(lengths), longest, seq * longest + offset)


def _varlen_flash_available(x: torch.Tensor) -> bool:
    if not x.is_cuda or x.dtype not in (torch.float16, torch.bfloat16):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: PackedLayout,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention inside each packed sequence.

    q: (N, H, D); k, v: (N, K, D) -> (N, H, D).
    """
    if dropout_p == 0.0 and _varlen_flash_available(q):
        from torch.nn.attention.varlen import varlen_attn

        cu = layout.cu_seqlens
        if q.shape[1] != k.shape[1]:  # older torch's varlen_attn has no enable_gqa: expand K/V heads
            group = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # [N, H, D]
        # without return_aux varlen_attn returns the output alone (its annotation has no overload saying so)
        return cast(torch.Tensor, varlen_attn(q, k, v, cu, cu, layout.max_seqlen, layout.max_seqlen,
                                              window_size=(-1, 0)))
    outs = [_padded_attention(q, k, v, g, dropout_p) for g in layout.groups]
    if layout.restore is None:
        return outs[0]
    return torch.cat(outs).index_select(0, layout.restore)  # [N, H, D]


def _padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: AttentionGroup,
                      dropout_p: float) -> torch.Tensor:
    """Causal SDPA over ``group``'s sequences, right-padded to its longest -> (N_g, H, D)."""
    s, t = group.num_seqs, group.max_seqlen

    def to_padded(x: torch.Tensor) -> torch.Tensor:
        if group.tokens is not None:
            x = x.index_select(0, group.tokens)
        buf = x.new_zeros(s * t, *x.shape[1:]).index_copy_(0, group.pad_index, x)  # [S*T, heads, D]
        return buf.view(s, t, *x.shape[1:]).transpose(1, 2)  # [S, heads, T, D]

    # Right padding + causal mask: a real query never sees a padded key (they come after it).
    out = F.scaled_dot_product_attention(
        to_padded(q), to_padded(k), to_padded(v), is_causal=True, dropout_p=dropout_p,
        enable_gqa=q.shape[1] != k.shape[1],
    )  # [S, H, T, D]
    return out.transpose(1, 2).reshape(s * t, *q.shape[1:]).index_select(0, group.pad_index)  # [N_g, H, D]
