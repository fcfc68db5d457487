"""Big arithmetic: a sum of products of multi-digit numbers, e.g. ``Compute 482*739+615*208.``

Numbers this size are hard to multiply "in the head" (for a small model: digit by digit, in one pass), and
easy with a calculator, which makes it the tool-use task of `thinkrl.rollout.environments` ("big_arithmetic":
a calculator that does one operation per call, so the task needs several calls).

Answer: one integer; text up to the last ``=`` is ignored (as in ``arithmetic``). The plain trace (no tools)
reduces the expression one operation per line, as ``arithmetic`` does::

    482*739=356198: 356198+615*208
    615*208=127920: 356198+127920
    356198+127920=484118
"""

from __future__ import annotations

import random
from typing import Any

from thinkrl.tasks.arithmetic import ArithmeticTask
from thinkrl.tasks.base import Knob
from thinkrl.tasks.registry import TASKS


def product_terms(expression: str) -> list[tuple[int, int]]:
    """The ``(a, b)`` factors of each product of a ``a*b+c*d+...`` expression, left to right."""
    terms = []
    for part in expression.split("+"):
        left, _, right = part.partition("*")
        terms.append((int(left), int(right)))
    return terms


@TASKS.register("big_arithmetic")
class BigArithmeticTask(ArithmeticTask):
    """Sum of ``num_products`` products of two ``digits``-digit numbers; verdicts and plain traces (one reduction
    per line, no tools; with ``noise`` one slip) are arithmetic's."""

    name = "big_arithmetic"
    difficulty_knobs = (
        Knob("num_products", int, 2, 1, 4, "products in the sum"),
        Knob("digits", int, 3, 2, 6, "digits of every factor"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        low, high = 10 ** (difficulty["digits"] - 1), 10 ** difficulty["digits"] - 1
        terms = [(rng.randint(low, high), rng.randint(low, high)) for _ in range(difficulty["num_products"])]
        text = "+".join(f"{a}*{b}" for a, b in terms)
        return f"Compute {text}.", {"expression": text, "answer": sum(a * b for a, b in terms)}
