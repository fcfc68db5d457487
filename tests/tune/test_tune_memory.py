"""The memory model against hand-computed values for a tiny config (arithmetic written out), and against the
ZeRO paper's model-state figures."""

from __future__ import annotations

import pytest

from thinkrl.model import ModelConfig, build_model
from thinkrl.tune import (
    ClusterSpec,
    ModelShape,
    ParallelLayout,
    TrainerSpec,
    WorkloadSpec,
    estimate_memory,
    read_hf_config,
)

# L=2 layers, C=8, H=2 query heads, K=1 KV head, D=4, I=16, V=32, untied embeddings, no biases.
TINY = {"architectures": ["SeedOssForCausalLM"], "num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 16, "vocab_size": 32}


def tiny_shape() -> ModelShape:
    return ModelShape.from_config(read_hf_config(TINY), name="tiny")


def workload(**kw) -> WorkloadSpec:
    # one sequence = 1 prompt + 3 response tokens; 2 prompts x 1 response per step
    base = dict(prompt_len=1, response_len=3, group_size=1, prompts_per_step=2, forward_only_passes=0,
                precision="fp32", attention="flash", rollout_colocated=False)
    return WorkloadSpec(**{**base, **kw})


def test_parameter_counts_by_hand_and_by_the_real_module():
    shape = tiny_shape()
    # attention: C*D*(2H + 2K) = 8*4*(4+2) = 192; SwiGLU: 3*C*I = 3*8*16 = 384; two norms: 2*C = 16
    assert shape.layer_dense_params == 192 + 384 + 16 == 592
    # embeddings + lm_head: 2*V*C = 512, final norm C = 8
    assert shape.embedding_params == 520
    assert shape.total_params == 2 * 592 + 520 == 1704
    model = build_model(ModelConfig.from_hf_dict(TINY))
    assert shape.total_params == sum(p.numel() for p in model.parameters())


def test_single_rank_fp32_breakdown_by_hand():
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1, reserved_gb=0)
    mem = estimate_memory(tiny_shape(), cluster, workload(), ParallelLayout(micro_batch_tokens=8))
    # model states: 1704 params x (4 master + 4 grad + 8 Adam)
    assert (mem.params, mem.grads, mem.optimizer) == (6816, 6816, 13632)
    assert mem.gathered == 0 and mem.comm_buffers == 0  # fp32, nothing sharded: no copies
    # per token per layer (fp32, flash):
    #   two norms: 2 x (1/rms 4 + normed 4*8 + output 4*8) = 2 x 68 = 136
    #   residual mid + out: 2 x 4*8 = 64
    #   attention q,k,v,out: 4*D*(2H + 2K) = 4*4*6 = 96, lse 4*H = 8 -> 104
    #   SwiGLU: 4 x 4*I = 256                                   -> layer = 560
    # per token once: embedding output 4*8 = 32, final norm (1/rms 4 + normed 32) = 36
    # 8 tokens per micro-batch: 8 x (32 + 2*560 + 36) = 9504
    assert mem.activations == 9504
    # response tokens: 8 * 3/4 = 6; each: hidden 4*8 = 32 + 16 B x V 32 = 512 -> 6 * 544 = 3264
    # layer backward working set: two I-sized fp32 gradients, 4*2*16 = 128 per token -> 1024; logits are larger
    assert mem.logits == 3264 and mem.backward_extra == 3264
    assert mem.train_peak == 27264 + 9504 + 3264 == 40032
    # optimizer step: model states + one fp32 temporary per parameter (4 * 1704)
    assert mem.step_peak == 27264 + 6816
    assert mem.peak == 40032


def test_recompute_keeps_layer_inputs_and_one_layer_by_hand():
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1, reserved_gb=0)
    mem = estimate_memory(tiny_shape(), cluster, workload(), ParallelLayout(micro_batch_tokens=8, recompute="full"))
    # layer inputs 2 x 4*8 = 64 + final norm 36 per token: 8 x 100 = 800
    assert mem.activations == 800
    # one layer recomputed (560) + its backward working set (128) per token: 8 x 688 = 5504 > logits 3264
    assert mem.backward_extra == 5504
    assert mem.train_peak == 27264 + 800 + 5504


