"""Cryptarithm: a letter addition such as SEND + MORE = MONEY, each letter a different digit.

Prompt::

    Solve the cryptarithm SEND + MORE = MONEY: each letter stands for a different
    digit and no number starts with 0.
    Answer with every letter and its digit, in alphabetical order, separated by
    commas, for example A=1, B=2, C=3.

Generation: random addends (each ``num_digits`` or one fewer digits, no leading
zero) and their sum; the distinct digits get random distinct letters. With
``require_unique`` only puzzles that the column-by-column solver (`solve_count`)
finds exactly one solution for are kept; unique puzzles are rare below 5 digits
(about 1 in 5 two-word puzzles of 6 digits, 1 in 30 of 5 digits).

Verification: one ``L=d`` pair per letter (case-insensitive, any order; a
missing or unknown letter or a value that is not one digit is "unparseable");
two letters with one digit or a number starting with 0 is "illegal numbers";
a false sum is "wrong value". Any valid mapping is accepted.

Trace: the columns from the right, ``col 1: D+E+0 = 7+5+0 = 12 -> Y=2, carry 1``.
A noisy trace drops a carry (or adds one too many), so one result digit is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, parse_pairs, require_strings, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 500
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def value_of(word: str, digits: Mapping[str, int]) -> int:
    """The number spelled by ``word`` under ``digits``."""
    total = 0
    for letter in word:
        total = 10 * total + digits[letter]
    return total


def solve_count(addends: list[str], result: str, limit: int = 2) -> tuple[int, dict[str, int] | None]:
    """(number of solutions up to ``limit``, the first solution) by column-wise backtracking with carries."""
    width = len(result)
    columns = [[w[-1 - i] for w in addends if i < len(w)] for i in range(width)]
    order: list[str] = []
    for i in range(width):
        for letter in [*columns[i], result[-1 - i]]:
            if letter not in order:
                order.append(letter)
    # ready[k]: columns that can be checked once order[:k+1] are assigned
    ready = [0] * len(order)
    last = 0
    for i in range(width):
        last = max(last, *(order.index(letter) for letter in [*columns[i], result[-1 - i]]))
        ready[last] = i + 1
    for k in range(1, len(order)):
        ready[k] = max(ready[k], ready[k - 1])
    leading = {w[0] for w in [*addends, result] if len(w) > 1}
    digits: dict[str, int] = {}
    found: list[dict[str, int]] = []

    def columns_ok(upto: int) -> bool:
        carry = 0
        for i in range(upto):
            total = sum(digits[letter] for letter in columns[i]) + carry
            if total % 10 != digits[result[-1 - i]]:
                return False
            carry = total // 10
        return upto < width or carry == 0

    def assign(k: int, limit: int) -> int:
        if k == len(order):
            found.append(dict(digits))
            return 1
        count = 0
        used = set(digits.values())
        for digit in range(1 if order[k] in leading else 0, 10):
            if digit in used:
                continue
            digits[order[k]] = digit
            if columns_ok(ready[k]):
                count += assign(k + 1, limit - count)
            del digits[order[k]]
            if count >= limit:
                break
        return count

    count = assign(0, limit)
    return count, (found[0] if found else None)


def mapping_text(digits: Mapping[str, int]) -> str:
    """``A=1, B=2`` in alphabetical order."""
    return ", ".join(f"{letter}={digits[letter]}" for letter in sorted(digits))


@TASKS.register("cryptarithm")
class CryptarithmTask(Task):
    """Find the digit of every letter in a letter addition (any valid mapping counts)."""

    name = "cryptarithm"
    difficulty_knobs = (
        Knob("num_addends", int, 2, 2, 4, "how many words are added"),
        Knob("num_digits", int, 3, 2, 6, "digits of the longest addend (others have the same or one fewer)"),
        Knob("require_unique", bool, False, help="keep only puzzles with exactly one solution (needs 5+ digits)"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random addends, digits renamed to random letters (retried until unique if required)."""
        width = difficulty["num_digits"]
        for _ in range(MAX_TRIES):
            sizes = [width] + [rng.randint(max(1, width - 1), width) for _ in range(difficulty["num_addends"] - 1)]
            numbers = [rng.randint(10 ** (size - 1), 10**size - 1) for size in sizes]
            total = sum(numbers)
            used = sorted(set("".join(map(str, [*numbers, total]))))
            letters = dict(zip(used, rng.sample(LETTERS, len(used)), strict=True))
            addends = ["".join(letters[d] for d in str(n)) for n in numbers]
            result = "".join(letters[d] for d in str(total))
            solution = {letters[d]: int(d) for d in used}
            if not difficulty["require_unique"] or solve_count(addends, result)[0] == 1:
                break
        else:
            raise ValueError(f"could not generate a unique cryptarithm with difficulty {difficulty}; widen it")
        equation = f"{' + '.join(addends)} = {result}"
        prompt = (
            f"Solve the cryptarithm {equation}: each letter stands for a different digit and no number starts "
            "with 0.\nAnswer with every letter and its digit, in alphabetical order, separated by commas, "
            "for example A=1, B=2, C=3."
        )
        return prompt, {"addends": addends, "result": result, "solution": mapping_text(solution)}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[str], str]:
        addends = require_strings(ground_truth, "addends")
        result = require(ground_truth, "result", str)
        if not all(word.isalpha() and word.isupper() for word in [*addends, result]):
            raise ValueError(f"cryptarithm words must be upper-case letters, got {addends} = {result}")
        return addends, result

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The equation."""
        addends, result = self._parts(ground_truth)
        return f"{'+'.join(addends)}={result}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Distinct digits, no leading zero, and the sum must hold."""
        addends, result = self._parts(ground_truth)
        letters = sorted(set("".join([*addends, result])))
        try:
            pairs = parse_pairs(answer, letters)
        except AnswerFormatError as error:
            return unparseable(error)
        bad = [f"{k}={v}" for k, v in pairs.items() if not (len(v) == 1 and v.isdigit())]
        if bad:
            return Verdict.wrong("unparseable", f"values must be single digits, got {', '.join(bad)}")
        digits = {k: int(v) for k, v in pairs.items()}
        if len(set(digits.values())) < len(digits):
            return Verdict.wrong(ILLEGAL, "two letters have the same digit")
        starts = [w for w in [*addends, result] if len(w) > 1 and digits[w[0]] == 0]
        if starts:
            return Verdict.wrong(ILLEGAL, f"{starts[0]} starts with 0")
        left = sum(value_of(w, digits) for w in addends)
        if left != value_of(result, digits):
            return Verdict.wrong("wrong value", f"the sum is {left}, not {value_of(result, digits)}")
        return Verdict.right(mapping_text(digits))

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Column sums from the right with carries; noise miscomputes one column."""
        noise = check_noise(noise)
        addends, result = self._parts(problem.ground_truth)
        reference = self.check(problem.ground_truth, require(problem.ground_truth, "solution", str))
        if not reference.correct:
            raise ValueError(f"cryptarithm {problem.id}: the reference solution is wrong ({reference.detail})")
        digits = {pair.split("=")[0]: int(pair.split("=")[1]) for pair in problem.ground_truth["solution"].split(", ")}
        if rng.random() < noise:
            # A dropped carry (or a sum one too big) first; other slips only if those still solve it
            # (puzzles need not be unique); a digit that clashes with another letter's is always wrong.
            columns = rng.sample(range(len(result)), len(result))
            for slip, error in [(c, 0) for c in columns] + [(c, e) for e in range(1, 10) for c in columns]:
                slipped = dict(digits)
                lines = self._column_lines(addends, result, slipped, slip, error)
                if not self.check(problem.ground_truth, mapping_text(slipped)).correct:
                    return Trace("\n".join(lines), mapping_text(slipped))
            raise RuntimeError(f"could not write a noisy trace for cryptarithm {problem.id}")  # pragma: no cover
        lines = self._column_lines(addends, result, digits, slip=-1)
        return Trace("\n".join(lines), mapping_text(digits))

    @staticmethod
    def _column_lines(addends: list[str], result: str, digits: dict[str, int], slip: int, error: int = 0) -> list[str]:
        """One line per column from the right.

        At column ``slip`` the sum is written wrong (``error`` 0: the carry is
        dropped, or if it is 0 the sum comes out one too big; otherwise the sum
        is off by ``error``) and the result letter gets that digit in ``digits``.
        """
        lines, carry = [], 0
        for i in range(len(result)):
            letters = [w[-1 - i] for w in addends if i < len(w)]
            total = sum(digits[letter] for letter in letters) + carry
            written = total
            if i == slip:
                written = total + error if error else (total - carry if carry else total + 1)
            out = result[-1 - i]
            names = "+".join([*letters, str(carry)])
            values = "+".join([*(str(digits[letter]) for letter in letters), str(carry)])
            lines.append(f"col {i + 1}: {names} = {values} = {written} -> {out}={written % 10}, carry {total // 10}")
            if i == slip:
                digits[out] = written % 10
            carry = total // 10
        return lines
