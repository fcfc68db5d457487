"""Grid puzzles (sudoku, mini sudoku, futoshiki, kakurasu, nonogram, binary matrix): verdicts and brute-force checks.

Uniqueness and answers are checked against brute-force enumerations written
here, sharing no code with thinkrl.
"""

from __future__ import annotations

import itertools
import random

import pytest

from thinkrl.tasks import get_task


def rows_of(text: str) -> list[list[int]]:
    return [[int(ch) for ch in row] for row in text.split("/")]


def text_of(grid: list[list[int]]) -> str:
    return "/".join("".join(map(str, row)) for row in grid)


# ---------------------------------------------------------------- sudoku


def brute_sudoku_solutions(puzzle: list[list[int]], box: tuple[int, int]) -> list[list[list[int]]]:
    """Every completion, by filling rows with permutations (fine for 4x4)."""
    n = len(puzzle)
    out = []

    def ok(grid: list[tuple[int, ...]]) -> bool:
        for c in range(n):
            column = [row[c] for row in grid]
            if len(set(column)) < len(column):
                return False
        height, width = box
        for top in range(0, len(grid), height):
            for left in range(0, n, width):
                cells = [
                    grid[r][c] for r in range(top, min(top + height, len(grid))) for c in range(left, left + width)
                ]
                if len(set(cells)) < len(cells):
                    return False
        return True

    def extend(grid: list[tuple[int, ...]]) -> None:
        if len(grid) == n:
            out.append([list(row) for row in grid])
            return
        given = puzzle[len(grid)]
        for perm in itertools.permutations(range(1, n + 1)):
            if all(g in (0, v) for g, v in zip(given, perm, strict=True)) and ok([*grid, perm]):
                extend([*grid, perm])

    extend([])
    return out


def test_mini_sudoku_is_unique_by_brute_force() -> None:
    task = get_task("mini_sudoku")
    for seed in range(15):
        problem = task.generate(random.Random(seed), num_empty=10)
        puzzle = problem.ground_truth["puzzle"]
        assert sum(v == 0 for row in puzzle for v in row) == 10
        solutions = brute_sudoku_solutions(puzzle, (2, 2))
        assert solutions == [rows_of(problem.ground_truth["solution"])]


def test_sudoku_givens_and_grid() -> None:
    problem = get_task("sudoku").generate(random.Random(0), num_empty=45)
    puzzle, solution = problem.ground_truth["puzzle"], rows_of(problem.ground_truth["solution"])
    assert sum(v == 0 for row in puzzle for v in row) == 45
    for r in range(9):
        assert sorted(solution[r]) == list(range(1, 10))
        assert sorted(row[r] for row in solution) == list(range(1, 10))
        assert all(p in (0, s) for p, s in zip(puzzle[r], solution[r], strict=True))
    for br, bc in itertools.product(range(3), range(3)):
        assert sorted(solution[3 * br + r][3 * bc + c] for r in range(3) for c in range(3)) == list(range(1, 10))
    task = get_task("sudoku")
    assert task.verify(problem, text_of(solution)).correct
    r, c = next((r, c) for r in range(9) for c in range(9) if puzzle[r][c])
    changed = [row[:] for row in solution]
    changed[r][c] = changed[r][c] % 9 + 1
    assert task.verify(problem, text_of(changed)).reason == "illegal numbers"
    r, c = next((r, c) for r in range(9) for c in range(9) if not puzzle[r][c])
    changed = [row[:] for row in solution]
    changed[r][c] = changed[r][c] % 9 + 1
    assert task.verify(problem, text_of(changed)).reason == "wrong value"


@pytest.fixture(scope="module")
def mini() -> tuple:
    problem = get_task("mini_sudoku").generate(random.Random(3), num_empty=8)
    return problem, rows_of(problem.ground_truth["solution"])


