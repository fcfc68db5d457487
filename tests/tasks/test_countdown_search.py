"""Countdown's search traces (``CountdownTask(search_attempts=K)``) and the unchanged default trace.

Every line is re-checked here with a small independent reader (a regex and `Fraction`), not with the task's
own step writer: each step's arithmetic, where its operands come from, the ``not T`` of a failed attempt.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from thinkrl.tasks import get_task
from thinkrl.tasks.base import Problem
from thinkrl.tasks.countdown import CountdownTask

STEP = re.compile(r"^(\d+)([+\-*/])(\d+)=(\d+)$")
DIFFICULTY = {"num_numbers": 3, "max_number": 12, "min_target": 10, "max_target": 60, "min_used": 2}
HAND = Problem("countdown", "hand", "Use 3 25 4 to make 97 with + - * /.",
               {"numbers": [3, 25, 4], "target": 97, "solution": "25*4-3"})


def apply(left: int, op: str, right: int) -> Fraction:
    return {"+": Fraction(left + right), "-": Fraction(left - right), "*": Fraction(left * right),
            "/": Fraction(left, right)}[op]


def read_line(line: str, numbers: list[int]) -> tuple[list[tuple[int, str, int]], int]:
    """The steps of one trace line and its last result; asserts each step's arithmetic and that every operand is
    a given number (each used at most once) or an earlier result of the same line."""
    given, results, steps = Counter(numbers), Counter(), []
    for part in line.split(", "):
        match = STEP.match(part)
        assert match, f"not a step: {part!r} in {line!r}"
        left, op, right, result = int(match[1]), match[2], int(match[3]), int(match[4])
        assert apply(left, op, right) == result, f"wrong arithmetic {part!r}"
        for operand in (left, right):
            pool = results if results[operand] else given
            assert pool[operand] > 0, f"{operand} in {line!r} is neither given nor an earlier result"
            pool[operand] -= 1
        results[result] += 1
        steps.append((min(left, right), op, max(left, right)) if op in "+*" else (left, op, right))
    return steps, result


def search_traces(k_max: int, count: int, seed: int = 0) -> list[tuple[Problem, str, str]]:
    task, rng = CountdownTask(search_attempts=k_max), random.Random(seed)
    problems = [task.generate(random.Random(1000 + i), **DIFFICULTY) for i in range(count)]
    return [(p, *(lambda t: (t.thinking, t.answer))(task.write_trace(p, rng))) for p in problems]


def test_default_trace_is_unchanged_on_hand_checked_seeds() -> None:
    # random.Random(0).random() = 0.844 >= 0.3: no failed attempt; the solution 25*4-3 written as its two steps.
    # random.Random(1).random() = 0.134 < 0.3: one failed attempt with all three numbers (25*4=100, 100*3=300,
    # and 300 is not 97), then the solution.
    for task in (get_task("countdown"), CountdownTask(), CountdownTask(search_attempts=0)):
        zero, one = task.write_trace(HAND, random.Random(0)), task.write_trace(HAND, random.Random(1))
        assert (zero.thinking, zero.answer) == ("25*4=100, 100-3=97", "25*4-3")
        assert (one.thinking, one.answer) == ("25*4=100, 100*3=300, not 97\n25*4=100, 100-3=97", "25*4-3")


@pytest.mark.parametrize("k_max", [1, 3, 5])
def test_failed_attempts_are_correct_arithmetic_that_misses_and_are_distinct(k_max: int) -> None:
    task = CountdownTask()
    for problem, thinking, answer in search_traces(k_max, 150):
        numbers, target = problem.ground_truth["numbers"], problem.ground_truth["target"]
        *failed, last = thinking.split("\n")
        assert len(failed) <= k_max
        seen = set()
        for line in failed:
            assert line.endswith(f", not {target}"), line
            steps, result = read_line(line.removesuffix(f", not {target}"), numbers)
            assert result != target, f"a 'failed' attempt reaches the target: {line!r}"
            assert tuple(steps) not in seen, f"attempt repeated (up to + / * order): {line!r} in {thinking!r}"
            seen.add(tuple(steps))
        _, result = read_line(last, numbers)
        assert result == target, f"the last line does not reach {target}: {last!r}"
        assert task.verify(problem, answer).correct


def test_number_of_failed_attempts_is_uniform_on_0_to_k() -> None:
    k_max, n = 3, 800
    counts = Counter(thinking.count("\n") for _, thinking, _ in search_traces(k_max, n, seed=7))
    assert set(counts) == {0, 1, 2, 3}
    for k in range(k_max + 1):  # expected 200 each, standard deviation about 12: 4 sd either side
        assert 150 <= counts[k] <= 250, counts


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2"])
def test_bad_search_attempts_is_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match="search_attempts"):
        CountdownTask(search_attempts=bad)  # type: ignore[arg-type]
