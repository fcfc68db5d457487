"""Fuzz: random and boundary values in every field never break the server or another request.

A fixed number of requests (seeded) mutate one to three fields of a valid body, or add unknown
ones, on both POST routes, streamed or not, eight at a time. Every answer must be a success or a
4xx with an OpenAI error body (never 5xx, never a broken stream), and afterwards ``/health`` is ok
and a normal greedy request gives the same text as an engine of its own on the same weights.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import load_pretrained
from thinkrl.tokenizer import load_tokenizer

NUM_REQUESTS = 240
CONCURRENCY = 8
INTS = [-(2**64), -(2**63) - 1, -(2**31), -2, -1, 0, 1, 2, 3, 63, 64, 65, 255, 256, 511, 512, 2**31 - 1, 2**31,
        2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30]
FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1e-45, 1e-30, 1e-6, 0.5, 0.9999999, 1.0,
          1.0000001, 2.0, 100.0, 100.0001, 1e308, -1e-300]
STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "a" * 5000, "<seed:eos>", "<seed:think>", "</seed:tool_call>",
           "<function=x>", "{\"name\": 1}", "tiny", "none", "auto", "required", "\u202e\U0001f600", "\\"]
FIELDS = {
    "/completions": ["prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n", "stream",
                     "stream_options", "logprobs", "echo", "ignore_eos", "presence_penalty", "frequency_penalty",
                     "user", "model"],
    "/chat/completions": ["messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed",
                          "stop", "n", "stream", "stream_options", "logprobs", "top_logprobs", "thinking_budget",
                          "chat_template_kwargs", "tools", "tool_choice", "parallel_tool_calls", "user", "model"],
}
TOOL = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {
    "expr": {"type": "string"}}}}}


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards boundaries."""
    kind = rng.randrange(9 if depth < 2 else 5)
    if kind == 0:
        return rng.choice(INTS)
    if kind == 1:
        return rng.choice(FLOATS)
    if kind == 2:
        return rng.choice(STRINGS)
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.randint(-3, 300)
    if kind == 5:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if kind == 6:
        return [rng.randint(-1, 600) for _ in range(rng.randint(0, 8))]
    if kind == 7:
        message = {"role": rng.choice(["user", "assistant", "tool", "system", "robot", ""]),
                   "content": _value(rng, depth + 1)}
        return message | ({"tool_calls": _value(rng, depth + 1)} if rng.random() < 0.3 else {})
    keys = rng.sample(["thinking_budget", "enable_thinking", "type", "function", "name", "messages", "tools",
                       "include_usage", "text", "x"], rng.randint(0, 3))
    return {k: _value(rng, depth + 1) for k in keys}


def _body(rng: random.Random, path: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "tiny", "max_tokens": 4, "temperature": 0.7, "seed": rng.randrange(100)}
    if path == "/completions":
        body["prompt"] = rng.choice(["2 + 3 =", [5, 6, 7], ["a", "b"], [[1, 2], [3]]])
    else:
        body["messages"] = [{"role": "user", "content": "What is 2 + 3?"}]
        if rng.random() < 0.3:
            body.update(tools=[TOOL], tool_choice=rng.choice(["auto", "required", "none"]))
    if rng.random() < 0.3:  # valid variations: several choices, log-probs, budgets
        body.update(n=rng.randint(1, 3), top_k=rng.choice([-1, 0, 5, 10**6]), top_p=rng.choice([1e-9, 0.5, 1.0]))
        if path == "/completions":
            body["logprobs"] = rng.choice([None, 0, 3, 20])
        else:
            body.update(logprobs=True, top_logprobs=rng.randint(0, 20), thinking_budget=rng.choice([-1, 0, 1, 2]))
    else:
        for name in rng.sample(FIELDS[path], rng.randint(1, 3)):
            body[name] = _value(rng)
    if rng.random() < 0.1:
        body[rng.choice(["max_token", "logit_bias", "best_of", "\ud800"])] = _value(rng)
    body["stream"] = body.get("stream", False) if rng.random() < 0.5 else rng.random() < 0.5
    return body


async def _send(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[int, str]:
    content = json.dumps(body)  # ASCII escapes: lone surrogates and NaN travel as JSON text
    headers = {"Content-Type": "application/json"}
    async with client.stream("POST", path, content=content, headers=headers) as response:
        text = (await response.aread()).decode("utf-8", errors="replace")
        return response.status_code, text


def _check(status: int, text: str, body: dict[str, Any]) -> None:
    where = f"{status} for {json.dumps(body)[:300]}: {text[:300]}"
    assert status in (200, 400, 404, 413), where
    if status != 200:
        error = json.loads(text)["error"]
        assert error["message"] and error["type"] in ("invalid_request_error", "not_found_error"), where
    elif text.startswith("data: "):
        lines = [line for line in text.split("\n\n") if line]
        assert lines[-1] == "data: [DONE]", where
        assert not any('"error"' in line[:20] for line in lines), where
        for line in lines[:-1]:
            json.loads(line.removeprefix("data: "))
    else:
        assert json.loads(text)["choices"], where


def test_fuzzed_requests_never_break_the_server(served: Any) -> None:
    rng = random.Random(1234)
    jobs = [(path, _body(rng, path)) for path in rng.choices(list(FIELDS), k=NUM_REQUESTS)]

    async def run_all() -> list[tuple[int, str]]:
        limit = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:
            async def one(path: str, body: dict[str, Any]) -> tuple[int, str]:
                async with limit:
                    return await _send(client, path, body)
            return await asyncio.gather(*[one(path, body) for path, body in jobs])

    results = asyncio.run(run_all())
    for (status, text), (_, body) in zip(results, jobs, strict=True):
        _check(status, text, body)
    statuses = [status for status, _ in results]
    assert statuses.count(200) > 50 and statuses.count(400) > 60  # both kinds were exercised

    assert httpx.get(served.url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    tok = load_tokenizer("builtin")
    engine = LLMEngine(load_pretrained(served.model_dir), tok, num_slots=1, max_seq_len=served.max_seq_len)
    [want] = engine.generate([Request([9, 8, 7], SamplingParams(max_new_tokens=12, temperature=0))])
    got = httpx.post(f"{served.url}/completions", json={"model": "tiny", "prompt": [9, 8, 7], "max_tokens": 12,
                                                       "temperature": 0}, timeout=60).json()
    assert got["choices"][0]["text"] == want.text
