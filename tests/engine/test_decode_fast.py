"""The CPU decode speed-ups keep the engine's outputs: prepacked oneDNN linears (`pack_linears`) give the same tokens
for the same seeds as plain ``F.linear``, follow weight updates, and stay trainable; the padding-free prefill
(projections on the valid tokens only) gives the same hidden states as the packed training forward."""

from __future__ import annotations

import copy

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import (
    CachedStep,
    ModelConfig,
    build_model,
    pack_linears,
    packed_linears_unsupported_reason,
    unpack_linears,
)
from thinkrl.model.packed_linear import _PackedGroup
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True, tie_word_embeddings=True)

pytestmark = pytest.mark.skipif(packed_linears_unsupported_reason(build_model(CFG)) is not None,
                                reason="this torch build has no oneDNN linear")

PARAMS = [  # seeded rows of every sampling mode, plus unseeded rows sharing the engine's generator
    SamplingParams(max_new_tokens=24, temperature=1.0, seed=5, stop_token_ids=()),
    SamplingParams(max_new_tokens=24, temperature=0.8, top_k=20, seed=6, stop_token_ids=()),
    SamplingParams(max_new_tokens=24, temperature=1.2, top_p=0.9, seed=7, stop_token_ids=()),
    SamplingParams(max_new_tokens=24, temperature=0.0, stop_token_ids=()),
    SamplingParams(max_new_tokens=24, temperature=1.0, stop_token_ids=()),
]


def _requests(tokenizer):
    prompts = [tokenizer.encode(text) for text in ("What is 2 + 3?", "Count: one two", "x", "Sort 5 1 4 2 3 please")]
    return [Request(prompts[i % len(prompts)], PARAMS[i % len(PARAMS)], request_id=i) for i in range(10)]


def _run(model, tokenizer, packed: bool, num_slots: int = 4):
    engine = LLMEngine(copy.deepcopy(model), tokenizer, num_slots=num_slots, max_seq_len=64, seed=3,
                       packed_linears=packed)
    assert engine.packed_linears is packed
    return engine.generate(_requests(tokenizer))


def test_packed_linears_give_the_same_tokens_as_plain_linears():
    tokenizer = load_tokenizer()
    model = build_model(CFG, seed=0)
    plain = _run(model, tokenizer, packed=False)
    packed = _run(model, tokenizer, packed=True)
    assert [t.response_ids for t in packed] == [t.response_ids for t in plain]
    assert len({tuple(t.response_ids) for t in plain}) > 5  # the rows really differ (not one repeated sequence)
    for a, b in zip(packed, plain, strict=True):  # the same distribution up to fp32 rounding
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=1e-4)


def test_packed_linear_matches_f_linear_and_repacks_after_an_in_place_update():
    model = build_model(CFG, seed=1)
    reference = copy.deepcopy(model)
    pack_linears(model, batch_hint=8)
    proj = model.model.layers[0].self_attn.q_proj
    x = torch.randn(5, 3, CFG.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(proj(x), reference.model.layers[0].self_attn.q_proj(x), rtol=1e-5, atol=1e-5)
        assert isinstance(proj.forward, _PackedGroup) and proj.forward.packs == 1
        proj(x)
        assert proj.forward.packs == 1  # unchanged weight: no repack
        proj.weight.mul_(-2.0)  # an in-place change, as update_weights' copy_ makes
        torch.testing.assert_close(proj(x), -2.0 * (x @ reference.model.layers[0].self_attn.q_proj.weight.T)
                                   + proj.bias, rtol=1e-5, atol=1e-5)
        assert proj.forward.packs == 2
    attention = model.model.layers[1].self_attn
    plain = reference.model.layers[1].self_attn
    with torch.no_grad():
        want = torch.cat([plain.q_proj(x), plain.k_proj(x), plain.v_proj(x)], dim=-1)  # [5, 3, (H + 2K) D]
        torch.testing.assert_close(attention.fused_qkv(x), want, rtol=1e-5, atol=1e-5)
        attention.k_proj.bias.add_(1.0)  # a bias alone changed: the fused copy follows
        plain.k_proj.bias.add_(1.0)
        want = torch.cat([plain.q_proj(x), plain.k_proj(x), plain.v_proj(x)], dim=-1)
        torch.testing.assert_close(attention.fused_qkv(x), want, rtol=1e-5, atol=1e-5)
        assert attention.fused_qkv.packs == 2
    assert attention.fused_qkv(x.requires_grad_()) is None  # under autograd the layer runs q/k/v one by one
    unpack_linears(model)
    assert "forward" not in proj.__dict__ and attention.fused_qkv is None


def test_engine_update_weights_reaches_the_packed_linears():
    tokenizer = load_tokenizer()
    old, new = build_model(CFG, seed=0), build_model(CFG, seed=9)
    engine = LLMEngine(copy.deepcopy(old), tokenizer, num_slots=4, max_seq_len=64, seed=3, packed_linears=True)
    engine.generate(_requests(tokenizer)[:2])  # packs the old weights
    engine.update_weights(dict(new.named_parameters()), version=1)
    after = engine.generate(_requests(tokenizer))
    fresh = _run(new, tokenizer, packed=False)
    assert [t.response_ids for t in after] == [t.response_ids for t in fresh]


def test_a_packed_model_still_trains_and_deep_copies():
    model = build_model(CFG, seed=2)
    reference = copy.deepcopy(model)
    pack_linears(model)
    ids = torch.randint(0, CFG.vocab_size, (9,))
    positions = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4])
    cu = torch.tensor([0, 4, 9])
    for m in (model, reference):
        m.logits(m(ids, positions, cu).hidden).logsumexp(-1).sum().backward()
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    twin = copy.deepcopy(model)
    proj = twin.model.layers[1].mlp.down_proj
    assert proj.forward.linears[0] is proj  # bound to the copy's own layer, not the original's
    with torch.no_grad():
        torch.testing.assert_close(twin.logits(twin(ids, positions, cu).hidden),
                                   reference.logits(reference(ids, positions, cu).hidden), rtol=1e-5, atol=1e-5)


