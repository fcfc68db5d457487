"""A small, safe arithmetic-expression parser with exact rational evaluation.

Grammar (recursive descent, left-associative, usual precedence)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | primary
    primary := INTEGER | "(" expr ")"

Accepted symbols: decimal integer literals, ``+ - * /``, parentheses, spaces, and
the aliases ``x`` / ``X`` / ``×`` for ``*``, ``÷`` for ``/`` and ``−`` for ``-``.
Everything else (``**``, ``^``, names, function calls, decimals, implicit
multiplication such as ``2(3)``) is a `ParseError`.

Values are exact `fractions.Fraction`s: ``8/3`` is eight thirds, never 2.
Adversarial input cannot hang or exhaust memory: the text is capped at
`MAX_EXPRESSION_CHARS`, nesting at `MAX_DEPTH`, literals at `MAX_LITERAL_DIGITS`
digits and every intermediate value at `MAX_VALUE_BITS` bits. No ``eval``.

This module knows nothing about tasks; the tasks use `parse`, `evaluate`,
`literals` and `to_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_DEPTH = 32
MAX_LITERAL_DIGITS = 12
MAX_VALUE_BITS = 4096

_ALIASES = {"x": "*", "X": "*", "\u00d7": "*", "\u00f7": "/", "\u2212": "-"}
_OPERATORS = "+-*/()"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExpressionError(ValueError):
    """Base class of every error raised for a bad expression."""


class ParseError(ExpressionError):
    """The text is not an expression of the grammar (or breaks a size limit)."""


class EvaluationError(ExpressionError):
    """The expression parses but has no value (division by zero, value too large)."""


@dataclass(frozen=True)
class Num:
    """An integer literal (or, inside traces, an already computed integer value)."""

    value: int


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: Node


@dataclass(frozen=True)
class BinOp:
    """A binary operation; ``op`` is one of ``+ - * /``."""

    op: str
    left: Node
    right: Node


Node = Num | Neg | BinOp


@dataclass(frozen=True)
class Evaluated:
    """Result of `parse_and_evaluate`: the exact value and the literals used, in order."""

    value: Fraction
    numbers: tuple[int, ...]


def tokenize(text: str) -> list[str | int]:
    """Split ``text`` into operator strings and integer literals.

    Raises `ParseError` on any character outside the grammar, on decimals, on
    ``**`` / ``^``, and when the text is longer than `MAX_EXPRESSION_CHARS`.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ParseError(f"expression has {len(text)} characters; at most {MAX_EXPRESSION_CHARS} allowed")
    tokens: list[str | int] = []
    i = 0
    while i < len(text):
        char = _ALIASES.get(text[i], text[i])
        if char.isspace():
            i += 1
        elif "0" <= char <= "9":
            start = i
            while i < len(text) and "0" <= text[i] <= "9":
                i += 1
            digits = text[start:i]
            if len(digits) > MAX_LITERAL_DIGITS:
                raise ParseError(f"number literal has {len(digits)} digits; at most {MAX_LITERAL_DIGITS} allowed")
            if i < len(text) and text[i] in ".,":
                raise ParseError(f"decimals and digit separators are not allowed (at position {i})")
            tokens.append(int(digits))
        elif char in _OPERATORS:
            if char == "*" and tokens and tokens[-1] == "*":
                raise ParseError("exponentiation '**' is not allowed")
            tokens.append(char)
            i += 1
        elif char == "^":
            raise ParseError("exponentiation '^' is not allowed")
        else:
            raise ParseError(f"unexpected character {text[i]!r} at position {i}")
    if not tokens:
        raise ParseError("empty expression")
    return tokens


class _Parser:
    """Recursive-descent parser over a token list; use `parse` instead."""

    def __init__(self, tokens: list[str | int]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | int | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | int | None:
        token = self.peek()
        self.pos += 1
        return token

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"expression nests deeper than {MAX_DEPTH} levels")

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = str(self.take())
            node = BinOp(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = str(self.take())
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() in ("-", "+"):
            sign = self.take()
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return Neg(operand) if sign == "-" else operand
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if isinstance(token, int):
            return Num(token)
        if token == "(":
            self.enter()
            node = self.expr()
            self.depth -= 1
            if self.take() != ")":
                raise ParseError("missing closing parenthesis")
            return node
        found = "end of input" if token is None else repr(token)
        raise ParseError(f"expected a number or '(' but found {found}")


def parse(text: str) -> Node:
    """Parse ``text`` into an expression tree; raises `ParseError` if it is not one."""
    parser = _Parser(tokenize(text))
    node = parser.expr()
    if parser.pos != len(parser.tokens):
        raise ParseError(f"unexpected {parser.tokens[parser.pos]!r} after a complete expression")
    return node


def _checked(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_VALUE_BITS or value.denominator.bit_length() > MAX_VALUE_BITS:
        raise EvaluationError(f"intermediate value exceeds {MAX_VALUE_BITS} bits")
    return value


def apply_op(op: str, left: Fraction, right: Fraction) -> Fraction:
    """Apply ``op`` (``+ - * /``) exactly; raises `EvaluationError` on division by zero."""
    if op == "+":
        return _checked(left + right)
    if op == "-":
        return _checked(left - right)
    if op == "*":
        return _checked(left * right)
    if op == "/":
        if right == 0:
            raise EvaluationError("division by zero")
        return _checked(left / right)
    raise ValueError(f"unknown operator {op!r}; allowed: + - * /")


def evaluate(node: Node) -> Fraction:
    """Exact value of ``node``; raises `EvaluationError` on division by zero or overflow."""
    if isinstance(node, Num):
        return Fraction(node.value)
    if isinstance(node, Neg):
        return -evaluate(node.operand)
    return apply_op(node.op, evaluate(node.left), evaluate(node.right))


def literals(node: Node) -> list[int]:
    """The integer literals of ``node`` from left to right (a multiset, order kept)."""
    if isinstance(node, Num):
        return [node.value]
    if isinstance(node, Neg):
        return literals(node.operand)
    return literals(node.left) + literals(node.right)


def parse_and_evaluate(text: str) -> Evaluated:
    """Parse and evaluate ``text``; raises `ParseError` or `EvaluationError`."""
    node = parse(text)
    return Evaluated(value=evaluate(node), numbers=tuple(literals(node)))


def _precedence(node: Node) -> int:
    return _PRECEDENCE[node.op] if isinstance(node, BinOp) else 3


def to_text(node: Node) -> str:
    """Render ``node`` with the fewest parentheses that parse back to the same tree.

    Negative literals are parenthesised (``2*(-3)``) unless they stand alone.
    """
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Neg):
        inner = to_text(node.operand)
        return f"-({inner})" if isinstance(node.operand, BinOp) else f"-{inner}"
    left = to_text(node.left)
    right = to_text(node.right)
    if _precedence(node.left) < _precedence(node) or _is_negative_literal(node.left):
        left = f"({left})"
    if _precedence(node.right) <= _precedence(node) or _is_negative_literal(node.right):
        right = f"({right})"
    return f"{left}{node.op}{right}"


def _is_negative_literal(node: Node) -> bool:
    return isinstance(node, Neg) or (isinstance(node, Num) and node.value < 0)


def canonical_text(node: Node) -> str:
    """Fully parenthesised text with the operands of ``+`` and ``*`` sorted.

    Two expressions that differ only by swapping operands of a commutative
    operator get the same canonical text.
    """
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Neg):
        return f"(-{canonical_text(node.operand)})"
    left, right = canonical_text(node.left), canonical_text(node.right)
    if node.op in "+*" and right < left:
        left, right = right, left
    return f"({left}{node.op}{right})"
