"""No request breaks the server: body errors, oversize bodies, a blocked tokenizer, a request that fails
inside the engine. After each, ``/health`` is ok and other requests are served."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from thinkrl.engine import LLMEngine
from thinkrl.model import load_pretrained
from thinkrl.serve.app import create_app
from thinkrl.tokenizer import TextTokenizer, load_tokenizer

TOK = load_tokenizer("builtin")
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


def _healthy(url: str) -> bool:
    return httpx.get(url.removesuffix("/v1") + "/health", timeout=30).json()["status"] == "ok"


def _served_normally(url: str, model: str = "tiny") -> bool:
    body = {"model": model, "prompt": [5, 6], "max_tokens": 3, "temperature": 0}
    return httpx.post(f"{url}/completions", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize(("content", "message"), [
    (b'{"model": "tiny", "prompt": "hi",', "the request body is not valid JSON"),
    (b"", "the request body is required"),
    (b"[" * 100_000, "the request body is not valid JSON"),
    (b'{"model": "tiny", "prompt": "\xff\xfe"}', "the request body is not valid JSON"),
    (b'{"model": "tiny", "prompt": "a", "max_tokens": ' + b"9" * 5000 + b"}", "the request body is not valid JSON"),
    (b"[1, 2]", "the request body must be a JSON object"),
    (b'"hi"', "the request body must be a JSON object"),
])
def test_body_errors_name_the_body_not_an_offset(served: Any, content: bytes, message: str) -> None:
    response = httpx.post(f"{served.url}/completions", content=content, headers={"Content-Type": "application/json"})
    error = response.json()["error"]
    assert response.status_code == 400 and error["message"].startswith(message), error
    assert error["param"] is None and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("path", "field", "value", "message"), [
    ("/completions", "logprobs", False, "logprobs: Input should be a valid integer"),  # not logprobs=0
    ("/completions", "logprobs", "3", "logprobs: Input should be a valid integer"),
    ("/completions", "max_tokens", True, "max_tokens: Input should be a valid integer"),
    ("/completions", "prompt", [5, True], "prompt: Input should be a valid string"),
    ("/chat/completions", "logprobs", "off", "logprobs: Input should be a valid boolean"),
    ("/chat/completions", "stream", "no", "stream: Input should be a valid boolean"),
    ("/chat/completions", "n", 1.0, "n: Input should be a valid integer"),
    ("/chat/completions", "seed", "7", "seed: Input should be a valid integer"),
    ("/chat/completions", "temperature", True, "temperature: Input should be a valid number"),
])
def test_values_of_the_wrong_type_are_not_coerced(served: Any, path: str, field: str, value: Any,
                                                  message: str) -> None:
    body = {"model": "tiny", "max_tokens": 2, **({"prompt": [5, 6]} if path == "/completions" else
                                                 {"messages": MESSAGES}), field: value}
    response = httpx.post(f"{served.url}{path}", json=body, timeout=60)
    error = response.json()["error"]
    assert response.status_code == 400 and error["message"] == message and error["param"] == field, error
    assert _served_normally(served.url)


def test_wrong_method_and_route_are_client_errors(served: Any) -> None:
    wrong_method = httpx.get(f"{served.url}/chat/completions")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "invalid_request_error"
    unknown = httpx.post(f"{served.url}/nothing", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_seed_beyond_64_bits_is_refused_and_the_engine_goes_on(served: Any) -> None:
    for body in ({"seed": 18446744073709551616}, {"seed": 2**64 - 1, "n": 2}):
        response = httpx.post(f"{served.url}/chat/completions",
                              json={"model": "tiny", "messages": MESSAGES, "max_tokens": 2, **body})
        assert response.status_code == 400 and response.json()["error"]["param"] == "seed"
    assert _healthy(served.url) and _served_normally(served.url)


def test_oversize_bodies_are_refused_before_reading(served: Any) -> None:
    huge = json.dumps({"model": "tiny", "prompt": "x" * (5 << 20)}).encode()
    response = httpx.post(f"{served.url}/completions", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body arrives
        for start in range(0, len(huge), 1 << 16):
            yield huge[start : start + (1 << 16)]

    chunked = httpx.post(f"{served.url}/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    small = json.dumps({"model": "tiny", "prompt": [5], "max_tokens": 2}).encode()
    assert httpx.post(f"{served.url}/completions", content=iter([small[:10], small[10:]]),
                      headers={"Content-Type": "application/json"}).status_code == 200
    assert _healthy(served.url)


class GatedTokenizer(TextTokenizer):
    """Blocks ``encode`` of text containing GATE until the test opens the gate."""

    def __init__(self, base: TextTokenizer) -> None:
        super().__init__(base.backend, bos_token="<seed:bos>", eos_token="<seed:eos>", pad_token="<seed:pad>",
                         chat_template=base.chat_template)
        self.entered, self.gate = threading.Event(), threading.Event()

    def encode(self, text: str) -> list[int]:
        if "GATE" in text:
            self.entered.set()
            assert self.gate.wait(60)
        return super().encode(text)


class RaisingController:
    """A controller that fails on its first call (a bug in a per-request hook)."""

    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        raise RuntimeError("controller bug")

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        return []


@pytest.fixture(scope="module")
def gated(served: Any, serve_app: Any) -> Iterator[tuple[str, GatedTokenizer]]:
    tok = GatedTokenizer(TOK)

    def factory(budget: int, thinking_open: bool) -> Any:
        return RaisingController() if budget == 7 else None

    engine = LLMEngine(load_pretrained(served.model_dir), tok, num_slots=4, max_seq_len=served.max_seq_len)
    with serve_app(create_app(engine, tok, model_name="tiny", make_controller=factory)) as base:
        yield f"{base}/v1", tok


def test_tokenizing_does_not_block_the_event_loop(gated: tuple[str, GatedTokenizer]) -> None:
    url, tok = gated
    result: dict[str, Any] = {}

    def slow_request() -> None:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "GATE"}], "max_tokens": 2}
        result["response"] = httpx.post(f"{url}/chat/completions", json=body, timeout=60)

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert tok.entered.wait(30)  # the request is inside encode, and stays there
        assert _healthy(url)  # ... while the server answers others
        assert _served_normally(url)
    finally:
        tok.gate.set()
        thread.join(60)
    assert result["response"].status_code == 200


def test_a_request_failing_in_the_engine_fails_alone(gated: tuple[str, GatedTokenizer]) -> None:
    url, _ = gated
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 4, "thinking_budget": 7}
    response = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 500 and "controller bug" in response.json()["error"]["message"]
    with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=60) as stream:
        lines = [line for line in stream.iter_lines() if line]
    assert "controller bug" in lines[-2] and lines[-1] == "data: [DONE]"
    assert _healthy(url) and _served_normally(url)


def test_a_client_that_leaves_mid_stream_is_aborted(served: Any) -> None:
    loop = served.app.state.ctx.runner
    aborted = loop.num_aborted
    body = {"model": "tiny", "prompt": [5, 6], "max_tokens": 240, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{served.url}/completions", json=body, timeout=60) as response:
        next(response.iter_lines())  # one event, then the client goes away
    deadline = time.monotonic() + 30  # the abort reaches the engine before its next step; generous slack
    while loop.num_aborted == aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.num_aborted == aborted + 1
    assert _healthy(served.url) and _served_normally(served.url)
