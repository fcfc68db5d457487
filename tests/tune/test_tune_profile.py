"""The profile-based time model: interpolation and a tiny config's step time against hand-computed values from a
hand-written profile; a malformed profile file is one line and exit 2 at the CLI; the profiler measures every op
a layout uses (real micro-benchmarks, a real 2-process gloo collective, and tp linears split by DTensor over 2 real
gloo processes); with tp linears in the profile a tp step is priced from them, by hand."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_thinkrl
from thinkrl.tune import ClusterSpec, ParallelLayout, TrainerSpec, WorkloadSpec, estimate_time, read_hf_config
from thinkrl.tune.memory import resident_params
from thinkrl.tune.profile import MachineProfile, OpCurve, layout_ops, load_profile, profiled_time
from thinkrl.tune.shapes import ModelShape

# L=1, C=8, H=2 query heads, K=1 KV head, D=4, I=16, V=16, untied embeddings.
TINY = {"architectures": ["SeedOssForCausalLM"], "num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 16, "vocab_size": 16}
# (op, dims, training seconds per unit of x): curves through the origin, so seconds = rate x x inside the grid
RATES = [("rms_norm", (8,), 1e-3), ("add", (8,), 2e-3), ("linear", (8, 8), 1e-2), ("linear", (8, 4), 5e-3),
         ("rope", (2, 4), 3e-3), ("rope", (1, 4), 3e-3), ("linear", (8, 16), 2e-2), ("silu_mul", (16,), 4e-3),
         ("linear", (16, 8), 2e-2), ("embedding", (16, 8), 1e-3), ("head", (8, 16), 5e-2)]


def tiny_shape() -> ModelShape:
    return ModelShape.from_config(read_hf_config(TINY), name="tiny")


def tiny_profile() -> MachineProfile:
    curves = [OpCurve(op=op, dims=dims, x=[1, 1000], forward_s=[r / 3, 1000 * r / 3], train_s=[r, 1000 * r])
              for op, dims, r in RATES]
    curves.append(OpCurve(op="attention", dims=(2, 1, 4), x=[4, 8], forward_s=[0.02, 0.05], train_s=[0.05, 0.2]))
    curves.append(OpCurve(op="adamw", dims=(), x=[1, 1e6], forward_s=[1e-6, 1.0]))
    curves.append(OpCurve(op="all_reduce", dims=(2,), x=[1, 1e6], forward_s=[1e-6, 1.0]))
    return MachineProfile(device="cpu", dtype="fp32", clock="cpu", threads=1, comm_overlaps_compute=False,
                          curves=curves)


def workload() -> WorkloadSpec:
    # 2 sequences of 4 prompt + 4 response tokens per step
    return WorkloadSpec(prompt_len=4, response_len=4, group_size=1, prompts_per_step=2, forward_only_passes=0,
                        precision="fp32", attention="padded_sdpa", rollout_colocated=False)


def test_interpolation_by_hand():
    curve = OpCurve(op="linear", dims=(8, 8), x=[100, 200, 400], forward_s=[1.0, 3.0, 4.0], train_s=[2.0, 6.0, 9.0])
    assert curve.seconds(150, "forward") == pytest.approx(2.0)  # halfway between 1 and 3
    assert curve.seconds(300, "train") == pytest.approx(7.5)  # halfway between 6 and 9
    assert curve.seconds(200, "forward") == pytest.approx(3.0)  # a grid point
    assert curve.seconds(50, "forward") == pytest.approx(0.5)  # below the grid: proportional to x
    assert curve.seconds(800, "train") == pytest.approx(18.0)  # above: proportional from the last point
    attention = OpCurve(op="attention", dims=(2, 1, 4), x=[256, 512], forward_s=[1.0, 3.0])
    assert attention.seconds(1024, "forward") == pytest.approx(12.0)  # causal attention grows as T^2
    assert attention.seconds(1024, "train") == pytest.approx(12.0)  # no train_s: the forward curve


def test_profiled_step_time_of_a_tiny_config_by_hand():
    shape, profile = tiny_shape(), tiny_profile()
    # parameters: attention C*D*(2H + 2K) = 8*4*6 = 192, SwiGLU 3*C*I = 384, norms 2C = 16; embeddings 2VC + C = 264
    assert shape.total_params == 192 + 384 + 16 + 264 == 856
    # one micro-batch of N = 8 tokens (1 sequence, 4 of them responses), training = forward + backward
    layer = (2 * 8 * 1e-3  # two RMSNorms
             + 2 * 8 * 2e-3  # two residual adds
             + 2 * 8 * 1e-2  # q (8 -> 8) and o (8 -> 8)
             + 2 * 8 * 5e-3  # k, v (8 -> 4)
             + 8 * 3e-3 + 8 * 3e-3  # rope of q (2 heads) and k (1 head)
             + 1 * 0.2  # attention: 1 sequence of T = 8 (the curve's point at 8)
             + 2 * 8 * 2e-2  # gate, up (8 -> 16)
             + 8 * 4e-3  # silu * up
             + 8 * 2e-2)  # down (16 -> 8)
    assert layer == pytest.approx(1.048)
    micro = layer + 8 * 1e-3 + 8 * 1e-3 + 4 * 5e-2  # + embedding, final norm, head on the 4 response tokens
    step = 2 * micro + 856 * 1e-6  # 2 micro-batches (16 tokens, 8 per micro-batch) + AdamW over 856 parameters
    cluster = ClusterSpec(num_gpus=1, gpus_per_node=1, gpu_mem_gb=1, reserved_gb=0)
    layout = ParallelLayout(micro_batch_tokens=8)
    timing = estimate_time(shape, cluster, workload(), layout, profile=profile)
    assert timing.source == "profile" and timing.num_micro_batches == 2
    assert timing.compute_s == pytest.approx(2 * micro)
    assert timing.optimizer_s == pytest.approx(856e-6)
    assert timing.step_s == pytest.approx(step)
    recomputed = estimate_time(shape, cluster, workload(), layout.model_copy(update={"recompute": "full"}),
                               profile=profile)
    layer_forward = (layer - 0.2) / 3 + 0.05  # the curves' forward is a third of training; attention's is 0.05
    assert recomputed.step_s == pytest.approx(step + 2 * layer_forward)  # + one layer forward per micro-batch
    peak = estimate_time(shape, cluster, workload(), layout)
    assert peak.source == "peak" and peak.step_s != pytest.approx(step)


def test_tp_collectives_by_hand_and_shapes_scaled_from_the_nearest():
    shape, profile = tiny_shape(), tiny_profile()
    layout = ParallelLayout(tp=2, micro_batch_tokens=8)
    uses = layout_ops(shape, workload(), layout, TrainerSpec(), 2, resident_params(shape, layout, TrainerSpec()))
    # a profile without tp ops (taken before they existed) prices each tp linear as the plain local linear, and
    # (without sequence parallelism) 2 all-reduces of the (N, C) fp32 activation per forward and 2 in backward
    assert {u.op for u in uses} >= {"tp_colwise", "tp_rowwise"} and not [u for u in uses if u.group == "tp"]
    assert profiled_time(profile, uses).tp_s == pytest.approx(4 * 8 * 8 * 4 * 1e-6)
    # tp = 2 halves q (8 -> 4): not profiled, priced from the nearest profiled linear by the ratio of work
    curve, factor = profile.curve("linear", (8, 4))
    assert (curve.dims, factor) == ((8, 4), 1.0)
    curve, factor = profile.curve("linear", (8, 32))
    assert curve.dims == (8, 16) and factor == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no 'reduce_scatter' measurement"):
        profile.curve("reduce_scatter", (2,))


# the tp ops of TINY at tp = 2: local (in, out, tp) -> training seconds per token
TP_RATES = [("tp_colwise", (8, 4, 2), 7e-3), ("tp_colwise", (8, 8, 2), 9e-3), ("tp_rowwise", (4, 8, 2), 11e-3),
            ("tp_rowwise", (8, 8, 2), 13e-3), ("rope", (1, 4), 3e-3), ("silu_mul", (8,), 4e-3)]


def test_tp_step_time_from_profiled_tp_linears_by_hand():
    shape, trainer = tiny_shape(), TrainerSpec()
    curves = [c for c in tiny_profile().curves if c.op != "all_reduce"]  # the tp ops carry their all-reduces
    curves += [OpCurve(op=op, dims=dims, x=[1, 1000], forward_s=[r / 3, 1000 * r / 3], train_s=[r, 1000 * r])
               for op, dims, r in TP_RATES]
    curves.append(OpCurve(op="attention", dims=(1, 1, 4), x=[4, 8], forward_s=[0.01, 0.03], train_s=[0.03, 0.1]))
    profile = tiny_profile().model_copy(update={"curves": curves})
    # tp = 2: 1 query head and (K = 1, not split further) 1 KV head of D = 4 per rank, I / 2 = 8; N = 8 tokens
    layer = (2 * 8 * 1e-3 + 2 * 8 * 2e-3  # norms and residual adds, whole on every tp rank
             + 3 * 8 * 7e-3  # q, k, v: colwise 8 -> 4 local
             + 8 * 11e-3  # o: rowwise 4 local -> 8
             + 2 * 8 * 3e-3  # rope of the local q head and KV head
             + 0.1  # attention (1, 1, 4): 1 sequence of T = 8
             + 2 * 8 * 9e-3  # gate, up: colwise 8 -> 8 local
             + 8 * 4e-3  # silu * up on the local 8
             + 8 * 13e-3)  # down: rowwise 8 local -> 8
    micro = layer + 8 * 1e-3 + 8 * 1e-3 + 4 * 5e-2  # embedding, final norm, head: whole on every tp rank
    cluster = ClusterSpec(num_gpus=2, gpus_per_node=2, gpu_mem_gb=1, reserved_gb=0)
    layout = ParallelLayout(tp=2, micro_batch_tokens=8)
    timing = estimate_time(shape, cluster, workload(), layout, trainer, profile)
    assert timing.num_micro_batches == 2 and timing.tp_comm_s == 0.0  # all-reduces are inside the tp ops
    assert timing.compute_s == pytest.approx(2 * micro)
    assert timing.step_s == pytest.approx(2 * micro + resident_params(shape, layout, trainer) * 1e-6)
    # per layer the ops are the trainer's plan: 5 colwise and 2 rowwise projections
    from thinkrl.train.tensor_parallel import LAYER_PLAN

    uses = layout_ops(shape, workload(), layout, trainer, 2, 1.0)
    for style in ("colwise", "rowwise"):
        counted = sum(u.count for u in uses if u.op == f"tp_{style}" and u.kind == "train")
        assert counted == list(LAYER_PLAN.values()).count(style) * shape.num_layers


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    (json.dumps({"device": "cpu"}), "dtype: Field required"),
    (json.dumps({"device": "cpu", "dtype": "fp32", "clock": "cpu", "threads": 1, "comm_overlaps_compute": False,
                 "curves": [{"op": "linear", "dims": [8, 8], "x": [2, 1], "forward_s": [1, 2]}]}),
     "x must be positive and strictly increasing"),
])
def test_a_malformed_profile_is_one_line_and_exit_2(tmp_path, text, message):
    path = tmp_path / "machine.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_profile(path)
    proc = run_thinkrl("tune", "--model", "seed-oss-36b", "--gpus", "8", "--profile", str(path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr and message in proc.stderr


def test_the_profiler_measures_every_op_a_layout_uses():
    from thinkrl.tune.profile_measure import _collective_curve, measure_profile

    shape, trainer = tiny_shape(), TrainerSpec()
    layouts = [ParallelLayout(micro_batch_tokens=8), ParallelLayout(micro_batch_tokens=16, recompute="full"),
               ParallelLayout(tp=2, micro_batch_tokens=8)]
    profile = measure_profile(shape, workload(), layouts, trainer, 2, clock="cpu")  # tp ops: 2 real gloo processes
    assert {(c.op, c.dims) for c in profile.curves if c.op.startswith("tp_")} == {
        ("tp_colwise", (8, 4, 2)), ("tp_colwise", (8, 8, 2)), ("tp_rowwise", (4, 8, 2)), ("tp_rowwise", (8, 8, 2))}
    for layout in layouts:
        # prices every op from this profile (it raises naming an op the profile lacks); values: the by-hand tests
        estimate_time(shape, ClusterSpec(num_gpus=2, gpus_per_node=2), workload(), layout, trainer, profile)
        for use in layout_ops(shape, workload(), layout, trainer, 2, resident_params(shape, layout, trainer)):
            curve, factor = profile.curve(use.op, use.dims)
            assert factor == 1.0 and curve.x[0] <= use.x <= curve.x[-1]
            assert min(curve.forward_s) > 0 and min(curve.train_s or curve.forward_s) > 0  # (no timing order)
    gloo = _collective_curve("all_reduce", 2, [4096, 65536], "wall", "cpu")  # two real processes, gloo
    assert gloo.dims == (2,) and gloo.x == [4096, 65536] and min(gloo.forward_s) > 0


def test_an_moe_layer_is_one_profiled_op_unless_tp_or_ep_split_it():
    moe = ModelShape.from_config(read_hf_config({**TINY, "num_experts": 4, "num_experts_per_tok": 2,
                                                 "moe_intermediate_size": 8}), name="moe")
    trainer = TrainerSpec(expert_parallel=True)
    whole = layout_ops(moe, workload(), ParallelLayout(micro_batch_tokens=8), trainer, 1, 1.0)
    assert [(u.op, u.dims, u.x) for u in whole if u.op in ("moe", "silu_mul")] == [("moe", (8, 4, 2, 8, 0), 8)]
    split = layout_ops(moe, workload(), ParallelLayout(ep=2, fsdp=2, micro_batch_tokens=8), trainer, 2, 1.0)
    # 2 local experts, each on N k ep / E = 8 * 2 * 2 / 4 = 8 tokens; the router on all 8
    assert [(u.op, u.dims, u.x, u.count) for u in split if u.op == "silu_mul" and u.kind == "train"] == [
        ("silu_mul", (8,), 8, 2)]
    assert ("linear", (8, 4), 8, 1) in [(u.op, u.dims, u.x, u.count) for u in split if u.kind == "train"]


def test_profile_without_out_is_one_line_and_exit_2():
    proc = run_thinkrl("tune", "profile", "--model", "seed-oss-36b", timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--out" in proc.stderr
