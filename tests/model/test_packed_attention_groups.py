"""Packed attention over groups of similar-length sequences (`thinkrl.model.packed_attention`) equals causal
attention computed sequence by sequence, forward and backward, whatever the grouping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from thinkrl.model.length_groups import length_groups
from thinkrl.model.packed_attention import ATTENTION_CALL_COST, PackedLayout, packed_attention


def _per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Reference: one causal attention per sequence, written with explicit scores (no SDPA)."""
    outs, start = [], 0
    group = q.shape[1] // k.shape[1]
    for n in lengths:
        qs = q[start:start + n].transpose(0, 1)  # [H, n, D]
        ks = k[start:start + n].repeat_interleave(group, dim=1).transpose(0, 1)
        vs = v[start:start + n].repeat_interleave(group, dim=1).transpose(0, 1)
        scores = qs @ ks.transpose(1, 2) / q.shape[-1] ** 0.5
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        outs.append((F.softmax(scores, -1) @ vs).transpose(0, 1))
        start += n
    return torch.cat(outs)


@pytest.mark.parametrize("lengths", [[5, 7, 300, 6, 280, 3], [40, 41, 39], [1], [17, 1, 250],
                                     [60, 70, 60, 70]])  # (the last: two length buckets merged into one call)
def test_grouped_attention_equals_per_sequence_attention_and_its_gradients(lengths: list[int]) -> None:
    gen = torch.Generator().manual_seed(0)
    n = sum(lengths)
    q, k, v = (torch.randn(n, heads, 16, generator=gen, requires_grad=True) for heads in (4, 2, 2))
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    layout = PackedLayout.build(cu)
    got = packed_attention(q, k, v, layout)
    want = _per_sequence(q, k, v, lengths)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    weights = torch.randn(got.shape, generator=gen)
    grads = torch.autograd.grad((got * weights).sum(), (q, k, v))
    want_grads = torch.autograd.grad((want * weights).sum(), (q, k, v))
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_long_tail_lengths_split_and_similar_ones_do_not() -> None:
    tail = PackedLayout.build(torch.tensor([0, 30, 62, 350, 380], dtype=torch.int32))  # 30, 32, 288, 30
    assert len(tail.groups) == 2 and tail.restore is not None
    assert [(g.num_seqs, g.max_seqlen) for g in tail.groups] == [(3, 32), (1, 288)]
    assert tail.groups[1].tokens.tolist() == list(range(62, 350))
    even = PackedLayout.build(torch.tensor([0, 30, 61, 93], dtype=torch.int32))
    assert len(even.groups) == 1 and even.restore is None and even.groups[0].tokens is None


def test_length_groups_by_hand() -> None:
    """Every call costs its call cost plus rows x longest^power. 31 rows of 30 and one of 286: one call 16,384 +
    32 x 286^2 = 2,633,856 score units, two calls 2 x 16,384 + 31 x 30^2 + 286^2 = 142,464: split. Power 1 (a
    forward's tokens) with a call cost of 200: 200 + 32 x 286 = 9,352 vs 400 + 31 x 30 + 286 = 1,616: split too.
    [30, 31, 32, 33] stay together (one bucket)."""
    assert ATTENTION_CALL_COST == 16_384
    assert length_groups([30] * 31 + [286], ATTENTION_CALL_COST, power=2) == [list(range(31)), [31]]
    assert length_groups([30] * 31 + [286], 200) == [list(range(31)), [31]]
    assert length_groups([30, 31, 32, 33], ATTENTION_CALL_COST, power=2) == [[0, 1, 2, 3]]
    # 3 rows of 100 and 3 of 130 (buckets 64-127 and 128-255): merged c + 6 x 130^2 = c + 101,400, split 2c +
    # 3 x 100^2 + 3 x 130^2 = 2c + 80,700: split below c = 20,700, merged above
    assert length_groups([100, 130] * 3, ATTENTION_CALL_COST, power=2) == [[0, 2, 4], [1, 3, 5]]
    assert length_groups([100, 130] * 3, 20_000, power=2) == [[0, 2, 4], [1, 3, 5]]
    assert length_groups([100, 130] * 3, 21_000, power=2) == [[0, 2, 4, 1, 3, 5]]  # bucket by bucket
