"""Decoder properties: packing isolation, MoE, cached decode = packed forward, dropout."""

from __future__ import annotations

import torch

from thinkrl.model import CachedStep, ModelConfig, build_model

DENSE = ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1)
MOE = ModelConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=16, shared_expert_intermediate_size=16)


def _packed(model, seqs):
    ids = torch.tensor([t for s in seqs for t in s])
    pos = torch.cat([torch.arange(len(s)) for s in seqs])
    cu = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    return model(ids, pos, cu)


def test_packed_sequences_do_not_see_each_other():
    """The gradient of sequence A's output w.r.t. sequence B's embeddings is exactly zero."""
    model = build_model(DENSE, seed=0)
    seqs = [[1, 2, 3, 4, 5], [6, 7, 8]]
    emb = model.model.embed_tokens
    out = _packed(model, seqs)
    grads = torch.autograd.grad(out.hidden[:5].sum(), emb.weight)[0]
    assert grads[6:9].abs().sum() == 0
    assert grads[1:6].abs().sum() > 0


def test_moe_cached_decode_matches_packed_and_aux_loss():
    model = build_model(MOE, seed=0).eval()
    seq = torch.randint(0, 40, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    out = _packed(model, [seq])
    ref = model.logits(out.hidden)
    # Switch aux loss is >= coef * 1 (its minimum, at perfect balance) per layer and finite.
    assert out.aux_loss >= MOE.router_aux_loss_coef * MOE.num_hidden_layers * 0.999
    cache = model.allocate_cache(1, 16)
    for t, tok in enumerate(seq):
        step = CachedStep(torch.tensor([0]), torch.tensor([t]), torch.tensor([1]), context_len=t + 1,
                          slots_are_prefix=True)
        logits = model.logits(model.forward_cached(torch.tensor([[tok]]), step, cache)[0, 0])
        assert (logits - ref[t]).abs().max() < 1e-4


def test_moe_aux_loss_has_router_gradient():
    model = build_model(MOE, seed=0).train()
    out = _packed(model, [[1, 2, 3, 4, 5, 6]])
    out.aux_loss.backward()
    assert model.model.layers[0].mlp.gate.weight.grad.abs().sum() > 0


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    seqs = [[1, 2, 3, 4], [5, 6, 7]]
    grads = []
    for ckpt in (False, True):
        model = build_model(DENSE, seed=0).train()
        model.activation_checkpointing = ckpt
        model.logits(_packed(model, seqs).hidden).logsumexp(-1).sum().backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_seed_oss_residual_dropout_only_in_training():
    cfg = ModelConfig(**{**DENSE.__dict__, "residual_dropout": 0.5, "extra": {}})
    model = build_model(cfg, seed=0)
    seq = [[1, 2, 3, 4, 5]]
    model.train()
    a, b = _packed(model, seq).hidden, _packed(model, seq).hidden
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(_packed(model, seq).hidden, _packed(model, seq).hidden)
