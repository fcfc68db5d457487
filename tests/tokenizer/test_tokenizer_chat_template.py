"""Chat templates: exact Seed-OSS layout per budget, the <think> variant, tools, history, errors."""

from __future__ import annotations

import pytest

from thinkrl.tokenizer import budget_system_prompt, load_tokenizer
from thinkrl.tokenizer.chat_template import compile_chat_template, render_chat_template

SYSTEM = "<seed:bos>system\nBe brief.<seed:eos>"
USER = "<seed:bos>user\nWhat is 2 + 3?<seed:eos>"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]


def _budget_turn(budget: int, interval: int) -> str:
    return (
        "<seed:bos>system\nYou are an intelligent assistant with reflective ability. In the process of thinking "
        f"and reasoning, you need to strictly follow the thinking budget, which is {budget}. That is, you need to "
        f"complete your thinking within {budget} tokens and start answering the user's questions. You will "
        f"reflect on your thinking process every {interval} tokens, stating how many tokens have been used and "
        "how many are left.\n<seed:eos>"
    )


ZERO_TURN = (
    "<seed:bos>system\nYou are an intelligent assistant that can answer questions in one step without the need "
    "for reasoning and thinking, that is, your thinking budget is 0. Next, please skip the thinking process and "
    "directly start answering the user's questions.\n<seed:eos>"
)
ZERO_PREFIX = (
    "<seed:think>\n<seed:cot_budget_reflect>The current thinking budget is 0, so I will directly start answering "
    "the question.</seed:cot_budget_reflect>\n</seed:think>"
)


@pytest.fixture(scope="module")
def seed():
    return load_tokenizer("builtin")


@pytest.fixture(scope="module")
def think():
    return load_tokenizer("builtin", chat_template="think")


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (None, SYSTEM + USER + "<seed:bos>assistant\n"),
        (-1, SYSTEM + USER + "<seed:bos>assistant\n"),
        (0, SYSTEM + ZERO_TURN + USER + "<seed:bos>assistant\n" + ZERO_PREFIX),
        (512, SYSTEM + _budget_turn(512, 128) + USER + "<seed:bos>assistant\n"),
        (1000, SYSTEM + _budget_turn(1000, 256) + USER + "<seed:bos>assistant\n"),
        (5000, SYSTEM + _budget_turn(5000, 1024) + USER + "<seed:bos>assistant\n"),
    ],
)
def test_seed_prompt_layout_per_budget(seed, budget, expected):
    assert seed.apply_chat_template(MESSAGES, thinking_budget=budget) == expected


def test_budget_turn_matches_python_sentences(seed):
    for budget in (0, 1, 100, 512, 513, 1024, 1025, 2048, 4096, 4097, 8192, 20000):
        rendered = seed.apply_chat_template([{"role": "user", "content": "x"}], thinking_budget=budget)
        assert rendered.startswith(f"<seed:bos>system\n{budget_system_prompt(budget)}\n<seed:eos>")


def test_seed_without_system_and_without_generation_prompt(seed):
    rendered = seed.apply_chat_template(MESSAGES[1:], add_generation_prompt=False)
    assert rendered == USER


def test_seed_history_with_reasoning_is_prompt_plus_completion(seed):
    history = MESSAGES + [{"role": "assistant", "reasoning_content": "\n2 + 3 = 5\n", "content": " 5 "}]
    full = seed.apply_chat_template(history, add_generation_prompt=False)
    prompt = seed.apply_chat_template(MESSAGES)
    assert full == prompt + "<seed:think>2 + 3 = 5</seed:think>\n5<seed:eos>"
    # `thinking` is accepted as an alias of `reasoning_content`.
    alias = MESSAGES + [{"role": "assistant", "thinking": "2 + 3 = 5", "content": "5"}]
    assert seed.apply_chat_template(alias, add_generation_prompt=False) == full


