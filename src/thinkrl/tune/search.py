"""Enumerate parallel layouts, drop the invalid ones and those that do not fit, rank the rest by step time.

`check_layout` gives the reason a layout cannot run at all (divisibility, node size, sequences per
group); `evaluate_layout` adds the memory verdict and whether the target trainer (`TrainerSpec`, default thinkrl
train) can run it: layouts it cannot run are rejected with that reason (their memory, and their time when they
fit, still reported). Ranking: predicted step time, then peak memory.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from thinkrl.tune.layout import Offload, ParallelLayout, Recompute
from thinkrl.tune.memory import MemoryBreakdown, estimate_memory
from thinkrl.tune.profile import MachineProfile
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.specs import GB, ClusterSpec, WorkloadSpec
from thinkrl.tune.timing import TimeBreakdown, estimate_time
from thinkrl.tune.trainer import TrainerSpec, trainer_refusal


def _all_recompute() -> list[Recompute]:
    return ["none", "full"]


def _all_offload() -> list[Offload]:
    return ["none", "optimizer", "full"]


class SearchSpace(BaseModel):
    """Values to try per axis; None = every sensible value (powers of two that tile the cluster; for
    micro_batch_tokens, 1, 2, 4, ... whole sequences up to the tokens one group gets per step).
    fsdp None = shard over all remaining ranks, and also over one node's (HSDP) when that differs."""

    model_config = ConfigDict(extra="forbid")

    tp: list[PositiveInt] | None = Field(default=None, min_length=1)
    cp: list[PositiveInt] | None = Field(default=None, min_length=1)
    ep: list[PositiveInt] | None = Field(default=None, min_length=1)
    fsdp: list[PositiveInt] | None = Field(default=None, min_length=1)
    micro_batch_tokens: list[PositiveInt] | None = Field(default=None, min_length=1)
    recompute: list[Recompute] = Field(default_factory=_all_recompute)
    offload: list[Offload] = Field(default_factory=_all_offload)


@dataclass(frozen=True)
class Candidate:
    """One evaluated layout: ``reason`` is None when it fits and the trainer runs it. ``time`` is set when it
    fits in memory; ``runnable`` is False when the target trainer cannot run it (``reason`` says why)."""

    layout: ParallelLayout
    memory: MemoryBreakdown | None
    time: TimeBreakdown | None
    reason: str | None
    runnable: bool = True

    def to_dict(self) -> dict:
        return {"layout": self.layout.model_dump(), "reason": self.reason, "runnable": self.runnable,
                "memory": self.memory.to_dict() if self.memory else None,
                "time": self.time.to_dict() if self.time else None}


@dataclass
class TuneResult:
    """Feasible layouts, fastest first, and the rejected ones with their reasons."""

    feasible: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)


def _powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(limit)) + 1)] if limit >= 1 else [1]


def check_layout(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout) -> str | None:
    """Why ``layout`` cannot run (None if it can, memory aside)."""
    world = layout.tp * layout.cp * layout.fsdp
    if cluster.num_gpus % world:
        return f"tp*cp*fsdp = {world} does not divide {cluster.num_gpus} GPUs"
    if layout.tp > cluster.gpus_per_node:
        return f"tp {layout.tp} exceeds the {cluster.gpus_per_node} GPUs of a node"
    if shape.num_heads % layout.tp:
        return f"num_attention_heads ({shape.num_heads}) is not divisible by tp {layout.tp}"
    if shape.num_kv_heads % layout.tp and layout.tp % shape.num_kv_heads:
        return f"num_key_value_heads ({shape.num_kv_heads}) and tp {layout.tp} do not divide one another"
    if layout.ep > 1 and not shape.is_moe:
        return f"ep {layout.ep} needs a mixture-of-experts model"
    if shape.is_moe and shape.num_experts % layout.ep:
        return f"num_experts ({shape.num_experts}) is not divisible by ep {layout.ep}"
    if layout.shard_group % layout.ep:
        return f"ep {layout.ep} does not divide fsdp*cp = {layout.shard_group}"
    if layout.micro_batch_tokens < workload.seq_len:
        return (f"micro_batch_tokens {layout.micro_batch_tokens} < one sequence "
                f"({workload.prompt_len} + {workload.response_len} tokens)")
    if workload.seq_len < 2 * layout.cp:
        return f"cp {layout.cp} splits a {workload.seq_len}-token sequence into pieces under 2 tokens"
    groups = cluster.num_gpus // (layout.tp * layout.cp)
    if workload.num_seqs < groups:
        return f"{workload.num_seqs} sequences per step for {groups} data-parallel groups"
    return None


