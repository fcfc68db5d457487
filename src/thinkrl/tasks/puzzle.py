"""Helpers shared by the logic-puzzle tasks: answer parsing, grids, cell names, noise.

Verdict reasons of the puzzle tasks (`thinkrl.tasks.base.REASONS` is shared
with the number tasks, whose "illegal numbers" is reused as "breaks a rule of
the puzzle"; `ILLEGAL` names it once so it can be renamed in one place):

- ``unparseable``: the answer is not in the format the prompt asks for (wrong
  characters, wrong grid shape, a name that is not in the puzzle, ...);
- ``illegal numbers`` (`ILLEGAL`): well-formed, but it breaks a hard rule: it
  changes a given cell, walks through a wall, moves a disk onto a smaller one,
  uses a colour or digit that is not allowed, or uses other words than given;
- ``wrong value``: legal, but it does not solve the puzzle (a constraint is
  violated, the path is not shortest, the value differs).

Grid answers are parsed by `parse_char_grid` (one character per cell, rows
usually separated by ``/``) and `parse_number_grid` (numbers separated by
spaces, rows by ``/``). Both accept newlines or ``;`` between rows too, so a
grid written inside ``\\boxed{...}`` on several lines also parses.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from thinkrl.tasks.base import Verdict, require

ILLEGAL = "illegal numbers"
MAX_ANSWER_CHARS = 20_000  # longer answers are unparseable (keeps verification fast on junk)
_ROW_SEPARATORS = re.compile(r"\s*[/;\n]\s*")
_CELL_SEPARATORS = re.compile(r"[\s,|]+")
_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9]*)\s*(?:=|:|\bis\b(?:\s+an?\b)?)\s*([A-Za-z0-9]+)")


class AnswerFormatError(ValueError):
    """The answer does not have the format the prompt asks for (reason "unparseable")."""


def cell_name(row: int, col: int) -> str:
    """``r1c2`` for 0-based (row 0, col 1): rows and columns are 1-based in prompts and traces."""
    return f"r{row + 1}c{col + 1}"


def unparseable(error: Exception) -> Verdict:
    """The "unparseable" verdict for an `AnswerFormatError`."""
    return Verdict.wrong("unparseable", str(error))


def check_length(answer: str) -> None:
    """Raise AnswerFormatError when the answer is over `MAX_ANSWER_CHARS` characters."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise AnswerFormatError(f"answer has {len(answer)} characters, more than {MAX_ANSWER_CHARS}")


def parse_char_grid(answer: str, rows: int, cols: int, alphabet: str) -> list[str]:
    """A ``rows`` x ``cols`` grid of single characters from ``alphabet``.

    Spaces, commas, ``|``, ``/``, ``;`` and newlines are ignored, so
    ``12/34``, ``1 2 / 3 4`` and ``1234`` all give ``["12", "34"]``. Raises
    AnswerFormatError on another character or the wrong number of cells.
    """
    check_length(answer)
    cells = re.sub(r"[\s,|/;]+", "", answer)
    bad = sorted(set(cells) - set(alphabet))
    if bad:
        raise AnswerFormatError(f"unexpected character(s) {''.join(bad)!r}; allowed: {alphabet!r}")
    if len(cells) != rows * cols:
        raise AnswerFormatError(f"expected {rows}x{cols} = {rows * cols} cells, got {len(cells)}")
    return [cells[r * cols : (r + 1) * cols] for r in range(rows)]


def parse_number_grid(answer: str, rows: int, cols: int, max_digits: int = 6) -> list[list[int]]:
    """A ``rows`` x ``cols`` grid of non-negative integers: rows split on ``/ ; newline``, cells on spaces or commas."""
    check_length(answer)
    lines = [line for line in _ROW_SEPARATORS.split(answer.strip()) if line.strip()]
    if len(lines) != rows:
        raise AnswerFormatError(f"expected {rows} rows separated by '/', got {len(lines)}")
    grid = []
    for number, line in enumerate(lines, start=1):
        cells = [cell for cell in _CELL_SEPARATORS.split(line.strip()) if cell]
        if len(cells) != cols:
            raise AnswerFormatError(f"row {number} has {len(cells)} numbers, expected {cols}")
        for cell in cells:
            if not (cell.isdigit() and cell.isascii() and len(cell) <= max_digits):
                raise AnswerFormatError(f"row {number}: {cell[:20]!r} is not a non-negative integer")
        grid.append([int(cell) for cell in cells])
    return grid


