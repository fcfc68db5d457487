"""`TrainerSpec`: what the training code that will run a layout implements.

The memory and time model follow it (how tensor parallelism splits activations, logits, embeddings and its
collectives), and the search drops the layouts it cannot run. The default is `thinkrl train` as it is
(`thinkrl.train.tensor_parallel`, `thinkrl.train.layout`): tp splits q/k/v, gate/up column-wise and o/down
row-wise only — no sequence parallelism, embeddings and lm_head replicated on every tp rank — and there is no
context or expert parallelism and no optimizer-only offload; its rollout engine is a full fp32 copy of the
policy with its KV cache on rank 0 for the whole run, and each weight push gathers the full fp32 model on every
rank. ``"full"`` is a trainer with every feature the model knows (Megatron-LM / verl class: sequence
parallelism, vocabulary-parallel embedding and lm_head, CP, EP, optimizer offload, a hybrid rollout engine per
tp group, bucketed weight push).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from thinkrl.tune.layout import ParallelLayout
from thinkrl.tune.shapes import ModelShape


class TrainerSpec(BaseModel):
    """Features of the target trainer (False = not implemented there).

    Fields:
        name: how reasons and tables name it.
        sequence_parallel: under tp, the norms and the residual stream are split over the tp ranks by tokens
            (all-gather / reduce-scatter around each block) instead of computed whole on every tp rank
            (all-reduce after o_proj and down_proj).
        vocab_parallel: under tp, embedding and lm_head are split over the tp ranks by vocabulary (and the loss
            over the vocabulary shards), instead of replicated.
        context_parallel, expert_parallel: cp > 1, ep > 1 layouts run.
        optimizer_offload: ``offload: optimizer`` (Adam moments alone on the host) runs.
        tp_with_replicas: tp > 1 together with HSDP replicas (num_gpus > tp * cp * fsdp).
        tp_with_offload: tp > 1 together with any offload.
        tp_moe: tp > 1 for mixture-of-experts layers; tp_qk_norm: tp > 1 with per-head q/k norms (Qwen3).
        kv_head_replication: tp may exceed the KV heads (each KV head copied on tp / K ranks); without it tp must
            divide the KV heads and the FFN width.
        rollout_engine: where the colocated rollout engine lives. "per_tp_group": one engine per tp group, its
            weights in the compute dtype split over tp, its KV cache over the tp ranks' KV heads, present only
            in the rollout phase (a hybrid engine that frees its memory for training). "resident_on_rank0"
            (thinkrl train, ``rollout.placement: thread``): one engine in rank 0's process over a copy of the
            policy in its master dtype (fp32) with a preallocated fp32 KV cache of all KV heads, resident for the
            whole run beside rank 0's training state.
        weight_push: how new weights reach the engine. "bucketed": layer by layer (no transient counted);
            "full_gather" (thinkrl train, `thinkrl.train.distributed.full_weights`): every rank makes the full
            fp32 tensor of every distributed parameter at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "thinkrl train"
    sequence_parallel: bool = False
    vocab_parallel: bool = False
    context_parallel: bool = False
    expert_parallel: bool = False
    optimizer_offload: bool = False
    tp_with_replicas: bool = False
    tp_with_offload: bool = False
    tp_moe: bool = False
    tp_qk_norm: bool = False
    kv_head_replication: bool = False
    rollout_engine: Literal["per_tp_group", "resident_on_rank0"] = "resident_on_rank0"
    weight_push: Literal["bucketed", "full_gather"] = "full_gather"


TRAINER_PRESETS: dict[str, TrainerSpec] = {
    "thinkrl": TrainerSpec(),
    "full": TrainerSpec(name="a trainer with every modelled feature", sequence_parallel=True, vocab_parallel=True,
                        context_parallel=True, expert_parallel=True, optimizer_offload=True, tp_with_replicas=True,
                        tp_with_offload=True, tp_moe=True, tp_qk_norm=True, kv_head_replication=True,
                        rollout_engine="per_tp_group", weight_push="bucketed"),
}


def _tp_refusal(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec, replicas: int) -> str | None:
    """Why ``trainer`` cannot run this layout's tensor parallelism (None if it can)."""
    tp = layout.tp
    if tp == 1:
        return None
    if replicas > 1 and not trainer.tp_with_replicas:
        return f"tp with HSDP replicas (tp={tp}, {replicas} replicas) is not implemented"
    if layout.offload != "none" and not trainer.tp_with_offload:
        return f"offload with tp (tp={tp}, offload {layout.offload}) is not implemented"
    if shape.is_moe and not trainer.tp_moe:
        return f"tp of mixture-of-experts layers (tp={tp}) is not implemented"
    if shape.qk_norm and not trainer.tp_qk_norm:
        return f"tp with q/k norms (tp={tp}) is not implemented"
    if not trainer.kv_head_replication:
        sizes = {"num_key_value_heads": shape.num_kv_heads, "intermediate_size": shape.intermediate_size}
        bad = [f"{name}={value}" for name, value in sizes.items() if value % tp]
        if bad:
            return f"tp must divide the KV heads and the FFN width (tp={tp}; {', '.join(bad)})"
    return None


def trainer_refusal(shape: ModelShape, layout: ParallelLayout, num_gpus: int, trainer: TrainerSpec) -> str | None:
    """Why ``trainer`` cannot run ``layout`` on ``num_gpus`` ranks, as "<name> cannot run it: ..." (None if it
    can). For `TRAINER_PRESETS["thinkrl"]` these are the refusals of `thinkrl.train.layout.layout_overrides` and
    `thinkrl.train.tensor_parallel.parallelize_layers` (tests/tune/test_tune_trainer.py checks both agree)."""
    reason = None
    if layout.cp > 1 and not trainer.context_parallel:
        reason = f"context parallelism (cp={layout.cp}) is not implemented"
    elif layout.ep > 1 and not trainer.expert_parallel:
        reason = f"expert parallelism (ep={layout.ep}) is not implemented"
    elif layout.offload == "optimizer" and not trainer.optimizer_offload:
        reason = "offload 'optimizer' (Adam moments alone on the host) is not implemented"
    else:
        per_replica = layout.tp * layout.cp * layout.fsdp
        reason = _tp_refusal(shape, layout, trainer, num_gpus // per_replica if num_gpus % per_replica == 0 else 1)
    return f"{trainer.name} cannot run it: {reason}" if reason else None
