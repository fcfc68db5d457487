"""Equality of parsed answers: exact where possible, numeric with a relative tolerance otherwise.

Expressions (`expressions_equal`):

1. structural equality of the sympy trees (sympy keeps them canonical: ``x+1`` is ``1+x``);
2. without free symbols: rationals compare exactly; other values (``\\sqrt{8}`` vs
   ``2\\sqrt{2}``, ``\\pi/2``) are evaluated to 30 significant digits and must agree to 1e-20
   relative; when either side contains a decimal literal (``0.3333``) the relative tolerance
   ``rel_tol`` (default 1e-6, inclusive) applies instead;
3. with free symbols: both sides are evaluated at 3 pseudo-random points over the union of their
   symbols (values in +-[0.5, 2.5], fixed seed) and must agree at each, which decides polynomial
   and rational identities with overwhelming probability and needs no ``simplify``;
4. percent and degree marks are tried both ways: ``50\\%`` equals ``50`` and ``0.5``;
   ``30^\\circ`` equals ``30`` and ``\\pi/6``.

Other values (`values_equal`): tuples and lists in order; sets and bare lists ("1, 2") as sets
(any order, repeats ignored); intervals by bracket types and ends; unions as sets of intervals;
matrices by shape and entries; an answer equation ``x = 5`` against a plain ``5`` by its last
side, a reference equation only when it is an assignment (symbols on the left); equations by
proportional sides (``y = 2x+1`` equals ``2x - y + 1 = 0``); inequalities by positively
proportional sides, and a one-variable inequality (``x \\ge 2``) against an interval
(``[2, \\infty)``), a list of disjoint ones (``x < -1 \\text{ or } x > 2``) against a union of
intervals; a singleton set against its element; text by `text_key`. Undefined values (``1:0``,
``3/0``) equal nothing.
"""

from __future__ import annotations

import itertools
import random

import mpmath
import sympy

from thinkrl.rewards.math.values import (
    DEGREE,
    MARKERS,
    PERCENT,
    Bracket,
    MatrixValue,
    Relation,
    SetUnion,
    Text,
    Value,
)

EXACT_TOL = 1e-20  # relative agreement required of 30-digit evaluations of exact values
_DIGITS = 30
_NUM_POINTS = 3
_FLIP = {">": "<", ">=": "<="}


def _number(expr: sympy.Expr, subs: dict | None = None) -> mpmath.mpc | mpmath.mpf | None:
    """``expr`` evaluated to `_DIGITS` digits as an mpmath number (None if not a finite number)."""
    try:
        value = expr.evalf(_DIGITS, subs=subs)
        if value.free_symbols or value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            return None
        number = value._to_mpmath(_DIGITS * 4)
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return None
    return number if mpmath.isfinite(number) else None


def _close(a: mpmath.mpf, b: mpmath.mpf, rel_tol: float) -> bool:
    with mpmath.workdps(_DIGITS + 10):
        diff = abs(a - b)
        scale = max(abs(a), abs(b))
        return bool(diff <= rel_tol * scale * (1 + 1e-9) or diff < 1e-25)


def _variants(expr: sympy.Expr) -> list[sympy.Expr]:
    """``expr`` with its percent/degree marks read both ways (just ``[expr]`` when it has none)."""
    if not expr.free_symbols & MARKERS:
        return [expr]
    out = [expr.xreplace({PERCENT: sympy.Integer(1), DEGREE: sympy.Integer(1)})]
    if PERCENT in expr.free_symbols:
        out.append(expr.xreplace({PERCENT: sympy.Rational(1, 100), DEGREE: sympy.Integer(1)}))
    if DEGREE in expr.free_symbols:
        out.append(expr.xreplace({DEGREE: sympy.pi / 180, PERCENT: sympy.Integer(1)}))
    return out


def _points(symbols: list[sympy.Symbol]) -> list[dict[sympy.Symbol, sympy.Float]]:
    rng = random.Random(20250511)
    points = []
    for _ in range(_NUM_POINTS * 2):
        point = {}
        for symbol in symbols:
            magnitude = rng.uniform(0.5, 2.5) * rng.choice((-1, 1))
            point[symbol] = sympy.Float(repr(magnitude), _DIGITS)
        points.append(point)
    return points


