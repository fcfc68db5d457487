"""The LaTeX commands, functions, brackets and matrix environments of the answer parser (`latex._Parser`).

A mixin of `thinkrl.rewards.math.latex._Parser`: these methods read tokens with the parser's ``peek``/``take``/
``accept``/``expect`` and call back into its grammar (``answer``, ``sum``, ``power``, ``atom``, ``_argument``,
``_group_text``, ``_exponent``). Every node is built with a sympy constructor; anything else raises `NotMath`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from thinkrl.rewards.math.tokens import CONSTANTS, FUNCTIONS, GREEK
from thinkrl.rewards.math.values import Bracket, MatrixValue, NotMath, Value, as_expr, binomial, check_size, power

_IGNORED = frozenset({"\\overline", "\\bar", "\\vec", "\\hat", "\\mathbf", "\\boldsymbol", "\\mathcal"})
_MATRIX_ENVS = frozenset({"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array", "vmatrix"})


class CommandsMixin:
    """``\\frac``, ``\\sqrt``, ``\\binom``, floors, sets, functions, brackets and matrices."""

    if TYPE_CHECKING:  # what the mixin uses of `latex._Parser`, which defines it
        def peek(self, offset: int = 0) -> tuple[str, str]: ...
        def take(self) -> tuple[str, str]: ...
        def accept(self, value: str) -> bool: ...
        def expect(self, value: str) -> None: ...
        def answer(self, closers: tuple[str, ...] = ()) -> list[Value]: ...
        def sum(self) -> Value: ...
        def power(self) -> Value: ...
        def atom(self) -> Value: ...
        def _exponent(self) -> sympy.Expr: ...
        def _group_text(self) -> str: ...
        def _argument(self) -> sympy.Expr: ...

    def _command(self, name: str) -> Value:
        if name == "\\frac":
            numerator = self._argument()
            return check_size(sympy.Mul(numerator, power(self._argument(), sympy.Integer(-1))))
        if name == "\\sqrt":
            index = None
            if self.accept("["):
                index = as_expr(self.sum())
                self.expect("]")
            radicand = self._argument()
            return check_size(sympy.sqrt(radicand) if index is None else power(radicand, 1 / index))
        if name == "\\binom":
            return binomial(self._argument(), self._argument())
        if name in ("\\lfloor", "\\lceil"):
            inner = as_expr(self.sum())
            self.expect("\\rfloor" if name == "\\lfloor" else "\\rceil")
            return (sympy.floor if name == "\\lfloor" else sympy.ceiling)(inner)
        if name == "\\{":
            if self.accept("\\}"):
                return Bracket("{", "}", ())
            items = self.answer(("\\}",))
            self.expect("\\}")
            return Bracket("{", "}", tuple(items))
        if name in ("\\emptyset", "\\varnothing"):
            return Bracket("{", "}", ())
        if name == "\\mathbb":
            if self._group_text() != "R":
                raise NotMath("number set other than R")
            return Bracket("(", ")", (-sympy.oo, sympy.oo))
        if name in _IGNORED:
            return self._argument()
        if name[1:] in CONSTANTS:
            return CONSTANTS[name[1:]]
        if name[1:] in FUNCTIONS:
            return self._function(name[1:])
        if name[1:] in GREEK:
            return sympy.Symbol(name[1:])
        raise NotMath(f"unsupported command {name}")

    def _function(self, name: str) -> sympy.Expr:
        base = None
        if name == "log" and self.accept("_"):
            base = self._argument()
        exponent = None
        if self.peek()[1] == "^":
            self.take()
            exponent = self._exponent()
        if self.peek()[1] in ("(", "{"):
            argument = as_expr(self.atom())
        else:
            argument = as_expr(self.power())
            while self.peek()[0] in ("num", "word"):
                argument = check_size(sympy.Mul(argument, as_expr(self.power())))
        func = FUNCTIONS[name]
        result = sympy.log(argument, base) if base is not None else func(argument)
        return power(result, exponent) if exponent is not None else result

    def _bracket(self, opener: str) -> Value:
        items = self.answer((")", "]"))
        closer = self.take()[1]
        if closer not in (")", "]"):
            raise NotMath(f"unclosed {opener!r}")
        if len(items) == 1 and opener + closer in ("()", "[]"):
            return items[0]
        return Bracket(opener, closer, tuple(items))

    def _matrix(self, begin: str) -> Value:
        env = begin[begin.index("{") + 1:-1]
        if not begin.startswith("\\begin") or env not in _MATRIX_ENVS:
            raise NotMath(f"unsupported environment {begin}")
        if env == "array" and self.peek()[1] == "{":
            self._group_text()  # column specification
        rows: list[tuple[sympy.Expr, ...]] = []
        row: list[sympy.Expr] = []
        while True:
            if self.peek()[0] != "env":
                row.append(as_expr(self.sum()))
            kind, value = self.take()
            if value == "&":
                continue
            if value == "\\\\" or kind == "env":
                if row:
                    rows.append(tuple(row))
                row = []
            if kind == "env":
                if value != f"\\end{{{env}}}":
                    raise NotMath("mismatched environment")
                break
            if value != "\\\\":
                raise NotMath(f"unexpected {value!r} in a matrix")
        if len({len(r) for r in rows}) != 1 or len(rows) * len(rows[0]) > 400:
            raise NotMath("ragged or huge matrix")
        if env == "vmatrix":
            if len(rows) != len(rows[0]) or len(rows) > 6:
                raise NotMath("determinant of a non-square or large matrix")
            return sympy.Matrix(rows).det()
        return MatrixValue(tuple(rows))
