"""Feasibility and ranking: invalid layouts are named, what does not fit says why, the rest is fastest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkrl.tune import (
    TRAINER_PRESETS,
    ClusterSpec,
    ParallelLayout,
    WorkloadSpec,
    estimate_memory,
    estimate_time,
    load_model_shape,
)
from thinkrl.tune.search import SearchSpace, check_layout, evaluate_layout, tune

CONFIGS = Path(__file__).resolve().parents[2] / "src/thinkrl/tune/configs"
SEED = load_model_shape(CONFIGS / "seed_oss_36b.json")
MOE = load_model_shape(CONFIGS / "moe_200b_a20b.json")
WORK = WorkloadSpec(prompt_len=1024, response_len=8192, group_size=16, prompts_per_step=64)


def h100s(n: int) -> ClusterSpec:
    return ClusterSpec(num_gpus=n, gpus_per_node=min(n, 8))


def test_builtin_configs_have_the_published_sizes():
    # Seed-OSS-36B: 64 layers, hidden 5120, 80/8 heads, head dim 128, vocab 155,136 -> 36.15B parameters
    assert (SEED.num_layers, SEED.hidden_size, SEED.num_heads, SEED.num_kv_heads, SEED.head_dim,
            SEED.vocab_size) == (64, 5120, 80, 8, 128, 155136)
    assert SEED.total_params / 1e9 == pytest.approx(36.15, abs=0.01)
    # the MoE example: ~200B total, ~20B active (Seed-Thinking-v1.5's size class)
    assert 195 < MOE.total_params / 1e9 < 205 and 19 < MOE.active_params / 1e9 < 22


@pytest.mark.parametrize(("gpus", "layout", "fragment"), [
    (8, ParallelLayout(tp=3, fsdp=1, micro_batch_tokens=9216), "does not divide 8 GPUs"),
    (16, ParallelLayout(tp=16, fsdp=1, micro_batch_tokens=9216), "exceeds the 8 GPUs of a node"),
    (8, ParallelLayout(tp=16, fsdp=1, micro_batch_tokens=9216), "tp*cp*fsdp = 16 does not divide 8 GPUs"),
    (8, ParallelLayout(ep=2, fsdp=8, micro_batch_tokens=9216), "needs a mixture-of-experts model"),
    (8, ParallelLayout(fsdp=8, micro_batch_tokens=4096), "< one sequence (1024 + 8192 tokens)"),
    (8, ParallelLayout(tp=1, cp=8, fsdp=1, micro_batch_tokens=9216), None),
])
def test_invalid_layouts_are_named(gpus, layout, fragment):
    reason = check_layout(SEED, h100s(gpus), WORK, layout)
    assert reason is None if fragment is None else fragment in reason


def test_moe_expert_parallel_must_divide_experts():
    reason = check_layout(MOE, h100s(64), WORK, ParallelLayout(ep=32, fsdp=64, micro_batch_tokens=9216))
    assert reason == "num_experts (144) is not divisible by ep 32"
    assert check_layout(MOE, h100s(64), WORK, ParallelLayout(ep=16, fsdp=64, micro_batch_tokens=9216)) is None


def test_36b_full_adam_does_not_fit_one_node_without_offload():
    # 36.15e9 params x 16 B / 8 GPUs = 72.3 GB of model states alone: with 77 GB usable nothing but a sliver is
    # left, so every layout without offload is rejected, each with a reason, and some offload layout fits (on a
    # trainer with every modelled feature: thinkrl train has no optimizer-only offload and no offload with tp).
    result = tune(SEED, h100s(8), WORK, trainer=TRAINER_PRESETS["full"])
    assert result.feasible and all(c.layout.offload != "none" for c in result.feasible)
    no_offload = [c for c in result.rejected if c.layout.offload == "none"]
    assert no_offload and all("GB usable" in c.reason for c in no_offload)


def test_ranking_is_by_step_time_and_every_winner_fits():
    result = tune(SEED, h100s(32), WORK, trainer=TRAINER_PRESETS["full"])
    times = [c.time.step_s for c in result.feasible]
    assert times == sorted(times)
    usable = h100s(32).usable_bytes
    assert all(c.memory.peak <= usable for c in result.feasible)
    assert all(c.memory is None or c.memory.peak > usable for c in result.rejected if "GB usable" in (c.reason or ""))


def test_tiny_gpus_fit_nothing_and_say_why():
    cluster = ClusterSpec(num_gpus=8, gpus_per_node=8, gpu_mem_gb=4, reserved_gb=1)
    space = SearchSpace(tp=[8], recompute=["full"], offload=["full"])
    result = tune(SEED, cluster, WORK, space, TRAINER_PRESETS["full"])
    assert not result.feasible
    assert all(c.reason.startswith(("training needs", "rollout needs")) for c in result.rejected)


def test_memory_and_time_trends():
    cluster = h100s(64)
    base = ParallelLayout(tp=4, fsdp=16, micro_batch_tokens=4 * 9216)
    mem = estimate_memory(SEED, cluster, WORK, base)
    recompute = estimate_memory(SEED, cluster, WORK, base.model_copy(update={"recompute": "full"}))
    assert recompute.activations < mem.activations / 10  # only layer inputs are kept
    assert estimate_time(SEED, cluster, WORK, base.model_copy(update={"recompute": "full"})).step_s > \
        estimate_time(SEED, cluster, WORK, base).step_s  # the recomputed forward costs time
    bigger_mb = estimate_memory(SEED, cluster, WORK, base.model_copy(update={"micro_batch_tokens": 8 * 9216}))
    assert bigger_mb.activations == pytest.approx(2 * mem.activations)
    # more GPUs for the same step: less time
    t32 = estimate_time(SEED, h100s(32), WORK, ParallelLayout(tp=4, fsdp=8, micro_batch_tokens=9216)).step_s
    t64 = estimate_time(SEED, h100s(64), WORK, ParallelLayout(tp=4, fsdp=16, micro_batch_tokens=9216)).step_s
    assert t64 < t32


def test_step_flops_match_six_n_d_plus_attention():
    # 1 GPU, no comm: compute = FLOPs / (peak * mfu). FLOPs by hand for the 36B model with no extra passes:
    work = WORK.model_copy(update={"forward_only_passes": 0, "prompts_per_step": 1, "group_size": 1})
    tokens, responses = 9216, 8192
    lm_head = 155136 * 5120
    body = SEED.total_params - SEED.embedding_params
    attention = 4 * 80 * 128 * (9216 + 1) / 2 * 64  # per token, forward
    expected = 3 * (2 * body * tokens + attention * tokens + 2 * lm_head * responses)
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1000, reserved_gb=0)
    timing = estimate_time(SEED, cluster, work, ParallelLayout(micro_batch_tokens=9216))
    assert timing.flops == pytest.approx(expected)
    assert timing.compute_s == pytest.approx(expected / (989e12 * 0.4))


def test_evaluate_layout_reports_the_largest_term():
    cand = evaluate_layout(SEED, h100s(8), WORK, ParallelLayout(tp=8, micro_batch_tokens=16 * 9216),
                           TRAINER_PRESETS["full"])
    assert cand.reason.startswith("training needs") and "largest: activations" in cand.reason