def _exact_equal(a: sympy.Expr, b: sympy.Expr, rel_tol: float) -> bool:
    if a == b:
        return True
    inexact = a.has(sympy.Float) or b.has(sympy.Float)
    tol = rel_tol if inexact else EXACT_TOL
    if a.is_Rational and b.is_Rational and not inexact:
        return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    if not symbols:
        va, vb = _number(a), _number(b)
        return va is not None and vb is not None and _close(va, vb, tol)
    agreed = 0
    for point in _points(symbols):
        va, vb = _number(a, point), _number(b, point)
        if va is None or vb is None:
            if (va is None) != (vb is None):
                return False
            continue
        if not _close(va, vb, tol):
            return False
        agreed += 1
        if agreed == _NUM_POINTS:
            return True
    return False


_UNDEFINED = (sympy.zoo, sympy.nan)


def expressions_equal(a: sympy.Expr, b: sympy.Expr, rel_tol: float) -> bool:
    """True if two parsed expressions are equal (see the module docstring).

    An undefined value (a division by zero such as ``1:0`` or ``3/0``, which sympy makes complex
    infinity, or ``0/0``) equals nothing: two of them would otherwise compare equal whatever they are.
    """
    if a.has(*_UNDEFINED) or b.has(*_UNDEFINED):
        return False
    if a == b:
        return True
    return any(_exact_equal(x, y, rel_tol) for x, y in itertools.product(_variants(a), _variants(b)))


def _pairs(rel: Relation) -> list[tuple[sympy.Expr, str]]:
    """A chain as ``(left - right, op)`` pairs with ``>``/``>=`` flipped to ``<``/``<=``."""
    out = []
    for left, op, right in zip(rel.exprs, rel.ops, rel.exprs[1:], strict=False):
        if op in _FLIP:
            left, op, right = right, _FLIP[op], left
        out.append((left - right, op))
    return out


