"""Tool-call formats: rendering equals the chat templates, parsing inverts it, bad text is an error result."""

from __future__ import annotations

import random

import pytest

from thinkrl.tokenizer import SEED_TAGS, THINK_TAGS, load_tokenizer, parse_completion
from thinkrl.tokenizer.tool_calls import (
    JSON,
    SEED_OSS,
    TOOL_CALL_FORMATS,
    ToolCall,
    coerce_arguments,
    format_for_tags,
    parse_tool_call,
    tool_call_format,
)

TOOLS = [{"type": "function", "function": {
    "name": "calc", "description": "Evaluate.",
    "parameters": {"type": "object", "properties": {
        "expr": {"type": "string"}, "digits": {"type": "integer"}, "exact": {"type": "boolean"},
        "scale": {"type": "number"}, "tags": {"type": "array"}, "opts": {"type": "object"}},
        "required": ["expr"]}}}]
ARGS = {"expr": "2+3", "digits": 2, "exact": True, "scale": 0.5, "tags": ["a", "b"], "opts": {"k": 1}}


@pytest.mark.parametrize(("template", "fmt"), [("seed_oss", SEED_OSS), ("think", JSON)])
def test_render_equals_the_chat_template(template: str, fmt) -> None:
    tok = load_tokenizer("builtin", chat_template=template)
    calls = [{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": ARGS}},
             {"id": "c2", "type": "function", "function": {"name": "calc", "arguments": '{"expr": "1"}'}}]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": calls}]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=False)
    want = fmt.render_calls([("calc", ARGS), ("calc", '{"expr": "1"}')])
    assert rendered.endswith("<seed:bos>assistant" + want + "<seed:eos>")


def test_seed_oss_layout_by_hand() -> None:
    text = SEED_OSS.render("calc", {"expr": "2+3", "digits": 2})
    assert text == ("<seed:tool_call>\n<function=calc>\n<parameter=expr>2+3</parameter>\n"
                    "<parameter=digits>2</parameter>\n</function>\n</seed:tool_call>")
    want_json = '<tool_call>\n{"name": "calc", "arguments": {"expr": "2+3"}}\n</tool_call>'
    assert JSON.render("calc", {"expr": "2+3"}) == want_json
    assert SEED_OSS.opening("calc") == "<seed:tool_call>\n<function=calc>\n"
    assert JSON.opening("calc") == '<tool_call>\n{"name": "calc", "arguments": '
    assert JSON.opening() == "<tool_call>"


@pytest.mark.parametrize(("fmt", "tags"), [(SEED_OSS, SEED_TAGS), (JSON, THINK_TAGS)])
def test_parse_inverts_render(fmt, tags) -> None:
    text = "<think>x</think>" if tags is THINK_TAGS else "<seed:think>x</seed:think>"
    text += "Let me compute.\n" + fmt.render("calc", ARGS) + "\n" + fmt.render("calc", {"expr": "7"}) + "<seed:eos>"
    parsed = parse_completion(text, tags)
    assert parsed.content == "Let me compute." and parsed.reasoning_content == "x"
    assert [c.name for c in parsed.tool_calls] == ["calc", "calc"] and all(c.ok for c in parsed.tool_calls)
    typed = [coerce_arguments(c, TOOLS) for c in parsed.tool_calls]
    assert typed[0].arguments == ARGS and typed[1].arguments == {"expr": "7"}
    if fmt is SEED_OSS:  # text values until typed by the schema
        assert parsed.tool_calls[0].arguments["digits"] == "2"
    body = fmt.render("calc", ARGS).removeprefix(fmt.open_tag).removesuffix(fmt.close_tag)
    assert [c.arguments for c in fmt.parse(body, TOOLS)] == [ARGS]


def test_coercion_keeps_strings_that_do_not_fit_the_schema() -> None:
    call = ToolCall("calc", {"expr": "12", "digits": "two", "exact": "1", "scale": "3", "other": "5"})
    assert coerce_arguments(call, TOOLS).arguments == {"expr": "12", "digits": "two", "exact": "1", "scale": 3,
                                                       "other": "5"}
    assert coerce_arguments(call, []).arguments == call.arguments
    huge = ToolCall("calc", {"digits": "9" * 5000})  # past Python's int-to-str limit: json.loads raises ValueError
    assert coerce_arguments(huge, TOOLS).arguments == huge.arguments
    # JSON has no NaN or Infinity (Python's json reads them): a tool never gets a non-finite number
    for text in ("NaN", "Infinity", "-Infinity", "1e999"):
        assert coerce_arguments(ToolCall("calc", {"scale": text}), TOOLS).arguments == {"scale": text}
    assert coerce_arguments(ToolCall("calc", {"tags": "[1, NaN]"}), TOOLS).arguments == {"tags": "[1, NaN]"}
    assert coerce_arguments(ToolCall("calc", {"scale": "-2.5e3"}), TOOLS).arguments == {"scale": -2500.0}


def test_seed_oss_names_and_keys_stop_at_a_tag() -> None:
    # a name or key never holds "<": an unclosed tag is skipped, so degenerate repeats parse in linear time
    [call] = parse_tool_call("<function=a<function=calc>\n<parameter=x<parameter=expr>1</parameter>\n</function>")
    assert (call.name, call.arguments, call.error) == ("calc", {"expr": "1"}, None)
    [call] = parse_tool_call("<function=" * 100_000)  # minutes before (quadratic)
    assert call.error == "tool call has no complete <function=NAME> tag"
    [call] = parse_tool_call("<function=calc>" + "<parameter=" * 100_000)
    assert (call.name, call.arguments, call.error) == ("calc", {}, None)


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"name": "calc", "arguments": {"expr": ', "not valid JSON"),
    ('{"arguments": {}}', "string 'name'"),
    ('{"name": "calc", "arguments": "[1]"}', "must be an object"),
    ('{"name": "calc", "arguments": "{oops"}', "arguments are not valid JSON"),
    ("<function=calc", "no complete <function=NAME> tag"),
    ("[" * 100_000, "not valid JSON"),
    ("9" * 5000, "not valid JSON"),  # json.loads raises a plain ValueError past Python's 4,300-digit int limit
    ('{"name": "calc", "arguments": "{\\"digits\\": ' + "9" * 5000 + '}"}', "arguments are not valid JSON"),
    # JSON has no NaN or Infinity (Python's json reads them): nested too, a tool never gets a non-finite number
    ('{"name": "calc", "arguments": {"tags": [1, NaN]}}', "not valid JSON"),
    ('{"name": "calc", "arguments": {"opts": {"k": -Infinity}}}', "not valid JSON"),
    ('{"name": "calc", "arguments": "{\\"scale\\": 1e999}"}', "arguments are not valid JSON"),
])
def test_malformed_calls_are_error_results(raw: str, reason: str) -> None:
    [call] = parse_tool_call(raw)
    assert not call.ok and reason in call.error and call.raw == raw


def test_random_text_never_raises() -> None:
    rng = random.Random(0)
    alphabet = ['{', '}', '"', ':', ',', '[', ']', '<function=', '</function>', '<parameter=', '</parameter>', '>',
                'name', 'arguments', 'a', '1', '\n', ' ', '\\', '\ud800', 'null']
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        for call in parse_tool_call(raw):
            assert isinstance(call.name, str) and isinstance(call.arguments, dict)
            assert call.ok or call.error


def test_registry() -> None:
    assert TOOL_CALL_FORMATS.names() == ["json", "seed_oss"]
    assert tool_call_format("seed_oss") is SEED_OSS
    with pytest.raises(KeyError, match="json, seed_oss"):
        tool_call_format("xml")
    assert format_for_tags(SEED_TAGS) is SEED_OSS and format_for_tags(THINK_TAGS) is JSON
