"""Countdown: reach a target from given numbers with + - * /, each number at most once.

Prompt: ``Use 3 25 4 7 to make 97 with + - * /. Each number at most once. Answer with the expression.``

Verification: the answer is an expression (text after a ``=`` is ignored); its
integer literals must be a sub-multiset of the given numbers; its exact rational
value must equal the target. Non-integer intermediate results are allowed
(``7/2*4`` makes 14 from 7, 2 and 4), and unary minus is accepted. The
generator, however, builds every target from a random expression whose
intermediate results are positive integers, so a clean integer solution always
exists; it is stored as ``ground_truth["solution"]``.

Trace (short, one line per attempt)::

    3+25=28, 28*4=112, not 97        <- a failed attempt, in 30% of traces
    25*4=100, 100-3=97

answer ``25*4-3``.

Search traces (``CountdownTask(search_attempts=K)``, K >= 1; the default K = 0 keeps the trace above): k failed
attempts, k uniform in 0..K, each a distinct random combination of 2 or more of the numbers that misses the target,
written with its correct arithmetic and ``not T``; then the solution line. A solver that cannot know the answer
can still find it by trying and checking::

    3+4=7, 7*7=49, not 97
    25-3=22, not 97
    25*4=100, 100-3=97
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.expr import Node, evaluate, literals, parse, to_text
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.steps import (
    FAILED_ATTEMPT_PROB,
    distinct_failed_attempts,
    expression_trace,
    failed_attempt,
    random_combination,
    require_numbers,
    score_expression,
)

MAX_TRIES = 2000


@TASKS.register("countdown")
class CountdownTask(Task):
    """Reach a target with + - * / using each given number at most once."""

    name = "countdown"
    difficulty_knobs = (
        Knob("num_numbers", int, 4, 3, 6, "how many numbers are given"),
        Knob("max_number", int, 25, 2, 1000, "given numbers are drawn from 1..max_number"),
        Knob("min_target", int, 10, 1, 100_000, "smallest target"),
        Knob("max_target", int, 100, 1, 100_000, "largest target"),
        Knob("min_used", int, 2, 2, 6, "the hidden solution uses between min_used and num_numbers numbers"),
    )

    def __init__(self, search_attempts: int = 0) -> None:
        """``search_attempts``: 0 (default) for the short trace, K >= 1 for search traces with 0..K failed
        attempts (module docstring)."""
        if isinstance(search_attempts, bool) or not isinstance(search_attempts, int) or search_attempts < 0:
            raise ValueError(f"search_attempts must be an int >= 0, got {search_attempts!r}")
        self.search_attempts = search_attempts

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """min_target <= max_target and min_used <= num_numbers."""
        if difficulty["min_target"] > difficulty["max_target"]:
            raise ValueError(
                f"min_target ({difficulty['min_target']}) must be <= max_target ({difficulty['max_target']})"
            )
        if difficulty["min_used"] > difficulty["num_numbers"]:
            raise ValueError(
                f"min_used ({difficulty['min_used']}) must be <= num_numbers ({difficulty['num_numbers']})"
            )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Draw numbers, combine a random subset into the target; retry until it is in range."""
        low, high = difficulty["min_target"], difficulty["max_target"]
        for _ in range(MAX_TRIES):
            numbers = [rng.randint(1, difficulty["max_number"]) for _ in range(difficulty["num_numbers"])]
            count = rng.randint(difficulty["min_used"], difficulty["num_numbers"])
            solution = random_combination(rng.sample(numbers, count), rng, max_value=10 * high)
            if solution is None:
                continue
            target = int(evaluate(solution))
            if low <= target <= high and target not in numbers:
                shown = " ".join(map(str, numbers))
                prompt = (
                    f"Use {shown} to make {target} with + - * /. Each number at most once. Answer with the expression."
                )
                return prompt, {"numbers": numbers, "target": target, "solution": to_text(solution)}
        raise ValueError(f"could not generate a countdown problem with difficulty {difficulty}; widen it")

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Sorted numbers and target (the order the numbers are shown in does not matter)."""
        numbers = sorted(require_numbers(ground_truth))
        target = require(ground_truth, "target", int)
        return f"{numbers}->{target}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Numbers used must be a sub-multiset of the given ones; the value must equal the target."""
        numbers = require_numbers(ground_truth)
        return score_expression(answer, numbers, require(ground_truth, "target", int), use_all=False)

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Failed attempts (one in 30% of traces, or 0..search_attempts distinct ones), then the stored
        solution's steps; noise corrupts one step."""
        noise = check_noise(noise)
        solution = parse(require(problem.ground_truth, "solution", str))
        failed: Node | list[Node] | None = None
        if self.search_attempts:
            k = rng.randint(0, self.search_attempts)
            numbers = require_numbers(problem.ground_truth)
            failed = distinct_failed_attempts(numbers, problem.ground_truth["target"], k, rng)
        elif rng.random() < FAILED_ATTEMPT_PROB:
            numbers = require_numbers(problem.ground_truth)
            failed = failed_attempt(numbers, len(literals(solution)), problem.ground_truth["target"], rng)
        return expression_trace(self, problem, solution, rng, noise, failed)
