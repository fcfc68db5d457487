"""Solution steps shared by the number-combining tasks (countdown, game24, arithmetic).

A solution expression is read as a list of `Step`s, one per binary operation, in
post-order (left subtree, right subtree, node), which is also "leftmost
reducible operation first"::

    (25*4)-3  ->  25*4=100, 100-3=97

The helpers here build random combinations of numbers (for generators and
failed attempts), write steps, corrupt a solution realistically for noisy
traces (`expression_trace`), and score an expression answer
(`score_expression`). Countdown and game24 share all of it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from thinkrl.tasks.base import Problem, Task, Trace, Verdict, require
from thinkrl.tasks.expr import (
    BinOp,
    EvaluationError,
    Neg,
    Node,
    Num,
    ParseError,
    apply_op,
    canonical_text,
    evaluate,
    literals,
    parse,
    to_text,
)

FAILED_ATTEMPT_PROB = 0.3  # share of traces that show one failed attempt before the solution


@dataclass(frozen=True)
class Step:
    """One written operation ``left op right = result`` (values as exact fractions)."""

    left: Fraction
    op: str
    right: Fraction
    result: Fraction

    def text(self) -> str:
        """``"25*4=100"``; non-integer or negative operands are parenthesised."""
        return f"{format_operand(self.left)}{self.op}{format_operand(self.right)}={format_number(self.result)}"


def format_number(value: Fraction | int) -> str:
    """``7``, ``-2`` or ``8/3``."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def format_operand(value: Fraction | int) -> str:
    """`format_number`, in parentheses when it is negative or not an integer."""
    text = format_number(value)
    return f"({text})" if value < 0 or Fraction(value).denominator != 1 else text


def written_steps(shown: Node, believed: Node | None = None) -> list[Step]:
    """Steps of ``shown`` as a solver who believes the values of ``believed`` would write them.

    Both trees must have the same shape. Leaf operands and operators come from
    ``shown``; intermediate operands and every result come from ``believed``.
    With ``believed`` omitted (the normal case) these are simply the correct
    steps of ``shown``. A corrupted ``shown`` against the correct ``believed``
    gives a trace where exactly the corrupted step is wrong.
    """
    believed = shown if believed is None else believed
    steps: list[Step] = []
    _collect(shown, believed, steps)
    return steps


def _collect(shown: Node, believed: Node, steps: list[Step]) -> None:
    if isinstance(shown, Num):
        return
    if isinstance(shown, Neg) and isinstance(believed, Neg):
        _collect(shown.operand, believed.operand, steps)
        return
    if not (isinstance(shown, BinOp) and isinstance(believed, BinOp)):
        raise ValueError("written_steps needs two trees of the same shape")
    _collect(shown.left, believed.left, steps)
    _collect(shown.right, believed.right, steps)
    left = evaluate(shown.left) if isinstance(shown.left, Num) else evaluate(believed.left)
    right = evaluate(shown.right) if isinstance(shown.right, Num) else evaluate(believed.right)
    steps.append(Step(left, shown.op, right, evaluate(believed)))


def format_steps(steps: Sequence[Step]) -> str:
    """``"25*4=100, 100-3=97"``."""
    return ", ".join(step.text() for step in steps)


def positive_integer_ops(a: int, b: int, max_value: int) -> list[tuple[str, int, int]]:
    """(op, left, right) combinations of two positive ints whose result is a positive int <= max_value.

    Multiplying or dividing by 1 is left out (it wastes a step); subtraction
    and division put the larger number first.
    """
    big, small = max(a, b), min(a, b)
    options = [("+", a, b)]
    if small > 1:
        options.append(("*", a, b))
        if big % small == 0:
            options.append(("/", big, small))
    if big != small:
        options.append(("-", big, small))
    return [(op, x, y) for op, x, y in options if 0 < apply_op(op, Fraction(x), Fraction(y)) <= max_value]