TP_CLUSTER = ClusterSpec(num_gpus=4, gpus_per_node=4, gpu_mem_gb=1, reserved_gb=0)
TP_LAYOUT = ParallelLayout(tp=2, fsdp=2, micro_batch_tokens=8)


def test_tensor_parallel_as_thinkrl_train_runs_it_by_hand():
    """thinkrl's trainer: tp splits attention and the FFN only; norms, residual stream, embeddings, lm_head and
    logits stay whole on each tp rank (the default `TrainerSpec`)."""
    mem = estimate_memory(tiny_shape(), TP_CLUSTER, workload(precision="bf16"), TP_LAYOUT)
    # per layer on a tp rank: (attention 192 + SwiGLU 384) / 2 + two norms 16 = 304; root: V*C*2 = 512 + final
    # norm 8, not split. 2 x 304 + 520 = 1128 on the tp rank, FSDP halves it: 564 x 16 B
    assert mem.model_states == 16 * 564 == 9024
    # unsharded bf16 copies: root 520 + two layers 2 x 304 + lm_head grad 32*8 = 256 -> 1384 params x 2 B
    assert mem.gathered == 2 * 1384
    # TP buffers: 2 x 8 tokens x C 8 x 2 B
    assert mem.comm_buffers == 256
    # per token per layer (bf16, C = 8 whole):
    #   norm: fp32 input copy 4*8 + 1/rms 4 + normed and output 2 x 2*8 = 68; two: 136
    #   residual mid + out 2 x 2*8 = 32
    #   attention on a rank: 1 query head, ceil(1/2) = 1 KV head: 2*4*(2+2) = 32 + lse 4*1 -> 36
    #   SwiGLU: 4 x 2*16/2 = 64                                          -> layer 268
    # once per token: embedding output 2*8 = 16; final norm 32 + 4 + 16 = 52.  8 x (16 + 2*268 + 52)
    assert mem.activations == 8 * 604 == 4832
    # 6 response tokens x (hidden 2*8 + 16 B x V 32, whole vocabulary) = 6 x 528
    assert mem.logits == mem.backward_extra == 3168
    assert mem.train_peak == 9024 + 2768 + 256 + 4832 + 3168


def test_tensor_parallel_with_sequence_and_vocab_parallelism_by_hand():
    """A Megatron-style trainer: norms and residual stream split over tp by tokens, embeddings, lm_head and
    logits by vocabulary."""
    trainer = TrainerSpec(sequence_parallel=True, vocab_parallel=True)
    mem = estimate_memory(tiny_shape(), TP_CLUSTER, workload(precision="bf16"), TP_LAYOUT, trainer)
    # 2 x 304 + 512/2 + 8 = 872 on the tp rank, FSDP halves it: 436 x 16 B
    assert mem.model_states == 16 * 436
    # root 256 + 8, two layers 608, lm_head grad 256/2 = 128 -> 1000 params x 2 B
    assert mem.gathered == 2000
    # sequence parallelism gives each tp rank half the tokens of the norms and residuals: per token of the
    # micro-batch (two norms 136 + residuals 32) / 2 = 84, attention 36, SwiGLU 64 -> layer 184; embedding
    # output 16 / 2 = 8, final norm 52 / 2 = 26
    assert mem.activations == 8 * (8 + 2 * 184 + 26) == 3216
    # 6 x (16 + 16 x 32/2)
    assert mem.logits == mem.backward_extra == 6 * 272
    assert mem.train_peak == 6976 + 2000 + 256 + 3216 + 1632


def test_each_tensor_parallel_feature_moves_only_its_terms():
    shape, work = tiny_shape(), workload(precision="bf16")
    neither = estimate_memory(shape, TP_CLUSTER, work, TP_LAYOUT)
    sp = estimate_memory(shape, TP_CLUSTER, work, TP_LAYOUT, TrainerSpec(sequence_parallel=True))
    vp = estimate_memory(shape, TP_CLUSTER, work, TP_LAYOUT, TrainerSpec(vocab_parallel=True))
    assert (sp.model_states, sp.gathered, sp.logits) == (neither.model_states, neither.gathered, neither.logits)
    assert sp.activations == 3216 < neither.activations
    assert vp.activations == neither.activations
    assert (vp.model_states, vp.gathered, vp.logits) == (16 * 436, 2000, 1632)
    # tp = 1: the switches change nothing
    one = ParallelLayout(fsdp=4, micro_batch_tokens=8)
    full = TrainerSpec(sequence_parallel=True, vocab_parallel=True)
    assert estimate_memory(shape, TP_CLUSTER, work, one) == estimate_memory(shape, TP_CLUSTER, work, one, full)


