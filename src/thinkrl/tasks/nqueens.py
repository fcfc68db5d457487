"""N-queens: complete a placement of n non-attacking queens on an n x n board.

Prompt::

    Place 6 queens on a 6x6 board so that no two share a row, a column or a
    diagonal. Q is a queen that is already placed and must stay; . is empty.
    . Q . . . .
    . . . . . .
    ...
    Answer with the column (1 to 6) of the queen in each row, rows top to bottom,
    separated by spaces, for example 2 4 6 1 3 5.

Generation: a random solution (backtracking with random column order), of
which ``num_given`` queens are shown.

Verification: n integers (spaces or commas between them; otherwise
"unparseable"); a column outside 1..n or a moved given queen is "illegal
numbers"; two queens in one column or diagonal is "wrong value". Any valid
placement that keeps the given queens is accepted.

Trace: backtracking row by row with the given queens fixed, one line per row
tried (``row 3: col 5``, ``row 4: no free column, back to row 3``); long searches
are summarised. A noisy trace puts one queen on an attacked square.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, parse_int_list, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRACE_LINES = 40


def attacks(row_a: int, col_a: int, row_b: int, col_b: int) -> bool:
    """True if queens on (row_a, col_a) and (row_b, col_b) share a column or a diagonal (rows differ)."""
    return col_a == col_b or abs(col_a - col_b) == abs(row_a - row_b)


def conflict(columns: list[int]) -> tuple[int, int] | None:
    """The first pair of rows whose queens attack each other, or None."""
    for a in range(len(columns)):
        for b in range(a + 1, len(columns)):
            if attacks(a, columns[a], b, columns[b]):
                return a, b
    return None


def search(n: int, fixed: dict[int, int], order: list[int], log: list[str] | None = None) -> list[int] | None:
    """Backtracking solution with the queens of ``fixed`` (row -> col, 0-based) kept; columns tried in ``order``."""
    columns: list[int] = []

    def place(row: int) -> bool:
        if row == n:
            return True
        options = [fixed[row]] if row in fixed else order
        for col in options:
            if not any(attacks(r, c, row, col) for r, c in enumerate(columns)):
                columns.append(col)
                if log is not None:
                    log.append(f"row {row + 1}: col {col + 1}" + (" (given)" if row in fixed else ""))
                if place(row + 1):
                    return True
                columns.pop()
        if log is not None and row > 0:
            log.append(f"row {row + 1}: no free column, back to row {row}")
        return False

    return columns if place(0) else None


@TASKS.register("n_queens")
class NQueensTask(Task):
    """Place n non-attacking queens, keeping the given ones; any valid placement counts."""

    name = "n_queens"
    difficulty_knobs = (
        Knob("n", int, 8, 4, 12, "board size and number of queens"),
        Knob("num_given", int, 2, 0, 11, "queens already placed (fewer = more freedom, more search)"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """num_given < n."""
        if difficulty["num_given"] >= difficulty["n"]:
            raise ValueError(f"num_given ({difficulty['num_given']}) must be < n ({difficulty['n']})")

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A random solution and a random subset of its queens as givens."""
        n = difficulty["n"]
        order = list(range(n))
        rng.shuffle(order)
        solution = search(n, {}, order)
        assert solution is not None
        rows = sorted(rng.sample(range(n), difficulty["num_given"]))
        given = [[row, solution[row]] for row in rows]
        board = "\n".join(" ".join("Q" if [r, c] in given else "." for c in range(n)) for r in range(n))
        example = " ".join(str(c + 1) for c in range(n))
        prompt = (
            f"Place {n} queens on a {n}x{n} board so that no two share a row, a column or a diagonal. "
            f"Q is a queen that is already placed and must stay; . is empty.\n{board}\n"
            f"Answer with the column (1 to {n}) of the queen in each row, rows top to bottom, separated by "
            f"spaces, for example {example}."
        )
        return prompt, {"n": n, "given": given, "solution": " ".join(str(c + 1) for c in solution)}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[int, dict[int, int]]:
        n = require(ground_truth, "n", int)
        given = require(ground_truth, "given", list)
        if not all(isinstance(g, list) and len(g) == 2 and all(0 <= v < n for v in g) for g in given):
            raise ValueError(f"n_queens 'given' must hold [row, col] pairs in 0..{n - 1}, got {given!r}")
        return n, {row: col for row, col in given}

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Board size and the given queens."""
        n, fixed = self._parts(ground_truth)
        return f"{n}:{sorted(fixed.items())}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """n columns in 1..n, the given queens kept, no two queens attacking."""
        n, fixed = self._parts(ground_truth)
        try:
            columns = [c - 1 for c in parse_int_list(answer, n, 0, 10**6)]
        except AnswerFormatError as error:
            return unparseable(error)
        for row, col in enumerate(columns):
            if not 0 <= col < n:
                return Verdict.wrong(ILLEGAL, f"row {row + 1}: column {col + 1} is not on the board (1..{n})")
        for row, col in fixed.items():
            if columns[row] != col:
                return Verdict.wrong(ILLEGAL, f"the given queen in row {row + 1} is in column {col + 1}")
        pair = conflict(columns)
        if pair is not None:
            a, b = pair
            return Verdict.wrong("wrong value", f"the queens in rows {a + 1} and {b + 1} attack each other")
        return Verdict.right("no two queens attack each other")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """The backtracking log (columns tried left to right); noise puts one queen on an attacked square."""
        noise = check_noise(noise)
        n, fixed = self._parts(problem.ground_truth)
        log: list[str] = []
        columns = search(n, fixed, list(range(n)), log)
        if columns is None:
            raise ValueError(f"n_queens {problem.id} has no solution")
        if rng.random() < noise:
            row = rng.choice([r for r in range(n) if r not in fixed])
            wrong = rng.choice([c for c in range(n) if c != columns[row]])
            last = max(i for i, line in enumerate(log) if line.startswith(f"row {row + 1}: col "))
            log[last] = f"row {row + 1}: col {wrong + 1}"
            columns = [wrong if r == row else c for r, c in enumerate(columns)]
        if len(log) > MAX_TRACE_LINES:
            tail = log[-MAX_TRACE_LINES // 2 :]
            first = min(int(line.split(":")[0].split()[1]) for line in tail) - 1
            settled = " ".join(str(c + 1) for c in columns[:first])
            header = f"(after {len(log) - len(tail)} steps of backtracking; rows 1-{first} at columns {settled})"
            log = [header, *tail] if first else [f"(after {len(log) - len(tail)} steps of backtracking)", *tail]
        return Trace("\n".join(log), " ".join(str(c + 1) for c in columns))
