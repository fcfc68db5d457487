"""Binary matrix distance: for every cell, the taxicab distance to the nearest 0.

Prompt::

    For every cell of this 0/1 matrix, give the distance to the nearest 0: the
    number of up/down/left/right steps (|row difference| + |column difference|).
    1 0 1
    1 1 1
    0 1 1
    Answer with the matrix of distances, numbers separated by spaces and rows
    separated by /, for example 1 0 1 / 1 1 2 / 0 1 2.

Generation: each cell is 0 with probability ``zero_density``, at least one 0.

Verification: the answer must be a matrix of the right shape of non-negative
integers (rows separated by ``/``, ``;`` or newlines; "unparseable" otherwise);
it is compared exactly with the multi-source BFS distances ("wrong value"
names the first wrong cell).

Trace: BFS layers: the cells at distance 1, 2, ... each as ``rRcC`` (the 0s
are distance 0). A noisy trace puts one cell one layer too far.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise
from thinkrl.tasks.puzzle import AnswerFormatError, cell_name, parse_number_grid, require_grid, unparseable
from thinkrl.tasks.registry import TASKS


def distances(matrix: list[list[int]]) -> list[list[int]]:
    """Taxicab distance of every cell to the nearest 0 (multi-source BFS)."""
    rows, cols = len(matrix), len(matrix[0])
    dist = [[-1] * cols for _ in range(rows)]
    queue: deque[tuple[int, int]] = deque()
    for r in range(rows):
        for c in range(cols):
            if matrix[r][c] == 0:
                dist[r][c] = 0
                queue.append((r, c))
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < rows and 0 <= nc < cols and dist[nr][nc] < 0:
                dist[nr][nc] = dist[r][c] + 1
                queue.append((nr, nc))
    return dist


def matrix_text(matrix: list[list[int]]) -> str:
    """``1 0 1 / 1 1 2``: the answer format."""
    return " / ".join(" ".join(map(str, row)) for row in matrix)


@TASKS.register("binary_matrix")
class BinaryMatrixTask(Task):
    """Distance from every cell of a 0/1 matrix to its nearest 0."""

    name = "binary_matrix"
    difficulty_knobs = (
        Knob("rows", int, 4, 1, 20, "matrix height"),
        Knob("cols", int, 4, 1, 20, "matrix width"),
        Knob("zero_density", float, 0.25, 0.01, 1.0, "chance that a cell is 0 (at least one always is)"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random 0/1 matrix with at least one 0."""
        height, width = difficulty["rows"], difficulty["cols"]
        matrix = [[0 if rng.random() < difficulty["zero_density"] else 1 for _ in range(width)] for _ in range(height)]
        if not any(0 in row for row in matrix):
            matrix[rng.randrange(height)][rng.randrange(width)] = 0
        shown = "\n".join(" ".join(map(str, row)) for row in matrix)
        prompt = (
            "For every cell of this 0/1 matrix, give the distance to the nearest 0: the number of up/down/left/"
            f"right steps (|row difference| + |column difference|).\n{shown}\n"
            "Answer with the matrix of distances, numbers separated by spaces and rows separated by /, for "
            "example 1 0 1 / 1 1 2 / 0 1 2."
        )
        return prompt, {"matrix": matrix, "solution": matrix_text(distances(matrix))}

    def _matrix(self, ground_truth: Mapping[str, Any]) -> list[list[int]]:
        matrix = require_grid(ground_truth, "matrix")
        if any(v not in (0, 1) for row in matrix for v in row) or not any(0 in row for row in matrix):
            raise ValueError("binary_matrix 'matrix' must hold 0s and 1s, at least one 0")
        return matrix

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The matrix."""
        return "/".join("".join(map(str, row)) for row in self._matrix(ground_truth))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Exactly the BFS distances."""
        matrix = self._matrix(ground_truth)
        try:
            given = parse_number_grid(answer, len(matrix), len(matrix[0]))
        except AnswerFormatError as error:
            return unparseable(error)
        expected = distances(matrix)
        for r, (got_row, want_row) in enumerate(zip(given, expected, strict=True)):
            for c, (got, want) in enumerate(zip(got_row, want_row, strict=True)):
                if got != want:
                    return Verdict.wrong("wrong value", f"{cell_name(r, c)} is {want}, not {got}")
        return Verdict.right("all distances right")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """BFS layers; noise pushes one cell one layer out."""
        noise = check_noise(noise)
        dist = distances(self._matrix(problem.ground_truth))
        if rng.random() < noise:
            cells = [(r, c) for r, row in enumerate(dist) for c, v in enumerate(row) if v > 0]
            r, c = rng.choice(cells or [(0, 0)])  # an all-zero matrix: misread a 0
            dist[r][c] += 1
        deepest = max(max(row) for row in dist)
        lines = ["distance 0: every 0"]
        for layer in range(1, deepest + 1):
            members = [cell_name(r, c) for r, row in enumerate(dist) for c, v in enumerate(row) if v == layer]
            lines.append(f"distance {layer}: {' '.join(members) or 'none'}")
        return Trace("\n".join(lines), matrix_text(dist))
