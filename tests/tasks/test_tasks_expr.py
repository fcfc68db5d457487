"""The safe arithmetic parser: precedence, exact rationals, limits, garbage."""

from __future__ import annotations

import ast
import random
import re
from fractions import Fraction

import pytest

from thinkrl.tasks.expr import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    BinOp,
    EvaluationError,
    Neg,
    Num,
    ParseError,
    canonical_text,
    evaluate,
    literals,
    parse,
    parse_and_evaluate,
    to_text,
)


def reference_value(text: str) -> Fraction:
    """Independent evaluator: Python's own parser (ast), exact Fractions, no eval."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            ops = {ast.Add: left.__add__, ast.Sub: left.__sub__, ast.Mult: left.__mul__, ast.Div: left.__truediv__}
            return ops[type(node.op)](right)
        raise AssertionError(f"unexpected node {ast.dump(node)}")

    return walk(ast.parse(text, mode="eval"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("10-4-3", 3),  # left-associative
        ("48/6/2", 4),
        ("2*3/4", Fraction(3, 2)),
        ("7+3*(12-5)", 28),
        ("-3+5", 2),
        ("--3", 3),
        ("2*-3", -6),
        ("-(2+3)*2", -10),
        ("+4", 4),
        ("1/3+1/6", Fraction(1, 2)),
        ("8/(3-8/3)", 24),
        ("8/3", Fraction(8, 3)),  # exact, never truncated to 2
        (" 3 x 8 ", 24),
        ("3\u00d78", 24),
        ("24\u00f73", 8),
        ("5\u22122", 3),
        ("007", 7),
    ],
)
def test_values(text: str, value: Fraction | int) -> None:
    assert parse_and_evaluate(text).value == value


def test_literals_are_the_multiset_used_in_order() -> None:
    assert parse_and_evaluate("-3+5*(3-1)").numbers == (3, 5, 3, 1)
    assert literals(parse("((7))")) == [7]


def test_random_expressions_match_pythons_parser() -> None:
    rng = random.Random(0)
    for _ in range(300):
        parts = []
        for i in range(rng.randint(1, 6)):
            if i:
                parts.append(rng.choice("+-*/"))
            term = str(rng.randint(1, 30))
            if rng.random() < 0.3:
                term = f"({term}{rng.choice('+-*')}{rng.randint(1, 9)})"
            if rng.random() < 0.2:
                term = f"-{term}"
            parts.append(term)
        text = "".join(parts)
        try:
            expected = reference_value(text)
        except ZeroDivisionError:
            with pytest.raises(EvaluationError):
                parse_and_evaluate(text)
            continue
        assert parse_and_evaluate(text).value == expected, text


def test_to_text_round_trips_and_uses_few_parentheses() -> None:
    tree = BinOp("-", BinOp("*", Num(25), Num(4)), Num(3))
    assert to_text(tree) == "25*4-3"
    right_nested = BinOp("-", Num(10), BinOp("-", Num(4), Num(3)))
    assert to_text(right_nested) == "10-(4-3)"
    assert to_text(BinOp("*", Num(2), Num(-3))) == "2*(-3)"
    rng = random.Random(1)
    for _ in range(200):
        text = f"{rng.randint(1, 9)}{rng.choice('+-*/')}({rng.randint(1, 9)}{rng.choice('+-*/')}{rng.randint(1, 9)})"
        text += f"{rng.choice('+-*/')}{rng.randint(1, 9)}"
        node = parse(text)
        assert parse(to_text(node)) == node


def test_canonical_text_ignores_commutative_order_only() -> None:
    assert canonical_text(parse("3*(4+5)")) == canonical_text(parse("(5+4)*3"))
    assert canonical_text(parse("3-4")) != canonical_text(parse("4-3"))
    assert canonical_text(parse("8/2")) != canonical_text(parse("2/8"))


@pytest.mark.parametrize("text", ["1/0", "5/(3-3)", "1/(2-4/2)", "0/0"])
def test_division_by_zero_is_an_evaluation_error(text: str) -> None:
    node = parse(text)  # it parses...
    with pytest.raises(EvaluationError, match="division by zero"):
        evaluate(node)  # ...but has no value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("2**99999", r"\*\*"),
        ("2^10", r"\^"),
        ("abc", "unexpected character"),
        ("sqrt(4)", "unexpected character"),
        ("__import__('os')", "unexpected character"),
        ("2(3)", "after a complete expression"),
        ("2 3", "after a complete expression"),
        ("(2+3", "closing parenthesis"),
        ("2+", "end of input"),
        ("()", "expected a number"),
        ("+", "end of input"),
        ("*3", "expected a number"),
        ("3.5", "decimals"),
        ("1,000", "decimals"),
        ("1e5", "unexpected character"),
        ("12345678901234567890", "digits"),
    ],
)
def test_garbage_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(text)


def test_parse_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse("x")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1+" * 100_000 + "1", "200001 characters; at most 200"),  # very long
        ("(" * 10_000 + "1" + ")" * 10_000, "20001 characters; at most 200"),  # very long and deep
        ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), f"deeper than {MAX_DEPTH} levels"),  # short, too deep
        ("-" * 150 + "1", f"deeper than {MAX_DEPTH} levels"),  # unary chain too deep
        ("9" * 500, "500 characters; at most 200"),  # huge literal
    ],
)
def test_adversarial_input_is_rejected_by_its_limits(text: str, why: str) -> None:
    # The message names the size or depth limit: the input was refused before it was built or evaluated.
    with pytest.raises(ParseError, match=re.escape(why)):
        parse(text)


def test_limits_are_not_too_tight() -> None:
    nested = "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)
    assert parse_and_evaluate(nested).value == 1
    longest = "+".join(["1"] * (MAX_EXPRESSION_CHARS // 2))  # 199 characters
    assert parse_and_evaluate(longest).value == MAX_EXPRESSION_CHARS // 2


def test_largest_expression_that_parses_is_evaluated_exactly() -> None:
    text = "*".join(["999999999999"] * 15)  # 194 characters, about 10**180
    assert parse_and_evaluate(text).value == 999999999999**15


def test_values_beyond_the_bit_limit_are_an_evaluation_error() -> None:
    node = Num(10**12)
    for _ in range(400):  # a tree built in code (not parsed) can exceed the limit
        node = BinOp("*", node, Num(10**12))
    with pytest.raises(EvaluationError, match="bits"):
        evaluate(node)


def test_negation_node() -> None:
    assert parse("-(2+3)") == Neg(BinOp("+", Num(2), Num(3)))
    assert to_text(parse("-(2+3)")) == "-(2+3)"
