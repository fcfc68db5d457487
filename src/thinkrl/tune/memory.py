"""Memory model: predicted peak bytes of one GPU for a `ParallelLayout`, term by term.

Counting rules (each is checked against thinkrl's own decoder in tests/tune and against measurement in
docs/results/autotuner.md):

- Model states (per parameter the rank holds after TP, EP and FSDP sharding): fp32 master weight 4 B,
  fp32 gradient 4 B, Adam moments 8 B = 16 B, the mixed-precision count of the ZeRO paper (2+2+12) and of
  FSDP2 with ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``. Gradients are counted as always
  present, which is exact from the second micro-batch of a step on (gradient accumulation).
- Unsharded copies ("gathered"): when FSDP shards (shard group > 1) or compute is bf16, the rank holds the
  root module's parameters (embeddings, lm_head) unsharded in the compute dtype for the whole forward and
  backward (FSDP2 does not reshard the root after forward), two decoder layers' worth (the current one and
  the prefetched / copy-out one), and lm_head's unsharded gradient.
- Tensor parallelism follows the target trainer (`TrainerSpec`, default: thinkrl train): tp always splits
  attention heads and the FFN width (parameters and activations); the norms and the residual stream only with
  ``sequence_parallel`` (else every tp rank holds them whole: thinkrl's trainer); embeddings, lm_head and the
  logits' vocabulary only with ``vocab_parallel`` (else replicated on every tp rank: thinkrl's trainer). Norm
  weights are replicated either way.
- Activations: what autograd saves, per token, per layer, counted tensor by tensor for thinkrl's decoder
  (`layer_activation_bytes`); CP divides the tokens.
- Logits: only response positions get logits; fp32 logits are kept for backward, and the backward of
  ``gather - logsumexp`` holds three more (V,)-sized fp32 tensors per token at its peak: 16 B x V (/ tp with
  vocabulary parallelism).
- Peak of the training phase = model states + gathered + comm buffers + activations of every layer (or
  the layer inputs with full recompute) + the larger of (logits peak, one layer's backward working set,
  which with recompute includes that layer's recomputed activations).
- Optimizer step: model states + one fp32 temporary per parameter (foreach Adam's sqrt(v) buffer).
- Rollout phase (colocated engine): trainer master weights and Adam moments (gradients freed), the engine's
  weights and the KV cache of the sequences it holds: per tp group in the compute dtype split over tp, or
  (thinkrl train) one fp32 engine resident on rank 0, which then adds to rank 0's every phase.
- Weight push: master weights and Adam moments plus the transient of the push (thinkrl train: the full fp32
  tensor of every distributed parameter on every rank at once).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from thinkrl.tune.layout import ParallelLayout
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.specs import ClusterSpec, WorkloadSpec
from thinkrl.tune.trainer import TrainerSpec

MASTER_BYTES, GRAD_BYTES, ADAM_BYTES = 4, 4, 8
LOGIT_BYTES_PER_VOCAB = 16  # saved fp32 logits + three fp32 (V,) tensors in their backward
PREFETCH_LAYERS = 2


@dataclass(frozen=True)
class MemoryBreakdown:
    """Predicted bytes on one GPU (all fields in bytes).

    Fields:
        params, grads, optimizer: resident model states (sharded; 0 where offloaded).
        gathered: unsharded compute copies (root + in-flight layers) and lm_head's unsharded gradient.
        comm_buffers: TP all-gather / reduce-scatter and EP all-to-all buffers of one layer.
        activations: saved for backward at the peak (every layer, or layer inputs with recompute).
        backward_extra: max(logits peak, one layer's backward working set) on top of the activations.
        logits: the logits part of backward_extra's candidates (reported for reading).
        optimizer_step: transient of the optimizer step (on top of model states, not of activations).
        kv_cache, rollout_weights: the colocated engine's KV cache and weights (rollout phase).
        engine_resident: the part of them that stays on the GPU in every phase (rank 0, thinkrl train).
        weight_push: transient of one weight push on top of the master weights and Adam moments.
        train_peak, step_peak, rollout_peak, push_peak: the four phases; peak = their max.
    """

    params: float
    grads: float
    optimizer: float
    gathered: float
    comm_buffers: float
    activations: float
    backward_extra: float
    logits: float
    optimizer_step: float
    kv_cache: float
    rollout_weights: float
    engine_resident: float
    weight_push: float
    train_peak: float
    step_peak: float
    rollout_peak: float
    push_peak: float

    @property
    def peak(self) -> float:
        return max(self.train_peak, self.step_peak, self.rollout_peak, self.push_peak)

    @property
    def model_states(self) -> float:
        return self.params + self.grads + self.optimizer

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "peak": self.peak}


def vocab_local_params(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec) -> float:
    """Embedding and lm_head parameters on a rank: split over tp only with vocabulary parallelism."""
    return shape.vocab_params / (layout.tp if trainer.vocab_parallel else 1)


def layer_local_params(shape: ModelShape, layout: ParallelLayout) -> float:
    """One decoder layer's parameters on a rank once all-gathered: attention, dense/shared FFN and router over
    tp, routed experts over tp * ep, the two norm weights whole."""
    norms = shape.layer_norm_params
    return (shape.layer_dense_params - norms) / layout.tp + norms + shape.expert_params / (layout.tp * layout.ep)


def local_param_counts(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec) -> tuple[float, float]:
    """(dense, expert) parameters one rank computes with, after TP and EP but before FSDP sharding.

    Dense = the layers' attention, dense/shared FFN and router (over tp), their norms and the final norm (whole),
    embeddings and lm_head (`vocab_local_params`). Expert = routed experts, split over tp * ep.
    """
    norms = shape.layer_norm_params
    layers = shape.num_layers * ((shape.layer_dense_params - norms) / layout.tp + norms)
    dense = layers + vocab_local_params(shape, layout, trainer) + shape.hidden_size
    expert = shape.num_layers * shape.expert_params / (layout.tp * layout.ep)
    return dense, expert


def resident_params(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec) -> float:
    """Parameters whose fp32 master, gradient and Adam state live on the rank (FSDP shards)."""
    dense, expert = local_param_counts(shape, layout, trainer)
    return dense / layout.shard_group + expert * layout.ep / layout.shard_group


def norm_bytes(hidden: float, compute_bytes: int, output_saved: bool = True) -> float:
    """Saved by one RMSNorm per token: fp32 input copy (bf16 only), 1/rms (4 B), normed x, and its output
    ``weight * x_normed`` when the next op keeps its input (every norm but the last)."""
    upcast = 4 * hidden if compute_bytes != 4 else 0
    return upcast + 4 + compute_bytes * hidden * (2 if output_saved else 1)


def attention_bytes(shape: ModelShape, workload: WorkloadSpec, tp: int, pad: float = 1.0) -> float:
    """Saved by attention per token: "flash" keeps q, k, v, out (o_proj's input is a view of it) and the fp32
    log-sum-exp; "padded_sdpa" keeps the packed q, k, v and o_proj's input plus padded q, k, v, out and lse
    (``pad`` = padded / real tokens)."""
    b = workload.compute_bytes
    heads, kv_heads = shape.num_heads / tp, math.ceil(shape.num_kv_heads / tp)
    qkvo = b * shape.head_dim * (2 * heads + 2 * kv_heads)
    if workload.attention == "flash":
        return qkvo + 4 * heads
    packed = b * shape.head_dim * (2 * heads + 2 * kv_heads)  # q, k, v sources + o_proj input
    return packed + pad * (qkvo + 4 * heads)


def ffn_bytes(shape: ModelShape, workload: WorkloadSpec, tp: int) -> float:
    """Saved by the FFN per token: SwiGLU keeps gate out, silu out, up out and their product (4 x I); MoE keeps,
    per routed copy, the gathered input, the expert output and the weighted output that ``index_add_`` keeps
    (3 x C), the expert's 4 x I_moe, the fp32 router probabilities (E) and the shared expert's 4 x I_shared."""
    b = workload.compute_bytes
    if not shape.is_moe:
        return 4 * b * shape.intermediate_size / tp
    routed = shape.experts_per_token * (3 * b * shape.hidden_size + 4 * b * shape.moe_intermediate_size) / tp
    return routed + 4 * shape.num_experts + 4 * b * shape.shared_expert_size / tp


def layer_activation_bytes(shape: ModelShape, workload: WorkloadSpec, tp: int, sequence_parallel: bool) -> float:
    """Bytes one decoder layer saves for backward per token (two norms, mid and output residual, attention,
    FFN). Attention and FFN tensors are divided by tp (heads, FFN width); the norm and residual tensors only with
    ``sequence_parallel``, which gives each tp rank 1/tp of the tokens (without it every tp rank holds them all)."""
    c, b = shape.hidden_size, workload.compute_bytes
    sequence = (2 * norm_bytes(c, b) + 2 * b * c) / (tp if sequence_parallel else 1)
    return sequence + attention_bytes(shape, workload, tp) + ffn_bytes(shape, workload, tp)


def layer_backward_bytes(shape: ModelShape, workload: WorkloadSpec, tp: int) -> float:
    """Gradient temporaries per token at the peak of one layer's backward, on top of its saved activations.

    The peak is in the SwiGLU backward: down_proj's backward makes grad(silu(g) * u) (I) and frees its saved
    input (I); the product's backward makes grad(silu(g)) and grad(u) (2 x I) and frees grad(product): net 2 x I.
    """
    width = shape.intermediate_size if not shape.is_moe else (
        shape.experts_per_token * shape.moe_intermediate_size + shape.shared_expert_size)
    return workload.compute_bytes * 2 * width / tp


def activation_terms(shape: ModelShape, workload: WorkloadSpec, layout: ParallelLayout,
                     trainer: TrainerSpec) -> tuple[float, ...]:
    """(activations, backward_extra, logits) bytes of one micro-batch on one rank."""
    b, tp = workload.compute_bytes, layout.tp
    tokens = layout.micro_batch_tokens / layout.cp
    response_tokens = tokens * workload.response_len / workload.seq_len
    t_seq = tp if trainer.sequence_parallel else 1  # residual stream and norms: 1/tp of the tokens per rank
    c_local = shape.hidden_size / t_seq
    layer = layer_activation_bytes(shape, workload, tp, trainer.sequence_parallel)
    final_norm = norm_bytes(shape.hidden_size, b, output_saved=False) / t_seq
    vocab_local = shape.vocab_size / (tp if trainer.vocab_parallel else 1)
    logits = response_tokens * (b * shape.hidden_size + LOGIT_BYTES_PER_VOCAB * vocab_local)
    backward = layer_backward_bytes(shape, workload, tp)
    if layout.recompute == "full":
        activations = tokens * (b * c_local * shape.num_layers + final_norm)  # each layer's input
        extra = max(logits, tokens * (layer + backward))
    else:
        activations = tokens * (b * c_local + shape.num_layers * layer + final_norm)
        extra = max(logits, tokens * backward)
    return activations, extra, logits


def gathered_bytes(shape: ModelShape, workload: WorkloadSpec, layout: ParallelLayout, trainer: TrainerSpec) -> float:
    """Unsharded compute copies: root params, two layers in flight, lm_head's unsharded gradient (0 when
    there is nothing to gather or cast: fp32 compute and no sharding)."""
    b = workload.compute_bytes
    if layout.shard_group == 1 and b == 4 and layout.offload != "full":
        return 0.0
    root = vocab_local_params(shape, layout, trainer) + shape.hidden_size
    lm_head_grad = shape.vocab_size * shape.hidden_size / (layout.tp if trainer.vocab_parallel else 1)
    return b * (root + PREFETCH_LAYERS * layer_local_params(shape, layout) + lm_head_grad)


def comm_buffer_bytes(shape: ModelShape, workload: WorkloadSpec, layout: ParallelLayout) -> float:
    """TP: two (N, C) buffers per block (with sequence parallelism the all-gathered input and the
    reduce-scatter's; without it the row-wise projection's partial sum and its all-reduced copy); EP: dispatch
    and combine buffers."""
    b = workload.compute_bytes
    tokens = layout.micro_batch_tokens / layout.cp
    out = 0.0
    if layout.tp > 1:
        out += 2 * tokens * shape.hidden_size * b
    if layout.ep > 1:
        out += 2 * tokens * shape.experts_per_token * shape.hidden_size * b
    return out


def kv_cache_bytes(shape: ModelShape, workload: WorkloadSpec, engines: int, kv_heads: int,
                   dtype_bytes: int) -> float:
    """KV cache of one rollout engine on one GPU: its sequences (the step's over ``engines`` engines, at most
    ``rollout_seqs_per_engine``) x (prompt + response) x 2 (K, V) x L x ``kv_heads`` x D x ``dtype_bytes``."""
    seqs = math.ceil(workload.num_seqs / engines)
    if workload.rollout_seqs_per_engine is not None:
        seqs = min(seqs, workload.rollout_seqs_per_engine)
    return seqs * workload.seq_len * 2 * shape.num_layers * kv_heads * shape.head_dim * dtype_bytes


def engine_bytes(shape: ModelShape, workload: WorkloadSpec, cluster: ClusterSpec, layout: ParallelLayout,
                 trainer: TrainerSpec) -> tuple[float, float]:
    """(weights, KV cache) of the colocated rollout engine on the GPU that holds the most of it (0 when the
    engine runs elsewhere): per tp group in the compute dtype, or thinkrl's one fp32 copy on rank 0."""
    if not workload.rollout_colocated:
        return 0.0, 0.0
    if trainer.rollout_engine == "per_tp_group":
        kv_heads = math.ceil(shape.num_kv_heads / layout.tp)
        return (workload.compute_bytes * shape.total_params / layout.tp,
                kv_cache_bytes(shape, workload, cluster.num_gpus // layout.tp, kv_heads, workload.compute_bytes))
    return MASTER_BYTES * shape.total_params, kv_cache_bytes(shape, workload, 1, shape.num_kv_heads, MASTER_BYTES)


def weight_push_bytes(shape: ModelShape, cluster: ClusterSpec, layout: ParallelLayout, trainer: TrainerSpec) -> float:
    """Transient of one weight push: with "full_gather" every distributed parameter's full fp32 tensor at once
    (FSDP or HSDP: all of them; tp alone: the tp-split layer weights; one process or host-offloaded
    parameters: none, the push reads them in place or on the host)."""
    if trainer.weight_push == "bucketed" or layout.offload == "full":
        return 0.0
    if layout.tp * layout.cp == cluster.num_gpus:  # no data-parallel dimension: nothing FSDP-sharded
        split = shape.num_layers * (shape.layer_dense_params - shape.layer_norm_params + shape.expert_params)
        return MASTER_BYTES * split if layout.tp > 1 else 0.0
    return MASTER_BYTES * shape.total_params


def estimate_memory(shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, layout: ParallelLayout,
                    trainer: TrainerSpec | None = None) -> MemoryBreakdown:
    """Per-GPU memory of training ``shape`` with ``layout`` on ``trainer`` (None: thinkrl train as it is) (bytes,
    by term; see the module docstring)."""
    trainer = trainer or TrainerSpec()
    resident = resident_params(shape, layout, trainer)
    on_gpu = layout.offload != "full"
    params = MASTER_BYTES * resident if on_gpu else 0.0
    grads = GRAD_BYTES * resident if on_gpu else 0.0
    optimizer = ADAM_BYTES * resident if layout.offload == "none" else 0.0
    gathered = gathered_bytes(shape, workload, layout, trainer)
    comm = comm_buffer_bytes(shape, workload, layout)
    activations, extra, logits = activation_terms(shape, workload, layout, trainer)
    step_tmp = 4 * resident if layout.offload == "none" else 0.0
    engine_weights, kv = engine_bytes(shape, workload, cluster, layout, trainer)
    resident_engine = engine_weights + kv if trainer.rollout_engine == "resident_on_rank0" else 0.0
    rollout = params + optimizer + engine_weights + kv if workload.rollout_colocated else 0.0
    push = weight_push_bytes(shape, cluster, layout, trainer)
    states = params + grads + optimizer
    return MemoryBreakdown(
        params=params, grads=grads, optimizer=optimizer, gathered=gathered, comm_buffers=comm,
        activations=activations, backward_extra=extra, logits=logits, optimizer_step=step_tmp,
        kv_cache=kv, rollout_weights=engine_weights, engine_resident=resident_engine, weight_push=push,
        train_peak=states + gathered + comm + activations + extra + resident_engine,
        step_peak=states + step_tmp + resident_engine, rollout_peak=rollout,
        push_peak=params + optimizer + push + resident_engine,
    )