def parse_pairs(answer: str, keys: Sequence[str], case_sensitive: bool = False) -> dict[str, str]:
    """``key=value`` pairs (also ``key: value``, ``key is a value``), each key of ``keys`` exactly once.

    Pairs may be separated by commas, semicolons, spaces or ``and``. Keys are
    matched case-insensitively unless ``case_sensitive``; the result maps the
    canonical key (as in ``keys``) to the value text (lower-cased). Raises
    AnswerFormatError on unknown, repeated or missing keys, or on text that is
    not a pair.
    """
    check_length(answer)
    canonical = {(k if case_sensitive else k.lower()): k for k in keys}
    found: dict[str, str] = {}
    position = 0
    for match in _PAIR.finditer(answer):
        _check_gap(answer[position : match.start()])
        position = match.end()
        raw = match[1] if case_sensitive else match[1].lower()
        if raw not in canonical:
            raise AnswerFormatError(f"{match[1]!r} is not one of {', '.join(keys)}")
        key = canonical[raw]
        if key in found:
            raise AnswerFormatError(f"{key} is given more than once")
        found[key] = match[2].lower()
    _check_gap(answer[position:])
    missing = [k for k in keys if k not in found]
    if missing:
        raise AnswerFormatError(f"missing: {', '.join(missing)}")
    return found


def _check_gap(text: str) -> None:
    """Only separators may stand between pairs."""
    if re.sub(r"[\s,;.]+|\band\b", "", text, flags=re.IGNORECASE):
        raise AnswerFormatError(f"unexpected text {text.strip()[:40]!r} between the pairs")


def parse_int_list(answer: str, count: int, low: int, high: int) -> list[int]:
    """Exactly ``count`` integers separated by spaces or commas; out of [low, high] raises AnswerFormatError.

    Callers that want to report out-of-range values as ILLEGAL pass a wide range
    and check themselves.
    """
    check_length(answer)
    cells = [cell for cell in _CELL_SEPARATORS.split(answer.strip()) if cell]
    if len(cells) != count:
        raise AnswerFormatError(f"expected {count} numbers separated by spaces, got {len(cells)}")
    values = []
    for cell in cells:
        if not (cell.isdigit() and cell.isascii() and len(cell) <= 6):
            raise AnswerFormatError(f"{cell[:20]!r} is not a non-negative integer")
        value = int(cell)
        if not low <= value <= high:
            raise AnswerFormatError(f"{value} is out of range {low}..{high}")
        values.append(value)
    return values


def require_grid(ground_truth: Mapping[str, Any], key: str) -> list[list[int]]:
    """``ground_truth[key]`` checked to be a non-empty rectangular list of int lists."""
    grid = require(ground_truth, key, list)
    if not grid or not all(isinstance(row, list) and len(row) == len(grid[0]) for row in grid):
        raise ValueError(f"ground truth {key!r} must be a rectangular list of lists, got {grid!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for row in grid for v in row):
        raise ValueError(f"ground truth {key!r} must hold ints, got {grid!r}")
    return grid


def require_strings(ground_truth: Mapping[str, Any], key: str) -> list[str]:
    """``ground_truth[key]`` checked to be a non-empty list of str."""
    values = require(ground_truth, key, list)
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"ground truth {key!r} must be a non-empty list of str, got {values!r}")
    return values


def digits_text(grid: Iterable[Iterable[int]]) -> str:
    """``"12/34"``: a grid of one-digit numbers as the answer format of the digit-grid tasks."""
    return "/".join("".join(str(v) for v in row) for row in grid)


def show_digit_grid(grid: Sequence[Sequence[int]], blank: str = "_") -> str:
    """Rows of space-separated digits, ``blank`` for 0, one row per line (for prompts)."""
    return "\n".join(" ".join(str(v) if v else blank for v in row) for row in grid)


def wrong_answer(candidates: Callable[[], str], is_correct: Callable[[str], bool], tries: int = 50) -> str:
    """The first answer from ``candidates()`` that ``is_correct`` rejects (for noisy traces).

    Raises RuntimeError if every try was still correct (a bug in the caller's corruption).
    """
    for _ in range(tries):
        text = candidates()
        if not is_correct(text):
            return text
    raise RuntimeError("could not corrupt the solution into a wrong answer")


def shuffled(values: Iterable[Any], rng: random.Random) -> list[Any]:
    """A shuffled copy of ``values`` as a list."""
    out = list(values)
    rng.shuffle(out)
    return out