def test_offload_moves_states_off_the_gpu():
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1, reserved_gb=0)
    none, opt, full = (estimate_memory(tiny_shape(), cluster, workload(), ParallelLayout(micro_batch_tokens=8,
                                                                                           offload=o))
                       for o in ("none", "optimizer", "full"))
    assert none.optimizer == 13632 and opt.optimizer == 0 and opt.params == none.params
    assert full.model_states == 0 and full.gathered > 0  # compute copies still come to the GPU
    assert full.step_peak == 0


def test_rollout_kv_cache_by_hand():
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1, reserved_gb=0)
    mem = estimate_memory(tiny_shape(), cluster, workload(rollout_colocated=True), ParallelLayout(micro_batch_tokens=8))
    # 2 sequences x 4 tokens x (K and V) 2 x L 2 x K 1 x D 4 x 4 B = 512
    assert mem.kv_cache == 512
    # rollout phase: master 6816 + Adam 13632 + engine weights 4 x 1704 + KV 512
    assert mem.rollout_peak == 6816 + 13632 + 6816 + 512
    # thinkrl train keeps that engine on rank 0 the whole run: training and the optimizer step carry it too
    assert mem.engine_resident == 6816 + 512
    assert mem.train_peak == 40032 + 7328 and mem.step_peak == 27264 + 6816 + 7328
    assert mem.weight_push == 0  # one process: the push reads the parameters in place


def test_thinkrl_rollout_engine_and_weight_push_by_hand():
    """thinkrl train: one engine on rank 0 over an fp32 copy of the policy with an fp32 KV cache of all KV heads,
    resident the whole run; each push makes the full fp32 tensor of every sharded parameter on every rank."""
    mem = estimate_memory(tiny_shape(), TP_CLUSTER, workload(precision="bf16", rollout_colocated=True), TP_LAYOUT)
    # engine: 4 B x 1704 params; KV: both sequences (one engine) x 4 tokens x 2 x L 2 x K 1 x D 4 x 4 B = 512
    assert (mem.rollout_weights, mem.kv_cache, mem.engine_resident) == (6816, 512, 7328)
    # push with FSDP: every parameter in full, fp32
    assert mem.weight_push == 4 * 1704
    # the tp = 2, fsdp = 2 states of test_tensor_parallel_as_thinkrl_train_runs_it_by_hand: 564 params x 4 / 8
    assert mem.train_peak == 20048 + 7328
    assert mem.step_peak == 9024 + 4 * 564 + 7328
    assert mem.rollout_peak == 4 * 564 + 8 * 564 + 6816 + 512
    assert mem.push_peak == 4 * 564 + 8 * 564 + 6816 + 7328
    # tp alone (2 ranks, no FSDP): only the tp-split layer weights are DTensors: L x (attention + SwiGLU) x 4 B
    tp_only = estimate_memory(tiny_shape(), ClusterSpec(num_gpus=2, gpus_per_node=2, gpu_mem_gb=1, reserved_gb=0),
                              workload(precision="bf16"), ParallelLayout(tp=2, micro_batch_tokens=8))
    assert tp_only.weight_push == 4 * 2 * (192 + 384) and tp_only.engine_resident == 0  # no colocated engine


def test_hybrid_engine_per_tp_group_by_hand():
    """A hybrid engine per tp group (the "full" trainer): weights in the compute dtype over tp, the KV heads over
    tp, the step's sequences over the engines, present only in the rollout phase; a bucketed push."""
    trainer = TrainerSpec(rollout_engine="per_tp_group", weight_push="bucketed")
    mem = estimate_memory(tiny_shape(), TP_CLUSTER, workload(precision="bf16", rollout_colocated=True), TP_LAYOUT,
                          trainer)
    # 2 B x 1704 / 2; two engines share 2 sequences: 1 x 4 tokens x 2 x L 2 x ceil(1/2) = 1 x D 4 x 2 B = 128
    assert (mem.rollout_weights, mem.kv_cache, mem.engine_resident, mem.weight_push) == (1704, 128, 0, 0)
    assert mem.train_peak == 20048 and mem.rollout_peak == 4 * 564 + 8 * 564 + 1704 + 128