def test_padding_free_prefill_matches_the_packed_forward():
    model = build_model(CFG, seed=4).eval()
    lengths = [5, 2, 7]
    ids = [torch.randint(0, CFG.vocab_size, (n,)) for n in lengths]
    padded = torch.stack([torch.cat([x, torch.zeros(7 - len(x), dtype=torch.long)]) for x in ids])  # [3, 7]
    cache = model.allocate_cache(4, 16)
    step = CachedStep(torch.tensor([2, 0, 3]), torch.zeros(3, dtype=torch.long), torch.tensor(lengths), 7)
    hidden = model.forward_cached(padded, step, cache)  # [3, 7, C]
    cu = torch.tensor([0, 5, 7, 14])
    with torch.no_grad():
        want = model(torch.cat(ids), torch.cat([torch.arange(n) for n in lengths]), cu).hidden  # [14, C]
    for i, n in enumerate(lengths):
        torch.testing.assert_close(hidden[i, :n], want[cu[i] : cu[i] + n], rtol=1e-5, atol=1e-5)
        assert torch.all(hidden[i, n:] == 0)  # padding rows never went through the layers


def test_by_default_only_layers_large_enough_for_onednn_to_pay_are_packed():
    # hidden 128, 4 heads of 32, 2 KV heads: q 128 x 128 + k, v 64 x 128 = 32,768 weights together and o_proj 16,384
    # (plain); gate + up 2 x 512 x 128 = 131,072, down 128 x 512 = 65,536 = 1 << 16 and the LM head 512 x 128 (packed).
    big = ModelConfig(vocab_size=512, hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    engine = LLMEngine(build_model(big, seed=0), load_tokenizer(), num_slots=4, max_seq_len=32)
    layer = engine.model.model.layers[0]
    assert layer.self_attn.fused_qkv is None
    assert "forward" not in layer.self_attn.o_proj.__dict__ and "forward" not in layer.self_attn.q_proj.__dict__
    assert isinstance(layer.mlp.fused_gate_up, _PackedGroup)
    assert isinstance(layer.mlp.down_proj.forward, _PackedGroup)
    assert isinstance(engine.model.lm_head.forward, _PackedGroup)
    assert engine.packed_linears
    small = LLMEngine(build_model(CFG, seed=0), load_tokenizer(), num_slots=4, max_seq_len=32)
    assert not small.packed_linears  # 64 wide: every layer stays on F.linear
    assert small.model.model.layers[0].self_attn.fused_qkv is None
    # 7 linears and 2 fused groups a layer, and the LM head (a module of its own, even with tied embeddings)
    assert pack_linears(build_model(CFG, seed=0), min_weights=0) == 2 * 7 + 2 * 2 + 1

