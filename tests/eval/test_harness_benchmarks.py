"""Benchmark files (thinkrl data, math problem/answer, code with tests) and how an endpoint's message is judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkrl.eval.benchmark import BenchmarkSpec, detect_format, load_benchmark
from thinkrl.eval.samplers import judge_message as judge_score
from thinkrl.tasks.dataset import generate_dataset, write_jsonl

APPS_ROW = {"question": "Read two integers and print their sum.",
            "input_output": json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})}


def judge_message(*args, **kwargs) -> tuple[bool, str]:
    score = judge_score(*args, **kwargs)
    return score.correct, score.reason


SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
DIFF = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_formats_are_told_apart_and_ids_are_stable(tmp_path: Path) -> None:
    problems = generate_dataset("arithmetic", 3, 0, "test", {})
    write_jsonl(problems, tmp_path / "own.jsonl")
    math = write_rows(tmp_path / "math.jsonl", [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": 4}])
    code = write_rows(tmp_path / "code.jsonl", [APPS_ROW])
    assert [detect_format(p) for p in (tmp_path / "own.jsonl", math, code)] == ["problems", "math", "code"]
    assert load_benchmark(BenchmarkSpec(data=str(tmp_path / "own.jsonl"))) == problems
    first = load_benchmark(BenchmarkSpec(data=str(math)))
    assert [p.task for p in first] == ["math", "math"] and [p.ground_truth["answer"] for p in first] == ["2", "4"]
    assert [p.id for p in load_benchmark(BenchmarkSpec(data=str(math)))] == [p.id for p in first]
    assert load_benchmark(BenchmarkSpec(task="arithmetic", n=3, seed=0)) == problems


def test_duplicate_ids_and_unknown_rows_are_refused(tmp_path: Path) -> None:
    problems = generate_dataset("arithmetic", 2, 0, "test", {})
    write_jsonl([*problems, problems[0]], tmp_path / "dup.jsonl")
    with pytest.raises(ValueError, match="appears twice"):
        load_benchmark(BenchmarkSpec(data=str(tmp_path / "dup.jsonl")))
    odd = write_rows(tmp_path / "odd.jsonl", [{"question": "?"}])
    with pytest.raises(ValueError, match="odd.jsonl:line 1: cannot tell the benchmark format"):
        load_benchmark(BenchmarkSpec(data=str(odd)))


def test_math_messages_are_judged_on_the_content_after_the_reasoning(tmp_path: Path) -> None:
    [problem] = load_benchmark(BenchmarkSpec(data=str(write_rows(tmp_path / "m.jsonl",
                                                                  [{"problem": "6*7?", "answer": "42"}]))))
    assert judge_message(problem, "6*7 is 42, surely", "\\boxed{42}", finished=True) == (True, "correct")
    assert judge_message(problem, None, "The answer is \\boxed{42}.", finished=True) == (True, "correct")
    # the reasoning's 42 does not count: only the content is the answer
    assert judge_message(problem, "it is 42", "\\boxed{41}", finished=True)[0] is False
    assert judge_message(problem, "it is", "\\boxed{42}", finished=False) == (False, "truncated")
    # a close tag inside the content (the model never opened its thinking): the answer is what follows it
    score = judge_score(problem, None, "6*7=42</seed:think>\n\\boxed{42}", finished=True)
    assert (score.correct, score.answer.strip()) == (True, "\\boxed{42}")
    assert judge_message(problem, "thinking never ended", None, finished=True) == (False, "no answer")


def test_code_messages_run_the_tests_in_the_sandbox(tmp_path: Path) -> None:
    [problem] = load_benchmark(BenchmarkSpec(data=str(write_rows(tmp_path / "c.jsonl", [APPS_ROW]))))
    assert problem.task == "code"
    assert judge_message(problem, "add them", SUM, finished=True) == (True, "correct")
    assert judge_message(problem, "subtract", DIFF, finished=True) == (False, "wrong value")
    assert judge_message(problem, None, "no code here", finished=True)[0] is False
