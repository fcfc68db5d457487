"""Every registered task: generation, reference solutions, traces, noise, determinism."""

from __future__ import annotations

import ast
import json
import random
import re
from fractions import Fraction

import pytest

from thinkrl.tasks import Problem, get_task
from thinkrl.tasks.base import problem_id

NAMES = ["arithmetic", "countdown", "game24"]  # the arithmetic-expression tasks; puzzles: test_tasks_logic_common.py
_NUMBER = r"\(?-?\d+(?:/\d+)?\)?"
STEP = re.compile(rf"^({_NUMBER})([+\-*/])({_NUMBER})=(-?\d+(?:/\d+)?)$")


def number(text: str) -> Fraction:
    return Fraction(text.strip("()"))


def step_is_right(step: str) -> bool:
    """Check one written step ``a op b=c`` with plain Fraction maths (independent of thinkrl)."""
    match = STEP.match(step)
    assert match, f"not a step: {step!r}"
    left, op, right, result = number(match[1]), match[2], number(match[3]), number(match[4])
    if op == "/" and right == 0:
        return False
    value = {"+": left + right, "-": left - right, "*": left * right, "/": left / right if right else None}[op]
    return value == result


def trace_steps(name: str, thinking: str) -> tuple[list[str], list[str]]:
    """(steps of the final attempt, steps of earlier failed attempts) of a trace."""
    lines = thinking.split("\n")
    if name == "arithmetic":
        return [line.split(":")[0] for line in lines], []
    failed = [step for line in lines[:-1] for step in line.split(", ") if not step.startswith("not ")]
    return lines[-1].split(", "), failed


def final_value(problem: Problem) -> Fraction:
    truth = problem.ground_truth
    return Fraction(truth["answer"] if problem.task == "arithmetic" else truth["target"])


def reference_answer(problem: Problem) -> str:
    truth = problem.ground_truth
    return str(truth["answer"]) if problem.task == "arithmetic" else truth["solution"]


