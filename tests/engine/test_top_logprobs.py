"""Top log-probs: the k most likely tokens per sampled token equal a full forward's log-softmax."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)
PROMPTS = [[5, 6, 7], [8, 9, 10, 11], [40, 41]]


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("builtin")


def _full_logprobs(model, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    """(R, V) log_softmax(logits / T) of an uncached forward at each response position (T 0: raw logits)."""
    ids = torch.tensor(prompt + response)
    with torch.no_grad():
        logits = model.logits(model(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden)
    return (logits / (temperature or 1.0)).log_softmax(-1)[len(prompt) - 1 : len(ids) - 1]


def _run(engine: LLMEngine, requests: list[Request]) -> dict:
    """Per request: (tokens, logprobs, top lists) gathered from its events, and the trajectory."""
    got = {r.request_id: ([], [], [], None) for r in requests}
    for event in engine.stream(requests):
        tokens, logprobs, tops, _ = got[event.request_id]
        tokens += event.token_ids
        logprobs += event.logprobs
        tops += event.top_logprobs if event.top_logprobs is not None else [None] * len(event.token_ids)
        if event.finished:
            got[event.request_id] = (tokens, logprobs, tops, event.trajectory)
    return got


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_top_logprobs_equal_full_forward(model, tokenizer, temperature: float) -> None:
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)  # fewer slots than prompts
    k = 5
    requests = [Request(p, SamplingParams(max_new_tokens=8, temperature=temperature, seed=i, top_logprobs=k,
                                          stop_token_ids=()), request_id=i) for i, p in enumerate(PROMPTS)]
    for i, prompt in enumerate(PROMPTS):
        tokens, logprobs, tops, trajectory = _run(engine, [requests[i]])[i]
        assert tokens == trajectory.response_ids and logprobs == trajectory.logprobs
        want = _full_logprobs(model, prompt, tokens, temperature)  # [R, V]
        want_values, want_ids = want.topk(k, dim=-1)
        in_top = 0
        for position, (token, logprob, top) in enumerate(zip(tokens, logprobs, tops, strict=True)):
            assert len(top) == k
            ids = [t for t, _ in top]
            values = torch.tensor([v for _, v in top])
            assert ids == want_ids[position].tolist()
            assert torch.allclose(values, want_values[position], atol=1e-4)
            assert values.tolist() == sorted(values.tolist(), reverse=True)
            if token in ids:  # the sampled token's log-prob is its entry in the list
                in_top += 1
                assert logprob == pytest.approx(dict(top)[token], abs=1e-6)
        if temperature == 0:  # greedy: the sampled token is the first entry
            assert in_top == len(tokens) and [top[0][0] for top in tops] == tokens


def test_mixed_batch_only_asking_rows_get_lists(model, tokenizer) -> None:
    engine = LLMEngine(model, tokenizer, num_slots=4, max_seq_len=64)
    requests = [Request(PROMPTS[0], SamplingParams(max_new_tokens=6, temperature=0, stop_token_ids=()), "none"),
                Request(PROMPTS[1], SamplingParams(max_new_tokens=6, temperature=0, top_logprobs=2,
                                                   stop_token_ids=()), "two"),
                Request(PROMPTS[2], SamplingParams(max_new_tokens=6, temperature=1.0, seed=5, top_logprobs=600,
                                                   stop_token_ids=()), "all")]
    got = _run(engine, requests)
    assert got["none"][2] == [None] * 6
    assert [len(top) for top in got["two"][2]] == [2] * 6
    # More than the vocabulary: the whole vocabulary, whose probabilities sum to one.
    tokens, logprobs, tops, _ = got["all"]
    for token, logprob, top in zip(tokens, logprobs, tops, strict=True):
        assert len(top) == CFG.vocab_size and logprob == pytest.approx(dict(top)[token], abs=1e-6)
        assert sum(torch.tensor([v for _, v in top]).double().exp().tolist()) == pytest.approx(1.0, abs=1e-4)


class _ForceAfterFirst:
    """Forces tokens 1, 2 after the first sampled token."""

    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        return []

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        return [1, 2] if len(response_ids) == 1 else []


def test_forced_tokens_have_empty_lists_and_zero_logprob(model, tokenizer) -> None:
    engine = LLMEngine(model, tokenizer, num_slots=1, max_seq_len=64)
    params = SamplingParams(max_new_tokens=5, temperature=0, top_logprobs=3, stop_token_ids=())
    tokens, logprobs, tops, _ = _run(engine, [Request(PROMPTS[0], params, "r", controller=_ForceAfterFirst())])["r"]
    assert tokens[1:3] == [1, 2] and logprobs[1:3] == [0.0, 0.0]
    assert [len(t) for t in tops] == [3, 0, 0, 3, 3]
