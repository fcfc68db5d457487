r"""A recursive-descent parser for LaTeX / ASCII answers that builds sympy objects with constructors.

No text is ever handed to ``sympify``, ``parse_expr`` or ``eval``: the tokenizer accepts a
fixed alphabet, the parser knows a fixed set of commands, and every node is built with a
sympy constructor (``sympy.Add``, ``sympy.Mul``, the size-guarded `power`, `factorial`,
`binomial` of `thinkrl.rewards.math.values`). Anything else raises `NotMath`, and the caller
compares the answer as text.

Grammar (lowest precedence first)::

    answer   := item ((',' | ';' | 'and' | 'or') item)*         several items: a bare list
    item     := union (relop union)*          relop: = != < <= > >= \approx; "x \in S" and "(x, y) = T" give S, T
                                              (a chain is cut at its first \approx: `_drop_approximation`)
    union    := sum (('\cup' | 'U') sum)*
    sum      := ['+'|'-'|'\pm'] term (('+' | '-' | '\pm') term)*
    term     := signed (('*' | '\cdot' | '\times' | '/' | '\div' | ':') signed | implicit product)*
    signed   := ('-' | '+') signed | power
    power    := postfix (('^' | '**') exponent)?                 right associative
    postfix  := atom ('!' | '\%' | '\degree')*
    atom     := number | letter[_sub] | function | \frac | \sqrt | \binom | |sum| | \lfloor..\rfloor
              | '(' / '[' answer ')' / ']' | '{' answer '}' | '\{' answer '\}' | matrix environment

Conventions: adjacent letters multiply (``xy``), a digit run after ``^`` is one number
(``2^10`` = 1024), an integer directly before ``\frac`` with integer parts is a mixed number
(``3\frac{1}{2}`` = 7/2), ``e`` is Euler's number and ``i`` the imaginary unit.
"""

from __future__ import annotations

import sympy

from thinkrl.rewards.math.latex_commands import CommandsMixin
from thinkrl.rewards.math.tokens import RELATIONS, tokenize
from thinkrl.rewards.math.values import (
    DEGREE,
    PERCENT,
    Bracket,
    MatrixValue,
    NotMath,
    Relation,
    SetUnion,
    Value,
    as_expr,
    binomial,
    check_size,
    factorial,
    matrix_sum,
    multiply,
    power,
)

MAX_DEPTH = 60  # nesting depth of the parser (deeper input is not maths a model writes)
_TIMES = frozenset({"*", "\\cdot", "\\times", "\\ast"})
_DIVIDE = frozenset({"/", "\\div", ":"})  # a ratio 3:4 is the number 3/4
_SEPARATORS = frozenset({",", ";", "and", "or"})


