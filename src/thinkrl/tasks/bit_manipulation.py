"""Bit manipulation: evaluate an expression of & | ^ ~ << >> on fixed-width unsigned integers.

Prompt::

    All values are 8-bit unsigned integers: every result is kept to its lowest 8
    bits (<< drops the bits shifted out, ~ flips all 8 bits). & is AND, | is OR,
    ^ is XOR, >> and << shift right and left. Compute ((0x3A << 2) ^ 0x1F) & ~0x0F.
    Answer with the result as a decimal integer.

The expression is a random tree with ``num_ops`` operations, fully
parenthesised, so no precedence rules are needed. Ground truth ``tree`` is
nested lists: an int leaf, ``["~", x]``, ``["<<", x, k]`` / ``[">>", x, k]`` (k a
small shift count), or ``[op, x, y]`` for ``& | ^``.

Verification: the answer is one non-negative integer, in decimal (or with a
``0x`` / ``0b`` prefix); anything else is "unparseable"; another value is "wrong value".

Trace: one operation per line, innermost first, in binary with the decimal
value: ``00111010 << 2 = 11101000 (232)``. A noisy trace flips one bit of one
result and carries it on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.registry import TASKS

BINARY_OPS = ("&", "|", "^")
_NUMBER = re.compile(r"(0x[0-9a-f]{1,16}|0b[01]{1,64}|\d{1,20})", re.IGNORECASE)

Tree = int | list[Any]


def random_tree(num_ops: int, bits: int, rng: random.Random) -> Tree:
    """A random expression with ``num_ops`` operations on ``bits``-bit leaves."""
    if num_ops == 0:
        return rng.randrange(1 << bits)
    kind = rng.random()
    if kind < 0.15:
        return ["~", random_tree(num_ops - 1, bits, rng)]
    if kind < 0.4:
        return [rng.choice(("<<", ">>")), random_tree(num_ops - 1, bits, rng), rng.randint(1, min(4, bits - 1))]
    left = rng.randint(0, num_ops - 1)
    return [rng.choice(BINARY_OPS), random_tree(left, bits, rng), random_tree(num_ops - 1 - left, bits, rng)]


def apply(op: str, a: int, b: int, bits: int) -> int:
    """One operation, the result kept to ``bits`` bits."""
    mask = (1 << bits) - 1
    if op in ("<<", ">>") and not 0 <= b < bits:
        raise ValueError(f"shift count {b} is outside 0..{bits - 1}")
    operations = {
        "&": lambda: a & b,
        "|": lambda: a | b,
        "^": lambda: a ^ b,
        "<<": lambda: a << b,
        ">>": lambda: a >> b,
        "~": lambda: ~a,
    }
    return operations[op]() & mask


def render(tree: Tree, hex_digits: int, top: bool = True) -> str:
    """The expression text; binary operations are parenthesised except at the top."""
    if isinstance(tree, int):
        return f"0x{tree:0{hex_digits}X}" if hex_digits else str(tree)
    if tree[0] == "~":
        inner = render(tree[1], hex_digits, top=False)
        return f"~{inner}"
    right = str(tree[2]) if tree[0] in ("<<", ">>") else render(tree[2], hex_digits, top=False)
    text = f"{render(tree[1], hex_digits, top=False)} {tree[0]} {right}"
    return text if top else f"({text})"


def steps(tree: Tree, bits: int, slip: int = -1, lines: list[str] | None = None) -> tuple[int, list[str]]:
    """Value of ``tree`` and one binary line per operation; at step ``slip`` the lowest bit of the result flips."""
    lines = [] if lines is None else lines
    if isinstance(tree, int):
        return tree, lines
    a, _ = steps(tree[1], bits, slip, lines)
    if tree[0] == "~":
        b = 0
    elif tree[0] in ("<<", ">>"):
        b = tree[2]
    else:
        b, _ = steps(tree[2], bits, slip, lines)
    value = apply(tree[0], a, b, bits)
    if len(lines) == slip:
        value ^= 1 << random.Random(len(lines)).randrange(bits)
    left = f"{a:0{bits}b}"
    if tree[0] == "~":
        lines.append(f"~{left} = {value:0{bits}b} ({value})")
    elif tree[0] in ("<<", ">>"):
        lines.append(f"{left} {tree[0]} {b} = {value:0{bits}b} ({value})")
    else:
        lines.append(f"{left} {tree[0]} {b:0{bits}b} = {value:0{bits}b} ({value})")
    return value, lines


def check_tree(tree: Any, bits: int) -> Tree:
    """``tree`` itself; ValueError unless it is a well-formed expression tree."""
    if isinstance(tree, int) and not isinstance(tree, bool):
        if not 0 <= tree < 1 << bits:
            raise ValueError(f"leaf {tree} does not fit in {bits} bits")
        return tree
    if not isinstance(tree, list) or not tree or tree[0] not in (*BINARY_OPS, "~", "<<", ">>"):
        raise ValueError(f"bad bit_manipulation tree node {tree!r}")
    unary = tree[0] == "~" and len(tree) == 2
    shift = tree[0] in ("<<", ">>") and len(tree) == 3 and isinstance(tree[2], int) and 0 <= tree[2] < bits
    if unary or shift:
        check_tree(tree[1], bits)
    elif tree[0] in BINARY_OPS and len(tree) == 3:
        check_tree(tree[1], bits)
        check_tree(tree[2], bits)
    else:
        raise ValueError(f"bad bit_manipulation tree node {tree!r}")
    return tree


@TASKS.register("bit_manipulation")
class BitManipulationTask(Task):
    """Evaluate a fixed-width bitwise expression."""

    name = "bit_manipulation"
    difficulty_knobs = (
        Knob("bits", int, 8, 4, 32, "width of every value"),
        Knob("num_ops", int, 3, 1, 8, "number of operations"),
        Knob("hex_operands", bool, True, help="write the operands in hexadecimal (else decimal)"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A random expression tree and its value."""
        bits = difficulty["bits"]
        tree = random_tree(difficulty["num_ops"], bits, rng)
        text = render(tree, (bits + 3) // 4 if difficulty["hex_operands"] else 0)
        prompt = (
            f"All values are {bits}-bit unsigned integers: every result is kept to its lowest {bits} bits "
            f"(<< drops the bits shifted out, ~ flips all {bits} bits). & is AND, | is OR, ^ is XOR, >> and << "
            f"shift right and left. Compute {text}.\nAnswer with the result as a decimal integer."
        )
        return prompt, {"bits": bits, "expression": text, "tree": tree, "answer": steps(tree, bits)[0]}

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Width and expression text."""
        return f"{require(ground_truth, 'bits', int)}:{require(ground_truth, 'expression', str)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """One integer (decimal, 0x or 0b) equal to the value."""
        expected = require(ground_truth, "answer", int)
        text = answer.strip()
        if not _NUMBER.fullmatch(text):
            return Verdict.wrong("unparseable", f"expected one non-negative integer, got {text[:40]!r}")
        value = int(text, 0) if text[:2].lower() in ("0x", "0b") else int(text)
        if value != expected:
            return Verdict.wrong("wrong value", f"{value} is not {expected}")
        return Verdict.right(str(expected))

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """One binary step per operation; noise flips a bit in one step."""
        noise = check_noise(noise)
        bits = require(problem.ground_truth, "bits", int)
        tree = check_tree(problem.ground_truth.get("tree"), bits)
        value, lines = steps(tree, bits)
        if rng.random() < noise:
            value, lines = steps(tree, bits, slip=rng.randrange(len(lines)))
            if value == require(problem.ground_truth, "answer", int):  # the flipped bit was masked away later
                value, lines = steps(tree, bits, slip=len(lines) - 1)
        return Trace("\n".join(lines), str(value))
