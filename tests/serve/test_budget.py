"""Thinking budgets over HTTP: the client-side controller against the real server, and engine-side enforcement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import load_pretrained
from thinkrl.serve.app import budget_controller_factory, create_app
from thinkrl.serve.budget_client import end_of_thinking, generate_with_budget
from thinkrl.tokenizer import BUDGET_EXHAUSTED_TEXT, SEED_TAGS, TextTokenizer, load_tokenizer

TOK = load_tokenizer("builtin")
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def reference(served: Any) -> LLMEngine:
    return LLMEngine(load_pretrained(served.model_dir), TOK, num_slots=64, max_seq_len=served.max_seq_len)


@pytest.fixture
def client() -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    """An HTTP client that records the JSON body of every request it sends."""
    sent: list[dict[str, Any]] = []
    with httpx.Client(timeout=60, event_hooks={"request": [lambda r: sent.append(json.loads(r.content))]}) as http:
        yield http, sent


def _greedy(engine: LLMEngine, prompt: str, max_new_tokens: int) -> Any:
    [out] = engine.generate([Request(TOK.encode(prompt), SamplingParams(max_new_tokens=max_new_tokens, temperature=0))])
    return out


def test_client_forces_the_end_of_thinking_after_the_budget(served: Any, reference: LLMEngine, client: Any) -> None:
    http, sent = client
    result = generate_with_budget(served.url, "tiny", MESSAGES, 8, 6, tokenizer=TOK, client=http, sampling=GREEDY)
    prompt = TOK.apply_chat_template(MESSAGES, thinking_budget=8)
    thinking = _greedy(reference, prompt, 8)  # the random model never closes its thinking
    assert thinking.finish_reason == "length" and "</seed:think>" not in thinking.text
    end = end_of_thinking(SEED_TAGS, announce=True)
    assert end == f"\n<seed:cot_budget_reflect>{BUDGET_EXHAUSTED_TEXT}</seed:cot_budget_reflect>\n</seed:think>"
    answer = _greedy(reference, prompt + thinking.text + end, 6)
    assert result.forced and result.thinking_tokens == 8
    assert result.raw_text == thinking.text + end + answer.text
    assert result.answer == answer.text.strip() and result.answer_tokens == len(answer.response_ids) <= 6
    assert result.reasoning == thinking.text.strip()  # the exhausted reflection is not reasoning
    assert [(b["prompt"], b["max_tokens"], b.get("stop")) for b in sent] == [
        (prompt, 8, ["</seed:think>"]), (prompt + thinking.text + end, 6, None)]


def test_client_with_budget_zero_answers_at_once(served: Any, reference: LLMEngine, client: Any) -> None:
    http, sent = client
    result = generate_with_budget(served.url, "tiny", MESSAGES, 0, 6, tokenizer=TOK, client=http, sampling=GREEDY)
    prompt = TOK.apply_chat_template(MESSAGES, thinking_budget=0)
    assert prompt.endswith("</seed:think>")  # the template closed an empty thinking block
    answer = _greedy(reference, prompt, 6)
    assert len(sent) == 1 and sent[0]["prompt"] == prompt and sent[0]["max_tokens"] == 6
    assert (result.thinking_tokens, result.forced, result.raw_text) == (0, False, answer.text)
    # A prompt that does not close thinking gets an empty block appended.
    result = generate_with_budget(served.url, "tiny", "<seed:bos>user\nhi<seed:eos><seed:bos>assistant\n", 0, 4,
                                  client=http, sampling=GREEDY)
    assert sent[-1]["prompt"].endswith("assistant\n<seed:think>\n</seed:think>") and result.thinking_tokens == 0


def test_client_keeps_thinking_that_closes_within_budget(served: Any, reference: LLMEngine, client: Any) -> None:
    close = TOK.token_to_id("</seed:think>")
    params = SamplingParams(max_new_tokens=12, temperature=0)
    outs = reference.generate([Request([k], params) for k in range(3, 131)])
    found = [(k, out.response_ids.index(close)) for k, out in zip(range(3, 131), outs, strict=True)
             if close in out.response_ids and TOK.encode(TOK.decode([k])) == [k]]
    assert found, "no single-token prompt makes the random model close thinking within 12 tokens"
    k, position = found[0]
    http, _ = client
    result = generate_with_budget(served.url, "tiny", TOK.decode([k]), 12, 4, client=http, sampling=GREEDY)
    out = outs[k - 3]
    assert not result.forced and result.thinking_tokens == position + 1  # the close tag is a generated token
    assert result.raw_text.startswith(TOK.decode(out.response_ids[: position + 1]))
    assert result.reasoning == TOK.decode(out.response_ids[:position]).strip()


def test_client_rejects_bad_arguments(served: Any) -> None:
    with pytest.raises(ValueError, match="max_answer_tokens"):
        generate_with_budget(served.url, "tiny", "x", 8, 0)
    with pytest.raises(ValueError, match="max_thinking_tokens"):
        generate_with_budget(served.url, "tiny", "x", -1, 4)
    with pytest.raises(ValueError, match="thinking_budget"):
        generate_with_budget(served.url, "tiny", "x", -3, 4)
    with pytest.raises(ValueError, match="tokenizer"):
        generate_with_budget(served.url, "tiny", MESSAGES, 8, 4)
    with pytest.raises(RuntimeError, match="HTTP 404"):
        generate_with_budget(served.url, "no-such-model", "x", 8, 4)


# An R1-style template: the generation prompt opens the thinking block, so the engine counts from token one.
OPEN_THINKING_TEMPLATE = (
    "{%- for m in messages -%}<seed:bos>{{ m.role }}\n{{ m.content }}<seed:eos>{%- endfor -%}"
    "{%- if add_generation_prompt -%}<seed:bos>assistant\n<seed:think>\n{%- endif -%}"
)


@pytest.fixture(scope="module")
def open_thinking_server(served: Any, serve_app: Any) -> Iterator[str]:
    tok = TextTokenizer(TOK.backend, bos_token="<seed:bos>", eos_token="<seed:eos>", pad_token="<seed:pad>",
                        chat_template=OPEN_THINKING_TEMPLATE)
    engine = LLMEngine(load_pretrained(served.model_dir), tok, num_slots=4, max_seq_len=served.max_seq_len)
    with serve_app(create_app(engine, tok, model_name="tiny-r1")) as base:
        yield f"{base}/v1"


def test_server_enforces_thinking_budget_in_the_engine(open_thinking_server: str) -> None:
    body = {"model": "tiny-r1", "messages": MESSAGES, "max_tokens": 64, "temperature": 0, "thinking_budget": 6}
    got = httpx.post(f"{open_thinking_server}/chat/completions", json={**body, "logprobs": True}, timeout=60).json()
    tokens = got["choices"][0]["logprobs"]["content"]
    end = TOK.encode(end_of_thinking(SEED_TAGS, announce=True))
    assert all(t["logprob"] < 0 for t in tokens[:6])  # six sampled thinking tokens
    assert all(t["logprob"] == 0.0 for t in tokens[6 : 6 + len(end)])  # then the forced end of thinking
    assert "".join(t["token"] for t in tokens[6 : 6 + len(end)]) == TOK.decode(end)
    message = got["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(t["token"] for t in tokens[:6]).strip()
    assert message["content"] == "".join(t["token"] for t in tokens[6 + len(end) :]).removesuffix("<seed:eos>").strip()
    # Streaming gives the same split.
    with httpx.stream("POST", f"{open_thinking_server}/chat/completions", json={**body, "stream": True}) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]


def test_budget_controller_factory_options() -> None:
    assert budget_controller_factory(TOK, enforce=False, reflect=False)(512, False) is None
    controller = budget_controller_factory(TOK)(512, True)
    assert controller is not None and controller.phase == "thinking"
    assert budget_controller_factory(TOK)(-1, False) is None  # unlimited without reflections: nothing to do


@pytest.mark.parametrize("extra", [{"chat_template_kwargs": {"thinking_budget": 6}},
                                   {"thinking_budget": 6, "chat_template_kwargs": {"thinking_budget": 6}}])
def test_chat_template_kwargs_budget_is_enforced_like_the_field(open_thinking_server: str, extra: dict) -> None:
    body = {"model": "tiny-r1", "messages": MESSAGES, "max_tokens": 64, "temperature": 0}
    want = httpx.post(f"{open_thinking_server}/chat/completions", json={**body, "thinking_budget": 6}, timeout=60)
    got = httpx.post(f"{open_thinking_server}/chat/completions", json={**body, **extra}, timeout=60)
    assert got.json()["choices"] == want.json()["choices"]
    message = got.json()["choices"][0]["message"]
    end = TOK.encode(end_of_thinking(SEED_TAGS, announce=True))
    # Six sampled thinking tokens, then the forced end of thinking (its close tag included) are reasoning.
    assert got.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 6 + len(end)
    assert message["reasoning_content"]
