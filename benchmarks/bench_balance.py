"""Sequence balancing: Karmarkar-Karp vs greedy vs contiguous splits on long-CoT length distributions.

For each length distribution (documented in ``DISTRIBUTIONS``; docs/results/balance.md) and each split of a global
batch across data-parallel ranks, the max/mean workload imbalance (the slowest rank's time over the mean, under
``attention_workload(len, a)``) of:
  - ``contiguous``: rank r takes the r-th block of the batch in sampling order (what chunking a batch does),
  - ``greedy``: sequences sorted by workload, heaviest first, each to the least loaded rank (LPT),
  - ``kk`` / ``kk_equal_count``: `karmarkar_karp` on the same workloads (unconstrained / equal counts per rank),
with KK's ratio to the two peers. Then micro-batches of one rank's share under a token budget
(`split_micro_batches`): their count and imbalance, and the padding share of a padded baseline (the same number
of micro-batches of consecutive sequences, each padded to its longest) against packing (none). Last, the runtime
of `karmarkar_karp` for 8192 sequences into 64 parts (target < 100 ms), greedy's and the textbook heap-of-k-tuples
implementation's in the same run. Prints one JSON line.

    thinkrl bench balance [--trials 5] [--repeats 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

from thinkrl.train.balance import attention_workload, karmarkar_karp, max_mean_imbalance
from thinkrl.train.batching import split_micro_batches

HIDDEN = 5120
A = 6.0 * HIDDEN
"""``a`` of the workload for Seed-OSS-36B's hidden size (see `attention_workload`)."""
MAX_RESPONSE, PROMPT_RANGE = 32768, (128, 1024)


def _lognormal(rng: random.Random, median: float, sigma: float) -> int:
    return int(median * math.exp(sigma * rng.gauss(0.0, 1.0)))


def _long_cot(rng: random.Random) -> int:
    """Response length: lognormal, median 4096, sigma 0.9 (mean ~6.2K, p99 ~33K), truncated at 32K."""
    return _lognormal(rng, 4096, 0.9)


def _bimodal(rng: random.Random) -> int:
    """60% quick answers (median 800, sigma 0.5), 40% long thinking (median 14K, sigma 0.5), truncated at 32K."""
    return _lognormal(rng, 800, 0.5) if rng.random() < 0.6 else _lognormal(rng, 14000, 0.5)


DISTRIBUTIONS: dict[str, Callable[[random.Random], int]] = {"long_cot_lognormal": _long_cot, "bimodal": _bimodal}


