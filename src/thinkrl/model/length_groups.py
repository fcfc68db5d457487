"""Rows of different lengths split into groups that are each padded to their longest: the engine's prefill
forwards and the packed training forward's attention (`thinkrl.model.decoder.PackedLayout`)."""

from __future__ import annotations


def length_groups(lengths: list[int], call_cost: float, power: int = 1) -> list[list[int]]:
    """Groups of row indices into ``lengths`` (every index once, shortest rows first), each run as one padded call.

    One call pads every row to its longest, so one long row among short ones multiplies the work of all of them; a
    further call costs ``call_cost`` of fixed overhead. A call over ``rows`` rows padded to ``longest`` costs
    ``call_cost + rows x longest ** power`` (power 1: a forward's tokens; power 2: causal attention's scores). Rows
    are bucketed by length (powers of two: at most 2x padding inside a bucket) and adjacent buckets merged where
    that is cheaper: an exact minimum of the total cost over merges of adjacent buckets.
    """
    buckets: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        buckets.setdefault(max(n, 1).bit_length(), []).append(i)
    keys = sorted(buckets)
    longest = [max(lengths[i] for i in buckets[k]) ** power for k in keys]
    best = [0.0] * (len(keys) + 1)  # best[j]: cheapest cost of the first j buckets
    cut = [0] * (len(keys) + 1)
    for j in range(1, len(keys) + 1):
        rows, best[j] = 0, float("inf")
        for i in range(j, 0, -1):  # buckets i-1 .. j-1 in one call
            rows += len(buckets[keys[i - 1]])
            cost = best[i - 1] + call_cost + rows * longest[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups: list[list[int]] = []
    j = len(keys)
    while j > 0:
        groups.append([i for k in keys[cut[j] : j] for i in buckets[k]])
        j = cut[j]
    return groups[::-1]