@pytest.mark.parametrize("num_gpus", [1, 8, 64])
def test_model_states_match_the_zero_paper(num_gpus):
    """ZeRO (Rajbhandari et al. 2020, Fig. 1): mixed-precision Adam keeps (2 + 2 + 12) = 16 B per parameter; a
    7.5B model with Nd = 64 and all three partitioned (P_os+g+p) needs 16 * 7.5e9 / 64 = 1.875 GB ("1.9GB"), and
    120 GB unpartitioned."""
    # a one-layer shape whose FFN (3 x 1000 x 2,499,995) carries almost all of the 7.5e9 parameters
    shape = ModelShape(name="7.5b", num_layers=1, hidden_size=1000, num_heads=1, num_kv_heads=1, head_dim=2,
                       vocab_size=1, intermediate_size=2_499_995, num_experts=0, experts_per_token=0,
                       moe_intermediate_size=0, shared_expert_size=0, tied_embeddings=True)
    params = shape.total_params
    assert abs(params - 7.5e9) / 7.5e9 < 1e-3
    cluster = ClusterSpec(num_gpus=num_gpus, gpus_per_node=min(num_gpus, 8), gpu_mem_gb=80, reserved_gb=0)
    mem = estimate_memory(shape, cluster, workload(), ParallelLayout(fsdp=num_gpus, micro_batch_tokens=8))
    assert mem.model_states == pytest.approx(16 * params / num_gpus)
    expected_gb = {1: 120.0, 64: 1.875}.get(num_gpus)
    if expected_gb is not None:
        assert mem.model_states / 1e9 == pytest.approx(expected_gb, rel=2e-3)


def test_moe_ffn_activation_bytes_by_hand():
    from thinkrl.tune.memory import ffn_bytes

    shape = ModelShape(name="moe", num_layers=1, hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4,
                       vocab_size=32, intermediate_size=0, num_experts=4, experts_per_token=2,
                       moe_intermediate_size=4, shared_expert_size=0, tied_embeddings=False)
    # per routed copy (k = 2): 3 x C fp32 (input, expert output, weighted output) = 96, expert SwiGLU 4 x 4 x 4 = 64;
    # router probabilities 4 x E = 16  ->  2 x 160 + 16 = 336 bytes per token
    assert ffn_bytes(shape, workload(), tp=1) == 336


def test_tensor_parallel_split_has_the_structure_of_korthikanti_table_2():
    """Korthikanti et al. 2022 (arXiv 2205.05198, Table 2): with tensor parallelism alone a layer keeps
    sbh(10 + 24/t + 5as/(ht)) bytes — the 10sbh of norm inputs, dropout masks and the column-parallel linears'
    inputs are not divided by t — and with sequence parallelism sbh(34/t + 5as/(ht)): everything is. Our decoder's
    counts differ (RMSNorm, no dropout, SwiGLU), the structure must not: on the 36B shape (t divides the KV heads)
    sequence parallelism divides the whole layer by t, and without it exactly the norm and residual bytes stay."""
    from pathlib import Path

    from thinkrl.tune import load_model_shape
    from thinkrl.tune.memory import layer_activation_bytes, norm_bytes

    shape = load_model_shape(Path(__file__).resolve().parents[2] / "src/thinkrl/tune/configs/seed_oss_36b.json")
    work = workload(precision="bf16")
    whole = layer_activation_bytes(shape, work, 1, sequence_parallel=False)
    not_split = 2 * norm_bytes(shape.hidden_size, 2) + 2 * 2 * shape.hidden_size  # norms + two residuals
    for t in (2, 4, 8):
        assert layer_activation_bytes(shape, work, t, sequence_parallel=True) == pytest.approx(whole / t)
        assert layer_activation_bytes(shape, work, t, sequence_parallel=False) == pytest.approx(
            not_split + (whole - not_split) / t)