def random_combination(numbers: Sequence[int], rng: random.Random, max_value: int) -> Node | None:
    """Combine all ``numbers`` at random into one expression with positive-integer steps.

    Repeatedly picks two entries of the pool and a valid operation. Returns
    None if some pair has no valid operation under ``max_value``.
    """
    pool: list[tuple[Node, int]] = [(Num(n), n) for n in numbers]
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        (node_i, a), (node_j, b) = pool[i], pool[j]
        options = positive_integer_ops(a, b, max_value)
        if not options:
            return None
        op, x, y = rng.choice(options)
        if op in "+*" and rng.random() < 0.5:
            x, y = y, x
        left, right = (node_i, node_j) if (x, y) == (a, b) else (node_j, node_i)
        value = int(apply_op(op, Fraction(x), Fraction(y)))
        pool = [entry for k, entry in enumerate(pool) if k not in (i, j)] + [(BinOp(op, left, right), value)]
    return pool[0][0]


def binop_paths(node: Node, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths (sequences of "left"/"right"/"operand") to every `BinOp` of ``node``."""
    if isinstance(node, Num):
        return []
    if isinstance(node, Neg):
        return binop_paths(node.operand, (*path, "operand"))
    return binop_paths(node.left, (*path, "left")) + binop_paths(node.right, (*path, "right")) + [path]


def leaf_paths(node: Node, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to every `Num` leaf of ``node``."""
    if isinstance(node, Num):
        return [path]
    if isinstance(node, Neg):
        return leaf_paths(node.operand, (*path, "operand"))
    return leaf_paths(node.left, (*path, "left")) + leaf_paths(node.right, (*path, "right"))


def node_at(node: Node, path: Sequence[str]) -> Node:
    """The subtree of ``node`` at ``path``."""
    for part in path:
        node = getattr(node, part)
    return node


def replace_at(node: Node, path: Sequence[str], new: Node) -> Node:
    """A copy of ``node`` with the subtree at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(node, Neg):
        return Neg(replace_at(node.operand, rest, new))
    if not isinstance(node, BinOp):
        raise ValueError(f"path {tuple(path)} goes below a leaf")
    if head == "left":
        return BinOp(node.op, replace_at(node.left, rest, new), node.right)
    return BinOp(node.op, node.left, replace_at(node.right, rest, new))


def corrupt_solution(solution: Node, rng: random.Random, avoid_numbers: Sequence[int]) -> Node:
    """A realistic mistake in ``solution``: one operator swapped, or one number miscopied.

    A miscopied number is replaced by a nearby positive integer not in
    ``avoid_numbers`` (so the result uses a number that was not given). The
    caller checks that the corrupted answer is indeed wrong and retries if not.
    """
    if rng.random() < 0.5:
        path = rng.choice(binop_paths(solution))
        old = node_at(solution, path)
        assert isinstance(old, BinOp)
        op = rng.choice([o for o in "+-*/" if o != old.op])
        return replace_at(solution, path, BinOp(op, old.left, old.right))
    path = rng.choice(leaf_paths(solution))
    leaf = node_at(solution, path)
    assert isinstance(leaf, Num)
    candidates = [v for v in (leaf.value + d for d in (1, -1, 2, -2, 10, -10)) if v > 0 and v not in avoid_numbers]
    if not candidates:
        candidates = [max(avoid_numbers, default=0) + 1]
    return replace_at(solution, path, Num(rng.choice(candidates[:2])))  # the nearest slips are likeliest


def score_expression(answer: str, numbers: Sequence[int], target: int, use_all: bool) -> Verdict:
    """Verify an expression answer for a number-combining task.

    Text after the first ``=`` is ignored (``"25*4-3 = 97"`` scores ``25*4-3``).
    The literals used must be a sub-multiset of ``numbers`` (``use_all``: exactly
    that multiset), then the exact rational value must equal ``target``.
    """
    expression = answer.split("=", 1)[0]
    try:
        node = parse(expression)
    except ParseError as error:
        return Verdict.wrong("unparseable", str(error))
    given, used = Counter(numbers), Counter(literals(node))
    extra = used - given
    if extra:
        listed = ", ".join(f"{n} (used {used[n]}, given {given[n]})" for n in sorted(extra))
        return Verdict.wrong("illegal numbers", f"numbers used more often than given: {listed}")
    if use_all and used != given:
        missing = ", ".join(str(n) for n in sorted((given - used).elements()))
        return Verdict.wrong("illegal numbers", f"every number must be used exactly once; unused: {missing}")
    try:
        value = evaluate(node)
    except EvaluationError as error:
        return Verdict.wrong("wrong value", str(error))
    if value != target:
        return Verdict.wrong("wrong value", f"{to_text(node)} = {format_number(value)}, not {target}")
    return Verdict.right(f"{to_text(node)} = {target}")


def require_numbers(ground_truth: Mapping[str, object]) -> list[int]:
    """``ground_truth["numbers"]`` checked to be a non-empty list of positive ints."""
    numbers = require(ground_truth, "numbers", list)
    if not numbers or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
        raise ValueError(f"ground truth 'numbers' must be a non-empty list of positive ints, got {numbers!r}")
    return numbers


def failed_attempt(numbers: list[int], count: int, target: int, rng: random.Random) -> Node | None:
    """A random combination of ``count`` of ``numbers`` that misses ``target`` (None if none found)."""
    for _ in range(10):
        attempt = random_combination(rng.sample(numbers, count), rng, max_value=max(100, 10 * target))
        if attempt is not None and evaluate(attempt) != target:
            return attempt
    return None


def distinct_failed_attempts(numbers: list[int], target: int, k: int, rng: random.Random) -> list[Node]:
    """Up to ``k`` random combinations of 2..len(numbers) of ``numbers``, each missing ``target`` and no two the
    same computation up to the order of ``+`` / ``*`` operands (fewer when the draws keep repeating: 20 tries per
    attempt)."""
    attempts: list[Node] = []
    seen: set[str] = set()
    for _ in range(20 * k):
        if len(attempts) == k:
            break
        count = rng.randint(2, len(numbers))
        attempt = random_combination(rng.sample(numbers, count), rng, max_value=max(100, 10 * target))
        if attempt is None or evaluate(attempt) == target or canonical_text(attempt) in seen:
            continue
        seen.add(canonical_text(attempt))
        attempts.append(attempt)
    return attempts


def noisy_answer(
    solution: Node, rng: random.Random, is_correct: Callable[[str], bool], avoid_numbers: list[int]
) -> tuple[Node, str]:
    """Corrupt ``solution`` until ``is_correct(text)`` is False; return (corrupted tree, its text)."""
    for _ in range(50):
        shown = corrupt_solution(solution, rng, avoid_numbers)
        text = to_text(shown)
        if not is_correct(text):
            return shown, text
    raise RuntimeError(f"could not corrupt solution {to_text(solution)!r}")  # pragma: no cover


def expression_trace(
    task: Task, problem: Problem, solution: Node, rng: random.Random, noise: float,
    failed: Node | Sequence[Node] | None,
) -> Trace:
    """Trace for an expression task: failed attempt lines (none, one or several, each ending ``not T``), then
    the (possibly noisy) solution."""
    target = require(problem.ground_truth, "target", int)
    numbers = require_numbers(problem.ground_truth)
    attempts = [] if failed is None else [failed] if isinstance(failed, Node) else list(failed)
    lines = [f"{format_steps(written_steps(attempt))}, not {target}" for attempt in attempts]
    if rng.random() < noise:
        shown, answer = noisy_answer(
            solution, rng, lambda text: task.verify(problem, text).correct, avoid_numbers=numbers
        )
        lines.append(format_steps(written_steps(shown, solution)))
    else:
        lines.append(format_steps(written_steps(solution)))
        answer = to_text(solution)
    return Trace(thinking="\n".join(lines), answer=answer)