def sample_lengths(name: str, num: int, group_size: int, rng: random.Random) -> list[int]:
    """``num`` sequence lengths (prompt + response) in sampling order: groups of ``group_size`` share a prompt."""
    lengths = []
    for _ in range(num // group_size):
        prompt = rng.randint(*PROMPT_RANGE)
        lengths += [prompt + max(1, min(MAX_RESPONSE, DISTRIBUTIONS[name](rng))) for _ in range(group_size)]
    return lengths


def contiguous(workloads: list[float], k: int) -> list[list[int]]:
    n = len(workloads)
    return [list(range(r * n // k, (r + 1) * n // k)) for r in range(k)]


def greedy(workloads: list[float], k: int) -> list[list[int]]:
    """Longest-processing-time first: sorted heaviest first, each to the least loaded part (a heap)."""
    heap = [(0.0, r) for r in range(k)]
    parts: list[list[int]] = [[] for _ in range(k)]
    for i in sorted(range(len(workloads)), key=workloads.__getitem__, reverse=True):
        total, r = heapq.heappop(heap)
        parts[r].append(i)
        heapq.heappush(heap, (total + workloads[i], r))
    return parts


def textbook_kk(workloads: list[float], k: int) -> list[list[int]]:
    """Largest differencing as usually written: a heap of k-tuples, every item a tuple, lists concatenated."""
    states = [[(w, [i])] + [(0.0, [])] * (k - 1) for i, w in sorted(enumerate(workloads), key=lambda x: x[1])]
    heap = [(-(s[0][0] - s[-1][0]), c, s) for c, s in enumerate(states)]
    heapq.heapify(heap)
    counter = itertools.count(len(heap))
    while len(heap) > 1:
        first, second = heapq.heappop(heap)[2], heapq.heappop(heap)[2]
        merged = sorted([(a[0] + b[0], a[1] + b[1]) for a, b in zip(first, reversed(second), strict=True)],
                        key=lambda p: -p[0])
        heapq.heappush(heap, (-(merged[0][0] - merged[-1][0]), next(counter), merged))
    return [part for _, part in heap[0][2]]


SPLITS: dict[str, Callable[[list[float], int], list[list[int]]]] = {
    "contiguous": contiguous, "greedy": greedy, "kk": karmarkar_karp,
    "kk_equal_count": lambda w, k: karmarkar_karp(w, k, equal_size=True)}


def rank_imbalance(dist: str, num_seqs: int, num_ranks: int, trials: int, seed: int) -> dict:
    """Mean and worst max/mean imbalance of every split over ``trials`` sampled batches."""
    rng = random.Random(seed)
    values: dict[str, list[float]] = {name: [] for name in SPLITS}
    for _ in range(trials):
        workloads = [attention_workload(n, A) for n in sample_lengths(dist, num_seqs, 16, rng)]
        for name, split in SPLITS.items():
            values[name].append(max_mean_imbalance(workloads, split(workloads, num_ranks)))
    row = {"distribution": dist, "sequences": num_seqs, "ranks": num_ranks}
    for name, vals in values.items():
        row[f"{name}_mean"], row[f"{name}_worst"] = round(statistics.mean(vals), 8), round(max(vals), 8)
    excess = {name: statistics.mean(vals) - 1.0 for name, vals in values.items()}
    for peer in ("greedy", "contiguous"):  # how much of the peer's excess over perfect balance KK leaves
        row[f"kk_excess_over_{peer}"] = round(excess["kk"] / excess[peer], 5) if excess[peer] > 0 else None
    return row


def micro_batches(dist: str, num_seqs: int, max_tokens: int, seed: int) -> dict:
    """One rank's share cut into micro-batches: counts, imbalance and padding against a padded baseline."""
    lengths = sample_lengths(dist, num_seqs, 16, random.Random(seed))
    groups = split_micro_batches(lengths, max_tokens, a=A)
    workloads = [attention_workload(n, A) for n in lengths]
    per = math.ceil(num_seqs / len(groups))
    padded = [lengths[i : i + per] for i in range(0, num_seqs, per)]  # same count, consecutive, padded
    padded_tokens = sum(len(rows) * max(rows) for rows in padded)
    attn_buffer = sum(len(g) * max(lengths[i] for i in g) for g in groups)  # the CPU attention fallback's buffer
    return {"distribution": dist, "sequences": num_seqs, "max_tokens": max_tokens, "micro_batches": len(groups),
            "min_micro_batches": math.ceil(sum(lengths) / max_tokens),
            "kk_imbalance": round(max_mean_imbalance(workloads, groups), 4),
            "contiguous_imbalance": round(max_mean_imbalance(workloads, contiguous(workloads, len(groups))), 4),
            "padded_baseline_padding_share": round(1 - sum(lengths) / padded_tokens, 4),
            "padded_baseline_max_rows_tokens": max(len(rows) * max(rows) for rows in padded),
            "packed_padding_share": 0.0,
            "packed_attention_buffer_padding_share": round(1 - sum(lengths) / attn_buffer, 4)}


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def runtime(seed: int, repeats: int) -> dict:
    rng = random.Random(seed)
    workloads = [attention_workload(n, A) for n in sample_lengths("long_cot_lognormal", 8192, 16, rng)]
    kk = _median_ms(lambda: karmarkar_karp(workloads, 64), repeats)
    kk_equal = _median_ms(lambda: karmarkar_karp(workloads, 64, equal_size=True), repeats)
    textbook = _median_ms(lambda: textbook_kk(workloads, 64), 1)
    same = sorted(map(math.fsum, ([workloads[i] for i in p] for p in karmarkar_karp(workloads, 64)))) == sorted(
        map(math.fsum, ([workloads[i] for i in p] for p in textbook_kk(workloads, 64))))
    return {"sequences": 8192, "parts": 64, "kk_ms": round(kk, 2), "kk_equal_count_ms": round(kk_equal, 2),
            "greedy_ms": round(_median_ms(lambda: greedy(workloads, 64), repeats), 2),
            "textbook_kk_ms": round(textbook, 1), "speedup_vs_textbook": round(textbook / kk, 1),
            "same_part_sums_as_textbook": same, "target_ms": 100, "meets_target": kk < 100 and kk_equal < 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="sampled batches per (distribution, split)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the runtime measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.trials < 1 or args.repeats < 1:
        raise SystemExit("--trials and --repeats must be >= 1")
    ranks = [rank_imbalance(dist, num, k, args.trials, args.seed)
             for dist in DISTRIBUTIONS for num, k in ((1024, 8), (8192, 64), (256, 32))]
    micro = [micro_batches(dist, 128, 262144, args.seed) for dist in DISTRIBUTIONS]
    print(json.dumps({"benchmark": "balance", "a": A, "hidden_size": HIDDEN, "trials": args.trials,
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "ranks": ranks, "micro_batches": micro, "runtime": runtime(args.seed, args.repeats)}))


if __name__ == "__main__":
    main()
