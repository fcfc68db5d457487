"""Adversarial answers get the right verdict reason; the game24 solver matches an independent one."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from thinkrl.tasks import get_task
from thinkrl.tasks.expr import parse_and_evaluate
from thinkrl.tasks.game24 import solve

COUNTDOWN = {"numbers": [25, 4, 3, 7], "target": 97, "solution": "25*4-3"}
GAME24 = {"numbers": [8, 3, 8, 3], "target": 24, "solution": "8/(3-8/3)"}
ARITHMETIC = {"expression": "7+3*(12-5)", "answer": 28}
HUGE = "+".join(["999999999999"] * 100)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("25*4-3", "correct"),
        ("answer: (25*4)-3", "correct"),
        ("I try 25*4=100.\nAnswer: 25*4 - 3.", "correct"),
        ("\\boxed{4*25-3}", "correct"),
        ("25*4-3 = 97", "correct"),
        ("-3+25*4", "correct"),  # unary minus is allowed
        ("25*4-3+3-3", "illegal numbers"),  # 3 used three times
        ("25*4-3*1", "illegal numbers"),  # 1 was not given
        ("100-3", "illegal numbers"),
        ("25*4+3", "wrong value"),
        ("25+4+3+7", "wrong value"),
        ("", "no answer"),
        ("   \n", "no answer"),
        ("The answer is 25*4-3 because 100-3=97", "unparseable"),
        ("25*4-3 is my answer", "unparseable"),
        ("2**99999", "unparseable"),
        ("25^2", "unparseable"),
        ("97.0", "unparseable"),
        (HUGE, "unparseable"),
        ("(" * 5000 + "25" + ")" * 5000, "unparseable"),
        ("print(97)", "unparseable"),
    ],
)
def test_countdown_verdicts(answer: str, reason: str) -> None:
    verdict = get_task("countdown").verify(COUNTDOWN, answer)
    assert verdict.reason == reason, verdict
    assert verdict.reward == (1.0 if reason == "correct" else 0.0)


def test_countdown_allows_fractional_intermediates_and_reports_division_by_zero() -> None:
    task = get_task("countdown")
    truth = {"numbers": [7, 2, 4, 3, 3], "target": 14, "solution": "7*2"}
    assert task.verify(truth, "7/2*4").correct  # 7/2 = 3.5 on the way is fine
    verdict = task.verify(truth, "7/(3-3)")
    assert verdict.reason == "wrong value" and "division by zero" in verdict.detail


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("8/(3-8/3)", "correct"),
        ("answer: 8 / (3 - 8 / 3) = 24", "correct"),
        ("8*3", "illegal numbers"),  # not all numbers used
        ("8*3+8-8", "illegal numbers"),  # 8 three times, a 3 unused
        ("8*3*(8-8+3)", "illegal numbers"),  # 8 three times
        ("8+8+3+3+2", "illegal numbers"),
        ("8+8+3+3", "wrong value"),
        ("(8-8)/(3-3)", "wrong value"),  # division by zero
        ("8/3*3+8", "wrong value"),  # 16, not 24
        ("", "no answer"),
        ("24", "illegal numbers"),
        ("eight over three", "unparseable"),
    ],
)
def test_game24_verdicts(answer: str, reason: str) -> None:
    assert get_task("game24").verify(GAME24, answer).reason == reason


def test_game24_truncating_division_does_not_count() -> None:
    task = get_task("game24")
    # With integer (truncating) division 7/2 = 3 and 3*8*1 = 24; exactly it is 28.
    verdict = task.verify({"numbers": [7, 2, 8, 1], "target": 24}, "7/2*8*1")
    assert verdict.reason == "wrong value" and "28" in verdict.detail
    verdict = task.verify({"numbers": [13, 4, 8, 1], "target": 24}, "13/4*8/1")
    assert verdict.reason == "wrong value"  # 26 exactly, 24 truncated


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("28", "correct"),
        ("Answer: 28", "correct"),
        ("7+21=28", "correct"),
        ("\\boxed{28}", "correct"),
        ("+28", "correct"),
        ("27", "wrong value"),
        ("-28", "wrong value"),
        ("7+3*(12-5)", "unparseable"),  # an expression is not a value
        ("28 apples", "unparseable"),
        ("28.0", "unparseable"),
        ("twenty-eight", "unparseable"),
        ("1" * 1000, "unparseable"),
        ("", "no answer"),
    ],
)
def test_arithmetic_verdicts(answer: str, reason: str) -> None:
    assert get_task("arithmetic").verify(ARITHMETIC, answer).reason == reason


@pytest.mark.parametrize("name", ["countdown", "game24", "arithmetic"])
def test_verifiers_never_raise_on_junk(name: str) -> None:
    task = get_task(name)
    truth = {"countdown": COUNTDOWN, "game24": GAME24, "arithmetic": ARITHMETIC}[name]
    rng = random.Random(0)
    alphabet = "0123456789+-*/()=x^. \n:abc\\{}$"
    for _ in range(500):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        verdict = task.verify(truth, junk)
        assert verdict.reason in ("correct", "wrong value", "illegal numbers", "unparseable", "no answer")


def test_malformed_ground_truth_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'target'"):
        get_task("countdown").verify({"numbers": [1, 2]}, "1+2")
    with pytest.raises(ValueError, match="'numbers'"):
        get_task("game24").verify({"numbers": ["8", 3], "target": 24}, "8*3")


def independent_solvable(hand: tuple[int, ...], target: int = 24) -> bool:
    """Value-only brute force over multisets of Fractions (shares no code with thinkrl)."""

    def search(values: tuple[Fraction, ...]) -> bool:
        if len(values) == 1:
            return values[0] == target
        for i, j in itertools.combinations(range(len(values)), 2):
            a, b = values[i], values[j]
            rest = tuple(v for k, v in enumerate(values) if k not in (i, j))
            results = {a + b, a - b, b - a, a * b}
            results |= {a / b} if b else set()
            results |= {b / a} if a else set()
            if any(search((*rest, r)) for r in results):
                return True
        return False

    return search(tuple(Fraction(n) for n in hand))


def test_game24_solver_agrees_with_an_independent_solver() -> None:
    rng = random.Random(0)
    hands = {tuple(sorted(rng.randint(1, 13) for _ in range(4))) for _ in range(120)}
    hands |= {(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (3, 3, 8, 8), (1, 5, 5, 5), (1, 3, 4, 6), (4, 4, 10, 10)}
    for hand in hands:
        solutions = solve(hand)
        assert bool(solutions) == independent_solvable(hand), hand
        for solution in solutions:
            result = parse_and_evaluate(solution.text)
            assert result.value == 24 and sorted(result.numbers) == list(hand), solution


def test_game24_known_hands() -> None:
    assert [s.text for s in solve((3, 3, 8, 8))] == ["8/(3-8/3)"]
    assert not solve((1, 1, 1, 1))
    assert solve((1, 5, 5, 5)) and not any(s.integer_steps for s in solve((1, 5, 5, 5)))
    assert any(s.integer_steps for s in solve((1, 2, 3, 4)))
