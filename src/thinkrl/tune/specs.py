"""Typed inputs of the AutoTuner: the cluster and the RL workload (pydantic, unknown keys are errors).

Every default below is an assumption the model states openly; `docs/autotuner.md` lists their sources.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GB = 1e9  # memory and bandwidth figures are decimal gigabytes (GB, GB/s), as GPU vendors quote them


class ClusterSpec(BaseModel):
    """GPUs and links.

    Fields:
        num_gpus: GPUs in the job; gpus_per_node: GPUs sharing the fast intra-node links (NVLink).
        gpu_mem_gb: memory per GPU (GB); reserved_gb: what the model does not see (CUDA context, NCCL
            buffers, allocator fragmentation), subtracted before the fit test.
        peak_tflops: dense peak of one GPU in the compute dtype (TFLOP/s); mfu: the fraction of it that
            matmul-heavy training reaches (an assumption; 0.35-0.5 is typical for FSDP training).
        hbm_gbps: GPU memory bandwidth (GB/s), for the memory-bound optimizer step.
        intra_node_gbps, inter_node_gbps: per-GPU collective bandwidth (NCCL bus bandwidth, GB/s) inside a
            node and across nodes.
        host_link_gbps: GPU <-> host copies (PCIe), for offload; host_adam_gbps: memory throughput the host
            gives one GPU's CPU Adam step (GB/s).
    """

    model_config = ConfigDict(extra="forbid")

    num_gpus: int = Field(8, ge=1)
    gpus_per_node: int = Field(8, ge=1)
    gpu_mem_gb: float = Field(80.0, gt=0)
    reserved_gb: float = Field(3.0, ge=0)
    peak_tflops: float = Field(989.0, gt=0)
    mfu: float = Field(0.4, gt=0, le=1)
    hbm_gbps: float = Field(3350.0, gt=0)
    intra_node_gbps: float = Field(360.0, gt=0)
    inter_node_gbps: float = Field(45.0, gt=0)
    host_link_gbps: float = Field(50.0, gt=0)
    host_adam_gbps: float = Field(20.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if self.num_gpus > self.gpus_per_node and self.num_gpus % self.gpus_per_node:
            raise ValueError(f"num_gpus ({self.num_gpus}) must be a multiple of gpus_per_node "
                             f"({self.gpus_per_node}) when it spans nodes")
        if self.reserved_gb >= self.gpu_mem_gb:
            raise ValueError(f"reserved_gb ({self.reserved_gb}) must be below gpu_mem_gb ({self.gpu_mem_gb})")
        return self

    @property
    def usable_bytes(self) -> float:
        return (self.gpu_mem_gb - self.reserved_gb) * GB


# Datasheet figures (dense bf16 TFLOP/s, HBM GB/s); link figures are typical NCCL bus bandwidths.
CLUSTER_PRESETS: dict[str, dict[str, float]] = {
    "h100-80gb": dict(gpu_mem_gb=80, peak_tflops=989, hbm_gbps=3350, intra_node_gbps=360, inter_node_gbps=45),
    "h200-141gb": dict(gpu_mem_gb=141, peak_tflops=989, hbm_gbps=4800, intra_node_gbps=360, inter_node_gbps=45),
    "a100-80gb": dict(gpu_mem_gb=80, peak_tflops=312, hbm_gbps=2039, intra_node_gbps=230, inter_node_gbps=22),
}


class WorkloadSpec(BaseModel):
    """One RL step: sampled groups, then policy updates over all their tokens.

    Fields:
        prompt_len, response_len: tokens per prompt and per response (the longest; a packed sequence is
            prompt_len + response_len tokens and is never split across micro-batches, only across CP ranks).
        group_size: responses per prompt (G); prompts_per_step: prompts per optimizer step (batch).
        forward_only_passes: extra no-grad forwards over the batch per step (old-policy and reference
            log-probs: 1 for DAPO's old log-probs, 2 with a KL reference).
        precision: "bf16": bf16 compute, fp32 master weights, gradients and Adam states (FSDP2
            MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)); "fp32": everything fp32.
        attention: "flash": a varlen flash kernel (keeps q, k, v, out and log-sum-exp); "padded_sdpa": thinkrl's
            CPU path (scatters q/k/v into padded (S, T) buffers for SDPA, keeping both copies; every sequence is
            modelled at full length, so one buffer).
        rollout_seqs_per_engine: sequences one rollout engine (a TP group) must hold in its KV cache at once
            (full prompt + response length each); the engine runs the step's sequences in waves of this size.
            None = all of the step's sequences at once (prompts_per_step * group_size over the engines).
        rollout_colocated: the engine shares the GPUs with the trainer (hybrid engine), so its weights and KV
            cache must fit beside the trainer's resident state.
    """

    model_config = ConfigDict(extra="forbid")

    prompt_len: int = Field(1024, ge=1)
    response_len: int = Field(8192, ge=1)
    group_size: int = Field(16, ge=1)
    prompts_per_step: int = Field(64, ge=1)
    forward_only_passes: int = Field(1, ge=0)
    precision: Literal["bf16", "fp32"] = "bf16"
    attention: Literal["flash", "padded_sdpa"] = "flash"
    rollout_seqs_per_engine: int | None = Field(64, ge=1)
    rollout_colocated: bool = True

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.response_len

    @property
    def num_seqs(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def tokens_per_step(self) -> int:
        return self.num_seqs * self.seq_len

    @property
    def compute_bytes(self) -> int:
        """Bytes of one element in the compute dtype."""
        return 2 if self.precision == "bf16" else 4
