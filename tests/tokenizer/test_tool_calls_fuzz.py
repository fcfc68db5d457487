"""Property tests: completions and tool calls in any text parse without raising; JSON calls round-trip.

Hypothesis draws texts from the tags of both formats (thinking, reflection, tool-call, ``<function=``,
``<parameter=``), JSON pieces (huge integers, deep brackets) and random unicode; derandomized.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrl.tokenizer import SEED_TAGS, THINK_TAGS, parse_completion
from thinkrl.tokenizer.parse import ParsedCompletion
from thinkrl.tokenizer.tool_calls import JSON, SEED_OSS, ToolCall, coerce_arguments, parse_tool_call, read_tool_calls

PIECES = [
    "<seed:tool_call>", "</seed:tool_call>", "<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=",
    "</parameter>", ">", "<seed:think>", "</seed:think>", "<think>", "</think>", "<seed:cot_budget_reflect>",
    "</seed:cot_budget_reflect>", "<seed:eos>", "<|im_end|>", '{"name": "f", "arguments": ', "{", "}", "[", "]", '"',
    ":", ",", "null", "1e999", "NaN", "9" * 5000, "[" * 2000, '"arguments": "', "\n", "\\", "\\ud800", "f", "x",
]
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map("".join)
TYPES = ["integer", "number", "boolean", "array", "object", "null", "string"]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"properties": {t: {"type": t} for t in TYPES}}}}]
FINITE = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or Infinity, and the parsers refuse them
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | FINITE | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)


def _check_calls(calls: list[ToolCall]) -> None:
    for call in calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        assert call.ok or (isinstance(call.error, str) and call.error)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(TEXT, st.booleans())
def test_completions_parse_without_raising(text: str, thinking_open: bool) -> None:
    for tags in (SEED_TAGS, THINK_TAGS):
        parsed = parse_completion(text, tags, thinking_open=thinking_open)
        assert isinstance(parsed, ParsedCompletion)
        assert isinstance(parsed.reasoning_content, str) and isinstance(parsed.content, str)
        _check_calls(parsed.tool_calls)
        _check_calls(read_tool_calls(text, tags, TOOLS))


@settings(derandomize=True, max_examples=200, deadline=None)
@given(TEXT)
def test_tool_call_bodies_parse_and_coerce_without_raising(text: str) -> None:
    _check_calls(parse_tool_call(text))
    _check_calls(SEED_OSS.parse(text, TOOLS) + JSON.parse(text, TOOLS))
    typed = coerce_arguments(ToolCall("f", dict.fromkeys(TYPES, text)), TOOLS)
    assert typed.ok and set(typed.arguments) == set(TYPES)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
       st.dictionaries(st.text(), JSON_VALUES, max_size=4))
def test_json_calls_round_trip(name: str, arguments: dict) -> None:
    body = JSON.render(name, arguments).removeprefix(JSON.open_tag).removesuffix(JSON.close_tag)
    [call] = parse_tool_call(body)
    assert call.ok and call.name == name
    assert json.dumps(call.arguments, sort_keys=True) == json.dumps(arguments, sort_keys=True)
