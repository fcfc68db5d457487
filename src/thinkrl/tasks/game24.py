"""Game of 24: use four numbers (1-13) exactly once each with + - * / to make 24.

Prompt: ``Use 4 7 8 8 to make 24 with + - * /. Each number exactly once. Answer with the expression.``

Verification is exact: the literals must be exactly the given multiset and the
exact rational value must be 24, so ``8/(3-8/3)`` counts and truncating
division does not (``7/2*8*1`` is 28, not 24). Text after a ``=`` is ignored.

`solve` is a brute-force solver (every pair, every operation, recursively;
about 4,000 leaves per hand, cached per sorted hand). The generator emits only
hands it can solve; the trace writer picks one of its solutions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.expr import BinOp, Node, Num, canonical_text, parse, to_text
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.steps import (
    FAILED_ATTEMPT_PROB,
    expression_trace,
    failed_attempt,
    require_numbers,
    score_expression,
)

TARGET = 24
MAX_TRIES = 2000


@dataclass(frozen=True)
class Solution:
    """One solution: its text and whether every intermediate result is a whole number (0, 1, 2, ...)."""

    text: str
    integer_steps: bool


# Values are unreduced fractions (numerator, positive denominator): plain int maths is
# about ten times faster than `Fraction` here, and four numbers <= 13 keep them small.
_Value = tuple[int, int]


def _combinations(a: tuple[Node, _Value], b: tuple[Node, _Value]) -> list[tuple[Node, _Value]]:
    (node_a, (p, q)), (node_b, (r, s)) = a, b
    results: list[tuple[Node, _Value]] = [
        (BinOp("+", node_a, node_b), (p * s + r * q, q * s)),
        (BinOp("*", node_a, node_b), (p * r, q * s)),
        (BinOp("-", node_a, node_b), (p * s - r * q, q * s)),
        (BinOp("-", node_b, node_a), (r * q - p * s, q * s)),
    ]
    if r != 0:
        sign = 1 if r > 0 else -1
        results.append((BinOp("/", node_a, node_b), (sign * p * s, sign * q * r)))
    if p != 0:
        sign = 1 if p > 0 else -1
        results.append((BinOp("/", node_b, node_a), (sign * r * q, sign * s * p)))
    return results


def _search(pool: list[tuple[Node, _Value]], whole: bool, target: int, found: dict[str, Solution]) -> None:
    if len(pool) == 1:
        node, (num, den) = pool[0]
        if num == target * den:
            key = canonical_text(node)
            if key not in found:
                found[key] = Solution(to_text(node), whole)
        return
    for i in range(len(pool)):
        for j in range(i + 1, len(pool)):
            rest = [entry for k, entry in enumerate(pool) if k not in (i, j)]
            for node, (num, den) in _combinations(pool[i], pool[j]):
                step_whole = whole and num >= 0 and num % den == 0
                _search([*rest, (node, (num, den))], step_whole, target, found)


@lru_cache(maxsize=4096)
def solve(hand: tuple[int, ...], target: int = TARGET) -> tuple[Solution, ...]:
    """All solutions of ``hand`` (distinct up to swapping operands of + and *), sorted by text.

    ``hand`` is a tuple of ints (sort it for cache hits); exact rational arithmetic.
    """
    found: dict[str, Solution] = {}
    _search([(Num(n), (n, 1)) for n in hand], True, target, found)
    return tuple(sorted(found.values(), key=lambda s: s.text))


def admissible(solutions: tuple[Solution, ...], integer_steps: bool) -> list[Solution]:
    """The solutions that count under the ``integer_steps`` knob."""
    return [s for s in solutions if s.integer_steps or not integer_steps]


@TASKS.register("game24")
class Game24Task(Task):
    """Make 24 from four numbers, each used exactly once, with + - * /."""

    name = "game24"
    difficulty_knobs = (
        Knob("max_number", int, 13, 3, 13, "numbers are drawn from 1..max_number"),
        Knob("min_solutions", int, 1, 1, 500, "keep hands with at least this many distinct solutions"),
        Knob("max_solutions", int, 500, 1, 500, "keep hands with at most this many (fewer = harder)"),
        Knob("integer_steps", bool, True, help="only hands with a solution whose every step is a whole number"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """min_solutions <= max_solutions."""
        if difficulty["min_solutions"] > difficulty["max_solutions"]:
            raise ValueError(
                f"min_solutions ({difficulty['min_solutions']}) must be <= "
                f"max_solutions ({difficulty['max_solutions']})"
            )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Draw hands until one has an admissible number of solutions."""
        for _ in range(MAX_TRIES):
            hand = [rng.randint(1, difficulty["max_number"]) for _ in range(4)]
            found = admissible(solve(tuple(sorted(hand))), difficulty["integer_steps"])
            if difficulty["min_solutions"] <= len(found) <= difficulty["max_solutions"]:
                shown = " ".join(map(str, hand))
                prompt = (
                    f"Use {shown} to make {TARGET} with + - * /. Each number exactly once. Answer with the expression."
                )
                solution = rng.choice(found).text
                return prompt, {"numbers": hand, "target": TARGET, "solution": solution}
        raise ValueError(f"could not generate a game24 hand with difficulty {difficulty}; widen it")

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The sorted hand."""
        return str(sorted(require_numbers(ground_truth)))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Literals must be exactly the hand; the exact value must be 24."""
        target = require(ground_truth, "target", int)
        return score_expression(answer, require_numbers(ground_truth), target, use_all=True)

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Optional failed attempt, then one solver solution (whole-number steps preferred)."""
        noise = check_noise(noise)
        numbers = require_numbers(problem.ground_truth)
        target = require(problem.ground_truth, "target", int)
        solutions = solve(tuple(sorted(numbers)), target)
        if not solutions:
            raise ValueError(f"game24 hand {numbers} has no solution")
        preferred = admissible(solutions, integer_steps=True) or list(solutions)
        solution = parse(rng.choice(preferred).text)
        failed = failed_attempt(numbers, len(numbers), target, rng) if rng.random() < FAILED_ATTEMPT_PROB else None
        return expression_trace(self, problem, solution, rng, noise, failed)
