"""Step-time model: FLOPs at a stated fraction of peak, communication volume over the given bandwidths.

Assumptions (stated, not measured here; see docs/autotuner.md):
- FLOPs: 6 per active parameter per token for forward + backward (2 forward, 4 backward), lm_head only on
  response tokens, causal attention 4 * H * D * (T + 1) / 2 per token per layer forward (x3 with backward);
  full recompute adds one forward of the layers; each forward-only pass (old / reference log-probs) 2 per
  parameter per token. Work splits evenly over GPUs (TP, balanced CP, data parallel), except lm_head under tp
  without vocabulary parallelism: every tp rank computes all of it (counted tp times).
- FSDP all-gathers (forward and backward, compute dtype) and reduce-scatters (fp32) run every micro-batch
  and overlap with compute; so does CP's ring exchange of K/V. TP collectives (`tp_comm_bytes`: all-reduces
  without sequence parallelism, all-gathers / reduce-scatters with it) and EP all-to-alls (dispatch + combine)
  sit on the critical path.
- A group is intra-node when the ranks it spans fit in one node (rank order tp, cp, fsdp, replicate).
- The optimizer step is memory-bound: 28 B per parameter (read p, g, m, v; write p, m, v) over HBM, or
  over the host's bandwidth when offloaded, plus PCIe copies of gradients and parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from thinkrl.tune.layout import ParallelLayout
from thinkrl.tune.memory import local_param_counts, resident_params
from thinkrl.tune.profile import MachineProfile, layout_ops, profiled_time
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.specs import GB, ClusterSpec, WorkloadSpec
from thinkrl.tune.trainer import TrainerSpec

ADAM_TRAFFIC_BYTES = 28


@dataclass(frozen=True)
class TimeBreakdown:
    """Predicted seconds of one RL training step on one GPU.

    Fields:
        num_micro_batches: micro-batches per TP x CP group per step.
        compute_s: all FLOPs of the step at mfu x peak.
        fsdp_comm_s, cp_comm_s: overlapped with compute (only the excess shows in step_s).
        tp_comm_s, ep_comm_s, offload_s: exposed.
        optimizer_s: the optimizer step.
        step_s: sum over micro-batches of max(compute, overlapped comm) + exposed comm, plus the optimizer.
    """

    num_micro_batches: int
    flops: float
    compute_s: float
    fsdp_comm_s: float
    cp_comm_s: float
    tp_comm_s: float
    ep_comm_s: float
    offload_s: float
    optimizer_s: float
    step_s: float
    source: str = "peak"  # "peak": FLOPs at peak x mfu; "profile": measured op times (tune/profile.py)

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def step_flops(shape: ModelShape, workload: WorkloadSpec, recompute: str) -> float:
    """FLOPs of one step over the whole cluster."""
    tokens = workload.tokens_per_step
    response_tokens = workload.num_seqs * workload.response_len
    lm_head = shape.vocab_size * shape.hidden_size
    body = shape.active_params - shape.embedding_params  # per-token matmul parameters of the layers
    attn_fwd = 4 * shape.num_heads * shape.head_dim * (workload.seq_len + 1) / 2 * shape.num_layers
    forward = 2 * body * tokens + attn_fwd * tokens + 2 * lm_head * response_tokens
    passes = 3 + (1 if recompute == "full" else 0) * (1 - 2 * lm_head * response_tokens / forward)
    return forward * (passes + workload.forward_only_passes)


def lm_head_flops(shape: ModelShape, workload: WorkloadSpec) -> float:
    """lm_head's share of `step_flops` (response tokens; forward, backward, forward-only passes; never
    recomputed)."""
    response_tokens = workload.num_seqs * workload.response_len
    return 2 * shape.vocab_size * shape.hidden_size * response_tokens * (3 + workload.forward_only_passes)


def _bandwidth(cluster: ClusterSpec, span: int) -> float:
    return (cluster.intra_node_gbps if span <= cluster.gpus_per_node else cluster.inter_node_gbps) * GB


def micro_batches(workload: WorkloadSpec, layout: ParallelLayout, num_gpus: int) -> int:
    groups = num_gpus // (layout.tp * layout.cp)
    return math.ceil(workload.tokens_per_step / groups / layout.micro_batch_tokens)


def fsdp_seconds(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout,
                 trainer: TrainerSpec) -> float:
    """FSDP traffic of one micro-batch: all-gathers per pass (compute dtype), reduce-scatter (fp32), and the
    HSDP all-reduce of gradient shards across replicas."""
    b = workload.compute_bytes
    dense, expert = local_param_counts(shape, layout, trainer)
    per_pass = (2 * b + 4) + b * workload.forward_only_passes  # bytes per parameter moved per micro-batch
    volume = 0.0
    g = layout.shard_group
    if g > 1:
        volume += (g - 1) / g * dense * per_pass
    g_expert = layout.shard_group // layout.ep
    if g_expert > 1:
        volume += (g_expert - 1) / g_expert * expert * per_pass
    seconds = volume / _bandwidth(cluster, layout.tp * layout.cp * layout.fsdp)
    replicas = layout.replicate(cluster.num_gpus)
    if replicas > 1:
        shard = resident_params(shape, layout, trainer)
        seconds += 2 * (replicas - 1) / replicas * shard * 4 / _bandwidth(cluster, cluster.num_gpus)
    return seconds


def tp_comm_bytes(shape: ModelShape, workload: WorkloadSpec, layout: ParallelLayout, trainer: TrainerSpec) -> float:
    """Bytes one rank sends in TP collectives for one micro-batch, in units u = (tp - 1)/tp x N x C x b (one
    ring all-gather or reduce-scatter of an (N, C) tensor; an all-reduce is 2 u), per decoder layer:

    - without sequence parallelism: an all-reduce after o_proj and after down_proj in each forward (2 x 2 u),
      and of the input gradients of q/k/v and gate/up in backward (2 x 2 u);
    - with it (Megatron-LM): all-gather before and reduce-scatter after attention and FFN in each forward (4 u),
      the same four in backward plus re-gathering the two saved sharded inputs for the weight gradients (6 u).

    Forwards: the training forward, the recomputed one, and the forward-only passes. With vocabulary parallelism
    also the embedding output (all-reduce, or reduce-scatter with sequence parallelism) per forward except the
    recomputed one, and lm_head's input over response tokens (backward all-reduce of its gradient, or an
    all-gather per forward and a reduce-scatter in backward); the loss's per-token max / sum all-reduces are
    ignored (4 B per token, not C).
    """
    tp = layout.tp
    if tp == 1:
        return 0.0
    tokens = layout.micro_batch_tokens / layout.cp
    unit = (tp - 1) / tp * tokens * shape.hidden_size * workload.compute_bytes
    forwards = 1 + (1 if layout.recompute == "full" else 0) + workload.forward_only_passes
    sp = trainer.sequence_parallel
    units: float = shape.num_layers * (4 * forwards + (6 if sp else 4))
    if trainer.vocab_parallel:
        outer_forwards = 1 + workload.forward_only_passes
        response = workload.response_len / workload.seq_len
        units += outer_forwards * (1 if sp else 2) + response * ((outer_forwards + 1) if sp else 2)
    return units * unit


def activation_comm_seconds(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec,
                            layout: ParallelLayout, trainer: TrainerSpec) -> tuple[float, float, float]:
    """(tp, cp, ep) seconds of one micro-batch: TP `tp_comm_bytes`, CP ring K/V exchange (forward K, V;
    backward K, V and their gradients), EP dispatch + combine per layer per pass."""
    b, tokens = workload.compute_bytes, layout.micro_batch_tokens / layout.cp
    passes = 3 + (1 if layout.recompute == "full" else 0) + workload.forward_only_passes  # bwd counts as 2
    layers = shape.num_layers
    tp = cp = ep = 0.0
    if layout.tp > 1:
        tp = tp_comm_bytes(shape, workload, layout, trainer) / _bandwidth(cluster, layout.tp)
    if layout.cp > 1:
        kv = tokens * 2 * math.ceil(shape.num_kv_heads / layout.tp) * shape.head_dim * b
        volume = (layout.cp - 1) * kv * layers * (3 + workload.forward_only_passes)
        cp = volume / _bandwidth(cluster, layout.tp * layout.cp)
    if layout.ep > 1:
        volume = 2 * (layout.ep - 1) / layout.ep * tokens * shape.experts_per_token * shape.hidden_size * b
        ep = volume * layers * passes / _bandwidth(cluster, layout.tp * layout.ep)
    return tp, cp, ep


def optimizer_seconds(shape: ModelShape, cluster: ClusterSpec, layout: ParallelLayout, trainer: TrainerSpec,
                      num_micro: int) -> tuple[float, float]:
    """(optimizer step, offload copies) seconds per step."""
    shard = resident_params(shape, layout, trainer)
    if layout.offload == "none":
        return shard * ADAM_TRAFFIC_BYTES / (cluster.hbm_gbps * GB), 0.0
    host_step = shard * ADAM_TRAFFIC_BYTES / (cluster.host_adam_gbps * GB)
    link = cluster.host_link_gbps * GB
    if layout.offload == "optimizer":
        return host_step, shard * 12 / link  # gradients and weights down, weights up (fp32)
    return host_step, num_micro * shard * 12 / link  # FSDP2 CPU offload: per micro-batch H2D x2, D2H x1


def estimate_time(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout,
                  trainer: TrainerSpec | None = None, profile: MachineProfile | None = None) -> TimeBreakdown:
    """Predicted time of one training step on ``trainer`` (None: thinkrl train as it is; see the module
    docstring for what overlaps what). With a machine ``profile``, the measured op times instead (`_profiled`)."""
    trainer = trainer or TrainerSpec()
    num_micro = micro_batches(workload, layout, cluster.num_gpus)
    flops = step_flops(shape, workload, layout.recompute)
    if not trainer.vocab_parallel:
        flops += (layout.tp - 1) * lm_head_flops(shape, workload)  # each tp rank computes the whole lm_head
    if profile is not None:
        return _profiled(shape, cluster, workload, layout, trainer, profile, num_micro, flops)
    compute = flops / cluster.num_gpus / (cluster.peak_tflops * 1e12 * cluster.mfu)
    fsdp = fsdp_seconds(shape, cluster, workload, layout, trainer)
    tp, cp, ep = activation_comm_seconds(shape, cluster, workload, layout, trainer)
    optimizer, offload = optimizer_seconds(shape, cluster, layout, trainer, num_micro)
    per_micro = max(compute / num_micro, fsdp + cp) + tp + ep
    step = num_micro * per_micro + optimizer + offload
    return TimeBreakdown(num_micro, flops, compute, num_micro * fsdp, num_micro * cp, num_micro * tp,
                         num_micro * ep, offload, optimizer, step)


def _profiled(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout,
              trainer: TrainerSpec, profile: MachineProfile, num_micro: int, flops: float) -> TimeBreakdown:
    """Step time from measured op times: per micro-batch the profiled compute, FSDP collectives (beside compute
    when the profile says they overlap, e.g. GPU streams; added to it on a CPU), exposed TP collectives and the
    bandwidth-model CP / EP traffic; per step the profiled AdamW (or the offloaded step) and HSDP all-reduce.
    For tp > 1 as thinkrl's trainer splits it, compute holds the profiled DTensor linears (`tp_colwise` /
    `tp_rowwise`, their all-reduces inside) and TP collectives are 0, unless the profile predates those ops."""
    uses = layout_ops(shape, workload, layout, trainer, cluster.num_gpus, resident_params(shape, layout, trainer))
    measured = profiled_time(profile, uses)
    _, cp, ep = activation_comm_seconds(shape, cluster, workload, layout, trainer)
    overlapped = measured.fsdp_s + cp
    if profile.comm_overlaps_compute:
        per_micro = max(measured.compute_s, overlapped) + measured.tp_s + ep
    else:
        per_micro = measured.compute_s + overlapped + measured.tp_s + ep
    optimizer, offload = measured.step_extra_s, 0.0
    if layout.offload != "none":
        optimizer, offload = optimizer_seconds(shape, cluster, layout, trainer, num_micro)
        optimizer += measured.step_extra_s
    step = num_micro * per_micro + optimizer + offload
    return TimeBreakdown(num_micro, flops, num_micro * measured.compute_s, num_micro * measured.fsdp_s,
                         num_micro * cp, num_micro * measured.tp_s, num_micro * ep, offload, optimizer, step,
                         "profile")
