"""Arithmetic: evaluate a multi-step integer expression such as ``7+3*(12-5)``.

Prompt: ``Compute 7+3*(12-5).``

The answer is one integer (``28``; a leading sign is allowed; text up to the
last ``=`` is ignored, so ``7+21=28`` scores 28). Anything else is
"unparseable". Every intermediate result of a generated expression is an
integer (divisions are exact), at most ``max_result`` in size, and not
negative unless ``allow_negative``.

Trace: one reduction per line, leftmost innermost operation first, each
followed by the rewritten expression::

    12-5=7: 7+3*7
    3*7=21: 7+21
    7+21=28
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.expr import BinOp, EvaluationError, Node, Num, apply_op, parse, to_text
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.steps import Step, binop_paths, node_at, replace_at

MAX_TRIES = 2000
SLIPS = (1, -1, 2, -2, 10, -10)
_INTEGER = re.compile(r"[+-]?\d{1,60}")


def random_tree(num_terms: int, ops: str, max_number: int, rng: random.Random) -> Node:
    """A random binary tree with ``num_terms`` leaves in 1..max_number and operators from ``ops``."""
    if num_terms == 1:
        return Num(rng.randint(1, max_number))
    left = rng.randint(1, num_terms - 1)
    return BinOp(
        rng.choice(ops),
        random_tree(left, ops, max_number, rng),
        random_tree(num_terms - left, ops, max_number, rng),
    )


def flat_expression(num_terms: int, ops: str, max_number: int, rng: random.Random) -> Node:
    """``a op b op c ...`` without parentheses, parsed with the usual precedence."""
    parts = [str(rng.randint(1, max_number))]
    for _ in range(num_terms - 1):
        parts += [rng.choice(ops), str(rng.randint(1, max_number))]
    return parse("".join(parts))


def reduce_leftmost(node: Node, slip: int = 0) -> tuple[Step, Node]:
    """Compute the leftmost operation whose operands are both numbers.

    Returns the written step and the tree with that operation replaced by its
    result. ``slip`` is added to the result (a deliberate arithmetic mistake).
    Raises EvaluationError if the result is not an integer or divides by zero.
    """
    for path in binop_paths(node):
        sub = node_at(node, path)
        if isinstance(sub, BinOp) and isinstance(sub.left, Num) and isinstance(sub.right, Num):
            left, right = Fraction(sub.left.value), Fraction(sub.right.value)
            value = apply_op(sub.op, left, right) + slip
            if value.denominator != 1:
                raise EvaluationError(f"{sub.left.value}{sub.op}{sub.right.value} is not an integer")
            return Step(left, sub.op, right, value), replace_at(node, path, Num(int(value)))
    raise ValueError("nothing left to reduce")


def reduction(node: Node, slip_at: int = -1, slip: int = 0) -> tuple[list[str], int]:
    """Trace lines and the final value of step-by-step reduction (``slip`` added at step ``slip_at``)."""
    lines: list[str] = []
    while not isinstance(node, Num):
        step, node = reduce_leftmost(node, slip if len(lines) == slip_at else 0)
        lines.append(step.text() if isinstance(node, Num) else f"{step.text()}: {to_text(node)}")
    return lines, node.value


def steps_ok(node: Node, max_result: int, allow_negative: bool) -> bool:
    """True if every intermediate result is an integer in range (and >= 0 unless allowed)."""
    try:
        while not isinstance(node, Num):
            step, node = reduce_leftmost(node)
            if abs(step.result) > max_result or (step.result < 0 and not allow_negative):
                return False
    except EvaluationError:
        return False
    return True


@TASKS.register("arithmetic")
class ArithmeticTask(Task):
    """Evaluate an integer expression; the trace reduces it one operation per line."""

    name = "arithmetic"
    difficulty_knobs: ClassVar[tuple[Knob, ...]] = (  # any length: `BigArithmeticTask` has its own
        Knob("num_terms", int, 4, 2, 8, "number of integer literals"),
        Knob("max_number", int, 20, 2, 1000, "literals are drawn from 1..max_number"),
        Knob("allow_parentheses", bool, True, help="random expression trees instead of flat a+b*c chains"),
        Knob("allow_division", bool, False, help="also use / (always exact)"),
        Knob("allow_negative", bool, False, help="allow negative intermediate results"),
        Knob("max_result", int, 1000, 10, 1_000_000, "bound on the size of every intermediate result"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Draw expressions until every step is an in-range integer."""
        ops = "+-*/" if difficulty["allow_division"] else "+-*"
        make = random_tree if difficulty["allow_parentheses"] else flat_expression
        for _ in range(MAX_TRIES):
            node = make(difficulty["num_terms"], ops, difficulty["max_number"], rng)
            if steps_ok(node, difficulty["max_result"], difficulty["allow_negative"]):
                text = to_text(node)
                return f"Compute {text}.", {"expression": text, "answer": reduction(node)[1]}
        raise ValueError(f"could not generate an arithmetic problem with difficulty {difficulty}; widen it")

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The expression, re-rendered so spacing does not matter."""
        return to_text(parse(require(ground_truth, "expression", str)))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """The text after the last ``=`` must be exactly the integer answer."""
        expected = require(ground_truth, "answer", int)
        value = answer.rsplit("=", 1)[-1].strip()
        if not _INTEGER.fullmatch(value):
            return Verdict.wrong("unparseable", f"expected one integer, got {value[:50]!r}")
        if int(value) != expected:
            return Verdict.wrong("wrong value", f"{int(value)} is not {expected}")
        return Verdict.right(str(expected))

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """One reduction per line; with probability ``noise`` one step slips and the error propagates."""
        noise = check_noise(noise)
        node = parse(require(problem.ground_truth, "expression", str))
        lines, value = reduction(node)
        if rng.random() < noise:
            lines, value = self._slipped(node, len(lines), value, rng)
        return Trace(thinking="\n".join(lines), answer=str(value))

    @staticmethod
    def _slipped(node: Node, num_steps: int, correct: int, rng: random.Random) -> tuple[list[str], int]:
        """Reduction with one arithmetic slip whose final value differs from ``correct``."""
        for _ in range(20):
            slip_at, slip = rng.randrange(num_steps), rng.choice(SLIPS)
            try:
                lines, value = reduction(node, slip_at, slip)
            except EvaluationError:
                continue
            if value != correct:
                return lines, value
        return reduction(node, num_steps - 1, rng.choice(SLIPS))
