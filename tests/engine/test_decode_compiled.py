"""The compiled CPU decode step (`LLMEngine(compile_decode=True)`: the fixed-shape step through ``torch.compile``)
gives the eager engine's tokens for the same seeds, writes the KV cache the later steps read, follows weight
updates, serves a second engine's own model in the same process, and refuses what it cannot run (MoE)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)

PARAMS = [  # seeded rows of every sampling mode, plus greedy and unseeded rows sharing the engine's generator
    SamplingParams(max_new_tokens=30, temperature=1.0, seed=5, stop_token_ids=()),
    SamplingParams(max_new_tokens=12, temperature=0.8, top_k=20, seed=6, stop_token_ids=()),
    SamplingParams(max_new_tokens=45, temperature=1.2, top_p=0.9, seed=7, stop_token_ids=()),
    SamplingParams(max_new_tokens=70, temperature=0.0, stop_token_ids=()),
    SamplingParams(max_new_tokens=20, temperature=1.0, stop_token_ids=()),
]


def _requests(tokenizer, tag: str = "") -> list[Request]:
    prompts = [tokenizer.encode(t) for t in ("What is 2 + 3?", "Count: one two", "x", "Sort 5 1 4 2 3 please")]
    return [Request(prompts[i % len(prompts)], PARAMS[i % len(PARAMS)], request_id=f"{tag}{i}") for i in range(11)]


def _engine(model, tokenizer, compiled: bool) -> LLMEngine:
    # 6 slots for 11 requests: rows join and leave mid-run, so the step sees many row counts and contexts
    return LLMEngine(copy.deepcopy(model), tokenizer, num_slots=6, max_seq_len=128, seed=3, compile_decode=compiled)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _same(compiled, eager) -> None:
    assert [t.response_ids for t in compiled] == [t.response_ids for t in eager]
    for a, b in zip(compiled, eager, strict=True):  # the same distributions up to fp32 rounding
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=1e-4)


def test_compiled_decode_gives_the_eager_tokens_and_follows_weight_updates(tokenizer):
    model = build_model(CFG, seed=0)
    compiled, eager = _engine(model, tokenizer, True), _engine(model, tokenizer, False)
    assert compiled.decode_graphs is not None and eager.decode_graphs is None
    graphs = counters["stats"]["unique_graphs"]  # compiled when the engine was built: none while it runs
    first = compiled.generate(_requests(tokenizer))
    _same(first, eager.generate(_requests(tokenizer)))
    assert len({tuple(t.response_ids) for t in first}) > 6  # the rows really differ
    stats = compiled.decode_graphs.stats  # decode steps went through the compiled step, both of its variants
    assert stats.replays > 60 and 0 < stats.gathered_steps < stats.replays
    # a weight update (in place, as a trainer's push) reaches the compiled step: both engines change alike
    pushed = {name: p.detach() + 0.05 * torch.randn_like(p) for name, p in model.named_parameters()}
    for engine in (compiled, eager):
        engine.update_weights(pushed, version=1)
    second = compiled.generate(_requests(tokenizer, "b"))
    _same(second, eager.generate(_requests(tokenizer, "b")))
    assert [t.response_ids for t in second] != [t.response_ids for t in first]
    assert {v for t in second for v in t.token_versions} == {1}
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_second_compiled_engine_runs_its_own_model(tokenizer):
    """The compiled step is shared by every engine of the process (one code object): it must read the calling
    engine's weights and cache, not the first engine's."""
    first_model, other_model = build_model(CFG, seed=0), build_model(CFG, seed=1)
    first = _engine(first_model, tokenizer, True)
    first.generate(_requests(tokenizer))
    other = _engine(other_model, tokenizer, True)
    _same(other.generate(_requests(tokenizer)), _engine(other_model, tokenizer, False).generate(_requests(tokenizer)))


def test_compiled_decode_with_packed_prefill_linears(tokenizer):
    """Prefill keeps the oneDNN-packed linears; the compiled step traces them as plain linears."""
    model = build_model(CFG, seed=2)
    packed = LLMEngine(copy.deepcopy(model), tokenizer, num_slots=6, max_seq_len=128, seed=3, packed_linears=True,
                       compile_decode=True)
    assert packed.packed_linears
    _same(packed.generate(_requests(tokenizer)), _engine(model, tokenizer, False).generate(_requests(tokenizer)))


def test_compile_decode_refuses_moe_models(tokenizer):
    moe = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=32)
    with pytest.raises(ValueError, match="MoE"):
        LLMEngine(build_model(moe), tokenizer, num_slots=2, max_seq_len=32, compile_decode=True)
