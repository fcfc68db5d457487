"""SFT example rendering: prompt ids shared with RL, assistant-only mask, budget-fitted traces."""

from __future__ import annotations

import pytest

from thinkrl.tasks import Problem
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.common import encode_sft_example, fit_thinking_to_budget

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
