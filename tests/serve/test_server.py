"""The OpenAI-compatible server over real HTTP: results equal the engine's, streams add up, errors name fields."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import load_pretrained
from thinkrl.tokenizer import load_tokenizer, parse_completion

TOK = load_tokenizer("builtin")
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def reference(served: Any) -> LLMEngine:
    """An engine of its own on the same weights, for expected outputs."""
    return LLMEngine(load_pretrained(served.model_dir), TOK, num_slots=8, max_seq_len=served.max_seq_len)


def _post(served: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` as JSON (ASCII-escaped, so lone surrogates travel as \\ud800 escapes)."""
    return httpx.post(f"{served.url}{path}", content=json.dumps({"model": served.model_name, **body}),
                      headers={"Content-Type": "application/json"}, timeout=60)


def _stream(served: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON chunks of a streamed response; checks it ends with [DONE]."""
    chunks, done = [], False
    payload = {"model": served.model_name, "stream": True, **body}
    with httpx.stream("POST", f"{served.url}{path}", json=payload, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                continue
            assert line.startswith("data: ") and not done
            if line == "data: [DONE]":
                done = True
            else:
                chunks.append(json.loads(line.removeprefix("data: ")))
    assert done
    return chunks


def test_health_and_models(served: Any) -> None:
    health = httpx.get(served.url.removesuffix("/v1") + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    models = httpx.get(f"{served.url}/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["max_model_len"] == served.max_seq_len


def test_completion_greedy_equals_engine(served: Any, reference: LLMEngine) -> None:
    ids = [5, 6, 7, 8, 9]
    [want] = reference.generate([Request(ids, SamplingParams(max_new_tokens=20, temperature=0))])
    got = _post(served, "/completions", {"prompt": ids, "max_tokens": 20, "temperature": 0, "logprobs": 0}).json()
    choice = got["choices"][0]
    assert choice["text"] == want.text
    assert choice["finish_reason"] == want.finish_reason
    assert got["usage"] == {"prompt_tokens": 5, "completion_tokens": len(want.response_ids),
                            "total_tokens": 5 + len(want.response_ids), "completion_tokens_details": None}
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(want.logprobs, abs=1e-5)
    assert "".join(choice["logprobs"]["tokens"]) == TOK.decode(want.response_ids)
    # A string prompt is encoded with the tokenizer (special tokens included).
    text = "<seed:bos>user\nhello<seed:eos>"
    [want_text] = reference.generate([Request(TOK.encode(text), SamplingParams(max_new_tokens=12, temperature=0))])
    got_text = _post(served, "/completions", {"prompt": text, "max_tokens": 12, "temperature": 0}).json()
    assert got_text["choices"][0]["text"] == want_text.text


def test_completion_stop_string_and_stream(served: Any, reference: LLMEngine) -> None:
    ids = [40, 41, 42]
    [full] = reference.generate([Request(ids, SamplingParams(max_new_tokens=30, temperature=0, stop_token_ids=()))])
    stop = full.text[12:15]  # three characters from the middle of the greedy text
    body = {"prompt": ids, "max_tokens": 30, "temperature": 0, "stop": stop}
    got = _post(served, "/completions", body).json()["choices"][0]
    assert got["text"] == full.text[: full.text.find(stop)] and got["finish_reason"] == "stop"
    chunks = _stream(served, "/completions", body)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == got["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_adds_up_to_non_stream(served: Any, reference: LLMEngine) -> None:
    body = {"messages": MESSAGES, "max_tokens": 40, "temperature": 1.0, "seed": 11}
    got = _post(served, "/chat/completions", body).json()
    prompt = TOK.encode(TOK.apply_chat_template(MESSAGES))
    [want] = reference.generate([Request(prompt, SamplingParams(max_new_tokens=40, temperature=1.0, seed=11))])
    message = got["choices"][0]["message"]
    assert got["usage"]["prompt_tokens"] == len(prompt)
    assert got["usage"]["completion_tokens"] == len(want.response_ids)
    parsed = parse_completion(want.text, TOK.think_tags)
    assert message["content"] + (message["reasoning_content"] or "") == parsed.content + parsed.reasoning_content

    chunks = _stream(served, "/chat/completions", {**body, "stream_options": {"include_usage": True}})
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == (message["reasoning_content"] or "")
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert finals == [got["choices"][0]["finish_reason"]]
    assert chunks[-1]["usage"] == got["usage"] and chunks[-1]["choices"] == []


def test_chat_splits_reasoning_with_a_closed_budget_zero_prompt(served: Any, reference: LLMEngine) -> None:
    body = {"messages": MESSAGES, "max_tokens": 24, "temperature": 0, "thinking_budget": 0}
    got = _post(served, "/chat/completions", body).json()
    prompt_text = TOK.apply_chat_template(MESSAGES, thinking_budget=0)
    assert prompt_text.endswith("</seed:think>")
    [want] = reference.generate([Request(TOK.encode(prompt_text), SamplingParams(max_new_tokens=24, temperature=0))])
    assert got["usage"]["prompt_tokens"] == len(TOK.encode(prompt_text))
    # The prompt closed thinking, so everything generated is the answer.
    assert got["choices"][0]["message"]["content"] == parse_completion("<seed:think></seed:think>" + want.text).content
    assert got["choices"][0]["message"]["reasoning_content"] is None


def test_n2_choices_use_consecutive_seeds(served: Any) -> None:
    body = {"messages": MESSAGES, "max_tokens": 16, "temperature": 1.0}
    both = _post(served, "/chat/completions", {**body, "n": 2, "seed": 3}).json()
    assert [c["index"] for c in both["choices"]] == [0, 1]
    singles = [_post(served, "/chat/completions", {**body, "seed": s}).json() for s in (3, 4)]
    for choice, single in zip(both["choices"], singles, strict=True):
        assert choice["message"] == single["choices"][0]["message"]
    assert both["usage"]["prompt_tokens"] == singles[0]["usage"]["prompt_tokens"]
    assert both["usage"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in singles)


def test_concurrent_requests_share_the_batch(served: Any, reference: LLMEngine) -> None:
    prompts = [[10 + i, 20 + i, 30 + i] for i in range(8)]
    params = SamplingParams(max_new_tokens=16, temperature=0)
    want = [t.text for t in reference.generate([Request(p, params) for p in prompts])]
    runner = served.app.state.ctx.runner
    steps_before = runner.num_steps

    async def run_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            return await asyncio.gather(*[
                client.post("/completions", json={"model": "tiny", "prompt": p, "max_tokens": 16, "temperature": 0})
                for p in prompts])

    responses = asyncio.run(run_all())
    assert [r.status_code for r in responses] == [200] * 8
    texts = [r.json()["choices"][0]["text"] for r in responses]
    lengths = [r.json()["usage"]["completion_tokens"] for r in responses]
    assert texts == want
    assert sum(lengths) > 8 * 8
    # One request at a time would take sum(lengths) steps; 4 slots shared take about a quarter.
    assert runner.num_steps - steps_before < sum(lengths) * 0.6


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/chat/completions", {"max_tokens": 4}, "messages"),
    ("/chat/completions", {"messages": MESSAGES, "temperature": -1}, "temperature"),
    ("/chat/completions", {"messages": MESSAGES, "max_tokenz": 4}, "max_tokenz"),
    ("/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ("/chat/completions", {"messages": MESSAGES, "thinking_budget": -2}, "thinking_budget"),
    ("/chat/completions", {"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs"),
    ("/chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/chat/completions", {"messages": MESSAGES, "seed": 2**64}, "seed"),
    ("/chat/completions", {"messages": MESSAGES, "seed": 2**63}, "seed"),
    ("/chat/completions", {"messages": MESSAGES, "top_k": 2**63}, "top_k"),
    ("/chat/completions", {"messages": MESSAGES, "chat_template_kwargs": {"thinking_budget": -5}},
     "chat_template_kwargs"),
    ("/chat/completions", {"messages": MESSAGES, "chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
    ("/chat/completions", {"messages": MESSAGES, "thinking_budget": 0, "chat_template_kwargs": {
        "enable_thinking": True, "thinking_budget": 64}}, "thinking_budget"),
    ("/chat/completions", {"messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]}, "messages"),
    ("/completions", {"prompt": [1] * 300}, "prompt"),  # max_seq_len is 256
    ("/completions", {"prompt": [1, 2], "max_tokens": 255}, "max_tokens"),
    ("/completions", {"prompt": [1, 99999]}, "prompt"),
    ("/completions", {"prompt": "hi", "top_p": 0}, "top_p"),
    ("/completions", {"prompt": "hi", "logprobs": 21}, "logprobs"),
    ("/completions", {"prompt": "hi", "logprobs": -1}, "logprobs"),
    ("/completions", {"prompt": [[1, 2]] * 5, "n": 64}, "n"),
    ("/completions", {"prompt": "\udc00x"}, "prompt"),
    ("/completions", {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_bad_requests_are_400_naming_the_field(served: Any, path: str, body: dict, param: str) -> None:
    response = _post(served, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[0] in error["message"] or param == "prompt"


def test_unknown_model_is_404(served: Any) -> None:
    response = httpx.post(f"{served.url}/completions", json={"model": "gpt-9", "prompt": "hi"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"
    assert httpx.post(f"{served.url}/completions", content=b"{not json").status_code == 400


def test_developer_role_and_content_parts_render_like_system_and_text(served: Any) -> None:
    plain = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
             {"role": "user", "content": [{"type": "text", "text": MESSAGES[0]["content"]}]}]
    body = {"max_tokens": 6, "temperature": 0}
    want = _post(served, "/chat/completions", {**body, "messages": plain}).json()
    got = _post(served, "/chat/completions", {**body, "messages": parts}).json()
    assert got["usage"]["prompt_tokens"] == len(TOK.encode(TOK.apply_chat_template(plain)))
    assert got["choices"] == want["choices"]
