"""`thinkrl tune` end to end (text, --json, --out), bad input (one line, exit 2), layout YAML round trip."""

from __future__ import annotations

import json

import pytest

from cli_runner import run_thinkrl
from thinkrl.cli import main
from thinkrl.tune import ParallelLayout, load_layout, save_layout

CLI = ["tune"]


def test_layout_round_trip(tmp_path):
    layout = ParallelLayout(tp=4, cp=2, ep=1, fsdp=8, micro_batch_tokens=18432, recompute="full", offload="optimizer")
    path = save_layout(layout, tmp_path / "layout.yaml", header="chosen by a test")
    assert path.read_text().startswith("# chosen by a test\n")
    assert load_layout(path) == layout
    assert layout.mesh_shape(128) == {"replicate": 2, "fsdp": 8, "cp": 2, "tp": 4}
    with pytest.raises(ValueError, match=r"tp\*cp\*fsdp = 64 does not divide num_gpus \(96\)"):
        layout.mesh_shape(96)


@pytest.mark.parametrize(("text", "fragment"), [
    ("tp: 2\nmicro_batch_tokens: 8\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
    ("tp: 0\nmicro_batch_tokens: 8\n", "tp: Input should be greater than or equal to 1"),
    ("recompute: sometimes\nmicro_batch_tokens: 8\n", "recompute: Input should be 'none' or 'full'"),
    ("- 1\n", "must hold a mapping"),
])
def test_bad_layout_files_name_the_problem(tmp_path, text, fragment):
    path = tmp_path / "layout.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="layout.yaml") as err:
        load_layout(path)
    assert fragment in str(err.value)


def test_text_output_ranks_and_explains(capsys):
    assert main(["tune", "--model", "seed-oss-36b", "--gpus", "32", "--gpu-mem-gb", "80", "--top", "3",
                 "--trainer", "full"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("seed_oss_36b: 36.2B parameters") and "trainer: a trainer with every" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]
    assert "layouts fit." in out and "rejected: out of memory in training" in out


def test_json_output_and_layout_file(tmp_path):
    out_file = tmp_path / "layout.yaml"
    proc = run_thinkrl(*CLI, "--model", "moe-200b-a20b", "--gpus", "64", "--json", "--out", str(out_file),
                       "--recompute", "full", "--micro-batch-tokens", "9216,36864", "--trainer", "full", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"]["total_params"] > 1.9e11 and data["cluster"]["num_gpus"] == 64
    best = data["feasible"][0]
    assert best["reason"] is None and best["memory"]["peak"] <= (80 - 3) * 1e9
    assert all(r["reason"] for r in data["rejected"])
    assert {c["layout"]["micro_batch_tokens"] for c in data["feasible"]} <= {9216, 36864}
    assert load_layout(out_file).model_dump() == best["layout"]
    assert "predicted peak" in out_file.read_text().splitlines()[0]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "seed-oss-36b", "--gpu-mem-gb", "-1"], "cluster.gpu_mem_gb: Input should be greater than 0"),
    (["--model", "seed-oss-36b", "--gpus", "12"], "num_gpus (12) must be a multiple of gpus_per_node (8)"),
    (["--model", "seed-oss-36b", "--tp", "two"], "--tp takes integers like 1,2,4, got 'two'"),
    (["--model", "seed-oss-36b", "--precision", "fp8"], "workload.precision: Input should be 'bf16' or 'fp32'"),
    (["--model", "no/such/config.json"], "--model no/such/config.json: neither a built-in model "
                                         "(moe-200b-a20b, seed-oss-36b) nor a config.json"),
    (["--model", "seed-oss-63b"], "--model seed-oss-63b: neither a built-in model (moe-200b-a20b, seed-oss-36b)"),
    (["--model", "seed-oss-36b", "--cluster", "tpu"], "unknown --cluster 'tpu'"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment, capsys):
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_unsupported_architecture_exits_2_in_a_real_process(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 8}))
    proc = run_thinkrl(*CLI, "--model", str(path), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "architecture 'GPT2LMHeadModel' is not supported" in proc.stderr


def test_hf_moe_alias_is_read(tmp_path):
    """A Qwen3-MoE style config.json (HF keys) is read as thinkrl's MoE: 2 layers, 4 experts, top-2."""
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 16, "num_hidden_layers": 2,
           "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "vocab_size": 64,
           "intermediate_size": 48, "moe_intermediate_size": 8, "num_experts": 4, "num_experts_per_tok": 2}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    from thinkrl.tune import load_model_shape

    shape = load_model_shape(tmp_path)
    # per layer: attention 16*8*(4+2) = 768, router 16*4 = 64, norms 32, experts 4 * 3*16*8 = 1536
    assert shape.layer_dense_params == 768 + 64 + 32 and shape.expert_params == 1536
    # active: 2 of 4 experts -> 2 * 384 = 768 per layer instead of 1536
    assert shape.total_params - shape.active_params == 2 * (1536 - 768)