def test_mini_sudoku_verdicts(mini) -> None:
    problem, grid = mini
    task = get_task("mini_sudoku")
    puzzle = problem.ground_truth["puzzle"]
    assert task.verify(problem, text_of(grid)).correct
    assert task.verify(problem, "\\boxed{" + "\n".join(" ".join(map(str, row)) for row in grid) + "}").correct
    assert task.verify(problem, "\\boxed{" + "\n".join("".join(map(str, r)) for r in grid) + "}").correct
    given = next((r, c) for r in range(4) for c in range(4) if puzzle[r][c])
    changed = [row[:] for row in grid]
    changed[given[0]][given[1]] = changed[given[0]][given[1]] % 4 + 1
    assert task.verify(problem, text_of(changed)).reason == "illegal numbers"
    empty = [(r, c) for r in range(4) for c in range(4) if not puzzle[r][c]]
    r, c = empty[0]
    broken = [row[:] for row in grid]
    broken[r][c] = broken[r][c] % 4 + 1  # keeps the givens, repeats a digit
    assert task.verify(problem, text_of(broken)).reason == "wrong value"
    assert task.verify(problem, text_of(grid)[:-1]).reason == "unparseable"  # 15 cells
    assert task.verify(problem, text_of(grid).replace("4", "5", 1)).reason == "unparseable"
    assert task.verify(problem, text_of(grid).replace("1", "0", 1)).reason == "unparseable"
    assert task.verify(problem, "the grid is solved").reason == "unparseable"


# ---------------------------------------------------------------- futoshiki


def brute_futoshiki(puzzle: list[list[int]], less: list[list[int]]) -> list[list[list[int]]]:
    n = len(puzzle)
    out = []
    for rows in itertools.product(itertools.permutations(range(1, n + 1)), repeat=n):
        if any(len({row[c] for row in rows}) < n for c in range(n)):
            continue
        if any(puzzle[r][c] not in (0, rows[r][c]) for r in range(n) for c in range(n)):
            continue
        if all(rows[a][b] < rows[c][d] for a, b, c, d in less):
            out.append([list(row) for row in rows])
    return out


def test_futoshiki_is_unique_by_brute_force_and_inequalities_show() -> None:
    task = get_task("futoshiki")
    for seed in range(6):
        problem = task.generate(random.Random(seed), size=4, empty_fraction=0.8, inequality_density=0.4)
        truth = problem.ground_truth
        assert brute_futoshiki(truth["puzzle"], truth["less"]) == [rows_of(truth["solution"])]
        for r1, c1, r2, c2 in truth["less"]:
            assert abs(r1 - r2) + abs(c1 - c2) == 1  # neighbours only
            low, high = f"r{r1 + 1}c{c1 + 1}", f"r{r2 + 1}c{c2 + 1}"
            assert f"{low} < {high}" in problem.prompt or f"{high} > {low}" in problem.prompt


def test_futoshiki_verdicts() -> None:
    task = get_task("futoshiki")
    # r1c1 < r1c2 < r1c3 makes row 1 = 123; r3c1 < r2c1 picks rows 312 then 231; r3c3 = 1 is given.
    truth = {"puzzle": [[0, 0, 0], [0, 0, 0], [0, 0, 1]], "less": [[0, 0, 0, 1], [0, 1, 0, 2], [2, 0, 1, 0]]}
    assert brute_futoshiki(truth["puzzle"], truth["less"]) == [[[1, 2, 3], [3, 1, 2], [2, 3, 1]]]
    assert task.verify(truth, "123/312/231").correct
    assert task.verify(truth, "Answer: 1 2 3 / 3 1 2 / 2 3 1").correct
    assert task.verify(truth, "123/231/312").reason == "illegal numbers"  # the given r3c3 = 1 became 2
    assert task.verify(truth, "123/312/221").reason == "wrong value"  # column 1 repeats 2
    assert task.verify(truth, "213/132/321").reason == "wrong value"  # latin, givens kept, r1c1 < r1c2 fails
    assert task.verify(truth, "1234/2341/3412/4123").reason == "unparseable"
    assert task.verify(truth, "123/312/23_").reason == "unparseable"


# ---------------------------------------------------------------- kakurasu


def brute_kakurasu(row_sums: list[int], col_sums: list[int]) -> list[list[list[int]]]:
    height, width = len(row_sums), len(col_sums)
    out = []
    for bits in itertools.product((0, 1), repeat=height * width):
        grid = [list(bits[r * width : (r + 1) * width]) for r in range(height)]
        if all(sum((c + 1) * grid[r][c] for c in range(width)) == row_sums[r] for r in range(height)) and all(
            sum((r + 1) * grid[r][c] for r in range(height)) == col_sums[c] for c in range(width)
        ):
            out.append(grid)
    return out


def test_kakurasu_is_unique_by_brute_force() -> None:
    task = get_task("kakurasu")
    for (rows, cols), seeds in (((3, 3), range(6)), ((2, 4), range(4)), ((4, 4), range(2))):
        for seed in seeds:
            truth = task.generate(random.Random(seed), rows=rows, cols=cols).ground_truth
            assert brute_kakurasu(truth["row_sums"], truth["col_sums"]) == [rows_of(truth["solution"])]


