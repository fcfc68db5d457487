"""Futoshiki: a latin square (every row and column holds 1..n once) with inequalities between neighbours.

Prompt::

    Fill in the 4x4 futoshiki so that every row and every column contains the
    digits 1 to 4 exactly once and every inequality holds. _ is an empty cell;
    rRcC is the cell in row R, column C (counted from 1 at the top left).
    _ _ 3 _
    ...
    Inequalities: r1c1 < r1c2, r3c2 > r2c2
    Answer with the 4 rows of the completed grid, top to bottom, each as 4 digits
    without spaces, rows separated by /, for example 1234/3412/2143/4321.

Generation: a random latin square (`latin.solve` on an empty grid), a random
set of inequalities between side-by-side or stacked cells (each such pair
with probability ``inequality_density``), then cells are emptied while the
solution stays unique. Ground truth ``less`` holds ``[r1, c1, r2, c2]`` (0-based)
meaning cell (r1, c1) < cell (r2, c2).

Verification and trace as for sudoku (`sudoku.score_grid`, `sudoku.grid_trace`):
a changed given is "illegal numbers", a repeated digit or a broken inequality
is "wrong value".
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.latin import GridRules, count_solutions, lines_rules, make_puzzle, solve
from thinkrl.tasks.puzzle import cell_name, digits_text, require_grid, show_digit_grid
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.sudoku import grid_trace, score_grid

MAX_TRIES = 50


def random_inequalities(solution: list[int], size: int, density: float, rng: random.Random) -> list[list[int]]:
    """``[r1, c1, r2, c2]`` with solution(r1, c1) < solution(r2, c2), for a random share of neighbouring pairs."""
    pairs = []
    for r in range(size):
        for c in range(size):
            for r2, c2 in ((r, c + 1), (r + 1, c)):
                if r2 < size and c2 < size and rng.random() < density:
                    a, b = (r, c), (r2, c2)
                    if solution[a[0] * size + a[1]] > solution[b[0] * size + b[1]]:
                        a, b = b, a
                    pairs.append([*a, *b])
    return pairs


def show_inequality(pair: list[int], rng: random.Random) -> str:
    """``r1c1 < r1c2`` or, at random, the same fact as ``r1c2 > r1c1``."""
    low, high = cell_name(pair[0], pair[1]), cell_name(pair[2], pair[3])
    return f"{low} < {high}" if rng.random() < 0.5 else f"{high} > {low}"


@TASKS.register("futoshiki")
class FutoshikiTask(Task):
    """Complete a latin square under inequality constraints; the solution is unique."""

    name = "futoshiki"
    difficulty_knobs = (
        Knob("size", int, 4, 3, 7, "side of the square; digits are 1..size"),
        Knob("inequality_density", float, 0.3, 0.0, 1.0, "chance that two neighbouring cells get an inequality"),
        Knob("empty_fraction", float, 0.7, 0.1, 1.0, "share of cells left empty (the solution stays unique)"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Latin square, inequalities, then emptied cells; retried until the emptying succeeds."""
        size = difficulty["size"]
        num_empty = round(difficulty["empty_fraction"] * size * size)
        for _ in range(MAX_TRIES):
            solution = solve(lines_rules(size), [0] * size * size, rng)
            assert solution is not None
            less = random_inequalities(solution, size, difficulty["inequality_density"], rng)
            puzzle = make_puzzle(self._rules(size, less), solution, num_empty, rng)
            if puzzle is not None:
                break
        else:
            raise ValueError(f"could not generate a futoshiki with difficulty {difficulty}; widen it")
        rows = [puzzle[r * size : (r + 1) * size] for r in range(size)]
        shown = ", ".join(show_inequality(pair, rng) for pair in less) or "none"
        example = digits_text([[(r + c) % size + 1 for c in range(size)] for r in range(size)])
        prompt = (
            f"Fill in the {size}x{size} futoshiki so that every row and every column contains the digits 1 to "
            f"{size} exactly once and every inequality holds. _ is an empty cell; rRcC is the cell in row R, "
            f"column C (counted from 1 at the top left).\n{show_digit_grid(rows)}\nInequalities: {shown}\n"
            f"Answer with the {size} rows of the completed grid, top to bottom, each as {size} digits without "
            f"spaces, rows separated by /, for example {example}."
        )
        solved = digits_text(solution[r * size : (r + 1) * size] for r in range(size))
        return prompt, {"puzzle": rows, "less": less, "solution": solved}

    @staticmethod
    def _rules(size: int, less: list[list[int]]) -> GridRules:
        return lines_rules(size, [(r1 * size + c1, r2 * size + c2) for r1, c1, r2, c2 in less])

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[GridRules, list[int]]:
        rows = require_grid(ground_truth, "puzzle")
        size = len(rows)
        less = require(ground_truth, "less", list)
        for pair in less:
            if not (isinstance(pair, list) and len(pair) == 4 and all(isinstance(v, int) for v in pair)):
                raise ValueError(f"futoshiki 'less' entries must be [r1, c1, r2, c2], got {pair!r}")
            if not all(0 <= v < size for v in pair):
                raise ValueError(f"futoshiki inequality {pair} is outside the {size}x{size} grid")
        if len(rows[0]) != size:
            raise ValueError(f"futoshiki puzzle must be square, got {rows!r}")
        return self._rules(size, less), [v for row in rows for v in row]

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Cells (0 = empty) and the sorted inequalities."""
        rules, puzzle = self._parts(ground_truth)
        return f"{''.join(map(str, puzzle))}|{sorted(rules.less)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """A latin square that keeps the givens and satisfies every inequality."""
        rules, puzzle = self._parts(ground_truth)
        return score_grid(rules, puzzle, answer)

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """One deduction per line (candidates respect the inequalities with filled neighbours)."""
        noise = check_noise(noise)
        rules, puzzle = self._parts(problem.ground_truth)
        solution = [int(ch) for ch in require(problem.ground_truth, "solution", str) if ch.isdigit()]
        if count_solutions(rules, puzzle, 2) != 1 or len(solution) != len(puzzle):
            raise ValueError(f"futoshiki {problem.id} does not have a unique solution")
        return grid_trace(rules, puzzle, solution, rng, noise)
