"""SFT example rendering: prompt ids shared with RL, assistant-only mask, budget-fitted traces."""

from __future__ import annotations

import pytest

from thinkrl.tasks import Problem
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.common import (
    add_budget_reflections,
    encode_sft_example,
    fit_thinking_to_budget,
)

PROBLEM = Problem(task="arithmetic", id="0" * 64, prompt="Compute 6*8+(7-6).", ground_truth={"answer": 49},
                  difficulty={})
THINKING = "6*8=48: 48+(7-6)\n7-6=1: 48+1\n48+1=49"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("builtin")


@pytest.mark.parametrize("budget", [-1, 0, 16, 64])
def test_prompt_ids_equal_generation_prompt_and_mask_covers_the_rest(tok, budget):
    thinking = fit_thinking_to_budget(tok, THINKING, budget)
    ids, mask = encode_sft_example(tok, PROBLEM, thinking, "49", budget)
    prompt = tok.encode_chat([{"role": "user", "content": PROBLEM.prompt}], thinking_budget=budget)
    assert ids[: len(prompt)] == prompt and not any(mask[: len(prompt)])
    assert all(mask[len(prompt):])
    completion = tok.decode(ids[len(prompt):])
    assert completion.endswith("49<seed:eos>")
    assert ("<seed:think>" in completion) == (budget != 0 and thinking != "")


def test_fit_thinking_keeps_whole_lines_within_budget(tok):
    assert fit_thinking_to_budget(tok, THINKING, -1) == THINKING
    assert fit_thinking_to_budget(tok, THINKING, 0) == ""
    assert fit_thinking_to_budget(tok, THINKING, 1000) == THINKING
    first = THINKING.split("\n")[0]
    n_first = len(tok.encode(first))
    assert fit_thinking_to_budget(tok, THINKING, n_first) == first
    assert fit_thinking_to_budget(tok, THINKING, n_first - 1) == ""
    two = "\n".join(THINKING.split("\n")[:2])
    assert fit_thinking_to_budget(tok, THINKING, len(tok.encode(two))) == two


LONG_THINKING = "\n".join(f"{i}*{i + 1}={i * (i + 1)}: carry on with step {i}" for i in range(1, 13))


def _stated_counts(text: str) -> list[tuple[int, int]]:
    """(used, remaining) of every reflection sentence, parsed by hand."""
    import re

    return [(int(u), int(r)) for u, r in re.findall(r"I have used (\d+) tokens, and there are (\d+) tokens", text)]


def test_reflections_sit_at_the_interval_and_state_the_engine_count(tok):
    from thinkrl.engine import ThinkingBudgetController, budget_vocab

    budget, interval = 90, 20
    text = add_budget_reflections(tok, LONG_THINKING, budget, interval)
    stated = _stated_counts(text)
    assert stated and all(u + r == budget for u, r in stated)
    assert all(u < budget for u, _ in stated)
    # Replay the trace through a counting controller as if the model had written it: at every reflect tag the
    # controller's count must equal the number the reflection states.
    vocab = budget_vocab(tok)
    ctl = ThinkingBudgetController(vocab, budget, enforce=False)
    ids = tok.encode("<seed:think>") + tok.encode(text)
    seen, counts_at_tags = [], []
    for token in ids:
        seen.append(token)
        if token == tok.token_to_id("<seed:cot_budget_reflect>"):
            counts_at_tags.append(ctl.thinking_tokens)
        ctl.forced_tokens(seen)
    assert counts_at_tags == [u for u, _ in stated]
    # Every sampled token counts, the reflections' included.
    assert ctl.thinking_tokens == len(ids) - 1
    # The first reflection comes after `interval` trace tokens (plus its own leading newline); the next ones also
    # count the reflections before them.
    assert stated[0][0] == interval + 1
    assert stated[1][0] > 2 * interval + len(tok.encode(f"<seed:cot_budget_reflect>I have used {stated[0][0]} tokens"))
    assert add_budget_reflections(tok, LONG_THINKING, -1, interval) == LONG_THINKING
    assert add_budget_reflections(tok, LONG_THINKING, 0, interval) == LONG_THINKING


def test_fit_with_reflections_stays_within_budget_by_the_engine_count(tok):
    for budget in (60, 90, 120):
        fitted = fit_thinking_to_budget(tok, LONG_THINKING, budget, reflect=True, reflect_interval=20)
        assert len(tok.encode(fitted)) <= budget
        assert "<seed:cot_budget_reflect>" in fitted
        plain = fit_thinking_to_budget(tok, LONG_THINKING, budget)
        assert 0 < fitted.count("carry on") < plain.count("carry on")  # reflections take room from the trace
    # Seed-OSS interval for a 64 budget is 128: no reflection.
    assert "<seed:cot_budget_reflect>" not in fit_thinking_to_budget(tok, LONG_THINKING, 64, reflect=True)


def test_sft_recipe_writes_reflections_into_budgeted_traces(tok):
    from thinkrl.train.config import SFTRecipe, validate_recipe
    from thinkrl.train.sft import build_sft_examples

    def recipe(reflect: bool) -> SFTRecipe:
        return validate_recipe({
            "name": "r", "model": {"init": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                            "num_attention_heads": 2, "num_key_value_heads": 1}},
            "data": {"task": "arithmetic", "num_train": 30, "num_test": 0, "difficulty": {"num_terms": 5}},
            "thinking_budgets": [100], "budget_reflections": reflect, "reflect_interval": 10,
        }, SFTRecipe)

    reflect_id = tok.token_to_id("<seed:cot_budget_reflect>")
    with_reflections = build_sft_examples(recipe(True), tok)
    without = build_sft_examples(recipe(False), tok)
    # A trace whose first lines fit in 10 tokens may end before the first reflection; most do not.
    assert sum(reflect_id in ids for ids, _ in with_reflections) > len(with_reflections) // 2
    assert not any(reflect_id in ids for ids, _ in without)
