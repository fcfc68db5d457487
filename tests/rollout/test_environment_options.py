"""`big_arithmetic` option ``describe_tools`` (the short-prompt cold start) and agent_eval's validation problems."""

from __future__ import annotations

import random

from thinkrl.rollout.agent_eval import main as agent_eval_main
from thinkrl.rollout.agent_eval import validation_problems
from thinkrl.rollout.agent_rollout import render_episode_prompt
from thinkrl.rollout.agent_sft import build_agent_sft_examples, transcript_pieces
from thinkrl.rollout.environments import build_environment
from thinkrl.rollout.sources import load_problems
from thinkrl.rollout.specs import DataSpec
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

DIFFICULTY = {"num_products": 2, "digits": 2}


def test_undescribed_tools_leave_the_prompt_short_and_stay_callable() -> None:
    tok = load_tokenizer("builtin")
    problem = generate_dataset("big_arithmetic", 1, 0, "train", DIFFICULTY)[0]
    shown = build_environment("big_arithmetic")
    hidden = build_environment("big_arithmetic", {"describe_tools": False})
    shown_prompt = tok.decode(render_episode_prompt(tok, shown, problem)[0])
    hidden_ids = render_episode_prompt(tok, hidden, problem)[0]
    assert "def calculator" in shown_prompt
    assert "calculator" not in tok.decode(hidden_ids)
    # the same opening as the no-tools baseline's prompt
    assert hidden_ids == render_episode_prompt(tok, shown, problem, -1, False)[0]
    assert [t.name for t in hidden.tools()] == ["calculator"]
    # the transcript (and so what SFT trains) is the same; only the untrained prompt piece differs
    turns = shown.write_transcript(problem, random.Random(0))
    assert turns == hidden.write_transcript(problem, random.Random(0))
    a = transcript_pieces(tok, shown.messages(problem), turns, shown.tool_schemas())
    b = transcript_pieces(tok, hidden.messages(problem), turns, hidden.tool_schemas())
    assert [t for t, trained in a if trained] == [t for t, trained in b if trained]
    assert not a[0][1] and not b[0][1] and a[1:] == b[1:] and len(b[0][0]) < len(a[0][0]) // 5


def test_undescribed_tools_examples_train_the_same_tokens() -> None:
    tok = load_tokenizer("builtin")
    problems = generate_dataset("big_arithmetic", 3, 1, "train", DIFFICULTY)
    long = build_agent_sft_examples(tok, build_environment("big_arithmetic"), problems, seed=0)
    short = build_agent_sft_examples(tok, build_environment("big_arithmetic", {"describe_tools": False}), problems,
                                     seed=0)
    for (long_ids, long_mask), (short_ids, short_mask) in zip(long, short, strict=True):
        assert len(long_ids) - len(short_ids) > 200  # the tool block of the system turn
        assert long_ids[-len(short_ids):] == short_ids and long_mask[-len(short_mask):] == short_mask
        trained_long = [i for i, m in zip(long_ids, long_mask, strict=True) if m]
        assert trained_long == [i for i, m in zip(short_ids, short_mask, strict=True) if m]


def test_validation_problems_are_apart_from_the_test_set() -> None:
    data = DataSpec(task="big_arithmetic", num_train=2000, num_test=100, seed=0, difficulty=DIFFICULTY)
    test = {p.id for p in load_problems(data, "test")}
    validation = validation_problems(data, 60)
    assert len(validation) == 60 == len({p.id for p in validation})
    assert not test & {p.id for p in validation}
    train = {p.id for p in load_problems(data, "train")}
    assert not train & {p.id for p in validation}  # the test split's problems, so none is a training problem


def test_agent_eval_cli_rejects_a_recipe_without_agent(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {task: big_arithmetic}\n", encoding="utf-8")
    assert agent_eval_main(["--model", str(tmp_path), "--recipe", str(recipe)]) == 2
    assert "no agent section" in capsys.readouterr().err