def _proportional(a: sympy.Expr, b: sympy.Expr, positive: bool) -> bool:
    """True if ``a = c * b`` for a constant ``c != 0`` (``c > 0`` if ``positive``)."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    ratios = []
    for point in _points(symbols)[:_NUM_POINTS + 1] if symbols else [{}]:
        va, vb = _number(a, point or None), _number(b, point or None)
        if va is None or vb is None:
            return False
        if abs(vb) < 1e-25:
            if abs(va) >= 1e-25:
                return False
            continue
        ratios.append(va / vb)
    if not symbols and not ratios:
        return True
    if not ratios or abs(ratios[0]) < 1e-25 or (positive and (mpmath.im(ratios[0]) != 0 or mpmath.re(ratios[0]) < 0)):
        return False
    return all(_close(r, ratios[0], EXACT_TOL) for r in ratios)


def relations_equal(a: Relation, b: Relation) -> bool:
    """Equations with proportional sides; inequalities with positively proportional sides (any order)."""
    pairs_a, pairs_b = _pairs(a), _pairs(b)
    if len(pairs_a) != len(pairs_b):
        return False
    unused = list(pairs_b)
    for diff, op in pairs_a:
        match = next((p for p in unused if p[1] == op and _proportional(diff, p[0], op in ("<", "<="))), None)
        if match is None:
            return False
        unused.remove(match)
    return True


def _relation_as_interval(rel: Relation) -> Bracket | SetUnion | None:
    """An inequality of one name with constant bounds as an interval (``x >= 2`` -> ``[2, oo)``).

    The name is a symbol or symbols combined without numbers (``0 < f(x) < 1`` bounds ``f(x)``, parsed
    ``f*x``); ``0 < 2x < 1`` is not read as an interval, since it bounds ``x`` by (0, 1/2), not (0, 1).
    """
    names = [e for e in rel.exprs if e.free_symbols]
    if not names or any(n != names[0] for n in names) or any(op in ("=", "!=") for op in rel.ops):
        return None
    x = names[0]
    absolute = isinstance(x, sympy.Abs) and _is_name(x.args[0])
    if not absolute and not _is_name(x):
        return None
    low, high, low_open, high_open = -sympy.oo, sympy.oo, True, True
    for left, op, right in zip(rel.exprs, rel.ops, rel.exprs[1:], strict=False):
        if op in _FLIP:
            left, op, right = right, _FLIP[op], left
        if left == x and not right.free_symbols:
            high, high_open = right, op == "<"
        elif right == x and not left.free_symbols:
            low, low_open = left, op == "<"
        else:
            return None
    if absolute:
        return _absolute_bounds(low, high, low_open, high_open)
    return Bracket("(" if low_open else "[", ")" if high_open else "]", (low, high))


def _is_name(expr: sympy.Expr) -> bool:
    """A symbol, or symbols multiplied without numbers (``f(x)`` parses as ``f*x``); not ``2x``, not ``sin x``."""
    return expr.is_Symbol or (expr.is_Mul and all(arg.is_Symbol for arg in expr.args))


def _absolute_bounds(low: sympy.Expr, high: sympy.Expr, low_open: bool, high_open: bool) -> Bracket | SetUnion | None:
    """The values of ``z`` whose ``|z|`` lies between ``low`` and ``high``: ``1 <= |z| <= 2`` is ``[-2, -1] U [1, 2]``.

    ``low_open``/``high_open``: whether each bound is strict.
    """
    bounds = Bracket("(" if low_open else "[", ")" if high_open else "]", (low, high))
    mirror_open = "(" if high_open else "["
    try:
        if low < 0 or (low == 0 and not low_open):
            return Bracket(mirror_open, bounds.close, (-high, high))
        if low == 0:
            return SetUnion((Bracket(mirror_open, ")", (-high, sympy.Integer(0))), bounds))
        mirrored = Bracket(mirror_open, ")" if low_open else "]", (-high, -low))
        return SetUnion((mirrored, bounds))
    except TypeError:
        return None


def _ends(interval: Bracket) -> tuple[sympy.Expr, sympy.Expr]:
    """The two ends of an interval; TypeError when they are not expressions (never for `_relation_as_interval`'s)."""
    low, high = interval.items
    if not (isinstance(low, sympy.Expr) and isinstance(high, sympy.Expr)):
        raise TypeError("interval ends must be expressions")
    return low, high


def _disjoint(intervals: list[Bracket]) -> bool:
    """True if the intervals share no point (ends compared exactly; an unknown order counts as overlap)."""
    try:
        ordered = sorted(intervals, key=lambda b: _ends(b)[0])
        for left, right in zip(ordered, ordered[1:], strict=False):
            gap = _ends(right)[0] - _ends(left)[1]
            if not (gap > 0 or (gap == 0 and (left.close == ")" or right.open == "("))):
                return False
    except TypeError:
        return False
    return True


def _relations_as_set(value: Value) -> Value | None:
    """One-variable inequalities as the set they describe: one as its interval (``x >= 2`` -> ``[2, oo)``),
    a list of them in the same variable (``x < -1 or x > 2``) as the union of their intervals when those
    are disjoint (overlapping ones could mean "and"; "and"/"or" both read as a list separator)."""
    if isinstance(value, Relation):
        return _relation_as_interval(value)
    if not (isinstance(value, Bracket) and value.open == "" and len(value.items) > 1):
        return None
    relations = [item for item in value.items if isinstance(item, Relation)]
    if len(relations) != len(value.items):
        return None
    symbols = set().union(*(e.free_symbols for item in relations for e in item.exprs))
    intervals: list[Bracket] = []  # an |x| inequality may give a union of two: its parts count one by one
    for relation in relations:
        interval = _relation_as_interval(relation)
        if interval is None:
            return None
        intervals.extend(interval.parts if isinstance(interval, SetUnion) else (interval,))
    if len(symbols) != 1 or not _disjoint(intervals):
        return None
    return SetUnion(tuple(intervals))


def _unordered_equal(a: tuple[Value, ...], b: tuple[Value, ...], rel_tol: float) -> bool:
    """Set equality: every item of ``a`` equals some item of ``b`` and vice versa (repeats do not count)."""
    if not a or not b:
        return not a and not b
    return all(any(values_equal(x, y, rel_tol) for y in b) for x in a) and all(
        any(values_equal(x, y, rel_tol) for x in a) for y in b)


def _brackets_equal(a: Bracket, b: Bracket, rel_tol: float) -> bool:
    set_like = ("{", "")
    if a.open in set_like and b.open in set_like:
        return _unordered_equal(a.items, b.items, rel_tol)
    if (a.open, a.close) != (b.open, b.close) and "" not in (a.open, b.open):
        return False
    if "{" in (a.open, b.open):
        return False
    return len(a.items) == len(b.items) and all(
        values_equal(x, y, rel_tol) for x, y in zip(a.items, b.items, strict=True))


def _symbols_only(expr: sympy.Expr) -> bool:
    """True for ``x``, ``a_1``, ``NO/BO``: symbols combined without numbers (the left side of an assignment)."""
    return bool(expr.free_symbols) and all(
        atom.is_Symbol or atom in (sympy.Integer(1), sympy.Integer(-1)) for atom in expr.atoms())


def _assigned(rel: Relation) -> Relation:
    """An assignment chain ``x = 5 + 6 = 11`` as ``x = 11`` (other relations unchanged)."""
    if len(rel.ops) > 1 and all(op == "=" for op in rel.ops) and _symbols_only(rel.exprs[0]):
        return Relation((rel.exprs[0], rel.exprs[-1]), ("=",))
    return rel


def _unwrap_reference(ref: Value, answer: Value) -> Value:
    """An assignment reference (``x = 5``, ``NO/BO = 1/3``) read as its value when the answer is no relation."""
    if not isinstance(ref, Relation) or isinstance(answer, Relation):
        return ref
    if all(op == "=" for op in ref.ops) and _symbols_only(ref.exprs[0]):
        return ref.exprs[-1]
    if isinstance(answer, (Bracket, SetUnion)):
        return _relation_as_interval(ref) or ref
    return ref


def _as_set_against(value: Value, other: Value) -> Value:
    """``value`` read as an interval or union when it is a list of inequalities and ``other`` is a set."""
    if isinstance(other, (Bracket, SetUnion)) and isinstance(value, Bracket):
        return _relations_as_set(value) or value
    return value


def _unwrap_answer(answer: Value, ref: Value) -> Value:
    """An equation answer (``x = 5``, ``2 + 3 = 5``) read as its last side when the reference is no relation."""
    if not isinstance(answer, Relation) or isinstance(ref, Relation):
        return answer
    if all(op == "=" for op in answer.ops):
        return answer.exprs[-1]
    if isinstance(ref, (Bracket, SetUnion)):
        return _relation_as_interval(answer) or answer
    return answer


def values_equal(a: Value, b: Value, rel_tol: float = 1e-6) -> bool:
    """True if answer ``b`` equals reference ``a`` (see the module docstring for every kind).

    Symmetric except for relations: an answer equation ``x = 5`` is read as ``5`` against a plain
    reference, but a reference equation only when it is an assignment (``2x + z = 1`` is not ``1``).
    """
    a, b = _unwrap_reference(a, b), _unwrap_answer(b, a)
    a, b = _as_set_against(a, b), _as_set_against(b, a)
    if isinstance(a, SetUnion) and isinstance(b, Bracket) and len(a.parts) == 1:
        a = a.parts[0]
    if isinstance(b, SetUnion) and isinstance(a, Bracket) and len(b.parts) == 1:
        b = b.parts[0]
    if isinstance(a, Text) or isinstance(b, Text):
        # an empty key (an empty reference, `\text{}`, `.`, `\}`) says nothing: it equals nothing, or an empty
        # reference would score any punctuation-only answer correct
        return isinstance(a, Text) and isinstance(b, Text) and a.text == b.text and a.text != ""
    if isinstance(a, Relation) and isinstance(b, Relation):
        return relations_equal(_assigned(a), _assigned(b))
    if isinstance(a, Bracket) and isinstance(b, Bracket):
        return _brackets_equal(a, b, rel_tol)
    if isinstance(a, SetUnion) and isinstance(b, SetUnion):
        return _unordered_equal(a.parts, b.parts, rel_tol)
    if isinstance(a, MatrixValue) and isinstance(b, MatrixValue):
        return len(a.rows) == len(b.rows) and all(
            len(x) == len(y) and all(expressions_equal(p, q, rel_tol) for p, q in zip(x, y, strict=True))
            for x, y in zip(a.rows, b.rows, strict=True))
    if isinstance(a, Bracket) and a.open == "{" and len(a.items) == 1:
        return values_equal(a.items[0], b, rel_tol)
    if isinstance(b, Bracket) and b.open == "{" and len(b.items) == 1:
        return values_equal(a, b.items[0], rel_tol)
    if isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr):
        return expressions_equal(a, b, rel_tol)
    return False
