"""Kakurasu: fill cells of a grid so that weighted row and column sums match their targets.

Prompt::

    Kakurasu on a 4x4 grid (4 rows, 4 columns): fill some cells. A filled cell in column j adds j to
    its row's sum; a filled cell in row i adds i to its column's sum (rows and
    columns counted from 1 at the top left).
    Row sums, top to bottom: 4 4 1 2
    Column sums, left to right: 4 4 1 2
    Answer with the 4 rows, top to bottom, each as 4 characters (1 filled,
    0 empty) without spaces, rows separated by /, for example 1010/0001/1000/0100.

Grids may be rectangular (``rows`` x ``cols``). Generation: a random 0/1 grid
(each cell filled with probability
``fill_density``, every row and column with at least one filled cell), kept if
`count_solutions` finds exactly one grid with those sums.

Verification: a rows x cols grid of 0 and 1 ("unparseable" otherwise); a row or
column sum that differs is "wrong value". Any grid with the right sums counts.

Trace: for each row the ways to write its sum as distinct column numbers,
then the row choices the column sums leave, then a check of every column.
A noisy trace picks, for one row, another way to make its sum (or miscounts a cell).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import AnswerFormatError, parse_char_grid, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 2000


@lru_cache(maxsize=256)
def ways(total: int, size: int) -> tuple[tuple[int, ...], ...]:
    """Sets of distinct numbers from 1..size summing to ``total`` (as sorted tuples)."""
    return tuple(
        combo
        for count in range(size + 1)
        for combo in itertools.combinations(range(1, size + 1), count)
        if sum(combo) == total
    )


def count_solutions(row_sums: list[int], col_sums: list[int], limit: int = 2) -> tuple[int, list[list[int]] | None]:
    """(number of grids with these sums up to ``limit``, the first one) by row-wise backtracking."""
    rows, cols = len(row_sums), len(col_sums)
    found: list[list[list[int]]] = []
    chosen: list[tuple[int, ...]] = []
    partial = [0] * cols

    def place(row: int) -> int:
        if row == rows:
            if partial == col_sums:
                found.append([[int(c + 1 in combo) for c in range(cols)] for combo in chosen])
                return 1
            return 0
        count = 0
        remaining = sum(range(row + 2, rows + 1))  # the most any column can still gain
        for combo in ways(row_sums[row], cols):
            if any(partial[c - 1] + row + 1 > col_sums[c - 1] for c in combo):
                continue
            for c in combo:
                partial[c - 1] += row + 1
            if all(col_sums[c] - partial[c] <= remaining for c in range(cols)):
                chosen.append(combo)
                count += place(row + 1)
                chosen.pop()
            for c in combo:
                partial[c - 1] -= row + 1
            if count >= limit:
                break
        return count

    count = place(0)
    return count, (found[0] if found else None)


def sums(grid: list[list[int]]) -> tuple[list[int], list[int]]:
    """(row sums, column sums) with 1-based weights."""
    rows = [sum(c + 1 for c, v in enumerate(row) if v) for row in grid]
    cols = [sum(r + 1 for r, row in enumerate(grid) if row[c]) for c in range(len(grid[0]))]
    return rows, cols


@TASKS.register("kakurasu")
class KakurasuTask(Task):
    """Fill cells so that 1-based weighted row and column sums match (unique solution)."""

    name = "kakurasu"
    difficulty_knobs = (
        Knob("rows", int, 4, 2, 7, "grid height"),
        Knob("cols", int, 4, 2, 7, "grid width"),
        Knob("fill_density", float, 0.4, 0.1, 0.9, "chance that a cell of the hidden grid is filled"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random grids until one has unique sums."""
        height, width = difficulty["rows"], difficulty["cols"]
        for _ in range(MAX_TRIES):
            grid = [[int(rng.random() < difficulty["fill_density"]) for _ in range(width)] for _ in range(height)]
            row_sums, col_sums = sums(grid)
            if 0 in row_sums or 0 in col_sums:
                continue
            if count_solutions(row_sums, col_sums)[0] == 1:
                break
        else:
            raise ValueError(f"could not generate a unique kakurasu with difficulty {difficulty}; widen it")
        example = "/".join("".join("1" if c == r % width else "0" for c in range(width)) for r in range(height))
        prompt = (
            f"Kakurasu on a {height}x{width} grid ({height} rows, {width} columns): fill some cells. "
            "A filled cell in column j adds j to its row's sum; "
            "a filled cell in row i adds i to its column's sum (rows and columns counted from 1 at the top left).\n"
            f"Row sums, top to bottom: {' '.join(map(str, row_sums))}\n"
            f"Column sums, left to right: {' '.join(map(str, col_sums))}\n"
            f"Answer with the {height} rows, top to bottom, each as {width} characters (1 filled, 0 empty) without "
            "spaces, "
            f"rows separated by /, for example {example}."
        )
        solution = "/".join("".join(map(str, row)) for row in grid)
        return prompt, {"row_sums": row_sums, "col_sums": col_sums, "solution": solution}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        row_sums, col_sums = require(ground_truth, "row_sums", list), require(ground_truth, "col_sums", list)
        if not (row_sums and col_sums and all(isinstance(v, int) and v >= 0 for v in row_sums + col_sums)):
            raise ValueError(f"kakurasu sums must be two non-empty lists of ints, got {row_sums} and {col_sums}")
        return row_sums, col_sums

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Row and column sums."""
        row_sums, col_sums = self._parts(ground_truth)
        return f"{row_sums}|{col_sums}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """A 0/1 grid whose weighted row and column sums match."""
        row_sums, col_sums = self._parts(ground_truth)
        try:
            rows = parse_char_grid(answer, len(row_sums), len(col_sums), "01")
        except AnswerFormatError as error:
            return unparseable(error)
        got_rows, got_cols = sums([[int(ch) for ch in row] for row in rows])
        for index, (got, want) in enumerate(zip(got_rows, row_sums, strict=True)):
            if got != want:
                return Verdict.wrong("wrong value", f"row {index + 1} sums to {got}, not {want}")
        for index, (got, want) in enumerate(zip(got_cols, col_sums, strict=True)):
            if got != want:
                return Verdict.wrong("wrong value", f"column {index + 1} sums to {got}, not {want}")
        return Verdict.right("all sums match")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Options per row, the chosen combination, a column check; noise takes another option for one row."""
        noise = check_noise(noise)
        row_sums, col_sums = self._parts(problem.ground_truth)
        height, n = len(row_sums), len(col_sums)
        count, grid = count_solutions(row_sums, col_sums)
        if count != 1 or grid is None:
            raise ValueError(f"kakurasu {problem.id} does not have a unique solution")
        picks = [tuple(c + 1 for c in range(n) if row[c]) for row in grid]
        lines = []
        for r, total in enumerate(row_sums):
            options = " or ".join("+".join(map(str, w)) for w in ways(total, n))
            lines.append(f"row {r + 1} = {total}: {options}")
        if rng.random() < noise:
            noisy = [r for r in range(height) if len(ways(row_sums[r], n)) > 1]
            r = rng.choice(noisy or range(height))
            others = [w for w in ways(row_sums[r], n) if w != picks[r]]
            # another way to make the row's sum, or (if there is none) one cell miscounted
            picks[r] = rng.choice(others) if others else tuple(sorted(set(picks[r]) ^ {rng.randint(1, n)}))
            grid[r] = [int(c + 1 in picks[r]) for c in range(n)]
        lines.append("columns force: " + ", ".join(f"row {r + 1} {'+'.join(map(str, p))}" for r, p in enumerate(picks)))
        got_cols = sums(grid)[1]
        lines.append("column sums: " + " ".join(map(str, got_cols)) + (" ok" if got_cols == col_sums else ""))
        return Trace("\n".join(lines), "/".join("".join(map(str, row)) for row in grid))