def memory_refusal(memory: MemoryBreakdown, cluster: ClusterSpec) -> str | None:
    """Which phase does not fit in the GPU's usable memory, with the largest term (None if all fit)."""
    usable, reason = cluster.usable_bytes, None
    if memory.train_peak > usable:
        terms = {"activations": memory.activations, "logits/backward": memory.backward_extra,
                 "model states": memory.model_states, "gathered params": memory.gathered,
                 "rollout engine on rank 0": memory.engine_resident}
        largest = max(terms, key=terms.__getitem__)
        reason = (f"training needs {memory.train_peak / GB:.1f} GB > {usable / GB:.1f} GB usable "
                  f"(largest: {largest} {terms[largest] / GB:.1f} GB)")
    elif memory.step_peak > usable:
        reason = f"optimizer step needs {memory.step_peak / GB:.1f} GB > {usable / GB:.1f} GB usable"
    elif memory.rollout_peak > usable:
        reason = (f"rollout needs {memory.rollout_peak / GB:.1f} GB > {usable / GB:.1f} GB usable "
                  f"(KV cache {memory.kv_cache / GB:.1f} GB, engine weights {memory.rollout_weights / GB:.1f} GB)")
    elif memory.push_peak > usable:
        reason = (f"weight push needs {memory.push_peak / GB:.1f} GB > {usable / GB:.1f} GB usable (full fp32 "
                  f"copies {memory.weight_push / GB:.1f} GB, rollout engine {memory.engine_resident / GB:.1f} GB)")
    return reason


def evaluate_layout(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout,
                    trainer: TrainerSpec | None = None, profile: MachineProfile | None = None) -> Candidate:
    """Memory and time of one layout on ``trainer`` (None: thinkrl train), with the reason it is rejected if it
    is: invalid (no memory), not runnable by the trainer (that reason first), or out of memory. Time from the
    machine ``profile`` when given, else from peak x mfu."""
    trainer = trainer or TrainerSpec()
    reason = check_layout(shape, cluster, workload, layout)
    if reason:
        return Candidate(layout, None, None, reason)
    memory = estimate_memory(shape, cluster, workload, layout, trainer)
    oom = memory_refusal(memory, cluster)
    timing = None if oom else estimate_time(shape, cluster, workload, layout, trainer, profile)
    refusal = trainer_refusal(shape, layout, cluster.num_gpus, trainer)
    return Candidate(layout, memory, timing, refusal or oom, runnable=refusal is None)


def enumerate_layouts(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec,
                      space: SearchSpace) -> list[ParallelLayout]:
    """Every combination of the search space's values (fsdp derived from the others when not given)."""
    n, node = cluster.num_gpus, cluster.gpus_per_node
    layouts = []
    pairs = itertools.product(space.tp or _powers_of_two(min(n, node)), space.cp or _powers_of_two(min(n, 8)))
    for tp, cp in pairs:
        rest = n // (tp * cp) if n % (tp * cp) == 0 else 0
        if not rest and not (space.tp and space.cp):
            continue  # an automatic value that does not tile the cluster: not a layout anyone asked for
        if space.fsdp:
            fsdps = space.fsdp
        elif rest:
            fsdps = sorted({rest} | ({node // (tp * cp)} if node % (tp * cp) == 0 and node < n else set()))
        else:
            fsdps = [max(1, n // (tp * cp))]  # does not tile: check_layout says so
        for fsdp in fsdps:
            eps = space.ep or ([e for e in _powers_of_two(fsdp * cp) if shape.num_experts % e == 0]
                               if shape.is_moe else [1])
            groups = max(1, n // (tp * cp))
            per_group = math.ceil(workload.num_seqs / groups) * workload.seq_len
            mbs = space.micro_batch_tokens or [workload.seq_len * k for k in _powers_of_two(per_group //
                                                                                              workload.seq_len)]
            for ep, mb, recompute, offload in itertools.product(eps, mbs, space.recompute, space.offload):
                layouts.append(ParallelLayout(tp=tp, cp=cp, ep=ep, fsdp=fsdp, micro_batch_tokens=mb,
                                              recompute=recompute, offload=offload))
    return layouts


def _rank_key(candidate: Candidate) -> tuple:
    """Fastest first; among equal times the smaller peak, then the simpler layout (fewer model-parallel ranks,
    no recompute, no offload)."""
    lay, mem, tim = candidate.layout, candidate.memory, candidate.time
    assert mem is not None and tim is not None
    simplicity = (lay.tp * lay.cp * lay.ep, lay.recompute != "none", lay.offload != "none")
    return round(tim.step_s, 6), round(mem.peak / 1e6), simplicity


def tune(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, space: SearchSpace | None = None,
         trainer: TrainerSpec | None = None, profile: MachineProfile | None = None) -> TuneResult:
    """Evaluate every layout of ``space`` on ``trainer`` (None: thinkrl train); those that fit and the trainer
    runs sorted by (step time, peak memory)."""
    result = TuneResult()
    for layout in enumerate_layouts(shape, cluster, workload, space or SearchSpace()):
        candidate = evaluate_layout(shape, cluster, workload, layout, trainer, profile)
        (result.rejected if candidate.reason else result.feasible).append(candidate)
    result.feasible.sort(key=_rank_key)
    result.rejected.sort(key=lambda c: c.memory.train_peak if c.memory else float("inf"))
    return result