def test_seed_tool_calls_and_tool_docs(seed):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "calc",
                "description": "Evaluate an expression.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "expr": {"type": "string", "description": "the expression"},
                        "digits": {"type": "integer"},
                    },
                    "required": ["expr"],
                },
            },
        }
    ]
    call = {"type": "function", "function": {"name": "calc", "arguments": '{"expr": "2+3", "digits": 2}'}}
    messages = [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": "Let me compute.", "tool_calls": [call]},
        {"role": "tool", "content": "5"},
    ]
    rendered = seed.apply_chat_template(messages, tools=tools)
    expected = (
        "<seed:bos>system\nYou are a helpful AI assistant. You may call one or more functions to assist with the "
        'user query.\n\nFunction:\ndef calc(expr: str, digits: int):\n    """\n    Evaluate an expression.\n\n'
        "    Args:\n    - expr (str) [required]: the expression\n    - digits (int) [optional]\n"
        '    """\n\nCall tools in this format:\n<seed:tool_call>\n<function=example_function_name>\n'
        "<parameter=example_parameter_1>value_1</parameter>\n<parameter=example_parameter_2>This is the value "
        "for the second parameter\nthat can span\nmultiple lines</parameter>\n</function>\n</seed:tool_call>\n"
        "<seed:eos>"
        "<seed:bos>user\n2+3?<seed:eos>"
        "<seed:bos>assistant\nLet me compute.\n\n<seed:tool_call>\n<function=calc>\n"
        "<parameter=expr>2+3</parameter>\n<parameter=digits>2</parameter>\n</function>\n</seed:tool_call>"
        "<seed:eos><seed:bos>tool\n5<seed:eos><seed:bos>assistant\n"
    )
    assert rendered == expected


def test_think_format_layout(think):
    assert think.think_format == "think"
    assert think.think_tags.open == "<think>"
    history = MESSAGES + [{"role": "assistant", "reasoning_content": "2 + 3 = 5", "content": "5"}]
    assert think.apply_chat_template(history, add_generation_prompt=False) == (
        SYSTEM + USER + "<seed:bos>assistant\n<think>2 + 3 = 5</think>\n5<seed:eos>"
    )
    assert think.apply_chat_template(MESSAGES, thinking_budget=512) == (
        SYSTEM + _budget_turn(512, 128) + USER + "<seed:bos>assistant\n"
    )
    assert think.apply_chat_template(MESSAGES, thinking_budget=0).endswith(
        "<seed:bos>assistant\n" + ZERO_PREFIX.replace("seed:think>", "think>")
    )
    call = {"name": "calc", "arguments": {"expr": "2+3"}}
    rendered = think.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}],
        add_generation_prompt=False,
    )
    assert rendered.endswith(
        '<seed:bos>assistant\n<tool_call>\n{"name": "calc", "arguments": {"expr": "2+3"}}\n</tool_call><seed:eos>'
    )


def test_prompt_tokens_are_the_special_ids(seed):
    ids = seed.encode_chat([{"role": "user", "content": "hi"}])
    assert ids[0] == seed.bos_token_id
    assert ids.count(seed.eos_token_id) == 1 and ids.count(seed.bos_token_id) == 2
    assert seed.decode(ids) == "<seed:bos>user\nhi<seed:eos><seed:bos>assistant\n"


@pytest.mark.parametrize("bad", [-2, 1.5, "512", True])
def test_bad_budget_is_rejected(seed, bad):
    with pytest.raises((TypeError, ValueError), match="thinking_budget"):
        seed.apply_chat_template(MESSAGES, thinking_budget=bad)


def test_bad_messages_are_rejected(seed):
    with pytest.raises(TypeError, match="messages must be a list"):
        seed.apply_chat_template("hello")
    with pytest.raises(TypeError, match=r"messages\[0\]\['role'\]"):
        seed.apply_chat_template([{"content": "x"}])
    with pytest.raises(TypeError, match=r"messages\[1\]\['content'\]"):
        seed.apply_chat_template([{"role": "user", "content": "x"}, {"role": "user", "content": None}])
    bad_call = {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": "{oops"}]}
    with pytest.raises(ValueError, match="not JSON"):
        seed.apply_chat_template([bad_call])


def test_template_errors_are_clear():
    with pytest.raises(ValueError, match=r"my.jinja does not compile \(line 1\)"):
        compile_chat_template("{% if %}", origin="my.jinja")
    raising = compile_chat_template("{{ raise_exception('no system role here') }}")
    with pytest.raises(ValueError, match="no system role here"):
        render_chat_template(raising, [{"role": "user", "content": "x"}])


def test_hf_template_features():
    # tojson keeps non-ASCII and HTML characters; {% generation %} passes its body through; loopcontrols work.
    source = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ m | tojson }}{% endgeneration %}{% endfor %}"
    )
    template = compile_chat_template(source)
    out = render_chat_template(
        template, [{"role": "user", "content": "<b>caf\u00e9</b>"}, {"role": "x", "content": ""}]
    )
    assert out == '{"role": "user", "content": "<b>caf\u00e9</b>"}'
