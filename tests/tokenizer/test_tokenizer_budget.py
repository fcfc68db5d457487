"""Budget helpers: the Seed-OSS interval table and exact sentences."""

from __future__ import annotations

import pytest

from thinkrl.tokenizer import (
    BUDGET_EXHAUSTED_TEXT,
    SEED_TAGS,
    THINK_TAGS,
    budget_system_prompt,
    reflection_interval,
    reflection_text,
    tags_for_format,
)


@pytest.mark.parametrize(
    ("budget", "interval"),
    [(-1, 0), (0, 0), (1, 128), (512, 128), (513, 256), (1024, 256), (1025, 512), (2048, 512),
     (4096, 512), (4097, 1024), (16384, 1024), (100000, 1024)],
)  # fmt: skip
def test_reflection_interval_tiers(budget, interval):
    assert reflection_interval(budget) == interval


@pytest.mark.parametrize("bad", [-2, -100])
def test_reflection_interval_rejects_budgets_below_minus_one(bad):
    with pytest.raises(ValueError, match="thinking_budget"):
        reflection_interval(bad)


@pytest.mark.parametrize("bad", [1.5, "512", True, None])
def test_reflection_interval_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="thinking_budget"):
        reflection_interval(bad)


def test_reflection_text_is_the_seed_sentence():
    assert reflection_text(129, 383) == "I have used 129 tokens, and there are 383 tokens remaining for use."
    assert reflection_text(0, 0) == "I have used 0 tokens, and there are 0 tokens remaining for use."
    with pytest.raises(ValueError, match="remaining"):
        reflection_text(3, -1)
    with pytest.raises(TypeError, match="used"):
        reflection_text(2.0, 1)


def test_exhausted_text_and_wrapping():
    assert BUDGET_EXHAUSTED_TEXT == "I have exhausted my token budget, and now I will start answering the question."
    assert SEED_TAGS.wrap_reflection("x") == "<seed:cot_budget_reflect>x</seed:cot_budget_reflect>"


def test_tags():
    assert (SEED_TAGS.open, SEED_TAGS.close) == ("<seed:think>", "</seed:think>")
    assert (SEED_TAGS.tool_open, SEED_TAGS.tool_close) == ("<seed:tool_call>", "</seed:tool_call>")
    assert (THINK_TAGS.open, THINK_TAGS.close) == ("<think>", "</think>")
    assert tags_for_format("seed") is SEED_TAGS and tags_for_format("think") is THINK_TAGS
    with pytest.raises(ValueError, match="'seed', 'think'"):
        tags_for_format("qwen")


def test_budget_system_prompt():
    assert budget_system_prompt(-1) is None
    assert budget_system_prompt(0).endswith("directly start answering the user's questions.")
    assert "which is 2048. That is, you need to complete your thinking within 2048 tokens" in budget_system_prompt(2048)
    assert "every 512 tokens, stating" in budget_system_prompt(2048)
