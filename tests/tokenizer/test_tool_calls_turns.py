"""The pieces of multi-turn tool use in `thinkrl.tokenizer.tool_calls`: where a tool-call turn stops, the tool turn
the chat template writes after it, and reading a turn's calls (typed, malformed, hostile) with the one parser."""

from __future__ import annotations

import json

import pytest

from thinkrl.tokenizer import load_tokenizer
from thinkrl.tokenizer.tool_calls import SEED_OSS, read_tool_calls, tool_stop, tool_turn_suffix

TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}, "digits": {"type": "integer"}}}}}]


@pytest.fixture(scope="module")
def seed_tok():
    return load_tokenizer("builtin")


@pytest.fixture(scope="module")
def think_tok():
    return load_tokenizer("builtin", chat_template="think")


def test_turn_stops_at_the_closing_tag_token(seed_tok) -> None:
    ids, strings = tool_stop(seed_tok)
    close = seed_tok.token_to_id("</seed:tool_call>")
    assert close is not None and ids[-1] == close and strings == ()
    assert set(seed_tok.stop_token_ids) <= set(ids)


def test_closing_tag_that_is_not_one_token_becomes_a_stop_string(think_tok) -> None:
    assert think_tok.token_to_id("</tool_call>") is None  # plain text in the built-in vocabulary
    ids, strings = tool_stop(think_tok)
    assert strings == ("</tool_call>",) and ids == tuple(think_tok.stop_token_ids)


@pytest.mark.parametrize("budget", [None, 0, 512])
def test_tool_turn_suffix_is_what_the_template_writes_between_turns(seed_tok, budget) -> None:
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2*3"}}}
    history = [{"role": "user", "content": "go"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
    whole = seed_tok.apply_chat_template(history + [{"role": "tool", "content": "6"}], thinking_budget=budget)
    turn = seed_tok.apply_chat_template(history, add_generation_prompt=False, thinking_budget=budget)
    cut = turn.rfind("</seed:tool_call>") + len("</seed:tool_call>")
    assert whole == turn[:cut] + tool_turn_suffix(seed_tok, ["6"], thinking_budget=budget)
    suffix = tool_turn_suffix(seed_tok, ["6", "7"])
    assert suffix == "<seed:eos><seed:bos>tool\n6<seed:eos><seed:bos>tool\n7<seed:eos><seed:bos>assistant\n"


def test_tool_turn_suffix_of_the_qwen_style_template(think_tok) -> None:
    suffix = tool_turn_suffix(think_tok, ["6"])
    assert suffix.startswith("<seed:eos>") and "6" in suffix and suffix.endswith("assistant\n")


def test_read_tool_calls_types_arguments_by_schema(seed_tok) -> None:
    text = SEED_OSS.render("calculator", {"expression": "2*3", "digits": 4})
    (call,) = read_tool_calls(text, seed_tok.think_tags, TOOLS)
    assert call.ok and call.name == "calculator" and call.arguments == {"expression": "2*3", "digits": 4}
    (untyped,) = read_tool_calls(text, seed_tok.think_tags)
    assert untyped.arguments["digits"] == "4"


def test_calls_inside_the_thinking_block_do_not_count(seed_tok) -> None:
    inner = SEED_OSS.render("calculator", {"expression": "1+1"})
    assert read_tool_calls(f"<seed:think>{inner}</seed:think>done", seed_tok.think_tags) == []


@pytest.mark.parametrize("text, error", [
    ("<seed:tool_call>\n<function=calculator>\n<parameter=expression>2*3", "cut off"),
    ("<seed:tool_call>no function tag</seed:tool_call>", "not valid JSON"),
    ("<seed:tool_call><function=f</seed:tool_call>", "<function=NAME>"),
    ("<seed:tool_call>{\"name\": 3}</seed:tool_call>", "string 'name'"),
    ("<seed:tool_call>" + "[" * 5000 + "</seed:tool_call>", "not valid JSON"),
    ("<seed:tool_call>{\"name\": \"f\", \"arguments\": \"{oops\"}</seed:tool_call>", "not valid JSON"),
])
def test_malformed_and_hostile_calls_come_back_with_an_error(seed_tok, text, error) -> None:
    calls = read_tool_calls(text, seed_tok.think_tags, TOOLS)
    assert len(calls) == 1 and not calls[0].ok and error in calls[0].error


def test_json_calls_are_read_by_the_same_parser(think_tok) -> None:
    body = json.dumps({"name": "calculator", "arguments": {"expression": "9*9"}})
    (call,) = read_tool_calls(f"<tool_call>\n{body}\n</tool_call>", think_tok.think_tags, TOOLS)
    assert call.ok and call.arguments == {"expression": "9*9"}
