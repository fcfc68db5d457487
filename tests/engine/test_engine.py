"""Engine behaviour: cached decode equals a naive full forward, seeds, stops, continuous batching."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams, sample_tokens
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("builtin")


PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15], [3], [40, 41, 42, 43, 44]]


def _naive_logprobs(model, prompt, response):
    """Log-softmax of a full (uncached) forward at each response position."""
    ids = torch.tensor(prompt + response)
    with torch.no_grad():
        hidden = model(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden
        logp = model.logits(hidden).log_softmax(-1)
    return logp[len(prompt) - 1 : len(ids) - 1]


def test_greedy_matches_naive_forward_and_logprobs(model, tokenizer):
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)  # fewer slots than prompts
    outs = engine.generate_from_ids(PROMPTS, SamplingParams(max_new_tokens=12, temperature=0, stop_token_ids=()))
    for prompt, out in zip(PROMPTS, outs, strict=True):
        assert len(out.response_ids) == 12 and out.finish_reason == "length"
        logp = _naive_logprobs(model, prompt, out.response_ids)
        assert out.response_ids == logp.argmax(-1).tolist()
        got = torch.tensor(out.logprobs)
        want = logp.gather(-1, torch.tensor(out.response_ids)[:, None]).squeeze(-1)
        assert (got - want).abs().max() < 1e-4


def test_sampled_logprobs_match_temperature_scaled_forward(model, tokenizer):
    engine = LLMEngine(model, tokenizer, num_slots=4, max_seq_len=64)
    params = SamplingParams(max_new_tokens=10, temperature=0.7, seed=3, stop_token_ids=())
    out = engine.generate_from_ids([PROMPTS[2]], params)[0]
    ids = torch.tensor(PROMPTS[2] + out.response_ids)
    with torch.no_grad():
        logits = model.logits(model(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden)
    logp = (logits / 0.7).log_softmax(-1)[len(PROMPTS[2]) - 1 : -1]
    want = logp.gather(-1, torch.tensor(out.response_ids)[:, None]).squeeze(-1)
    assert (torch.tensor(out.logprobs) - want).abs().max() < 1e-4


def test_seed_gives_same_output_whatever_the_batch(model, tokenizer):
    params = SamplingParams(max_new_tokens=15, temperature=1.0, seed=1234, stop_token_ids=())
    alone = LLMEngine(model, tokenizer, num_slots=1, max_seq_len=64).generate([Request(PROMPTS[0], params)])
    crowd_engine = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=64, seed=99)
    crowd = crowd_engine.generate([Request(p, SamplingParams(max_new_tokens=7, stop_token_ids=())) for p in PROMPTS]
                                  + [Request(PROMPTS[0], params, request_id="seeded")])
    assert crowd[-1].response_ids == alone[0].response_ids
    other = LLMEngine(model, tokenizer, num_slots=1, max_seq_len=64).generate(
        [Request(PROMPTS[0], SamplingParams(max_new_tokens=15, seed=1235, stop_token_ids=()))])
    assert other[0].response_ids != alone[0].response_ids


def test_stop_token_and_stop_string(model, tokenizer):
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)
    free = engine.generate_from_ids([PROMPTS[0]], SamplingParams(max_new_tokens=10, temperature=0,
                                                                  stop_token_ids=()))[0]
    stop_tok = free.response_ids[3]
    first = free.response_ids.index(stop_tok)
    stopped = engine.generate_from_ids([PROMPTS[0]], SamplingParams(max_new_tokens=10, temperature=0,
                                                                     stop_token_ids=(stop_tok,)))[0]
    assert stopped.finish_reason == "stop" and stopped.response_ids == free.response_ids[: first + 1]
    text = tokenizer.decode(free.response_ids)
    needle = text[len(text) // 2 : len(text) // 2 + 2]
    cut = engine.generate_from_ids([PROMPTS[0]], SamplingParams(max_new_tokens=10, temperature=0,
                                                                 stop_token_ids=(), stop_strings=(needle,)))[0]
    assert cut.finish_reason == "stop" and needle not in cut.text and text.startswith(cut.text)


class _ForceAfterThree:
    """Forces two tokens after the third sampled token and bans token 7 throughout."""

    def banned_tokens(self, response_ids):
        return [7]

    def forced_tokens(self, response_ids):
        return [20, 21] if len(response_ids) == 3 else []


def test_controller_forced_tokens_are_unsampled_and_conditioned_on(model, tokenizer):
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)
    req = Request(PROMPTS[1], SamplingParams(max_new_tokens=9, temperature=0, stop_token_ids=()),
                  controller=_ForceAfterThree())
    out = engine.generate([req])[0]
    assert out.response_ids[3:5] == [20, 21]
    assert out.response_mask == [True] * 3 + [False] * 2 + [True] * 4
    assert 7 not in [t for t, m in zip(out.response_ids, out.response_mask, strict=True) if m]
    logp = _naive_logprobs(model, PROMPTS[1], out.response_ids)
    logp[:, 7] = float("-inf")
    sampled = [i for i, m in enumerate(out.response_mask) if m]
    assert [out.response_ids[i] for i in sampled] == logp.argmax(-1)[sampled].tolist()


def test_continuous_batching_reuses_slots_immediately(model, tokenizer):
    """With 2 slots, a short request finishing lets the third start while the long one still runs."""
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)
    reqs = [Request(PROMPTS[0], SamplingParams(max_new_tokens=30, temperature=0, stop_token_ids=()), "long"),
            Request(PROMPTS[1], SamplingParams(max_new_tokens=3, temperature=0, stop_token_ids=()), "short"),
            Request(PROMPTS[2], SamplingParams(max_new_tokens=3, temperature=0, stop_token_ids=()), "third")]
    order = [e.request_id for e in engine.stream(reqs) if e.finished]
    assert order == ["short", "third", "long"]


def test_abort_frees_the_slot_and_leaves_the_others_untouched(model, tokenizer):
    greedy = SamplingParams(max_new_tokens=20, temperature=0, stop_token_ids=())
    want = {t.metadata["name"]: t.response_ids for t in LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)
            .generate([Request(PROMPTS[i], greedy, name, metadata={"name": name})
                       for i, name in ((1, "b"), (2, "c"))])}
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=64)
    for i, name in ((0, "a"), (1, "b"), (2, "c"), (3, "d")):
        engine.add_request(Request(PROMPTS[i], greedy, name, metadata={"name": name}))
    for _ in range(5):
        engine.step()  # a and b run, c and d wait
    running = engine.abort("a")
    assert running.finish_reason == "abort" and len(running.response_ids) == 5
    queued = engine.abort("d")
    assert queued.finish_reason == "abort" and queued.response_ids == [] and queued.prompt_ids == PROMPTS[3]
    assert engine.abort("a") is None and engine.abort("nobody") is None
    assert engine.scheduler.num_free_slots == 1
    done = {e.request_id: e.trajectory for e in engine.stream() if e.finished}
    assert set(done) == {"b", "c"}  # no event for the aborted ones
    assert done["b"].response_ids == want["b"] and done["c"].response_ids == want["c"]
    assert not engine.has_unfinished()


def test_prompt_too_long_is_rejected(model, tokenizer):
    engine = LLMEngine(model, tokenizer, num_slots=1, max_seq_len=8)
    with pytest.raises(ValueError, match="prompt has 9 tokens but the engine's max_seq_len is 8"):
        engine.add_request(Request(list(range(3, 12))))
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="empty string"):  # "" is in every text: it would stop after one token
        SamplingParams(stop_strings=("end", ""))


@pytest.mark.parametrize("bad_id", [-1, 512, 10**6])
def test_a_prompt_token_outside_the_vocabulary_is_refused_and_the_engine_goes_on(model, tokenizer, bad_id):
    # before: the request was queued, its prefill raised IndexError inside step() for the whole batch, and the
    # engine stayed broken (the bad request kept its slot)
    engine = LLMEngine(model, tokenizer, num_slots=2, max_seq_len=32)
    params = SamplingParams(max_new_tokens=4, temperature=0, stop_token_ids=())
    with pytest.raises(ValueError, match=f"prompt token id {bad_id} is outside the model's vocabulary \\[0, 512\\)"):
        engine.add_request(Request([5, bad_id, 7], params, request_id="bad"))
    [out] = engine.generate([Request([5, 6, 7], params, request_id="good")])
    assert out.finish_reason == "length" and len(out.response_ids) == 4 and not engine.has_unfinished()


def test_sampling_distribution_matches_softmax():
    """Empirical frequencies of sampling match softmax(logits / T) (4000 random draws)."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    temp = torch.full((4000,), 0.8)
    draws = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tokens, _ = sample_tokens(logits, temp, torch.zeros(4000, dtype=torch.long), torch.ones(4000), draws)
    freq = torch.bincount(tokens, minlength=4).float() / 4000
    assert (freq - (logits[0] / 0.8).softmax(-1)).abs().max() < 0.03


def test_top_k_and_top_p_restrict_support():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(500, 1)
    draws = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ones = torch.ones(500)
    tok_k, _ = sample_tokens(logits, ones, torch.full((500,), 2), ones, draws)
    assert set(tok_k.tolist()) == {0, 1}
    # probs ~ [.64, .24, .09, .03]: top_p 0.7 keeps tokens 0 and 1 (0 alone has < 0.7).
    tok_p, _ = sample_tokens(logits, ones, torch.zeros(500, dtype=torch.long), torch.full((500,), 0.7), draws)
    assert set(tok_p.tolist()) == {0, 1}
