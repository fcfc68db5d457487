"""Balancing sequences across parts: Karmarkar-Karp on an attention-aware workload.

`karmarkar_karp` is the largest-differencing method generalised to k-way partitioning
(Karmarkar & Karp 1982; used for sequence balancing in Seed-Thinking-v1.5), with an
equal-count variant. `attention_workload` is the cost model it balances (``a * len + len**2``).
`split_across_ranks` splits a global batch's sequences across data-parallel ranks;
`thinkrl.train.batching.split_micro_batches` forms micro-batches under a token budget with the
same two functions. Pure bookkeeping on lengths: no tensors, no process groups.
Measured against greedy and contiguous splits by ``thinkrl bench balance`` (docs/results/balance.md).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Sequence


def karmarkar_karp(workloads: Sequence[float], num_parts: int, equal_size: bool = False) -> list[list[int]]:
    """Partition item indices into ``num_parts`` parts with balanced workload sums.

    Largest differencing, k-way: every item starts as a k-tuple of partial parts (the item in
    one, the others empty); the two tuples with the largest spread (max - min sum) are merged,
    pairing the heaviest part of one with the lightest of the other, until one tuple is left.
    With ``equal_size`` the items are first grouped k at a time (in sorted order, one item per
    part), so every part gets the same count; when ``len(workloads)`` is not a multiple of k,
    counts differ by at most one. Returns ``num_parts`` lists of indices (each sorted), heaviest
    part first; parts may be empty when there are fewer items than parts.

    Merging a single item's tuple adds it to the other tuple's lightest part, so single items are
    taken from a sorted stream instead of the heap (ties go to the item, as an older heap entry),
    and index lists are joined smaller into larger: 8192 items into 64 parts in tens of ms.
    """
    if num_parts < 1:
        raise ValueError(f"num_parts ({num_parts}) must be >= 1")
    weights = [float(w) for w in workloads]
    for i, w in enumerate(weights):
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"workloads[{i}] = {w} must be finite and >= 0")
    num_items, k = len(weights), num_parts
    if k == 1 or num_items == 0:
        return [list(range(num_items))] + [[] for _ in range(k - 1)]
    # A state is a list of at most k [sum, indices] parts, heaviest first; missing parts are empty.
    heap: list[tuple[float, int, list[list]]] = []
    singles: list[int] = []
    if equal_size:
        order = sorted(range(num_items), key=weights.__getitem__)
        first = (num_items - 1) % k + 1  # the lightest chunk is the short one
        chunks = [order[:first]] + [order[s : s + k] for s in range(first, num_items, k)]
        heap = [(-_spread(state, k), n, state) for n, chunk in enumerate(chunks)
                for state in [sorted(([weights[i], [i]] for i in chunk), key=_neg_sum)]]
        heapq.heapify(heap)
    else:
        singles = sorted(range(num_items), key=weights.__getitem__, reverse=True)
    counter, next_single = itertools.count(len(heap)), 0
    while len(singles) - next_single + len(heap) > 1:
        taken: list[int | list[list]] = []
        for _ in range(2):
            if next_single < len(singles) and (not heap or weights[singles[next_single]] >= -heap[0][0]):
                taken.append(singles[next_single])
                next_single += 1
            else:
                taken.append(heapq.heappop(heap)[2])
        merged = _merge(taken[0], taken[1], weights, k)
        heapq.heappush(heap, (-_spread(merged, k), next(counter), merged))
    final: list[list] = heap[0][2] if heap else [[weights[singles[0]], [singles[0]]]]  # a single item: nothing merged
    return [sorted(indices) for _, indices in final] + [[] for _ in range(k - len(final))]


def _neg_sum(part: list) -> float:
    return -part[0]


def _spread(state: list[list], k: int) -> float:
    """Heaviest minus lightest part sum of a state (a missing part weighs 0)."""
    return state[0][0] - (state[-1][0] if len(state) == k else 0.0)


def _merge(a: int | list[list], b: int | list[list], weights: list[float], k: int) -> list[list]:
    """Merge two states (an int is a single item's state), heaviest part of one with lightest of the other.

    Reuses (mutates) the states' lists: a merged state is never used again.
    """
    if isinstance(a, int):
        if isinstance(b, int):
            return [[weights[a], [a]], [weights[b], [b]]]
        return _add_item(b, a, weights, k)
    if isinstance(b, int):
        return _add_item(a, b, weights, k)
    lo = k - len(b)  # a's parts before lo pair with missing (empty) parts of b
    merged = a[:lo] + b[: k - len(a)]
    for i in range(lo, len(a)):
        (sum_a, big), (sum_b, small) = a[i], b[k - 1 - i]
        if len(big) < len(small):
            big, small = small, big
        big.extend(small)
        merged.append([sum_a + sum_b, big])
    merged.sort(key=_neg_sum)
    return merged


def _add_item(state: list[list], item: int, weights: list[float], k: int) -> list[list]:
    """Add a single item to a state's lightest part (a missing part when it has fewer than k); mutates ``state``."""
    part: list = state.pop() if len(state) == k else [0.0, []]  # [sum, indices]
    part[0] += weights[item]
    part[1].append(item)
    bisect.insort(state, part, key=_neg_sum)
    return state


def attention_workload(length: int, a: float = 24576.0) -> float:
    """Relative compute of one sequence of ``length`` tokens: ``a * length + length**2``.

    The linear term covers projections and MLP, the quadratic one attention; for a dense
    decoder of hidden size C, ``a`` is about 6*C (24576 for C = 4096): 24*C^2 FLOPs per token
    against 4*C per token pair over the full square (12*C when a causal kernel skips half).
    """
    if length < 0:
        raise ValueError(f"length ({length}) must be >= 0")
    return a * length + float(length) ** 2


def split_across_ranks(lengths: Sequence[int], num_ranks: int, *, equal_count: bool = False,
                       a: float = 24576.0) -> list[list[int]]:
    """Sequence indices of each data-parallel rank (``num_ranks`` lists, each sorted, heaviest first), balancing
    `attention_workload` with `karmarkar_karp`.

    ``equal_count`` gives every rank the same number of sequences (+-1 when ``num_ranks`` does not
    divide them), for when per-sequence overheads matter; it costs balance when a rank holds few long
    sequences (14-38% max/mean at 8 per rank, docs/results/balance.md), hence off by default. A rank gets
    no sequence only when there are fewer sequences than ranks.
    """
    if num_ranks < 1:
        raise ValueError(f"num_ranks ({num_ranks}) must be >= 1")
    return karmarkar_karp([attention_workload(n, a) for n in lengths], num_ranks, equal_size=equal_count)


def max_mean_imbalance(workloads: Sequence[float], parts: Sequence[Sequence[int]]) -> float:
    """max / mean of the parts' workload sums (1.0 = perfectly balanced; the slowest rank's excess time)."""
    totals = [sum(workloads[i] for i in part) for part in parts]
    mean = sum(totals) / len(totals)
    return max(totals) / mean if mean > 0 else 1.0
