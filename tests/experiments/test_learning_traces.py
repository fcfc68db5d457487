"""The learning protocol's trace options: ``search_attempts`` off by default (the recorded protocol's traces,
token for token), reaching countdown's search-trace writer when set, refused for other tasks; ``terse_share`` (the
answer after an empty thinking block instead of the working); and the recipes' response-length caps agreeing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from thinkrl.experiments.learning_config import LearningConfig, load_learning_config
from thinkrl.experiments.learning_data import make_splits, trace_examples, trace_task
from thinkrl.experiments.learning_report import trace_design
from thinkrl.tasks import get_task
from thinkrl.tokenizer import load_tokenizer, parse_completion

REPO = Path(__file__).resolve().parents[2]
DIFFICULTY = {"num_numbers": 3, "max_number": 12, "min_target": 10, "max_target": 60, "min_used": 2}
ARITHMETIC = {"num_terms": 4, "max_number": 6, "max_result": 100}


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


def test_terse_examples_are_the_correct_answer_after_an_empty_thinking_block() -> None:
    tokenizer = load_tokenizer("builtin")
    problems = make_splits("arithmetic", ARITHMETIC, 0, num_train=40, num_val=5, num_test=5).train
    task = get_task("arithmetic")
    for (ids, mask), problem in zip(trace_examples(tokenizer, problems, random.Random(1), terse_share=1.0), problems,
                                    strict=True):
        text = _assistant_text(tokenizer, ids, mask)
        answer = str(problem.ground_truth["answer"])
        assert text == f"<seed:think></seed:think>\n{answer}<seed:eos>"
        prompt = tokenizer.encode_chat([{"role": "user", "content": problem.prompt}])
        assert ids[:mask.index(True)] == prompt  # the prompt RL samples from
        parsed = parse_completion(text)
        assert parsed.reasoning_content == "" and parsed.thinking_finished
        assert task.check(problem.ground_truth, parsed.content).correct


def test_terse_share_mixes_terse_and_full_traces_in_about_that_share() -> None:
    tokenizer = load_tokenizer("builtin")
    problems = make_splits("arithmetic", ARITHMETIC, 0, num_train=400, num_val=5, num_test=5).train
    full = trace_examples(tokenizer, problems, random.Random(2))
    mixed = trace_examples(tokenizer, problems, random.Random(2), terse_share=0.5)
    terse = 0
    for (ids, mask), (full_ids, full_mask) in zip(mixed, full, strict=True):
        text = _assistant_text(tokenizer, ids, mask)
        if text.startswith("<seed:think></seed:think>"):
            terse += 1
        else:  # arithmetic's worked trace does not depend on the draws: the full example itself
            assert (ids, mask) == (full_ids, full_mask) and text.count("=") == 3
    # Binomial(400, 0.5): 200 +- 20 is more than 4 standard deviations (10) each side.
    assert 180 <= terse <= 220
    assert trace_examples(tokenizer, problems, random.Random(2), terse_share=0.0) == full


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_terse_share_is_a_clear_error(bad: float) -> None:
    tokenizer = load_tokenizer("builtin")
    problems = make_splits("arithmetic", ARITHMETIC, 0, num_train=5, num_val=1, num_test=1).train
    with pytest.raises(ValueError, match="terse_share must be in"):
        trace_examples(tokenizer, problems, random.Random(0), terse_share=bad)
    with pytest.raises(ValueError, match="terse_share"):
        LearningConfig(terse_share=bad)


def test_the_terse_recipe_caps_every_response_at_the_same_length() -> None:
    config, _ = load_learning_config(REPO / "recipes/learning/terse.yaml")
    assert config.task == "arithmetic" and config.terse_share == 0.5
    assert "50% of them terse" in trace_design(config) and "arithmetic task's worked traces" in trace_design(config)
    overrides = dict(item.split("=", 1) for item in config.rl_overrides)
    assert overrides["data.task"] == "arithmetic"
    assert int(overrides["sampling.max_new_tokens"]) == int(overrides["reward.max_response_len"]) \
        == config.max_new_tokens
