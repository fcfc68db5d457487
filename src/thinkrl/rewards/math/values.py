"""Parsed answer values and size-guarded sympy constructors.

A parsed answer is one `Value`:

- a sympy ``Expr`` (numbers, expressions; percent and degree marks are the symbols
  `PERCENT` and `DEGREE`, so ``50\\%`` is ``50*PERCENT``),
- `Text` (an answer that is not mathematics, compared as normalised text),
- `Relation` (an equation or inequality chain such as ``1 < x \\le 3``),
- `Bracket` (tuples, intervals, sets and bare comma lists; ``open``/``close`` say which),
- `SetUnion` (a union of brackets, e.g. ``(-\\infty, 1) \\cup (2, \\infty)``),
- `MatrixValue` (rows of values).

Every arithmetic node is built through `power`, `factorial`, `binomial`, `multiply`,
`matrix_sum` or `check_size`, which refuse results too large to compute quickly (``9^{9^{9^9}}``,
``1000000!``) by raising `TooLarge` before sympy starts the computation. This is
the cheap first line of defence; the worker's wall-clock limit is the second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import sympy

#: Largest number of decimal digits an exact integer result may have.
MAX_DIGITS = 100_000
#: Largest n for which n! is computed exactly (20000! has 77,338 digits).
MAX_FACTORIAL = 20_000

PERCENT = sympy.Symbol("%percent")
DEGREE = sympy.Symbol("%degree")
MARKERS = frozenset({PERCENT, DEGREE})


class TooLarge(ValueError):
    """A result would be too large to compute within the time limit."""


class NotMath(ValueError):
    """The text is not a mathematical expression this parser understands."""


@dataclass(frozen=True)
class Text:
    """A non-mathematical answer (a name, a word, a letter choice), compared as text."""

    text: str


@dataclass(frozen=True)
class Relation:
    """A chain ``exprs[0] ops[0] exprs[1] ops[1] ...``; ops are ``= != < <= > >=``."""

    exprs: tuple[sympy.Expr, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Bracket:
    """A bracketed or bare list of values.

    ``open``/``close``: ``"("``/``")"`` tuple or open interval, ``"["``/``"]"`` list or closed
    interval (mixed pairs are half-open intervals), ``"{"``/``"}"`` set, ``""``/``""`` a bare
    comma-separated list (``1, 2``).
    """

    open: str
    close: str
    items: tuple[Value, ...]


@dataclass(frozen=True)
class SetUnion:
    """A union of intervals or sets."""

    parts: tuple[Bracket, ...]


@dataclass(frozen=True)
class MatrixValue:
    """A matrix given row by row (``pmatrix``, ``bmatrix``, ...)."""

    rows: tuple[tuple[sympy.Expr, ...], ...]


Value = Union[sympy.Expr, Text, Relation, Bracket, SetUnion, MatrixValue]  # noqa: UP007 (runtime alias)


def _digits(value: sympy.Rational) -> float:
    """log10 of the larger of |numerator| and |denominator| (0 for 0 and +-1)."""
    big = max(abs(int(value.p)), abs(int(value.q)))
    return math.log10(big) if big > 1 else 0.0


def check_size(expr: sympy.Expr) -> sympy.Expr:
    """Return ``expr``, or raise `TooLarge` if it is a rational with more than `MAX_DIGITS` digits."""
    if isinstance(expr, sympy.Rational) and expr.q == 1 and int(expr.p).bit_length() > MAX_DIGITS * 3.33:
        raise TooLarge("integer result too large")
    if isinstance(expr, sympy.Rational) and expr.q != 1 and _digits(expr) > MAX_DIGITS:
        raise TooLarge("rational result too large")
    return expr


def power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """``base ** exponent``, refusing exact powers whose result would exceed `MAX_DIGITS` digits."""
    if isinstance(base, sympy.Rational) and isinstance(exponent, sympy.Rational) and exponent.p != 0:
        base_digits = _digits(base)
        if base_digits > 0:
            # log10(|exponent| * digits(base)), computed without overflowing a float
            size = math.log10(abs(int(exponent.p))) - math.log10(int(exponent.q)) + math.log10(base_digits)
            if size > math.log10(MAX_DIGITS):
                raise TooLarge(f"power with about 10^{size:.1f} digits")
    return check_size(sympy.Pow(base, exponent))


def factorial(n: sympy.Expr) -> sympy.Expr:
    """``n!`` for a non-negative integer ``n <= MAX_FACTORIAL`` (else `TooLarge` or `NotMath`)."""
    if not isinstance(n, sympy.Integer) or n < 0:
        raise NotMath("factorial of a non-integer")
    if n > MAX_FACTORIAL:
        # no f"{n}" here: printing an integer over 4,300 digits raises ValueError (Python's int-to-str limit)
        raise TooLarge(f"factorial of a number over {MAX_FACTORIAL} is too large")
    return sympy.factorial(n)


def binomial(n: sympy.Expr, k: sympy.Expr) -> sympy.Expr:
    """``C(n, k)``; integer arguments are evaluated only when the result is small enough."""
    if isinstance(n, sympy.Integer) and isinstance(k, sympy.Integer):
        smaller = min(int(k), int(n - k))
        if smaller > 0 and smaller * math.log10(max(int(n), 2)) > MAX_DIGITS:
            raise TooLarge("binomial coefficient too large")
    elif any(isinstance(v, sympy.Number) and abs(v) > MAX_FACTORIAL for v in (n, k)):
        raise TooLarge("binomial coefficient too large")
    return sympy.binomial(n, k)


def as_expr(value: Value) -> sympy.Expr:
    """``value`` if it is a sympy expression; raise `NotMath` for lists, relations and text."""
    if isinstance(value, sympy.Expr):
        return value
    raise NotMath(f"{type(value).__name__} used inside arithmetic")


MAX_MATRIX_ENTRIES = 400


def _as_matrix(value: MatrixValue) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix([list(row) for row in value.rows])


def _from_matrix(matrix: sympy.MatrixBase) -> MatrixValue:
    if matrix.rows * matrix.cols > MAX_MATRIX_ENTRIES:
        raise NotMath("matrix result too large")
    return MatrixValue(tuple(tuple(check_size(matrix[i, j]) for j in range(matrix.cols)) for i in range(matrix.rows)))


def multiply(left: Value, right: Value) -> Value:
    """``left * right``: numbers and expressions, a scalar times a matrix, or a matrix product of matching shapes."""
    if isinstance(left, MatrixValue) and isinstance(right, MatrixValue):
        a, b = _as_matrix(left), _as_matrix(right)
        if a.cols != b.rows:
            raise NotMath(f"matrix product of shapes {a.shape} and {b.shape}")
        return _from_matrix(a * b)
    if isinstance(left, MatrixValue):
        return _from_matrix(_as_matrix(left) * as_expr(right))
    if isinstance(right, MatrixValue):
        return _from_matrix(_as_matrix(right) * as_expr(left))
    return check_size(sympy.Mul(as_expr(left), as_expr(right)))


def matrix_sum(signs: list[int | str], terms: list[Value]) -> MatrixValue:
    """A sum of same-shape matrices (``\\pm`` and a scalar term are not matrix arithmetic)."""
    matrix_terms = [t for t in terms if isinstance(t, MatrixValue)]
    if "pm" in signs or len(matrix_terms) != len(terms):
        raise NotMath("sum of a matrix and a non-matrix")
    matrices = [_as_matrix(t) for t in matrix_terms]
    if len({m.shape for m in matrices}) != 1:
        raise NotMath("sum of matrices of different shapes")
    total = sympy.ImmutableMatrix.zeros(*matrices[0].shape)
    for sign, matrix in zip(signs, matrices, strict=True):
        total = total + matrix if sign == 1 else total - matrix
    return _from_matrix(total)
