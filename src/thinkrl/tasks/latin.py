"""Digit-grid constraint puzzles (sudoku, futoshiki): rules, solver, puzzle maker, deduction trace.

A grid is a flat list of ``size * size`` ints, 0 for an empty cell, 1..size
otherwise. `GridRules` holds the all-different groups (rows, columns, boxes;
every group has ``size`` cells, so it holds every digit once) and the
inequalities ``(a, b)``: the value of cell ``a`` is less than that of ``b``.

`count_solutions` is a depth-first search with the most-constrained cell
first and bitmask candidates; it stops at ``limit`` (2 is enough to prove a
puzzle unique). `make_puzzle` empties cells of a full solution in random order
and keeps an emptied cell only while the puzzle stays unique. `deductions`
writes the steps a person would take: single candidates, the only place for a
digit in a group, and (when neither applies) a guess that the solution
confirms.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GridRules:
    """The rules of one digit grid.

    Fields:
        size: side length; digits are 1..size.
        groups: (name, cells) pairs; each group's cells hold different digits.
        less: (a, b) cell pairs with value[a] < value[b].
    """

    size: int
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    less: tuple[tuple[int, int], ...] = ()
    peers: tuple[tuple[int, ...], ...] = field(init=False, repr=False)
    bounds: tuple[tuple[tuple[int, bool], ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cells = self.size * self.size
        peers: list[set[int]] = [set() for _ in range(cells)]
        for _, group in self.groups:
            for cell in group:
                peers[cell].update(c for c in group if c != cell)
        bounds: list[list[tuple[int, bool]]] = [[] for _ in range(cells)]
        for a, b in self.less:
            bounds[a].append((b, True))  # a must be below b
            bounds[b].append((a, False))  # b must be above a
        object.__setattr__(self, "peers", tuple(tuple(sorted(p)) for p in peers))
        object.__setattr__(self, "bounds", tuple(tuple(b) for b in bounds))

    @property
    def full_mask(self) -> int:
        """Bit d set for every digit d in 1..size."""
        return ((1 << self.size) - 1) << 1


def lines_rules(size: int, less: Sequence[tuple[int, int]] = (), box: tuple[int, int] | None = None) -> GridRules:
    """Rows and columns all different (plus ``box`` = (height, width) boxes for sudoku) and ``less`` pairs."""
    groups = [(f"row {r + 1}", tuple(r * size + c for c in range(size))) for r in range(size)]
    groups += [(f"column {c + 1}", tuple(r * size + c for r in range(size))) for c in range(size)]
    if box is not None:
        height, width = box
        if height * width != size:
            raise ValueError(f"box {height}x{width} does not tile a {size}x{size} grid")
        for b in range(size):
            top, left = (b // (size // width)) * height, (b % (size // width)) * width
            cells = tuple((top + r) * size + left + c for r in range(height) for c in range(width))
            groups.append((f"box {b + 1}", cells))
    return GridRules(size, tuple(groups), tuple(less))


def candidates(rules: GridRules, grid: Sequence[int], cell: int) -> int:
    """Bitmask of the digits that ``cell`` may hold given the filled cells (bit d = digit d)."""
    mask = rules.full_mask
    for peer in rules.peers[cell]:
        mask &= ~(1 << grid[peer])
    for other, below in rules.bounds[cell]:
        value = grid[other]
        if value:
            mask &= ((1 << value) - 1) if below else ~((1 << (value + 1)) - 1)
    return mask


def digits_of(mask: int) -> list[int]:
    """The digits whose bits are set in ``mask``."""
    return [d for d in range(1, mask.bit_length()) if mask >> d & 1]


def count_solutions(rules: GridRules, grid: Sequence[int], limit: int = 2) -> int:
    """Number of completions of ``grid``, counting stops at ``limit``."""
    work = list(grid)
    for cell, value in enumerate(work):
        if value and not candidates(rules, work, cell) >> value & 1:
            return 0  # the givens already clash
    return _count(rules, work, limit, None)


def solve(rules: GridRules, grid: Sequence[int], rng: random.Random | None = None) -> list[int] | None:
    """One completion of ``grid`` (digits tried in random order when ``rng`` is given), or None."""
    work = list(grid)
    found: list[list[int]] = []
    _count(rules, work, 1, rng, found)
    return found[0] if found else None


def _count(
    rules: GridRules, grid: list[int], limit: int, rng: random.Random | None, found: list[list[int]] | None = None
) -> int:
    best, best_mask, best_count = -1, 0, 99
    for cell, value in enumerate(grid):
        if value:
            continue
        mask = candidates(rules, grid, cell)
        count = mask.bit_count()
        if count < best_count:
            best, best_mask, best_count = cell, mask, count
            if count <= 1:
                break
    if best < 0:
        if found is not None:
            found.append(list(grid))
        return 1
    total = 0
    options = digits_of(best_mask)
    if rng is not None:
        rng.shuffle(options)
    for digit in options:
        grid[best] = digit
        total += _count(rules, grid, limit - total, rng, found)
        if total >= limit:
            break
    grid[best] = 0
    return total


def make_puzzle(rules: GridRules, solution: Sequence[int], num_empty: int, rng: random.Random) -> list[int] | None:
    """Empty ``num_empty`` cells of ``solution`` keeping the solution unique; None if it cannot."""
    grid = list(solution)
    emptied = 0
    for cell in rng.sample(range(len(grid)), len(grid)):
        if emptied == num_empty:
            break
        grid[cell] = 0
        if count_solutions(rules, grid, 2) == 1:
            emptied += 1
        else:
            grid[cell] = solution[cell]
    return grid if emptied == num_empty else None


@dataclass(frozen=True)
class Deduction:
    """One trace step: ``cell`` gets ``digit`` because of ``reason`` (text for the trace)."""

    cell: int
    digit: int
    reason: str


def deductions(rules: GridRules, puzzle: Sequence[int], solution: Sequence[int]) -> list[Deduction]:
    """Fill ``puzzle`` step by step: single candidates, then hidden singles, else a guess from ``solution``."""
    grid = list(puzzle)
    steps: list[Deduction] = []
    while 0 in grid:
        step = _single(rules, grid) or _hidden_single(rules, grid) or _guess(rules, grid, solution)
        if step.digit != solution[step.cell]:
            raise AssertionError(f"deduction {step} contradicts the unique solution")  # pragma: no cover
        grid[step.cell] = step.digit
        steps.append(step)
    return steps


def _single(rules: GridRules, grid: list[int]) -> Deduction | None:
    for cell, value in enumerate(grid):
        if not value:
            options = digits_of(candidates(rules, grid, cell))
            if len(options) == 1:
                return Deduction(cell, options[0], "only candidate")
    return None


def _hidden_single(rules: GridRules, grid: list[int]) -> Deduction | None:
    for name, group in rules.groups:
        placed = {grid[c] for c in group}
        for digit in range(1, rules.size + 1):
            if digit in placed:
                continue
            spots = [c for c in group if not grid[c] and candidates(rules, grid, c) >> digit & 1]
            if len(spots) == 1:
                return Deduction(spots[0], digit, f"only place for {digit} in {name}")
    return None


def _guess(rules: GridRules, grid: list[int], solution: Sequence[int]) -> Deduction:
    empty = [c for c, v in enumerate(grid) if not v]
    cell = min(empty, key=lambda c: candidates(rules, grid, c).bit_count())
    options = ",".join(map(str, digits_of(candidates(rules, grid, cell))))
    return Deduction(cell, solution[cell], f"guess from {options}, it works out")
