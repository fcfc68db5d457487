"""Checkpoint I/O: sharding, and clear errors for bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from thinkrl.model import ModelConfig, build_model, load_pretrained, save_pretrained

TINY = ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, attention_bias=True)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sharded_round_trip(tmp_path):
    model = build_model(TINY, seed=1)
    save_pretrained(model, tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "model.safetensors").exists()
    assert _same_weights(model, load_pretrained(tmp_path))


def test_tied_embeddings_saved_once_and_shared(tmp_path):
    cfg = ModelConfig(**{**TINY.__dict__, "tie_word_embeddings": True, "extra": {}})
    save_pretrained(build_model(cfg), tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    model = load_pretrained(tmp_path)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_missing_tensor_is_named(tmp_path):
    save_pretrained(build_model(TINY), tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensors .*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_pretrained(tmp_path)


def test_unexpected_tensor_is_named(tmp_path):
    save_pretrained(build_model(TINY), tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["model.layers.0.extra.weight"] = torch.zeros(3)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected tensors .*model\.layers\.0\.extra\.weight"):
        load_pretrained(tmp_path)


def test_shape_mismatch_names_file_and_tensor(tmp_path):
    save_pretrained(build_model(TINY), tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["model.norm.weight"] = torch.ones(31)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor model\.norm\.weight has shape \(31,\)"):
        load_pretrained(tmp_path)


def test_unsupported_architecture_and_missing_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel.*not supported"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_hf_dict()))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nope")


def test_config_validation_names_values():
    with pytest.raises(ValueError, match=r"num_attention_heads \(6\) must be divisible by num_key_value_heads \(4\)"):
        ModelConfig(hidden_size=48, num_attention_heads=6, num_key_value_heads=4)
    with pytest.raises(ValueError, match="rope_scaling type 'yarn'"):
        ModelConfig(rope_scaling={"rope_type": "yarn", "factor": 2.0})


@pytest.mark.parametrize("kv", ["absent", None])
def test_a_config_without_key_value_heads_has_one_per_query_head_as_in_transformers(kv):
    # older Llama config.json files have no num_key_value_heads; thinkrl's own default (2) would build another model
    transformers = pytest.importorskip("transformers", reason="the reference is transformers' LlamaConfig")
    raw = {**TINY.to_hf_dict(), "architectures": ["LlamaForCausalLM"], "num_attention_heads": 4}
    raw.pop("num_key_value_heads")
    if kv is None:
        raw["num_key_value_heads"] = None
    reference = transformers.LlamaConfig(**{k: v for k, v in raw.items() if k != "architectures"})
    assert ModelConfig.from_hf_dict(raw).num_key_value_heads == reference.num_key_value_heads == 4


def test_rope_v4_and_v5_layouts_agree():
    v4 = {**TINY.to_hf_dict(), "rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 4.0}}
    v5 = {**TINY.to_hf_dict(), "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6}}
    v5.pop("rope_theta")
    v5.pop("rope_scaling")
    a, b = ModelConfig.from_hf_dict(v4), ModelConfig.from_hf_dict(v5)
    assert a.rope_theta == b.rope_theta == 1e6
    assert a.rope_type == b.rope_type == "linear"


MOE = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)


def test_moe_is_saved_as_qwen3_moe_with_one_tensor_per_expert(tmp_path):
    model = build_model(ModelConfig(architecture="Qwen3ForCausalLM", **MOE), seed=3)
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3MoeForCausalLM"] and config["model_type"] == "qwen3_moe"
    assert (config["num_experts"], config["num_local_experts"], config["decoder_sparse_step"]) == (4, 4, 1)
    names = set(load_file(tmp_path / "model.safetensors"))
    experts = {f"model.layers.1.mlp.experts.{e}.{w}_proj.weight" for e in range(4) for w in ("gate", "up", "down")}
    assert experts <= names
    reloaded = load_pretrained(tmp_path)
    assert reloaded.config.architecture == "Qwen3MoeForCausalLM" and reloaded.config.qk_norm
    assert _same_weights(model, reloaded)


def test_moe_without_a_transformers_architecture_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="cannot save a mixture-of-experts SeedOssForCausalLM.*Qwen3MoeForCausalLM"):
        save_pretrained(build_model(ModelConfig(**MOE)), tmp_path)
    shared = ModelConfig(architecture="Qwen3ForCausalLM", **MOE, shared_expert_intermediate_size=16)
    with pytest.raises(ValueError, match="shared_expert_intermediate_size 16"):
        save_pretrained(build_model(shared), tmp_path)
    with pytest.raises(ValueError, match="Qwen3MoeForCausalLM needs num_experts > 0"):
        ModelConfig(architecture="Qwen3MoeForCausalLM", vocab_size=50, hidden_size=32)


def test_qwen3_moe_with_dense_layers_is_refused():
    raw = {**ModelConfig(architecture="Qwen3MoeForCausalLM", **MOE).to_hf_dict(), "mlp_only_layers": [0]}
    with pytest.raises(ValueError, match=r"mlp_only_layers \[0\]"):
        ModelConfig.from_hf_dict(raw)
