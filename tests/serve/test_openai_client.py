"""The official `openai` client against the real server: chat, completions, streams, budgets,
``chat_template_kwargs``, top log-probs and errors. Expected values come from an engine of its own
on the same weights, from the tokenizer, or from an uncached forward pass."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import load_pretrained
from thinkrl.tokenizer import load_tokenizer, parse_completion

TOK = load_tokenizer("builtin")
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def client(served: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def model(served: Any) -> Any:
    return load_pretrained(served.model_dir).eval()


def _greedy(model: Any, prompt: list[int], max_new_tokens: int) -> Any:
    engine = LLMEngine(model, TOK, num_slots=1, max_seq_len=256)
    [out] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=max_new_tokens, temperature=0))])
    return out


def _forward_logprobs(model: Any, ids: list[int]) -> torch.Tensor:
    """(T, V) log-softmax of an uncached forward over ``ids``: row t is the distribution of token t + 1."""
    with torch.no_grad():
        hidden = model(torch.tensor(ids), torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden
        return model.logits(hidden).float().log_softmax(-1)


def test_models_and_chat(client: openai.OpenAI, model: Any) -> None:
    assert [m.id for m in client.models.list()] == ["tiny"]
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    prompt = TOK.encode(TOK.apply_chat_template(MESSAGES))
    want = _greedy(model, prompt, 12)
    assert response.usage.prompt_tokens == len(prompt)
    assert response.usage.completion_tokens == len(want.response_ids)
    message = response.choices[0].message
    assert message.role == "assistant" and message.tool_calls in (None, [])
    # No tools in the request: tool-call tags the random model writes stay in the content.
    parsed = parse_completion(want.text, dataclasses.replace(TOK.think_tags, tool_open="\0", tool_close="\0"))
    assert message.content == parsed.content
    assert (getattr(message, "reasoning_content", None) or "") == parsed.reasoning_content


def test_chat_stream_equals_non_stream(client: openai.OpenAI) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 30, "temperature": 0.8, "seed": 5}
    whole = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == (whole.choices[0].message.content or "")
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == (
        getattr(whole.choices[0].message, "reasoning_content", None) or "")
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_top_logprobs_equal_a_full_forward(client: openai.OpenAI, model: Any) -> None:
    prompt = [5, 6, 7, 8]
    response = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=5)
    logprobs = response.choices[0].logprobs
    want = _greedy(model, prompt, 6)
    full = _forward_logprobs(model, prompt + want.response_ids)[len(prompt) - 1 : -1]  # [R, V]
    assert len(logprobs.top_logprobs) == len(want.response_ids)
    for position, top in enumerate(logprobs.top_logprobs):
        values, ids = full[position].topk(5)
        assert list(top) == [TOK.decode([i]) for i in ids.tolist()]
        assert list(top.values()) == pytest.approx(values.tolist(), abs=1e-4)
        assert logprobs.token_logprobs[position] == pytest.approx(values[0].item(), abs=1e-4)  # greedy: the top one


def test_chat_top_logprobs_stream_equal_non_stream(client: openai.OpenAI, model: Any) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, "temperature": 1.0, "seed": 2,
            "logprobs": True, "top_logprobs": 3}
    whole = client.chat.completions.create(**body).choices[0].logprobs.content
    streamed = [t for c in client.chat.completions.create(**body, stream=True) if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs]) for t in streamed] == [
        (t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs]) for t in whole]
    prompt = TOK.encode(TOK.apply_chat_template(MESSAGES))
    engine = LLMEngine(model, TOK, num_slots=1, max_seq_len=256)
    [want] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=8, temperature=1.0, seed=2))])
    full = _forward_logprobs(model, prompt + want.response_ids)[len(prompt) - 1 : -1]  # [R, V]
    assert [t.token for t in whole] == [TOK.decode([i]) for i in want.response_ids]
    for position, (token_id, token) in enumerate(zip(want.response_ids, whole, strict=True)):
        values, ids = full[position].topk(3)
        assert [a.token for a in token.top_logprobs] == [TOK.decode([i]) for i in ids.tolist()]
        assert [a.logprob for a in token.top_logprobs] == pytest.approx(values.tolist(), abs=1e-4)
        assert token.logprob == pytest.approx(full[position, token_id].item(), abs=1e-4)


@pytest.mark.parametrize("extra", [{"thinking_budget": 0}, {"chat_template_kwargs": {"thinking_budget": 0}},
                                   {"chat_template_kwargs": {"enable_thinking": False}}])
def test_budget_zero_three_ways(client: openai.OpenAI, extra: dict) -> None:
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, temperature=0,
                                              extra_body=extra)
    prompt_text = TOK.apply_chat_template(MESSAGES, thinking_budget=0)
    assert response.usage.prompt_tokens == len(TOK.encode(prompt_text))
    assert getattr(response.choices[0].message, "reasoning_content", None) is None
    assert response.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_template_kwargs_budget_reaches_the_template(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0,
                                              extra_body={"chat_template_kwargs": {"thinking_budget": 512}})
    prompt_text = TOK.apply_chat_template(MESSAGES, thinking_budget=512)
    assert "thinking budget, which is 512" in prompt_text
    assert response.usage.prompt_tokens == len(TOK.encode(prompt_text))


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"temperature": -1}, "temperature"),
    ({"seed": 2**64 - 1, "n": 2}, "seed"),
    ({"extra_body": {"max_tokenz": 3}}, "max_tokenz"),
    ({"extra_body": {"chat_template_kwargs": {"enable_thinking": "no"}}}, "chat_template_kwargs"),
    ({"logprobs": True, "top_logprobs": 99}, "top_logprobs"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}},
      "tools": [{"type": "function", "function": {"name": "calc"}}]}, "tool_choice"),
])
def test_errors_through_the_client(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, **kwargs)
    body = caught.value.body
    assert caught.value.status_code == 400 and body["param"] == param and body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MESSAGES, max_tokens=4)
    assert json.loads(client.with_raw_response.models.list().text)["data"][0]["id"] == "tiny"  # still serving


def test_oversize_prompt_through_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model="tiny", prompt="x" * (5 << 20), max_tokens=1)
    assert caught.value.status_code == 413 and caught.value.body["type"] == "invalid_request_error"
    after = client.completions.create(model="tiny", prompt=[5, 6], max_tokens=2, temperature=0)
    assert after.choices[0].finish_reason == "length"  # still serving
