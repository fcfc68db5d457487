"""parse_completion: reasoning / content / tool calls / reflections, tolerant of broken output."""

from __future__ import annotations

import pytest

from thinkrl.tokenizer import THINK_TAGS, load_tokenizer, parse_completion

REFLECT = (
    "<seed:cot_budget_reflect>I have used 128 tokens, and there are 384 tokens remaining for use."
    "</seed:cot_budget_reflect>"
)


def test_normal_completion():
    parsed = parse_completion("<seed:think>\n3 * 8 = 24.\n</seed:think>\nAnswer: 3 * 8<seed:eos>")
    assert parsed.reasoning_content == "3 * 8 = 24."
    assert parsed.content == "Answer: 3 * 8"
    assert parsed.tool_calls == [] and parsed.budget_reflections == []
    assert parsed.thinking_finished and not parsed.truncated


def test_no_tags_is_all_content_unless_thinking_was_opened_by_the_prompt():
    parsed = parse_completion("The answer is 5.")
    assert (parsed.reasoning_content, parsed.content, parsed.thinking_finished) == ("", "The answer is 5.", True)
    opened = parse_completion("still thinking about 5", thinking_open=True)
    assert (opened.reasoning_content, opened.content) == ("still thinking about 5", "")
    assert not opened.thinking_finished and opened.truncated


def test_missing_opening_tag():
    parsed = parse_completion("try 3 + 5 = 8</seed:think>The answer is 8.")
    assert parsed.reasoning_content == "try 3 + 5 = 8"
    assert parsed.content == "The answer is 8."
    assert parsed.thinking_finished and not parsed.truncated


def test_truncated_while_thinking():
    parsed = parse_completion("<seed:think>Let me try 3 + 5 = 8. Then 8 *")
    assert parsed.reasoning_content == "Let me try 3 + 5 = 8. Then 8 *"
    assert parsed.content == ""
    assert not parsed.thinking_finished and parsed.truncated


def test_reflections_are_removed_and_kept():
    text = (
        f"<seed:think>step one\n{REFLECT}\nstep two\n"
        "<seed:cot_budget_reflect>I have exhausted my token budget, and now I will start answering the question."
        "</seed:cot_budget_reflect>\n</seed:think>\n24"
    )
    parsed = parse_completion(text)
    assert parsed.reasoning_content == "step one\nstep two"
    assert parsed.budget_reflections == [
        "I have used 128 tokens, and there are 384 tokens remaining for use.",
        "I have exhausted my token budget, and now I will start answering the question.",
    ]
    assert parsed.content == "24"


def test_reflection_cut_off_counts_as_truncated():
    parsed = parse_completion("<seed:think>abc\n<seed:cot_budget_reflect>I have used 12")
    assert parsed.reasoning_content == "abc"
    assert parsed.budget_reflections == ["I have used 12"]
    assert parsed.truncated and not parsed.thinking_finished


def test_seed_xml_tool_call():
    text = (
        "<seed:think>need the tool</seed:think>Let me compute.\n"
        "<seed:tool_call>\n<function=calc>\n<parameter=expr>(3 + 5) * 3</parameter>\n"
        "<parameter=note>two\nlines</parameter>\n</function>\n</seed:tool_call><seed:eos>"
    )
    parsed = parse_completion(text)
    assert parsed.content == "Let me compute."
    assert len(parsed.tool_calls) == 1
    call = parsed.tool_calls[0]
    assert (call.name, call.arguments, call.error) == ("calc", {"expr": "(3 + 5) * 3", "note": "two\nlines"}, None)


def test_json_tool_calls_valid_and_malformed():
    text = (
        '<seed:tool_call>{"name": "calc", "arguments": {"expr": "3 * 8", "digits": 2}}</seed:tool_call>'
        '<seed:tool_call>[{"name": "a", "arguments": "{\\"x\\": 1}"}, {"name": "b"}]</seed:tool_call>'
        '<seed:tool_call>{"name": "calc", "arguments": {"expr": </seed:tool_call>'
        '<seed:tool_call>{"arguments": {}}</seed:tool_call>'
    )
    calls = parse_completion(text).tool_calls
    assert [(c.name, c.arguments) for c in calls[:3]] == [
        ("calc", {"expr": "3 * 8", "digits": 2}),
        ("a", {"x": 1}),
        ("b", {}),
    ]
    assert all(c.error is None for c in calls[:3])
    assert calls[3].name == "" and "not valid JSON" in calls[3].error
    assert calls[3].raw == '{"name": "calc", "arguments": {"expr": '
    assert "string 'name'" in calls[4].error


def test_tool_call_cut_off():
    parsed = parse_completion("ok <seed:tool_call>\n<function=calc>\n<parameter=expr>3 *")
    assert parsed.truncated and parsed.thinking_finished
    assert parsed.content == "ok"
    (call,) = parsed.tool_calls
    assert call.name == "calc" and call.arguments == {"expr": "3 *"} and "cut off" in call.error


def test_think_tags():
    text = '<think>hmm</think>\nfine\n<tool_call>\n{"name": "f", "arguments": {"q": 1}}\n</tool_call><|im_end|>'
    parsed = parse_completion(text, THINK_TAGS)
    assert (parsed.reasoning_content, parsed.content) == ("hmm", "fine")
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("f", {"q": 1})]
    # Seed tags are plain text for the <think> parser.
    assert parse_completion("<seed:think>x</seed:think>y", THINK_TAGS).content == "<seed:think>x</seed:think>y"


def test_decoded_model_output_round_trip():
    tok = load_tokenizer()
    ids = tok.encode(f"<seed:think>3 * 8 = 24\n{REFLECT}\n</seed:think>\nAnswer: 24<seed:eos>")
    parsed = parse_completion(tok.decode(ids), tok.think_tags)
    assert (parsed.reasoning_content, parsed.content, len(parsed.budget_reflections)) == ("3 * 8 = 24", "Answer: 24", 1)


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="expects a str"):
        parse_completion([1, 2, 3])
