"""`compile_pointwise`: the compiled RMSNorm / rope / SwiGLU activation give the eager model's outputs and gradients
(to float32 rounding), and `uncompile_pointwise` restores the eager functions."""

from __future__ import annotations

import copy

import pytest
import torch

from thinkrl.model import ModelConfig, build_model, compile_pointwise, uncompile_pointwise
from thinkrl.model.layers import rms_norm, silu_mul

CFG = ModelConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)


def test_compile_and_uncompile_switch_the_kernels_without_compiling():
    model = build_model(CFG, seed=0)
    assert compile_pointwise(model) == 2 * 2 + 1 + 2 + 2  # 5 norms, 2 attentions, 2 SwiGLUs
    layer = model.model.layers[0]
    assert layer.input_layernorm.kernel is not rms_norm and layer.mlp.activation is not silu_mul
    assert layer.self_attn.rope_kernel is not None
    uncompile_pointwise(model)
    assert layer.input_layernorm.kernel is rms_norm and layer.mlp.activation is silu_mul
    assert layer.self_attn.rope_kernel is None


@pytest.mark.slow  # Inductor compiles six kernels (forward and backward): about a minute on a 2-core CPU
def test_compiled_pointwise_gives_the_eager_forward_and_gradients():
    model = build_model(CFG, seed=1)
    reference = copy.deepcopy(model)
    compile_pointwise(model)
    gen = torch.Generator().manual_seed(0)
    for lengths in ([5, 9], [3, 4, 8]):  # two packed lengths: dynamic shapes, no recompilation needed
        ids = torch.randint(0, CFG.vocab_size, (sum(lengths),), generator=gen)
        positions = torch.cat([torch.arange(n) for n in lengths])
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
        for m in (model, reference):
            m.zero_grad()
            m.logits(m(ids, positions, cu).hidden).logsumexp(-1).sum().backward()
        torch.testing.assert_close(model(ids, positions, cu).hidden, reference(ids, positions, cu).hidden,
                                   rtol=1e-5, atol=1e-5)
        for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)
