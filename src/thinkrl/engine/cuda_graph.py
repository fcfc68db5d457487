"""CUDA graphs for the decode step: capture once per (batch, context) bucket, replay every step.

A decode step of a small model is a few hundred tiny kernels; launched one by one from Python it
costs milliseconds whatever the batch size, so generation is bound by launch overhead. Replaying a
captured graph launches them all at once. Graphs need fixed shapes and fixed addresses, so the step
runs ``CausalLM.forward_decode`` (one token per cache slot, attention over a fixed number of keys
with a mask) on static buffers:

- rows are cache slots ``0..N-1``, N the smallest *batch bucket* (1, 2, 4, ... and ``num_slots``)
  above the highest decoding slot; the scheduler hands out low slots first, so rows stay packed;
- keys are read from ``[0, C)``, C the smallest *context bucket* (``smallest_context`` doubled
  up to ``max_seq_len``) above the longest sequence, so short sequences do not read the whole cache;
- rows that do not decode this step are padding: the caller gives each a harmless write position
  (the slot's next write position, or 0 for a free slot; see ``forward_decode``);
- the graph ends with the LM head and writes fp32 logits into one shared buffer.

Every (N, C) graph is captured when the runner is built (``capture_all``, largest first, all
sharing one memory pool), while the cache is still empty. Sampling stays outside the graph, so
per-request seeded sampling is exactly the eager one. Parameters are read by address: in-place
updates (optimizer steps, ``load_state_dict``) are seen by the next replay; a parameter whose
storage was replaced (``param.data = ...``, ``model.to(...)``) is detected before each replay and
the graphs are captured again (safe mid-generation: capture then runs on the real step inputs).
Not graphable: MoE models (expert routing syncs with the host); the engine stays eager for them.
The runner knows nothing about requests: the engine decides rows, tokens and positions.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from thinkrl.model import CausalLM, KVCache

logger = logging.getLogger(__name__)


def batch_buckets(num_slots: int) -> list[int]:
    """Row counts a graph is captured for: powers of two below ``num_slots``, then ``num_slots``."""
    if num_slots < 1:
        raise ValueError(f"num_slots must be >= 1, got {num_slots}")
    buckets = [1 << i for i in range(num_slots.bit_length()) if 1 << i < num_slots]
    return [*buckets, num_slots]


def context_buckets(max_seq_len: int, smallest: int = 256) -> list[int]:
    """Key counts a graph is captured for: ``smallest`` doubled while below ``max_seq_len``, then it."""
    if max_seq_len < 1 or smallest < 1:
        raise ValueError(f"max_seq_len ({max_seq_len}) and smallest ({smallest}) must be >= 1")
    buckets = []
    size = smallest
    while size < max_seq_len:
        buckets.append(size)
        size *= 2
    return [*buckets, max_seq_len]


def pick_bucket(buckets: list[int], size: int) -> int:
    """The smallest bucket >= ``size`` (``buckets`` ascending)."""
    i = bisect.bisect_left(buckets, size)
    if i == len(buckets):
        raise ValueError(f"size {size} exceeds the largest bucket {buckets[-1]}")
    return buckets[i]


def slot_rows(num_rows: int, slots: list[int], tokens: list[int],
              running: dict[int, int]) -> tuple[list[int], list[int]]:
    """Token ids and positions of rows 0..num_rows-1, one per cache slot, for a step of the sequences in ``slots``
    feeding ``tokens``: padding rows get token 0 and a position nothing reads before it is rewritten (``running``:
    every occupied slot -> its next write position; free slots write position 0)."""
    input_ids = [0] * num_rows
    positions = [running.get(slot, 0) for slot in range(num_rows)]
    for slot, token in zip(slots, tokens, strict=True):
        input_ids[slot] = token
    return input_ids, positions


def graphs_unsupported_reason(model: CausalLM) -> str | None:
    """Why the decode step of ``model`` cannot be captured, or None when it can."""
    if model.device.type != "cuda":
        return f"the model is on {model.device}, CUDA graphs need CUDA"
    if model.config.num_experts:
        return "MoE expert routing syncs with the host"
    return None


@dataclass
class DecodeGraphStats:
    """Counters for tests and logs.

    Fields:
        captures: graphs captured (including recaptures).
        replays: decode steps served by the runner (graph replays, or fixed-shape eager steps
            when ``capture`` is False).
        recaptures: times the graphs were dropped because a parameter's storage moved.
        eager_steps: decode steps the engine ran eagerly instead (multi-token rows).
        gathered_steps: (`CompiledDecode`) steps of few rows in high slots, run on those rows alone.
    """

    captures: int = 0
    replays: int = 0
    recaptures: int = 0
    eager_steps: int = 0
    gathered_steps: int = 0


class DecodeGraphs:
    """Fixed-shape decode steps over a `KVCache`, captured as CUDA graphs.

    Args:
        model: the decoder (dense; see ``graphs_unsupported_reason``).
        cache: the engine's cache; slots are rows.
        capture: True records CUDA graphs (needs CUDA); False runs the same fixed-shape step eagerly
            (any device), which tests use to check the bookkeeping without a GPU.
        smallest_context: first context bucket.
    """

    def __init__(self, model: CausalLM, cache: KVCache, capture: bool = True, smallest_context: int = 256) -> None:
        reason = graphs_unsupported_reason(model)
        if capture and reason is not None:
            raise ValueError(f"cannot capture decode graphs: {reason}")
        if model.config.num_experts:
            raise ValueError("the fixed-shape decode step does not support MoE models")
        self.model, self.cache, self.capture = model, cache, capture
        self.batch_buckets = batch_buckets(cache.num_slots)
        self.context_buckets = context_buckets(cache.max_seq_len, smallest_context)
        device = model.device
        self._inputs = torch.zeros(3 * cache.num_slots, dtype=torch.long, device=device)  # ids | positions | rows
        self._logits = torch.zeros(cache.num_slots, model.config.vocab_size, dtype=torch.float32, device=device)
        self._steps: dict[tuple[int, int], Callable[[], None]] = {}
        self._graphs: list[torch.cuda.CUDAGraph] = []
        self._pool = torch.cuda.graph_pool_handle() if capture else None
        self._tensors = [*model.parameters(), *model.buffers()]
        self._pointers = [t.data_ptr() for t in self._tensors]
        self.stats = DecodeGraphStats()

    def num_rows(self, num_slots_used: int) -> int:
        """Rows of the step that covers slots ``0..num_slots_used-1`` (a batch bucket)."""
        return pick_bucket(self.batch_buckets, num_slots_used)

    def capture_all(self) -> None:
        """Capture every (rows, context) bucket, largest first. Only while no slot holds a sequence."""
        start = time.perf_counter()
        with torch.no_grad():
            for rows in reversed(self.batch_buckets):
                for context in reversed(self.context_buckets):
                    self._inputs.zero_()  # every row writes position 0 of its (free) slot
                    self._capture(rows, context)
        logger.info("captured %d decode graphs in %.2fs", len(self._steps), time.perf_counter() - start)

    def logits(self, input_ids: list[int], positions: list[int], rows: list[int], context_len: int) -> torch.Tensor:
        """Run one decode step; returns the fp32 logits (len(rows), V) of the slots in ``rows``.

        input_ids, positions: per slot 0..N-1, N = ``num_rows(...)``; rows: slots whose logits are
        wanted; context_len: > the largest position among ``rows``.
        """
        num_rows = len(input_ids)
        if num_rows not in self.batch_buckets or len(positions) != num_rows:
            raise ValueError(f"input_ids ({num_rows}) and positions ({len(positions)}) must have the same "
                             f"length, one of {self.batch_buckets}")
        context = pick_bucket(self.context_buckets, context_len)
        self._check_pointers()
        host = torch.tensor(input_ids + positions + rows, dtype=torch.long, pin_memory=self.capture)
        self._inputs[: host.numel()].copy_(host, non_blocking=True)
        with torch.no_grad():
            step = self._steps.get((num_rows, context))
            if step is None:
                step = self._capture(num_rows, context)  # safe: the buffers hold this step's real inputs
            step()
        self.stats.replays += 1
        return self._logits.index_select(0, self._inputs[2 * num_rows : 2 * num_rows + len(rows)])

    def step_logits(self, slots: list[int], tokens: list[int], positions: list[int],
                    running: dict[int, int]) -> torch.Tensor:
        """One decode step of the sequences in cache ``slots`` (ascending), each feeding one token of ``tokens`` at
        its position of ``positions``; ``running``: every occupied slot -> its next write position (`slot_rows`).
        Returns their fp32 logits (len(slots), V)."""
        input_ids, row_positions = slot_rows(self.num_rows(slots[-1] + 1), slots, tokens, running)
        return self.logits(input_ids, row_positions, slots, max(positions) + 1)

    def _capture(self, num_rows: int, context: int) -> Callable[[], None]:
        ids, positions = self._inputs[:num_rows], self._inputs[num_rows : 2 * num_rows]
        out = self._logits[:num_rows]

        def run() -> None:
            out.copy_(self.model.logits(self.model.forward_decode(ids, positions, self.cache, context)))

        if not self.capture:
            self._steps[(num_rows, context)] = run
            return run
        # Warm up on a side stream (lazy cuBLAS/allocator state). It computes exactly what a replay
        # computes from the same buffers, so its cache writes are the replay's.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            run()
        self._graphs.append(graph)
        self._steps[(num_rows, context)] = graph.replay
        self.stats.captures += 1
        return graph.replay

    def _check_pointers(self) -> None:
        """Drop the graphs if a parameter or buffer now lives elsewhere; they are captured again lazily."""
        if all(t.data_ptr() == p for t, p in zip(self._tensors, self._pointers, strict=True)):
            return
        logger.warning("model parameters moved in memory; capturing the decode graphs again")
        self._steps.clear()
        self._graphs.clear()
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None
        self._pointers = [t.data_ptr() for t in self._tensors]
        self.stats.recaptures += 1
