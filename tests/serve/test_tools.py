"""Tool calling over the real server, with the `openai` client and raw HTTP.

The tiny model is random, so each test scripts what it says: the server's controller factory
(the same hook the thinking budget uses) returns a controller that replaces the first sampled
token by the script's tokens and an end-of-turn token. Everything after that is the server's
own work: rendering tools and history, forcing the tool-call opening for ``tool_choice``,
parsing, typing arguments, streaming deltas and counting reasoning tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from scripted_controller import Script
from thinkrl.engine import LLMEngine
from thinkrl.model import load_pretrained
from thinkrl.serve.app import create_app
from thinkrl.tokenizer import load_tokenizer
from thinkrl.tokenizer.tool_calls import JSON, SEED_OSS

TOOLS = [{"type": "function", "function": {
    "name": "calc", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string"}, "digits": {"type": "integer"}},
                   "required": ["expr"]}}}]
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


class Scripted:
    """A server whose every chat response is ``self.text`` (set by the test)."""

    def __init__(self, tokenizer: Any, url: str) -> None:
        self.tokenizer, self.url, self.text = tokenizer, url, ""
        self.client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module", params=["seed_oss", "think"])
def scripted(request: pytest.FixtureRequest, served: Any, serve_app: Any) -> Iterator[Scripted]:
    tok = load_tokenizer("builtin", chat_template=request.param)
    holder: list[Scripted] = []

    def factory(budget: int, thinking_open: bool) -> Script:
        return Script(tok.encode(holder[0].text) + [tok.eos_token_id])

    engine = LLMEngine(load_pretrained(served.model_dir), tok, num_slots=4, max_seq_len=1024)  # tool docs are long
    with serve_app(create_app(engine, tok, model_name="tiny", make_controller=factory)) as base:
        holder.append(Scripted(tok, f"{base}/v1"))
        yield holder[0]


def _fmt(scripted: Scripted) -> Any:
    return SEED_OSS if scripted.tokenizer.think_tags.tool_open == SEED_OSS.open_tag else JSON


def _think(scripted: Scripted, text: str) -> str:
    tags = scripted.tokenizer.think_tags
    return f"{tags.open}{text}{tags.close}"


def _prompt_tokens(scripted: Scripted, messages: list[dict], **kwargs: Any) -> int:
    return len(scripted.tokenizer.encode(scripted.tokenizer.apply_chat_template(messages, **kwargs)))


def _accumulate(chunks: list[Any]) -> tuple[str, str, list[tuple[str, str]], list[str]]:
    """Content, reasoning, (name, arguments) per tool-call index, and finish reasons of a stream."""
    content, reasoning, calls, reasons = "", "", {}, []
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            content += delta.content or ""
            reasoning += getattr(delta, "reasoning_content", None) or ""
            for call in delta.tool_calls or []:
                name, arguments = calls.get(call.index, ("", ""))
                calls[call.index] = (name + (call.function.name or ""), arguments + (call.function.arguments or ""))
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    return content, reasoning, [calls[i] for i in sorted(calls)], reasons


def test_tool_call_parsed_typed_and_streamed(scripted: Scripted) -> None:
    fmt = _fmt(scripted)
    call = fmt.render("calc", {"expr": "2+3", "digits": "2"} if fmt is SEED_OSS else {"expr": "2+3", "digits": 2})
    scripted.text = _think(scripted, "need calc") + "Let me compute.\n" + call
    body = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "max_tokens": 120, "temperature": 0}
    response = scripted.client.chat.completions.create(**body)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me compute."
    assert getattr(choice.message, "reasoning_content", None) == "need calc"
    [out] = choice.message.tool_calls
    assert out.type == "function" and out.id.startswith("call_") and out.function.name == "calc"
    assert json.loads(out.function.arguments) == {"expr": "2+3", "digits": 2}  # typed by the schema
    # The tools are in the system turn of the prompt, rendered by the template.
    assert response.usage.prompt_tokens == _prompt_tokens(scripted, MESSAGES, tools=TOOLS)
    thinking = scripted.tokenizer.encode(_think(scripted, "need calc"))
    assert response.usage.completion_tokens_details.reasoning_tokens == len(thinking)

    chunks = list(scripted.client.chat.completions.create(**body, stream=True))
    content, reasoning, calls, reasons = _accumulate(chunks)
    assert (content, reasoning, reasons) == ("Let me compute.", "need calc", ["tool_calls"])
    assert calls == [("calc", out.function.arguments)]


def test_history_with_tool_calls_and_results(scripted: Scripted) -> None:
    scripted.text = "It is 5."
    arguments = json.dumps({"expr": "2+3"})
    history = [*MESSAGES,
               {"role": "assistant", "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calc",
                                                                                 "arguments": arguments}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "5"}]
    response = scripted.client.chat.completions.create(model="tiny", messages=history, tools=TOOLS, max_tokens=40)
    assert response.choices[0].message.content == "It is 5." and response.choices[0].finish_reason == "stop"
    template_history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": {"expr": "2+3"}}}]},
        {"role": "tool", "content": "5", "tool_call_id": "call_1"}]
    assert response.usage.prompt_tokens == _prompt_tokens(scripted, template_history, tools=TOOLS)
    rendered = scripted.tokenizer.apply_chat_template(template_history, tools=TOOLS)
    assert _fmt(scripted).render("calc", {"expr": "2+3"}) in rendered and "<seed:bos>tool\n5<seed:eos>" in rendered


@pytest.mark.parametrize("choice", ["required", "named"])
def test_tool_choice_forces_the_opening(scripted: Scripted, choice: str) -> None:
    fmt = _fmt(scripted)
    whole = fmt.render("calc", {"expr": "7*6"})
    opening = fmt.opening(None if choice == "required" else "calc")
    scripted.text = whole.removeprefix(opening)
    tool_choice = "required" if choice == "required" else {"type": "function", "function": {"name": "calc"}}
    response = scripted.client.chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=60,
                                                       tool_choice=tool_choice)
    template = scripted.tokenizer.apply_chat_template(MESSAGES, tools=TOOLS)
    assert response.usage.prompt_tokens == len(scripted.tokenizer.encode(template + opening))
    [call] = response.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("calc", {"expr": "7*6"})
    assert response.choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_renders_no_tools_and_parses_none(scripted: Scripted) -> None:
    call = _fmt(scripted).render("calc", {"expr": "1"})
    scripted.text = "Plain " + call
    response = scripted.client.chat.completions.create(model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=60,
                                                       tool_choice="none")
    assert response.usage.prompt_tokens == _prompt_tokens(scripted, MESSAGES)
    assert response.choices[0].message.tool_calls in (None, [])
    assert response.choices[0].message.content == "Plain " + call


def test_malformed_call_stays_in_the_content(scripted: Scripted) -> None:
    tags = scripted.tokenizer.think_tags
    bad = tags.tool_open + '{"name": "calc", "arguments": {"expr": ' + tags.tool_close
    good = _fmt(scripted).render("calc", {"expr": "1"})
    scripted.text = "Try: " + bad + "\n" + good
    body = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "max_tokens": 120}
    response = httpx.post(f"{scripted.url}/chat/completions", json=body, timeout=60).json()
    message = response["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["calc"]
    assert message["content"] == "Try:\n" + bad
    chunks = list(scripted.client.chat.completions.create(**body, stream=True))
    content, _, calls, reasons = _accumulate(chunks)
    assert content == message["content"] and [n for n, _ in calls] == ["calc"] and reasons == ["tool_calls"]


def test_parallel_tool_calls_false_keeps_the_first(scripted: Scripted) -> None:
    fmt = _fmt(scripted)
    scripted.text = fmt.render("calc", {"expr": "1"}) + "\n" + fmt.render("calc", {"expr": "2"})
    body = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "max_tokens": 120}
    both = scripted.client.chat.completions.create(**body).choices[0].message.tool_calls
    first = scripted.client.chat.completions.create(**body, parallel_tool_calls=False).choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in both] == [{"expr": "1"}, {"expr": "2"}]
    assert [json.loads(c.function.arguments) for c in first] == [{"expr": "1"}]


def test_cut_off_call_stays_in_the_content(scripted: Scripted) -> None:
    tags = scripted.tokenizer.think_tags
    partial = _fmt(scripted).render("calc", {"expr": "1"}).removesuffix(tags.tool_close)[:-3]
    scripted.text = "Try: " + partial
    body = {"model": "tiny", "messages": MESSAGES, "tools": TOOLS, "max_tokens": 120}
    message = httpx.post(f"{scripted.url}/chat/completions", json=body, timeout=60).json()["choices"][0]
    assert message["message"]["tool_calls"] == [] and message["finish_reason"] == "stop"
    assert message["message"]["content"] == "Try:\n" + partial
