"""The tuner models the trainer it drives: tp collectives and lm_head FLOPs by hand in both tensor-parallel modes,
and the layouts it ranks for `thinkrl train` are exactly those `thinkrl train --layout` accepts (its own
validators: `thinkrl.train.layout.layout_overrides`, `thinkrl.train.tensor_parallel.check_divisible`, and
`parallelize_layers` in a real 1-rank gloo process for MoE and q/k-norm models)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thinkrl.cli import main
from thinkrl.train.layout import layout_overrides
from thinkrl.train.tensor_parallel import check_divisible
from thinkrl.tune import (
    TRAINER_PRESETS,
    ClusterSpec,
    ParallelLayout,
    TrainerSpec,
    WorkloadSpec,
    estimate_time,
    load_layout,
    load_model_shape,
    read_hf_config,
)
from thinkrl.tune.search import SearchSpace, enumerate_layouts, evaluate_layout, tune
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.timing import tp_comm_bytes

CONFIGS = Path(__file__).resolve().parents[2] / "src/thinkrl/tune/configs"
TINY = {"architectures": ["SeedOssForCausalLM"], "num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 16, "vocab_size": 32}
SP_VP = TrainerSpec(sequence_parallel=True, vocab_parallel=True)


def tiny() -> ModelShape:
    return ModelShape.from_config(read_hf_config(TINY), name="tiny")


def tiny_workload(**kw) -> WorkloadSpec:
    base = dict(prompt_len=1, response_len=3, group_size=1, prompts_per_step=2, forward_only_passes=0,
                precision="bf16", attention="flash", rollout_colocated=False)
    return WorkloadSpec(**{**base, **kw})


def test_tp_collective_bytes_by_hand():
    # one ring all-gather / reduce-scatter of the (8 tokens, C 8) bf16 activations on tp 2: 1/2 x 8 x 8 x 2 = 64 B
    layout = ParallelLayout(tp=2, micro_batch_tokens=8)
    # thinkrl: per layer 2 all-reduces forward + 2 backward, each 2 x 64: 8 x 64 per layer, 2 layers
    assert tp_comm_bytes(tiny(), tiny_workload(), layout, TrainerSpec()) == 2 * 8 * 64
    # recompute adds a forward (2 more all-reduces per layer): 12 x 64 per layer
    recompute = layout.model_copy(update={"recompute": "full"})
    assert tp_comm_bytes(tiny(), tiny_workload(), recompute, TrainerSpec()) == 2 * 12 * 64
    # sequence + vocab parallel: per layer 4 forward + 6 backward = 10 units; embedding reduce-scatter 1 unit;
    # lm_head input on 3/4 of the tokens: all-gather forward + reduce-scatter backward = 2 x 3/4 units
    assert tp_comm_bytes(tiny(), tiny_workload(), layout, SP_VP) == (2 * 10 + 1 + 1.5) * 64
    assert tp_comm_bytes(tiny(), tiny_workload(), ParallelLayout(micro_batch_tokens=8), TrainerSpec()) == 0


def test_replicated_lm_head_is_computed_on_every_tp_rank():
    cluster = ClusterSpec(num_gpus=2, gpus_per_node=2, gpu_mem_gb=1, reserved_gb=0)
    layout = ParallelLayout(tp=2, micro_batch_tokens=8)
    thinkrl = estimate_time(tiny(), cluster, tiny_workload(), layout)
    vocab_parallel = estimate_time(tiny(), cluster, tiny_workload(), layout, SP_VP)
    # lm_head: 2 x V 32 x C 8 FLOPs per response token x 6 response tokens x 3 (forward + backward), once more
    assert thinkrl.flops - vocab_parallel.flops == 2 * 32 * 8 * 6 * 3
    one_rank = ParallelLayout(fsdp=2, micro_batch_tokens=8)
    assert estimate_time(tiny(), cluster, tiny_workload(), one_rank).flops == vocab_parallel.flops


def _trainer_accepts(shape: ModelShape, layout: ParallelLayout, num_gpus: int) -> bool:
    """What `thinkrl train --layout` does with this layout on WORLD_SIZE = num_gpus: the recipe overrides, then the
    size checks of `parallelize_layers` (its MoE and q/k-norm refusals: test_parallelize_layers_refuses_...)."""
    try:
        layout_overrides(layout, world_size=num_gpus)
        if layout.tp > 1:
            if shape.is_moe or shape.qk_norm:
                return False
            check_divisible(shape.num_heads, shape.num_kv_heads, shape.intermediate_size, layout.tp)
    except ValueError:
        return False
    return True


QWEN3 = {"architectures": ["Qwen3ForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
         "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 96, "vocab_size": 128}
KV2 = {**TINY, "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 24}


@pytest.mark.parametrize(("model", "num_gpus"), [
    ("seed_oss_36b", 16), ("moe_200b_a20b", 16), ("kv2", 8), ("qwen3", 4), ("kv2", 1)])
def test_runnable_verdict_is_the_trainers(model, num_gpus):
    shape = (load_model_shape(CONFIGS / f"{model}.json") if model in ("seed_oss_36b", "moe_200b_a20b") else
             ModelShape.from_config(read_hf_config(KV2 if model == "kv2" else QWEN3), name=model))
    work = WorkloadSpec(prompt_len=8, response_len=24, group_size=4, prompts_per_step=8)
    cluster = ClusterSpec(num_gpus=num_gpus, gpus_per_node=min(num_gpus, 8))
    space = SearchSpace(micro_batch_tokens=[32], fsdp=sorted({1, 2, num_gpus // 2 or 1, num_gpus}))
    checked = refused = 0
    for layout in enumerate_layouts(shape, cluster, work, space):
        candidate = evaluate_layout(shape, cluster, work, layout)
        if candidate.memory is None:
            continue  # structurally invalid for any trainer (tiling, heads): not a thinkrl question
        checked += 1
        refused += not candidate.runnable
        assert candidate.runnable == _trainer_accepts(shape, layout, num_gpus), (layout.describe(), candidate.reason)
        assert candidate.runnable or candidate.reason.startswith("thinkrl train cannot run it: ")
        # the "full" trainer runs everything the structural check lets through
        assert evaluate_layout(shape, cluster, work, layout, TRAINER_PRESETS["full"]).runnable
    assert checked >= 6 and 0 < refused < checked


def test_parallelize_layers_refuses_moe_and_qk_norm_in_a_real_process():
    """The two refusals `_trainer_accepts` takes from the trainer's docs, checked against the code: a 1-rank gloo
    group, a tp mesh of size 1 (divisibility is then trivial, the MoE and q/k-norm checks still run)."""
    script = textwrap.dedent("""
        import json, sys, tempfile
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from thinkrl.model import ModelConfig, build_model
        from thinkrl.train.tensor_parallel import parallelize_layers
        dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
        mesh = init_device_mesh("cpu", (1,))
        out = {}
        for name, cfg in json.loads(sys.argv[1]).items():
            try:
                parallelize_layers(build_model(ModelConfig.from_hf_dict(cfg)).model.layers, mesh)
                out[name] = None
            except ValueError as err:
                out[name] = str(err)
        dist.destroy_process_group()
        print(json.dumps(out))
    """)
    moe = {**TINY, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8}
    cfgs = {"moe": moe, "qwen3": QWEN3, "dense": TINY}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(cfgs)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "MoE" in out["moe"] and "q/k norms" in out["qwen3"] and out["dense"] is None
    tuner = [evaluate_layout(ModelShape.from_config(read_hf_config(cfg)), ClusterSpec(num_gpus=2, gpus_per_node=2),
                             tiny_workload(), ParallelLayout(tp=2, micro_batch_tokens=8)) for cfg in (moe, QWEN3)]
    assert [c.runnable for c in tuner] == [False, False]


# a 1.5B-parameter Qwen2-class decoder (tied embeddings): a size thinkrl train's rank-0 fp32 engine leaves room for
SMALL = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536, "intermediate_size": 8960,
         "num_attention_heads": 12, "num_hidden_layers": 28, "num_key_value_heads": 2, "vocab_size": 151936,
         "tie_word_embeddings": True}
SMALL_WORK = ["--response-len", "4096", "--rollout-seqs-per-engine", "16"]


@pytest.mark.parametrize(("gpus", "extra"), [(8, []), (16, ["--cluster", "h200-141gb"]), (4, ["--recompute", "full"]),
                                             (16, ["--tp", "2", "--fsdp", "8"])])
def test_tuned_layout_is_accepted_by_thinkrl_train(tmp_path, capsys, gpus, extra):
    config, out = tmp_path / "config.json", tmp_path / "layout.yaml"
    config.write_text(json.dumps(SMALL))
    assert main(["tune", "--model", str(config), "--gpus", str(gpus), "--json", "--out", str(out), *SMALL_WORK,
                 *extra]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainer"] == TrainerSpec().model_dump()
    assert all(c["runnable"] and c["reason"] is None for c in data["feasible"])
    unrunnable = [c for c in data["rejected"] if not c["runnable"]]
    assert all(c["memory"] is not None and c["reason"].startswith("thinkrl train cannot run it: ") for c in unrunnable)
    layout = load_layout(out)
    assert layout.model_dump() == data["feasible"][0]["layout"]
    assert _trainer_accepts(ModelShape.from_config(read_hf_config(SMALL)), layout, gpus)
    assert layout_overrides(layout, world_size=gpus)[-2] == f"trainer.tensor_parallel={layout.tp}"


def test_text_output_marks_what_thinkrl_train_cannot_run(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL))
    assert main(["tune", "--model", str(config), "--gpus", "16", *SMALL_WORK]) == 0
    out = capsys.readouterr().out
    assert "trainer: thinkrl train (tp: no sequence parallelism, replicated embeddings/lm_head)" in out
    assert "rejected: thinkrl train cannot run it: context parallelism — e.g." in out
    assert "rejected: thinkrl train cannot run it: tp with HSDP replicas — e.g." in out


def test_36b_does_not_fit_thinkrl_train_and_says_why(capsys):
    """The rank-0 engine (fp32 copy of 36B parameters, 145 GB) alone exceeds an 80 GB GPU: nothing fits."""
    assert main(["tune", "--model", "seed-oss-36b", "--gpus", "32", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["feasible"]
    runnable = [c for c in data["rejected"] if c["runnable"] and c["memory"] is not None]
    assert runnable and all(c["memory"]["engine_resident"] > 145e9 for c in runnable)
    assert any("largest: rollout engine on rank 0" in c["reason"] for c in runnable)


def test_full_trainer_ranks_what_thinkrl_cannot_run():
    shape = ModelShape.from_config(read_hf_config(SMALL))
    cluster = ClusterSpec(num_gpus=16, gpus_per_node=8)
    work = WorkloadSpec(prompt_len=1024, response_len=4096, group_size=16, prompts_per_step=64,
                        rollout_seqs_per_engine=16)
    space = SearchSpace(tp=[2], cp=[1, 2], fsdp=[4, 8], micro_batch_tokens=[5120], recompute=["full"],
                        offload=["none"])
    thinkrl, full = tune(shape, cluster, work, space), tune(shape, cluster, work, space, TRAINER_PRESETS["full"])
    assert {c.layout.cp for c in thinkrl.feasible} == {1} and 2 in {c.layout.cp for c in full.feasible}
    # the same layout needs more memory where norms, residuals, embeddings and logits are not split over tp and
    # rank 0 holds the fp32 engine
    tp2 = ParallelLayout(tp=2, fsdp=8, micro_batch_tokens=5120, recompute="full")
    ours, theirs = (evaluate_layout(shape, cluster, work, tp2, t).memory for t in (None, TRAINER_PRESETS["full"]))
    assert ours.train_peak - ours.engine_resident > theirs.train_peak and ours.engine_resident > 0


@pytest.mark.parametrize(("args", "fragment"), [
    (["--trainer", "megatron"], "unknown --trainer 'megatron'; known: thinkrl, full")])
def test_bad_trainer_is_one_line_and_exit_2(args, fragment, capsys):
    assert main(["tune", "--model", "seed-oss-36b", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_assume_flags_change_the_model(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL))
    base = ["tune", "--model", str(config), "--gpus", "16", "--tp", "2", "--fsdp", "8", "--recompute", "full",
            "--offload", "none", "--micro-batch-tokens", "5120", "--json", *SMALL_WORK]
    peaks = []
    for flags in ([], ["--assume-sequence-parallel"], ["--assume-sequence-parallel", "--assume-vocab-parallel"]):
        assert main([*base, *flags]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["trainer"]["sequence_parallel"] == bool(flags)
        assert data["trainer"]["vocab_parallel"] == (len(flags) == 2)
        peaks.append(data["feasible"][0]["memory"]["train_peak"])
    assert peaks[0] > peaks[1] > peaks[2]


def test_rank0_engine_term_is_the_real_engines():
    """thinkrl's engine as `thinkrl train` starts it (`start_engine`, thread placement, CPU): its weights and its
    preallocated KV cache, summed from the engine's own tensors, are the tuner's "resident_on_rank0" terms."""
    from thinkrl.model import ModelConfig, build_model
    from thinkrl.rollout.engine import start_engine
    from thinkrl.rollout.specs import SamplingSpec
    from thinkrl.tasks.base import Problem
    from thinkrl.tokenizer import load_tokenizer
    from thinkrl.tune.memory import engine_bytes

    cfg = {**TINY, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "intermediate_size": 128, "vocab_size": 512}
    policy = build_model(ModelConfig.from_hf_dict(cfg))
    client = start_engine(policy, load_tokenizer("builtin"), SamplingSpec(max_new_tokens=48, num_slots=4),
                          [Problem("t", "0", "what is 2 + 3?", {})], seed=0)
    try:
        engine = client.engine
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in engine.model.parameters()}
        cache = sum(t.untyped_storage().nbytes() for t in engine.cache.keys + engine.cache.values)
        max_seq_len = engine.scheduler.max_seq_len
    finally:
        client.stop()
    work = WorkloadSpec(prompt_len=max_seq_len - 48, response_len=48, group_size=1, prompts_per_step=8,
                        rollout_seqs_per_engine=4)  # 4 slots of max_seq_len tokens
    shape = ModelShape.from_config(read_hf_config(cfg))
    weights, kv = engine_bytes(shape, work, ClusterSpec(num_gpus=2, gpus_per_node=2),
                               ParallelLayout(fsdp=2, micro_batch_tokens=max_seq_len), TrainerSpec())
    assert (weights, kv) == (sum(storages.values()), cache)
