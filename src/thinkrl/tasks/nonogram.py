"""Nonogram: fill a grid from the run lengths of every row and column.

Prompt::

    Nonogram on a 5x5 grid. The numbers of a row (left to right) or a column (top
    to bottom) are the lengths of its runs of filled cells, in order, with at
    least one empty cell between runs; 0 means the line is empty.
    Rows, top to bottom: 2 1 | 3 | 0 | 1 1 | 5
    Columns, left to right: 1 2 | 2 1 | 2 1 | 1 | 1 2
    Answer with the 5 rows, top to bottom, each as 5 characters (1 filled,
    0 empty) without spaces, rows separated by /, for example 11010/.../11111.

Generation: random grids (each cell filled with probability ``fill_density``)
until `solve_count` (line solving plus branching on a cell, counting up to 2)
finds exactly one grid with those clues.

Verification: a 0/1 grid of the right shape ("unparseable" otherwise); any
row or column whose runs differ from its clue is "wrong value". Any grid
matching every clue counts (it is the unique one).

Trace: line solving, one line of text per row or column that gains cells,
written as the line's state (``row 2 [3]: ?111?`` with ? unknown), and a guess
from the solution when line solving stalls. A noisy trace flips one cell of
one step, and the flip stays in the answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import AnswerFormatError, parse_char_grid, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 500
UNKNOWN = -1
Line = tuple[int, ...]
Clues = list[tuple[int, ...]]
Step = tuple[str, int, list[int]]  # (kind "row" / "column" / "guess", index, line state or [guessed value])


def runs_of(line: list[int] | Line) -> list[int]:
    """Lengths of the runs of 1s in ``line`` (``[0]`` for an empty line)."""
    out, run = [], 0
    for cell in [*line, 0]:
        if cell == 1:
            run += 1
        elif run:
            out.append(run)
            run = 0
    return out or [0]


@lru_cache(maxsize=4096)
def placements(clue: tuple[int, ...], length: int) -> tuple[Line, ...]:
    """Every 0/1 line of ``length`` whose runs are ``clue`` (``(0,)`` = empty line)."""
    if clue == (0,):
        return ((0,) * length,)
    first, rest = clue[0], clue[1:]
    need = sum(rest) + len(rest)
    out = []
    for start in range(length - need - first + 1):
        head = (0,) * start + (1,) * first
        if rest:
            out += [(*head, 0, *tail) for tail in placements(rest, length - len(head) - 1)]
        else:
            out.append(head + (0,) * (length - len(head)))
    return tuple(out)


def solve_line(clue: tuple[int, ...], line: list[int]) -> list[int] | None:
    """Cells every placement consistent with ``line`` agrees on (others UNKNOWN); None if none fits."""
    fits = [p for p in placements(clue, len(line)) if all(c in (UNKNOWN, v) for c, v in zip(line, p, strict=True))]
    if not fits:
        return None
    return [fits[0][i] if all(f[i] == fits[0][i] for f in fits) else UNKNOWN for i in range(len(line))]


def propagate(rows: Clues, cols: Clues, grid: list[list[int]], log: list[Step] | None = None) -> bool:
    """Line-solve ``grid`` in place until nothing changes; False on a contradiction.

    ``log`` (a list) receives ``(kind, index, new_line)`` for every line that gained cells.
    """
    changed = True
    while changed:
        changed = False
        for kind, clues in (("row", rows), ("column", cols)):
            for index, clue in enumerate(clues):
                line = grid[index] if kind == "row" else [row[index] for row in grid]
                solved = solve_line(clue, line)
                if solved is None:
                    return False
                if solved != line:
                    changed = True
                    for i, value in enumerate(solved):
                        if kind == "row":
                            grid[index][i] = value
                        else:
                            grid[i][index] = value
                    if log is not None:
                        log.append((kind, index, solved))
    return True


def solve_count(rows: Clues, cols: Clues, limit: int = 2) -> int:
    """Number of grids matching the clues, counting stops at ``limit``."""
    grid = [[UNKNOWN] * len(cols) for _ in rows]
    return _count(rows, cols, grid, limit)


def _count(rows: Clues, cols: Clues, grid: list[list[int]], limit: int) -> int:
    if not propagate(rows, cols, grid):
        return 0
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value == UNKNOWN:
                total = 0
                for guess in (1, 0):
                    trial = [list(line) for line in grid]
                    trial[r][c] = guess
                    total += _count(rows, cols, trial, limit - total)
                    if total >= limit:
                        break
                return total
    return 1


def clue_text(clues: list[tuple[int, ...]]) -> str:
    """``2 1 | 3 | 0``."""
    return " | ".join(" ".join(map(str, clue)) for clue in clues)


@TASKS.register("nonogram")
class NonogramTask(Task):
    """Fill a grid from its row and column run-length clues (unique solution)."""

    name = "nonogram"
    difficulty_knobs = (
        Knob("rows", int, 5, 2, 12, "grid height"),
        Knob("cols", int, 5, 2, 12, "grid width"),
        Knob("fill_density", float, 0.55, 0.1, 0.9, "chance that a cell of the hidden grid is filled"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random grids until the clues have exactly one solution."""
        height, width = difficulty["rows"], difficulty["cols"]
        for _ in range(MAX_TRIES):
            grid = [[int(rng.random() < difficulty["fill_density"]) for _ in range(width)] for _ in range(height)]
            rows = [tuple(runs_of(row)) for row in grid]
            cols = [tuple(runs_of([row[c] for row in grid])) for c in range(width)]
            if solve_count(rows, cols) == 1:
                break
        else:
            raise ValueError(f"could not generate a unique nonogram with difficulty {difficulty}; widen it")
        example = "/".join(("10" * width)[:width] for _ in range(height))
        prompt = (
            f"Nonogram on a {height}x{width} grid. The numbers of a row (left to right) or a column (top to "
            "bottom) are the lengths of its runs of filled cells, in order, with at least one empty cell between "
            "runs; 0 means the line is empty.\n"
            f"Rows, top to bottom: {clue_text(rows)}\nColumns, left to right: {clue_text(cols)}\n"
            f"Answer with the {height} rows, top to bottom, each as {width} characters (1 filled, 0 empty) "
            f"without spaces, rows separated by /, for example {example}."
        )
        solution = "/".join("".join(map(str, row)) for row in grid)
        return prompt, {"rows": [list(r) for r in rows], "cols": [list(c) for c in cols], "solution": solution}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        rows, cols = require(ground_truth, "rows", list), require(ground_truth, "cols", list)
        for clue in rows + cols:
            if not (isinstance(clue, list) and clue and all(isinstance(v, int) and v >= 0 for v in clue)):
                raise ValueError(f"nonogram clues must be non-empty lists of ints, got {clue!r}")
        if not rows or not cols:
            raise ValueError("nonogram needs row and column clues")
        return [tuple(r) for r in rows], [tuple(c) for c in cols]

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Row and column clues."""
        rows, cols = self._parts(ground_truth)
        return f"{clue_text(rows)}||{clue_text(cols)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Every row's and column's runs must equal its clue."""
        rows, cols = self._parts(ground_truth)
        try:
            lines = parse_char_grid(answer, len(rows), len(cols), "01")
        except AnswerFormatError as error:
            return unparseable(error)
        grid = [[int(ch) for ch in line] for line in lines]
        for r, clue in enumerate(rows):
            if tuple(runs_of(grid[r])) != clue:
                return Verdict.wrong("wrong value", f"row {r + 1} has runs {runs_of(grid[r])}, not {list(clue)}")
        for c, clue in enumerate(cols):
            column = [row[c] for row in grid]
            if tuple(runs_of(column)) != clue:
                return Verdict.wrong("wrong value", f"column {c + 1} has runs {runs_of(column)}, not {list(clue)}")
        return Verdict.right("every clue matches")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Line-solving steps (guesses from the solution when stuck); noise flips one cell."""
        noise = check_noise(noise)
        rows, cols = self._parts(problem.ground_truth)
        solution = [[int(ch) for ch in line] for line in require(problem.ground_truth, "solution", str).split("/")]
        grid = [[UNKNOWN] * len(cols) for _ in rows]
        steps: list[Step] = []
        while True:
            if not propagate(rows, cols, grid, steps):
                raise ValueError(f"nonogram {problem.id}: the clues contradict each other")
            unknown = [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == UNKNOWN]
            if not unknown:
                break
            r, c = unknown[0]
            grid[r][c] = solution[r][c]
            steps.append(("guess", r * len(cols) + c, [solution[r][c]]))
        if grid != solution:
            raise ValueError(f"nonogram {problem.id}: the stored solution does not match the clues")
        if rng.random() < noise:
            grid = self._flip(steps, grid, rng)
        lines = [self._step_text(step, rows, cols) for step in steps]
        return Trace("\n".join(lines), "/".join("".join(map(str, row)) for row in grid))

    @staticmethod
    def _flip(steps: list[Step], grid: list[list[int]], rng: random.Random) -> list[list[int]]:
        """Flip one cell in the last line step that decides it (in the trace and the answer)."""
        r, c = rng.randrange(len(grid)), rng.randrange(len(grid[0]))
        for index in range(len(steps) - 1, -1, -1):
            kind, line_index, line = steps[index]
            cell = c if kind == "row" and line_index == r else r if kind == "column" and line_index == c else -1
            if cell >= 0 and line[cell] != UNKNOWN:
                line = list(line)
                line[cell] = 1 - line[cell]
                steps[index] = (kind, line_index, line)
                break
        grid = [list(row) for row in grid]
        grid[r][c] = 1 - grid[r][c]
        return grid

    @staticmethod
    def _step_text(step: Step, rows: Clues, cols: Clues) -> str:
        kind, index, line = step
        if kind == "guess":
            r, c = divmod(index, len(cols))
            return f"stuck; guess r{r + 1}c{c + 1}={line[0]}, it works out"
        clue = (rows if kind == "row" else cols)[index]
        state = "".join("?" if v == UNKNOWN else str(v) for v in line)
        return f"{kind} {index + 1} [{' '.join(map(str, clue))}]: {state}"
