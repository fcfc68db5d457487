"""Tiny random Hugging Face models of each supported architecture, built locally (no download).

Only the tests that use `hf_checkpoint` need transformers; they skip without it, the rest of tests/model runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _transformers():
    return pytest.importorskip("transformers")


COMMON = dict(
    vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
)


def hf_config(arch: str):
    """A transformers config object for ``arch`` with random-friendly tiny sizes."""
    transformers = _transformers()
    if arch == "LlamaForCausalLM":
        return transformers.LlamaConfig(
            **COMMON, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 5000.0},
            tie_word_embeddings=True,
        )
    if arch == "Qwen2ForCausalLM":
        return transformers.Qwen2Config(**COMMON, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    if arch == "Qwen3ForCausalLM":
        return transformers.Qwen3Config(**COMMON, head_dim=24, tie_word_embeddings=True)
    if arch == "SeedOssForCausalLM":
        return transformers.SeedOssConfig(
            **COMMON, head_dim=16, attention_bias=True, attention_out_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e7},
        )
    if arch == "Qwen3MoeForCausalLM":
        return transformers.Qwen3MoeConfig(
            **COMMON, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        )
    raise ValueError(arch)


ARCHS = ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "SeedOssForCausalLM", "Qwen3MoeForCausalLM"]


def make_hf_model(arch: str, folder: Path, seed: int = 0):
    """Build a random HF model, give biases/norms non-trivial values, save it to ``folder``."""
    torch.manual_seed(seed)
    cls = getattr(_transformers(), arch)
    model = cls(hf_config(arch)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)  # default zeros/ones would hide a missing bias or norm
            if name.endswith("mlp.gate.weight"):
                p.mul_(20.0)  # decisive routing: near-ties would let rounding pick a different expert
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="session", params=ARCHS)
def hf_checkpoint(request, tmp_path_factory):
    """(architecture, folder, transformers model) for each architecture."""
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, folder, make_hf_model(request.param, folder)