@pytest.fixture(scope="module")
def problems() -> dict[str, list[Problem]]:
    return {name: [get_task(name).generate(random.Random(seed)) for seed in range(150)] for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_generated_problems_are_well_formed_and_solved_by_their_reference(name, problems) -> None:
    task = get_task(name)
    for problem in problems[name]:
        assert problem.task == name
        assert problem.prompt.isascii() and problem.prompt.strip() == problem.prompt
        assert json.loads(json.dumps(problem.to_dict())) == problem.to_dict()
        assert problem.difficulty == task.default_difficulty
        assert problem.id == problem_id(name, task.canonical_key(problem.ground_truth))
        verdict = task.verify(problem, reference_answer(problem))
        assert verdict.correct, (problem, verdict)
        assert task.verify(problem.ground_truth, reference_answer(problem)).correct


@pytest.mark.parametrize("name", NAMES)
def test_clean_traces_are_correct_step_by_step(name, problems) -> None:
    task = get_task(name)
    rng = random.Random(0)
    for problem in problems[name]:
        trace = task.write_trace(problem, rng)
        assert task.verify(problem, trace.answer).correct, (problem, trace)
        steps, failed = trace_steps(name, trace.thinking)
        assert all(step_is_right(step) for step in steps + failed), trace
        assert number(STEP.match(steps[-1])[4]) == final_value(problem)
        for step in failed[-1:]:  # a failed attempt really misses
            assert number(STEP.match(step)[4]) != final_value(problem)


@pytest.mark.parametrize("name", NAMES)
def test_traces_are_short_at_default_difficulty(name, problems) -> None:
    task = get_task(name)
    rng = random.Random(1)
    traces = [task.write_trace(problem, rng) for problem in problems[name]]
    assert max(len(trace.thinking) for trace in traces) <= 150
    assert max(len(trace.answer) for trace in traces) <= 30
    assert all(trace.thinking.isascii() and trace.answer.isascii() for trace in traces)


@pytest.mark.parametrize("name", NAMES)
def test_noisy_traces_are_wrong_with_a_wrong_step(name, problems) -> None:
    task = get_task(name)
    rng = random.Random(2)
    with_wrong_step = 0
    for problem in problems[name]:
        trace = task.write_trace(problem, rng, noise=1.0)
        assert not task.verify(problem, trace.answer).correct, (problem, trace)
        steps, _ = trace_steps(name, trace.thinking)
        with_wrong_step += not all(step_is_right(step) for step in steps)
    assert with_wrong_step >= 0.9 * len(problems[name])


@pytest.mark.parametrize("name", NAMES)
def test_noise_rate_is_respected(name, problems) -> None:
    task = get_task(name)
    rng = random.Random(3)
    wrong = sum(not task.verify(p, task.write_trace(p, rng, noise=0.3).answer).correct for p in problems[name] * 2)
    assert 0.2 <= wrong / (2 * len(problems[name])) <= 0.4


@pytest.mark.parametrize("name", NAMES)
def test_bad_noise_is_rejected(name, problems) -> None:
    with pytest.raises(ValueError, match="noise"):
        get_task(name).write_trace(problems[name][0], random.Random(0), noise=1.5)


@pytest.mark.parametrize("name", NAMES)
def test_seed_determinism(name) -> None:
    task = get_task(name)
    first = [task.generate(random.Random(42)) for _ in range(5)]
    again = [task.generate(random.Random(42)) for _ in range(5)]
    assert first == again
    traces = [task.write_trace(p, random.Random(7), noise=0.5) for p in first]
    assert traces == [task.write_trace(p, random.Random(7), noise=0.5) for p in first]
    many = [task.generate(random.Random(seed)).id for seed in range(30)]
    assert len(set(many)) > 20  # different seeds give different problems


@pytest.mark.parametrize("name", NAMES)
def test_problem_of_another_task_is_refused(name, problems) -> None:
    other = next(n for n in NAMES if n != name)
    with pytest.raises(ValueError, match="given to"):
        get_task(name).verify(problems[other][0], "1")


def test_difficulty_knobs_change_the_problems() -> None:
    countdown = get_task("countdown").generate(random.Random(0), num_numbers=6, min_target=500, max_target=900)
    assert len(countdown.ground_truth["numbers"]) == 6 and 500 <= countdown.ground_truth["target"] <= 900
    easy = get_task("game24").generate(random.Random(0), min_solutions=20)
    from thinkrl.tasks.game24 import solve

    assert len(solve(tuple(sorted(easy.ground_truth["numbers"])))) >= 20
    hard = get_task("game24").generate(random.Random(0), max_solutions=1, integer_steps=False)
    assert len(solve(tuple(sorted(hard.ground_truth["numbers"])))) == 1
    flat = get_task("arithmetic").generate(random.Random(0), num_terms=7, allow_parentheses=False)
    assert "(" not in flat.prompt and len(re.findall(r"\d+", flat.prompt)) == 7
    for seed in range(30):
        expression = get_task("arithmetic").generate(random.Random(seed), allow_division=True).ground_truth
        # an independent evaluation: Python's own parser with exact fractions (the task promises whole answers)
        value = _evaluate_exactly(ast.parse(expression["expression"].replace("×", "*").replace("÷", "/"),
                                            mode="eval").body)
        assert value.denominator == 1 and expression["answer"] == value == int(value)


def test_infeasible_difficulty_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="widen"):
        get_task("game24").generate(random.Random(0), max_number=3, min_solutions=200)


def _evaluate_exactly(node: ast.expr) -> Fraction:
    """+, -, *, / and unary minus over integer literals, in exact fractions (for checking ground truths)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate_exactly(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = _evaluate_exactly(node.left), _evaluate_exactly(node.right)
        ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
        return ops[type(node.op)] if type(node.op) in ops else left / right
    raise AssertionError(f"unexpected node {ast.dump(node)}")