def test_kakurasu_verdicts() -> None:
    task = get_task("kakurasu")
    truth = {"row_sums": [1, 2, 3], "col_sums": [1, 2, 3]}  # the diagonal; also 100/010/... only
    assert brute_kakurasu(truth["row_sums"], truth["col_sums"]) == [[[1, 0, 0], [0, 1, 0], [0, 0, 1]]]
    assert task.verify(truth, "100/010/001").correct
    assert task.verify(truth, "\\boxed{1 0 0\n0 1 0\n0 0 1}").correct
    assert task.verify(truth, "1 0 0\n0 1 0\n0 0 1").reason == "unparseable"  # only the last line is read
    assert task.verify(truth, "100/010/110").reason == "wrong value"
    assert task.verify(truth, "100/010/002").reason == "unparseable"
    assert task.verify(truth, "100/010").reason == "unparseable"
    wide = {"row_sums": [4], "col_sums": [1, 0, 1]}  # one row, three columns: cells 1 and 3
    assert task.verify(wide, "101").correct and task.verify(wide, "011").reason == "wrong value"


# ---------------------------------------------------------------- nonogram


def runs(line: list[int]) -> list[int]:
    text = "".join(map(str, line))
    return [len(part) for part in text.split("0") if part] or [0]


def brute_nonogram(rows: list[list[int]], cols: list[list[int]]) -> list[list[list[int]]]:
    height, width = len(rows), len(cols)
    row_options = [
        [list(bits) for bits in itertools.product((0, 1), repeat=width) if runs(list(bits)) == clue] for clue in rows
    ]
    out = []
    for grid in itertools.product(*row_options):
        if all(runs([grid[r][c] for r in range(height)]) == cols[c] for c in range(width)):
            out.append([list(row) for row in grid])
    return out


def test_nonogram_is_unique_by_brute_force() -> None:
    task = get_task("nonogram")
    for seed in range(10):
        truth = task.generate(random.Random(seed), rows=4, cols=5).ground_truth
        assert brute_nonogram(truth["rows"], truth["cols"]) == [rows_of(truth["solution"])]


def test_nonogram_verdicts() -> None:
    task = get_task("nonogram")
    truth = {"rows": [[2], [1], [0]], "cols": [[1], [2], [0]]}
    assert brute_nonogram(truth["rows"], truth["cols"]) == [[[1, 1, 0], [0, 1, 0], [0, 0, 0]]]
    assert task.verify(truth, "110/010/000").correct
    assert task.verify(truth, "110/100/000").reason == "wrong value"
    assert task.verify(truth, "##./.#./...").reason == "unparseable"  # the prompt asks for 1 and 0
    assert task.verify(truth, "110/010").reason == "unparseable"


# ---------------------------------------------------------------- binary matrix


def test_binary_matrix_against_brute_force() -> None:
    task = get_task("binary_matrix")
    for seed in range(20):
        problem = task.generate(random.Random(seed), rows=4, cols=6, zero_density=0.2)
        matrix = problem.ground_truth["matrix"]
        zeros = [(r, c) for r in range(4) for c in range(6) if matrix[r][c] == 0]
        expected = [[min(abs(r - zr) + abs(c - zc) for zr, zc in zeros) for c in range(6)] for r in range(4)]
        answer = " / ".join(" ".join(map(str, row)) for row in expected)
        assert task.verify(problem, answer).correct
        assert task.verify(problem, "\\boxed{" + "\n".join(" ".join(map(str, row)) for row in expected) + "}").correct
        expected[0][0] += 1
        assert task.verify(problem, " / ".join(" ".join(map(str, row)) for row in expected)).reason == "wrong value"


def test_binary_matrix_verdicts() -> None:
    task = get_task("binary_matrix")
    truth = {"matrix": [[1, 1, 1], [1, 1, 0]]}
    assert task.verify(truth, "3 2 1 / 2 1 0").correct
    assert task.verify(truth, "3,2,1;2,1,0").correct
    assert task.verify(truth, "3 2 1 / 2 1 1").reason == "wrong value"
    assert task.verify(truth, "3 2 1 / 2 1").reason == "unparseable"
    assert task.verify(truth, "3 2 1 / 2 1 -0").reason == "unparseable"
    assert task.verify(truth, "321/210").reason == "unparseable"
    with pytest.raises(ValueError, match="matrix"):
        task.verify({"matrix": [[1, 1]]}, "1 2")  # no zero: malformed ground truth