class _Parser(CommandsMixin):
    """Parses one token list into a `Value` (see the module docstring for the grammar)."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] != "end":
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise NotMath(f"expected {value!r}, got {self.peek()[1]!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise NotMath("nesting too deep")

    # -- grammar -------------------------------------------------------------------------------
    def answer(self, closers: tuple[str, ...] = ()) -> list[Value]:
        items = [self.item()]
        while self.peek()[1] in _SEPARATORS and self.peek()[0] == "op":
            self.take()
            if self.peek()[1] in closers or self.peek()[0] == "end":
                break
            items.append(self.item())
        return items

    def item(self) -> Value:
        first = self.union()
        exprs, ops = [first], []
        while self.peek()[1] in RELATIONS:
            op = RELATIONS[self.take()[1]]
            if op == "in":
                return self.union()
            if op == "=" and isinstance(first, Bracket) and all(isinstance(v, sympy.Symbol) for v in first.items):
                return self.union()  # (x, y) = (1, 2): the names go, the values stay
            ops.append(op)
            exprs.append(as_expr(self.union()))
        if not ops:
            return first
        exprs, ops = _drop_approximation([as_expr(e) for e in exprs], ops)
        return Relation(tuple(exprs), tuple(ops)) if ops else exprs[0]

    def union(self) -> Value:
        first = self.sum()
        parts = [first]
        while self.peek()[1] == "\\cup" or (self.peek() == ("word", "U") and isinstance(parts[-1], Bracket)):
            self.take()
            parts.append(self.sum())
        if len(parts) == 1:
            return first
        brackets = [p for p in parts if isinstance(p, Bracket)]
        if len(brackets) != len(parts):
            raise NotMath("union of non-sets")
        return SetUnion(tuple(brackets))

    def sum(self) -> Value:
        signs = [self._sign()]
        terms = [self.term()]
        while self.peek()[1] in ("+", "-", "\\pm", "\\mp"):
            signs.append(self._sign())
            terms.append(self.term())
        if len(terms) == 1 and signs[0] == 1:
            return terms[0]
        if any(isinstance(t, MatrixValue) for t in terms):
            return matrix_sum(signs, terms)
        exprs = [as_expr(t) for t in terms]
        if "pm" not in signs:
            return check_size(sympy.Add(*[e if s == 1 else -e for s, e in zip(signs, exprs, strict=True)]))
        if signs.count("pm") > 1:
            raise NotMath("more than one \\pm")
        plus = [e if s in (1, "pm") else -e for s, e in zip(signs, exprs, strict=True)]
        minus = [e if s == 1 else -e for s, e in zip(signs, exprs, strict=True)]
        return Bracket("", "", (check_size(sympy.Add(*plus)), check_size(sympy.Add(*minus))))

    def _sign(self) -> int | str:
        token = self.peek()[1]
        if token in ("+", "-", "\\pm", "\\mp"):
            self.take()
            return {"+": 1, "-": -1}.get(token, "pm")
        return 1

    def term(self) -> Value:
        value = self.signed()
        while True:
            token = self.peek()
            if token[1] in _TIMES:
                self.take()
                value = multiply(value, self.signed())
            elif token[1] in _DIVIDE:
                self.take()
                right = power(as_expr(self.signed()), sympy.Integer(-1))
                value = check_size(sympy.Mul(as_expr(value), right))
            elif token == ("word", "U") and isinstance(value, Bracket):
                return value
            elif self._starts_atom(token):
                value = self._implicit_product(value)
            else:
                return value

    def _implicit_product(self, left: Value) -> Value:
        if self.peek()[1] == "\\frac" and isinstance(left, sympy.Integer) and self.tokens[self.pos - 1][0] == "num":
            mark = self.pos
            fraction = self.power()
            if isinstance(fraction, sympy.Rational) and 0 < fraction < 1 and self._plain_fraction(mark):
                return left + fraction  # mixed number 3\frac{1}{2}
            return check_size(sympy.Mul(left, as_expr(fraction)))
        return multiply(left, self.power())

    def _plain_fraction(self, start: int) -> bool:
        """True if tokens[start:pos] are exactly ``\\frac{int}{int}``."""
        values = [t[1] for t in self.tokens[start:self.pos]]
        return len(values) == 7 and values[1] == "{" and values[3:5] == ["}", "{"] and values[6] == "}"

    @staticmethod
    def _starts_atom(token: tuple[str, str]) -> bool:
        kind, value = token
        if kind in ("num", "word"):
            return True
        if kind == "env":
            return value.startswith("\\begin")
        if kind == "cmd":
            return value not in _TIMES and value not in _DIVIDE and value not in RELATIONS and value not in (
                "\\cup", "\\pm", "\\mp", "\\%", "\\degree", "\\choose", "\\}", "\\\\", "\\right", "\\rfloor", "\\rceil")
        return value in ("(", "{")

    def signed(self) -> Value:
        if self.accept("-"):
            return check_size(-as_expr(self.signed()))
        if self.accept("+"):
            return self.signed()
        return self.power()

    def power(self) -> Value:
        base = self.postfix()
        if self.peek()[1] not in ("^", "**"):
            return base
        self.take()
        if self.accept("\\degree"):
            return self._postfix_marks(as_expr(base) * DEGREE)
        exponent = self._exponent()
        return self._postfix_marks(power(as_expr(base), exponent))

    def _exponent(self) -> sympy.Expr:
        if self.accept("-"):
            return -self._exponent()
        if self.accept("+"):
            return self._exponent()
        return as_expr(self.power())

    def postfix(self) -> Value:
        return self._postfix_marks(self.atom())

    def _postfix_marks(self, value: Value) -> Value:
        while True:
            if self.accept("!"):
                value = factorial(as_expr(value))
            elif self.accept("\\%"):
                value = as_expr(value) * PERCENT
            elif self.accept("\\degree"):
                value = as_expr(value) * DEGREE
            else:
                return value

    def atom(self) -> Value:
        self._enter()
        try:
            kind, value = self.take()
            if kind == "num":
                return _number(value)
            if kind == "word":
                return self._letter(value)
            if kind == "env":
                return self._matrix(value)
            if kind == "cmd":
                return self._command(value)
            if value in ("(", "["):
                return self._bracket(value)
            if value == "{":
                items = self.answer(("}",))
                if len(items) == 1 and self.accept("\\choose"):
                    items = [binomial(as_expr(items[0]), as_expr(self.sum()))]
                self.expect("}")
                return items[0] if len(items) == 1 else Bracket("{", "}", tuple(items))
            if value == "|":
                inner = as_expr(self.sum())
                self.expect("|")
                return sympy.Abs(inner)
            raise NotMath(f"unexpected {value!r}")
        finally:
            self.depth -= 1

    def _letter(self, letter: str) -> sympy.Expr:
        if self.peek()[1] == "_":
            self.take()
            sub = self._group_text()
            return sympy.Symbol(f"{letter}_{sub}")
        return {"e": sympy.E, "i": sympy.I}.get(letter) or sympy.Symbol(letter)

    def _group_text(self) -> str:
        """The raw token text of a ``{...}`` group or of one token (for subscripts and environments)."""
        if not self.accept("{"):
            return self.take()[1]
        parts: list[str] = []
        depth = 1
        while True:
            kind, value = self.take()
            if kind == "end":
                raise NotMath("unclosed brace")
            depth += {"{": 1, "}": -1}.get(value, 0)
            if depth == 0:
                return "".join(parts)
            parts.append(value)

    def _argument(self) -> sympy.Expr:
        """A command argument: a ``{...}`` group, or one token (only its first digit: ``\\frac12``)."""
        kind, value = self.peek()
        if value == "{":
            self.take()
            items = self.answer(("}",))
            self.expect("}")
            if len(items) != 1:
                raise NotMath("list as a command argument")
            return as_expr(items[0])
        if kind == "num" and len(value) > 1:
            self.tokens[self.pos] = ("num", value[1:])
            return sympy.Integer(int(value[0]))
        return as_expr(self.atom())


def _drop_approximation(exprs: list[sympy.Expr], ops: list[str]) -> tuple[list[sympy.Expr], list[str]]:
    r"""Cut a chain at its first ``\approx`` (op ``~``): ``x = 1/3 \approx 0.33`` is ``x = 1/3``.

    When only names precede it (``x \approx 0.33``) the approximation is the answer given: ``x = 0.33``.
    """
    if "~" not in ops:
        return exprs, ops
    first = ops.index("~")
    names_only = first == 0 and bool(exprs[0].free_symbols) and all(
        atom.is_Symbol or atom in (sympy.Integer(1), sympy.Integer(-1)) for atom in exprs[0].atoms())
    if names_only:
        return exprs, ["=" if op == "~" else op for op in ops]
    return exprs[:first + 1], ops[:first]


def _number(text: str) -> sympy.Expr:
    """An integer or a decimal literal (decimals become sympy Floats, which mark the value inexact)."""
    if "." not in text:
        if len(text) > 4000:
            raise NotMath("number too long")
        return sympy.Integer(int(text))
    if len(text) > 4000:
        raise NotMath("number too long")
    if text.endswith("."):
        return sympy.Integer(int(text[:-1]))
    return sympy.Float(text, max(20, len(text) + 5))


def parse_value(text: str) -> Value:
    """Parse a normalised answer into a `Value`; raises `NotMath` (or `TooLarge`) when it cannot."""
    if not text:
        raise NotMath("empty answer")
    parser = _Parser(tokenize(text))
    try:
        items = parser.answer()
    except RecursionError:
        raise NotMath("nesting too deep") from None
    if parser.peek()[0] != "end":
        raise NotMath(f"unexpected {parser.peek()[1]!r}")
    return items[0] if len(items) == 1 else Bracket("", "", tuple(items))
