"""The engine decides on the host whether any row needs top-k / top-p (no device->host sync per step); tokens and
log-probs equal those of an independent, loop-written reference sampler, which reads no flags."""

from __future__ import annotations

import pytest
import torch

import thinkrl.engine.engine as engine_module
from thinkrl.engine import LLMEngine, Request, SamplingParams, apply_top_k_top_p
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)


def _old_truncate_row(row: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """The old rule for one row (V,), written as a loop: keep the top_k most likely tokens (0 = all), then, among
    them, each token whose strictly-more-likely mass is below top_p; the most likely token always stays."""
    values, order = row.sort(descending=True)
    keep = torch.ones_like(values, dtype=torch.bool)
    if top_k > 0:
        keep[top_k:] = False
    if top_p < 1:
        probs = values.masked_fill(~keep, float("-inf")).softmax(-1)
        before = 0.0
        for rank in range(len(values)):
            if before >= top_p:
                keep[rank] = False
            before += float(probs[rank])
    keep[0] = True
    out = torch.full_like(row, float("-inf"))
    out[order[keep]] = row[order[keep]]
    return out


def _old_sample_tokens(logits, temperature, top_k, top_p, uniforms, **flags):
    """Independent reference of the sampler: temperature scaling, the loop truncation above, then per row a walk
    over the vocabulary to the first token whose running probability mass exceeds the row's draw; greedy rows take
    the argmax of the raw logits. Ignores the host flags."""
    logits = logits.float()
    rows = logits.shape[0]
    scaled = torch.stack([logits[i] / (float(temperature[i]) if temperature[i] > 0 else 1.0) for i in range(rows)])
    filtered = torch.stack([_old_truncate_row(scaled[i], int(top_k[i]), float(top_p[i])) for i in range(rows)])
    tokens = []
    for i in range(rows):
        if temperature[i] <= 0:
            tokens.append(int(scaled[i].argmax()))
            continue
        probs = filtered[i].softmax(-1).double().tolist()
        target, mass = float(uniforms[i]) * sum(probs), 0.0
        token = next(t for t, p in enumerate(probs) if p > 0 and (mass := mass + p) > target)
        tokens.append(token)
    tokens = torch.tensor(tokens)
    logprobs = torch.stack([scaled[i].log_softmax(-1)[tokens[i]] for i in range(rows)])
    return tokens, logprobs


MIXED = [  # top-k, top-p, both, greedy, plain seeded, plain unseeded (shared generator)
    SamplingParams(max_new_tokens=12, temperature=0.9, top_k=5, seed=11, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=1.1, top_p=0.7, seed=12, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=0.8, top_k=20, top_p=0.9, seed=13, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=0, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=1.0, seed=14, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=1.0, stop_token_ids=()),
]
PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [3], [40, 41, 42], [7, 7]]


def _run(requests_params: list[SamplingParams]) -> list:
    model = build_model(CFG, seed=0).eval()
    engine = LLMEngine(model, load_tokenizer("builtin"), num_slots=len(requests_params), max_seq_len=64, seed=5)
    return engine.generate([Request(p, params) for p, params in zip(PROMPTS, requests_params, strict=True)])


def test_engine_tokens_and_logprobs_match_old_sampler_on_mixed_batch(monkeypatch):
    new = _run(MIXED)
    monkeypatch.setattr(engine_module, "sample_tokens", _old_sample_tokens)
    old = _run(MIXED)
    for a, b in zip(new, old, strict=True):
        assert len(a.response_ids) == 12
        assert a.response_ids == b.response_ids
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
    assert len({tuple(t.response_ids) for t in new}) > 1  # the rows really sample differently


@pytest.mark.parametrize(("params", "want"), [
    (MIXED, (True, True)),
    ([MIXED[0], MIXED[3]], (True, False)),
    ([MIXED[1], MIXED[4]], (False, True)),
    ([MIXED[3], MIXED[4], MIXED[5]], (False, False)),
])
def test_engine_passes_host_flags(monkeypatch, params, want):
    seen = []
    real = engine_module.sample_tokens

    def spy(*args, **kwargs):
        seen.append((kwargs.get("need_k"), kwargs.get("need_p")))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "sample_tokens", spy)
    model = build_model(CFG, seed=0).eval()
    engine = LLMEngine(model, load_tokenizer("builtin"), num_slots=len(params), max_seq_len=64, seed=5)
    engine.generate([Request(PROMPTS[i], p) for i, p in enumerate(params)])
    assert seen and set(seen) == {want}


@pytest.mark.parametrize(("top_k", "top_p"), [
    ([5, 0, 20, 0], [1.0, 0.7, 0.9, 1.0]),
    ([3, 0, 0, 1], [1.0, 1.0, 1.0, 1.0]),
    ([0, 0, 0, 0], [0.5, 1.0, 0.95, 0.2]),
    ([0, 0, 0, 0], [1.0, 1.0, 1.0, 1.0]),
])
def test_apply_top_k_top_p_with_flags_equals_without_and_old_rule(top_k, top_p):
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 3
    k, p = torch.tensor(top_k), torch.tensor(top_p)
    need_k, need_p = any(v > 0 for v in top_k), any(v < 1 for v in top_p)
    with_flags = apply_top_k_top_p(logits, k, p, need_k, need_p)
    assert torch.equal(with_flags, apply_top_k_top_p(logits, k, p))
    old = torch.stack([_old_truncate_row(logits[i], top_k[i], top_p[i]) for i in range(4)])
    assert torch.equal(with_flags, old)
