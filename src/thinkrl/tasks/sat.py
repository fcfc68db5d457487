"""Boolean satisfiability: find values of x1..xn that make every clause of a CNF formula true.

Prompt::

    Find true/false values for x1 to x4 that make every clause below true
    (a clause is true when at least one of its literals is; "not x2" is true when
    x2 is false).
    1: x1 or not x3 or x4
    2: not x1 or x2 or not x4
    ...
    Answer with every variable as 1 (true) or 0 (false), separated by commas, for
    example x1=1, x2=0, x3=1, x4=0.

Generation plants an assignment and keeps only random clauses it satisfies,
so a solution always exists. A literal is an int: ``3`` is x3, ``-3`` is not x3.

Verification: one ``xi=v`` per variable with v in 1/0 (``true``/``false`` and
``T``/``F`` also accepted; a missing, unknown or repeated variable is
"unparseable"); any assignment that satisfies every clause is accepted, an
unsatisfied clause is "wrong value".

Trace: DPLL: unit propagation (``x3=0 (clause 4)``), otherwise a decision on
the lowest unset variable (true first), a conflict line and backtracking.
Long searches keep only their last lines. A noisy trace misreads one clause
and ends with an assignment that falsifies it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import AnswerFormatError, parse_pairs, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRACE_LINES = 40
TRUE_WORDS = {"1": True, "0": False, "true": True, "false": False, "t": True, "f": False}


def literal_text(literal: int) -> str:
    """``x3`` or ``not x3``."""
    return f"x{literal}" if literal > 0 else f"not x{-literal}"


def clause_true(clause: list[int], values: Mapping[int, bool]) -> bool:
    """True if some literal of ``clause`` is true under ``values`` (unset variables count as false)."""
    return any(values.get(abs(lit)) == (lit > 0) for lit in clause)


def dpll(clauses: list[list[int]], n: int, log: list[str]) -> dict[int, bool] | None:
    """A satisfying assignment by DPLL with unit propagation, writing each step to ``log``; None if unsatisfiable."""

    def search(values: dict[int, bool]) -> dict[int, bool] | None:
        values = dict(values)
        while True:
            unit = None
            for number, clause in enumerate(clauses, start=1):
                if clause_true(clause, values):
                    continue
                free = [lit for lit in clause if abs(lit) not in values]
                if not free:
                    log.append(f"clause {number} is false, back up")
                    return None
                if len(free) == 1:
                    unit = (free[0], number)
                    break
            if unit is None:
                break
            lit, number = unit
            values[abs(lit)] = lit > 0
            log.append(f"x{abs(lit)}={int(lit > 0)} (clause {number})")
        unset = [v for v in range(1, n + 1) if v not in values]
        if not unset:
            return values
        for value in (True, False):
            log.append(f"try x{unset[0]}={int(value)}")
            found = search({**values, unset[0]: value})
            if found is not None:
                return found
        return None

    return search({})


def assignment_text(values: Mapping[int, bool], n: int) -> str:
    """``x1=1, x2=0``."""
    return ", ".join(f"x{v}={int(values[v])}" for v in range(1, n + 1))


@TASKS.register("sat")
class SatTask(Task):
    """Satisfy a random CNF formula with a planted solution (any satisfying assignment counts)."""

    name = "sat"
    difficulty_knobs = (
        Knob("num_vars", int, 5, 2, 30, "number of variables"),
        Knob("num_clauses", int, 12, 1, 200, "number of clauses"),
        Knob("clause_size", int, 3, 1, 5, "literals per clause (at most num_vars)"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """clause_size <= num_vars."""
        if difficulty["clause_size"] > difficulty["num_vars"]:
            raise ValueError(
                f"clause_size ({difficulty['clause_size']}) must be <= num_vars ({difficulty['num_vars']})"
            )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Plant an assignment; draw clauses, keeping those it satisfies."""
        n = difficulty["num_vars"]
        planted = {v: rng.random() < 0.5 for v in range(1, n + 1)}
        clauses: list[list[int]] = []
        while len(clauses) < difficulty["num_clauses"]:
            variables = sorted(rng.sample(range(1, n + 1), difficulty["clause_size"]))
            clause = [v if rng.random() < 0.5 else -v for v in variables]
            if clause_true(clause, planted):
                clauses.append(clause)
        listed = "\n".join(f"{i}: {' or '.join(map(literal_text, c))}" for i, c in enumerate(clauses, start=1))
        example = ", ".join(f"x{v}={v % 2}" for v in range(1, n + 1))
        prompt = (
            f"Find true/false values for x1 to x{n} that make every clause below true (a clause is true when at "
            f'least one of its literals is; "not x2" is true when x2 is false).\n{listed}\n'
            f"Answer with every variable as 1 (true) or 0 (false), separated by commas, for example {example}."
        )
        return prompt, {"num_vars": n, "clauses": clauses, "solution": assignment_text(planted, n)}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[int, list[list[int]]]:
        n = require(ground_truth, "num_vars", int)
        clauses = require(ground_truth, "clauses", list)
        for clause in clauses:
            if not (
                isinstance(clause, list) and clause and all(isinstance(x, int) and 1 <= abs(x) <= n for x in clause)
            ):
                raise ValueError(f"sat clauses must be non-empty lists of literals in +-1..{n}, got {clause!r}")
        return n, clauses

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Variable count and the sorted clauses."""
        n, clauses = self._parts(ground_truth)
        return f"{n}:{sorted(sorted(c) for c in clauses)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Every variable set; every clause satisfied."""
        n, clauses = self._parts(ground_truth)
        try:
            pairs = parse_pairs(answer, [f"x{v}" for v in range(1, n + 1)])
        except AnswerFormatError as error:
            return unparseable(error)
        bad = [f"{k}={v}" for k, v in pairs.items() if v not in TRUE_WORDS]
        if bad:
            return Verdict.wrong("unparseable", f"values must be 1 or 0, got {', '.join(bad)}")
        values = {int(k[1:]): TRUE_WORDS[v] for k, v in pairs.items()}
        for number, clause in enumerate(clauses, start=1):
            if not clause_true(clause, values):
                shown = " or ".join(map(literal_text, clause))
                return Verdict.wrong("wrong value", f"clause {number} ({shown}) is false")
        return Verdict.right("every clause is true")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """The DPLL log; noise misreads one clause and falsifies it in the answer."""
        noise = check_noise(noise)
        n, clauses = self._parts(problem.ground_truth)
        log: list[str] = []
        values = dpll(clauses, n, log)
        if values is None:
            raise ValueError(f"sat {problem.id} is unsatisfiable")
        if len(log) > MAX_TRACE_LINES:
            log = [f"(after {len(log) - MAX_TRACE_LINES // 2} steps)", *log[-MAX_TRACE_LINES // 2 :]]
        if rng.random() < noise:
            number = rng.randrange(len(clauses))
            values = {**values, **{abs(lit): lit < 0 for lit in clauses[number]}}
            misread = " or ".join(literal_text(-lit) for lit in clauses[number])
            log.append(f"recheck clause {number + 1} as {misread}: set " + ", ".join(
                f"x{abs(lit)}={int(lit < 0)}" for lit in clauses[number]))  # fmt: skip
        return Trace("\n".join(log), assignment_text(values, n))
