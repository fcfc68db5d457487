"""The CPU decode step compiled by ``torch.compile``: what CUDA graphs are to the GPU engine (`cuda_graph.py`).

A small model's CPU decode step is a few hundred tiny ops; run one by one, their Python and dispatch overhead is most
of the step (the 64-wide policy of ``bench streaming``: ~0.65 ms of eager model forward for a 4-row step of under
1 MFLOP). Inductor turns the step (`CausalLM.forward_decode` and the LM head) into a few generated C++ loops and
library matmuls. Shapes are dynamic, so one compiled graph serves every row count and context:

- a step whose sequences fill most of the slots ``0..max`` reads the cache as a view over those slots (padding rows
  for free slots, as the CUDA-graph step); a sparse one (few sequences in high slots, the long tail of a batch) passes
  its slots and gathers their keys instead, so it computes only its own rows;
- keys are read from ``[0, C)``, C exactly the longest sequence + 1 (no buckets: the context is dynamic too). A
  decode step never reads the whole cache (the scheduler ends a sequence before its token would fill the last
  position), which would be compiled apart;
- both variants are compiled when the runner is built (``warm_up``: ~15-40 s on 2 cores, less once Inductor's
  on-disk cache holds the kernels), so no step compiles mid-run;
- parameters are graph inputs: in-place updates (`LLMEngine.update_weights`) are seen by the next step. Every engine of
  a process shares the compiled code; each call reads its own engine's model and cache.

Sampling stays outside, as with CUDA graphs, so seeded sampling is the eager engine's. Dense models only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from thinkrl.engine.cuda_graph import DecodeGraphStats, slot_rows
from thinkrl.engine.scheduler import reads_slot_prefix
from thinkrl.model import CausalLM, KVCache

logger = logging.getLogger(__name__)

# The generated step checks each intermediate's size and stride at run time (~50 calls a step); off, as vLLM's CPU
# backend has them: the graph is compiled once and tested, and the checks cost ~9% of a 13-row micro step.
_INDUCTOR_OPTIONS: dict[str, str | int | bool | Callable[..., object]] = {
    "size_asserts": False, "alignment_asserts": False, "scalar_asserts": False}


def compiled_decode_unsupported_reason(model: CausalLM) -> str | None:
    """Why the decode step of ``model`` is not compiled, or None when it can be."""
    if model.device.type != "cpu":
        return f"the model is on {model.device}; the compiled decode step is for CPU (CUDA replays graphs)"
    if model.config.num_experts:
        return "MoE expert routing is data-dependent"
    return None


class CompiledDecode:
    """Decode steps over a `KVCache` through one ``torch.compile``-d function (module docstring).

    Args:
        model: a dense CPU decoder.
        cache: the engine's cache (at least 2 positions).
    """

    def __init__(self, model: CausalLM, cache: KVCache) -> None:
        reason = compiled_decode_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"cannot compile the decode step: {reason}")
        if cache.max_seq_len < 2:
            raise ValueError(f"the compiled decode step needs a cache of at least 2 positions, got {cache.max_seq_len}")
        self.model, self.cache = model, cache
        for tensor in (*cache.keys, *cache.values):  # else a row count equal to the slot count becomes a guard
            torch._dynamo.mark_static(tensor)
        self._compiled: Callable[..., torch.Tensor] = torch.compile(self._decode, dynamic=True,
                                                                    options=_INDUCTOR_OPTIONS)
        self.stats = DecodeGraphStats()
        self.warm_up()

    def warm_up(self) -> None:
        """Compile both variants, for every row count and context (dynamic; two rows and a context above 1, since
        Dynamo compiles sizes 0 and 1 apart). Only while no slot holds a sequence: the rows write position 0 of free
        slots."""
        start = time.perf_counter()
        context = min(64, self.cache.max_seq_len - 1)
        if self.cache.num_slots > 1:  # (a one-slot cache only ever runs the gathered variant)
            self._run([0, 0], [0, 0], context, None)
        self._run([0, 0], [0, 0], context, [0, min(1, self.cache.num_slots - 1)])
        logger.info("compiled the decode step in %.1fs", time.perf_counter() - start)

    def step_logits(self, slots: list[int], tokens: list[int], positions: list[int],
                    running: dict[int, int]) -> torch.Tensor:
        """One decode step of the sequences in cache ``slots`` (ascending), each feeding one token of ``tokens`` at
        its position of ``positions``; ``running``: every occupied slot -> its next write position. Returns their
        fp32 logits (len(slots), V). Same contract as `DecodeGraphs.step_logits`."""
        context = max(positions) + 1  # exact: the compiled step's context is dynamic
        self.stats.replays += 1
        if len(slots) == 1 or not reads_slot_prefix(len(slots), slots[-1]):  # only these rows, their keys gathered
            self.stats.gathered_steps += 1
            if len(slots) == 1:  # a second, identical row: Dynamo compiles a size-1 dimension apart
                slots, tokens, positions = slots * 2, tokens * 2, positions * 2
                return self._run(tokens, positions, context, slots)[:1]
            return self._run(tokens, positions, context, slots)
        num_rows = slots[-1] + 1  # rows = slots 0..num_rows-1 (at least 2)
        logits = self._run(*slot_rows(num_rows, slots, tokens, running), context, None)
        return logits if len(slots) == num_rows else logits[slots]

    def _run(self, tokens: list[int], positions: list[int], context: int, slots: list[int] | None) -> torch.Tensor:
        """Fresh tensors made in inference mode each call (a view at a storage offset, or a no-grad tensor, would be
        another guard and another compilation)."""
        with torch.inference_mode():
            ids, pos = torch.tensor(tokens), torch.tensor(positions)
            return self._compiled(ids, pos, context, None if slots is None else torch.tensor(slots))

    def _decode(self, ids: torch.Tensor, positions: torch.Tensor, context: int,
                slots: torch.Tensor | None) -> torch.Tensor:
        """ids, positions (N,) long -> fp32 logits (N, V); rows are slots 0..N-1, or ``slots`` (N,) long."""
        hidden = self.model.forward_decode(ids, positions, self.cache, context, slots)
        return self.model.logits(hidden).float()
