"""Sudoku (9x9, 3x3 boxes) and mini sudoku (4x4, 2x2 boxes), every puzzle with a unique solution.

Prompt (mini)::

    Fill in the 4x4 sudoku so that every row, every column and every 2x2 box
    contains the digits 1 to 4 exactly once. _ is an empty cell.
    2 _ _ 3
    _ _ 1 _
    1 _ 3 _
    3 _ 2 1
    Answer with the 4 rows of the completed grid, top to bottom, each as 4 digits
    without spaces, rows separated by /, for example 1234/3412/2143/4321.

Generation: a random full grid (`latin.solve` on an empty grid with random
digit order), then cells are emptied in random order while the solver
(`latin.count_solutions`, counting up to 2) still finds exactly one solution.

Verification: the answer must be a full grid of digits 1..n (spaces, ``/``
and newlines between cells are ignored; anything else is "unparseable"); a
changed given is "illegal numbers"; a repeated digit in a row, column or box is
"wrong value". Any valid grid that keeps the givens is accepted (it is the
unique solution).

Trace: one filled cell per line, ``r1c2=4 (only candidate)`` or ``r3c1=7 (only
place for 7 in box 1)``, and a guess when neither rule applies. A noisy trace
writes one wrong digit, which ends up in the answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.latin import GridRules, count_solutions, deductions, lines_rules, make_puzzle, solve
from thinkrl.tasks.puzzle import (
    ILLEGAL,
    AnswerFormatError,
    cell_name,
    digits_text,
    parse_char_grid,
    require_grid,
    show_digit_grid,
    unparseable,
)
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 50
EXAMPLES = {4: "1234/3412/2143/4321", 9: "123456789/456789123/.../912345678 (9 rows)"}


def grid_violation(rules: GridRules, grid: list[int]) -> str | None:
    """Text naming the first group with a repeated digit or the first broken inequality, else None."""
    for name, group in rules.groups:
        seen: set[int] = set()
        for cell in group:
            if grid[cell] in seen:
                return f"{name} has two {grid[cell]}s"
            seen.add(grid[cell])
    size = rules.size
    for a, b in rules.less:
        if not grid[a] < grid[b]:
            return f"{cell_name(*divmod(a, size))} < {cell_name(*divmod(b, size))} fails ({grid[a]} vs {grid[b]})"
    return None


def score_grid(rules: GridRules, puzzle: list[int], answer: str) -> Verdict:
    """Verify a digit-grid answer: format, givens kept, then every rule of ``rules``."""
    size = rules.size
    try:
        rows = parse_char_grid(answer, size, size, "123456789"[:size])
    except AnswerFormatError as error:
        return unparseable(error)
    grid = [int(ch) for row in rows for ch in row]
    for cell, given in enumerate(puzzle):
        if given and grid[cell] != given:
            where = cell_name(*divmod(cell, size))
            return Verdict.wrong(ILLEGAL, f"the given {where}={given} was changed to {grid[cell]}")
    problem = grid_violation(rules, grid)
    if problem:
        return Verdict.wrong("wrong value", problem)
    return Verdict.right("valid grid")


def grid_trace(rules: GridRules, puzzle: list[int], solution: list[int], rng: random.Random, noise: float) -> Trace:
    """One deduction per line; with probability ``noise`` one step writes a wrong digit that stays in the answer."""
    steps = deductions(rules, puzzle, solution)
    answer = list(solution)
    lines = [f"{cell_name(*divmod(s.cell, rules.size))}={s.digit} ({s.reason})" for s in steps]
    if steps and rng.random() < noise:
        index = rng.randrange(len(steps))
        step = steps[index]
        wrong = rng.choice([d for d in range(1, rules.size + 1) if d != step.digit])
        answer[step.cell] = wrong
        lines[index] = f"{cell_name(*divmod(step.cell, rules.size))}={wrong} ({step.reason})"
    size = rules.size
    return Trace("\n".join(lines), digits_text(answer[r * size : (r + 1) * size] for r in range(size)))


class SudokuBase(Task):
    """Fill a sudoku with a unique solution; subclasses fix the size and box shape."""

    size: int
    box: tuple[int, int]

    @property
    def rules(self) -> GridRules:
        """Rows, columns and boxes of this size."""
        return lines_rules(self.size, box=self.box)

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A random full grid, emptied while the solution stays unique."""
        rules, size = self.rules, self.size
        for _ in range(MAX_TRIES):
            solution = solve(rules, [0] * size * size, rng)
            assert solution is not None
            puzzle = make_puzzle(rules, solution, difficulty["num_empty"], rng)
            if puzzle is not None:
                break
        else:
            raise ValueError(f"could not generate a {self.name} with difficulty {difficulty}; widen it")
        rows = [puzzle[r * size : (r + 1) * size] for r in range(size)]
        height, width = self.box
        prompt = (
            f"Fill in the {size}x{size} sudoku so that every row, every column and every {height}x{width} box "
            f"contains the digits 1 to {size} exactly once. _ is an empty cell.\n"
            f"{show_digit_grid(rows)}\n"
            f"Answer with the {size} rows of the completed grid, top to bottom, each as {size} digits without "
            f"spaces, rows separated by /, for example {EXAMPLES[size]}."
        )
        solved = digits_text(solution[r * size : (r + 1) * size] for r in range(size))
        return prompt, {"puzzle": rows, "solution": solved}

    def _puzzle(self, ground_truth: Mapping[str, Any]) -> list[int]:
        rows = require_grid(ground_truth, "puzzle")
        if len(rows) != self.size or len(rows[0]) != self.size:
            raise ValueError(f"{self.name} puzzle must be {self.size}x{self.size}, got {rows!r}")
        return [v for row in rows for v in row]

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The puzzle's cells, 0 for empty."""
        return "".join(map(str, self._puzzle(ground_truth)))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """A complete valid grid that keeps every given."""
        return score_grid(self.rules, self._puzzle(ground_truth), answer)

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Singles and hidden singles, one cell per line."""
        noise = check_noise(noise)
        puzzle = self._puzzle(problem.ground_truth)
        solution = [int(ch) for ch in require(problem.ground_truth, "solution", str) if ch.isdigit()]
        if count_solutions(self.rules, puzzle, 2) != 1 or len(solution) != len(puzzle):
            raise ValueError(f"{self.name} puzzle {problem.id} does not have a unique solution")
        return grid_trace(self.rules, puzzle, solution, rng, noise)


@TASKS.register("sudoku")
class SudokuTask(SudokuBase):
    """9x9 sudoku with 3x3 boxes and a unique solution."""

    name = "sudoku"
    size = 9
    box = (3, 3)
    difficulty_knobs = (Knob("num_empty", int, 40, 1, 58, "empty cells (more = harder); the solution stays unique"),)


@TASKS.register("mini_sudoku")
class MiniSudokuTask(SudokuBase):
    """4x4 sudoku with 2x2 boxes and a unique solution."""

    name = "mini_sudoku"
    size = 4
    box = (2, 2)
    difficulty_knobs = (Knob("num_empty", int, 8, 1, 12, "empty cells (more = harder); the solution stays unique"),)
