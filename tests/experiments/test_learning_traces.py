"""The learning protocol's trace option (``search_attempts``): off by default (the recorded protocol's traces,
token for token), reaching countdown's search-trace writer when set, refused for other tasks, and the search
recipe's response-length caps agreeing with each other."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from thinkrl.experiments.learning_config import load_learning_config
from thinkrl.experiments.learning_data import make_splits, trace_examples, trace_task
from thinkrl.experiments.learning_report import trace_design
from thinkrl.tasks import get_task
from thinkrl.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[2]
DIFFICULTY = {"num_numbers": 3, "max_number": 12, "min_target": 10, "max_target": 60, "min_used": 2}


def _assistant_text(tokenizer, ids: list[int], mask: list[bool]) -> str:
    return tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])


def test_default_examples_are_the_plain_task_traces() -> None:
    tokenizer = load_tokenizer("builtin")
    problems = make_splits("countdown", DIFFICULTY, 0, num_train=30, num_val=5, num_test=5).train
    examples = trace_examples(tokenizer, problems, random.Random(3))
    rng, task = random.Random(3), get_task("countdown")
    for (ids, mask), problem in zip(examples, problems, strict=True):
        trace = task.write_trace(problem, rng, noise=0.0)
        text = _assistant_text(tokenizer, ids, mask)
        assert trace.thinking in text and text.count(", not ") == trace.thinking.count(", not ") <= 1


def test_search_attempts_reach_the_countdown_search_writer() -> None:
    tokenizer = load_tokenizer("builtin")
    problems = make_splits("countdown", DIFFICULTY, 0, num_train=60, num_val=5, num_test=5).train
    examples = trace_examples(tokenizer, problems, random.Random(3), search_attempts=3)
    failed = [_assistant_text(tokenizer, ids, mask).count(", not ") for ids, mask in examples]
    assert max(failed) == 3 and min(failed) == 0  # the plain writer never writes more than one


def test_search_attempts_are_a_countdown_option_only() -> None:
    assert trace_task("game24", 0).name == "game24"
    with pytest.raises(ValueError, match="search_attempts .* countdown"):
        trace_task("game24", 2)


def test_the_search_recipe_caps_every_response_at_the_same_length() -> None:
    config, recipe = load_learning_config(REPO / "recipes/learning/search.yaml")
    assert config.search_attempts == 4 and "0..4 distinct checked failed attempts" in trace_design(config)
    overrides = dict(item.split("=", 1) for item in config.rl_overrides)
    assert int(overrides["sampling.max_new_tokens"]) == int(overrides["reward.max_response_len"]) \
        == config.max_new_tokens
    assert yaml.safe_load(recipe.read_text())["sampling"]["max_new_tokens"] == 48  # the recipe's own default
    default, _ = load_learning_config(None, [f"rl_recipe={REPO / 'recipes/learning/rl.yaml'}"])
    assert default.search_attempts == 0 and "30%" in trace_design(default)
