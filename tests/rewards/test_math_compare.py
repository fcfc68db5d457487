"""Parsing and comparison of answers: every normalisation and kind, equal and unequal pairs, tolerance."""

import pytest
import sympy

from thinkrl.rewards.math import compare_answers, score_answer
from thinkrl.rewards.math.latex import parse_value
from thinkrl.rewards.math.values import Bracket, MatrixValue, NotMath, Relation, SetUnion, TooLarge

EQUAL = [
    # numbers, fractions, decimals
    ("0.5", r"\frac{1}{2}"), ("3/4", r"\dfrac{3}{4}"), (r"\frac12", "0.5"), (r"-\frac{5}{2}", "-2.5"),
    ("42", "42.0"), (r"3\frac{1}{2}", "3.5"), ("2^10", "1024"), ("2^{-1}", "0.5"), ("-2^2", "-4"),
    (r"10^{-3}", "0.001"), (r"6.02\times10^{23}", "602000000000000000000000"),
    # radicals and constants
    (r"\sqrt{8}", r"2\sqrt{2}"), (r"\sqrt2/2", r"\frac{1}{\sqrt{2}}"), (r"\sqrt[3]{8}", "2"), ("sqrt(12)", r"2\sqrt3"),
    (r"2\pi", r"\pi \cdot 2"), (r"\frac{\pi}{3}", r"\frac{1}{3}\pi"), ("e^{i\\pi}", "-1"), (r"\log_2 8", "3"),
    (r"\sin(\pi/6)", "0.5"), (r"\sin^2 x + \cos^2 x", "1"), (r"\ln(e^3)", "3"),
    # degrees, percent, units, thousands, text
    (r"30^\circ", "30"), (r"30^\circ", r"\frac{\pi}{6}"), ("50%", "0.5"), (r"50\%", "50"),
    (r"12 \text{ cm}", "12"), ("1,000,000", r"10^6"), (r"\text{Monday}", "monday"), ("(C)", r"\text{C}"),
    # expressions
    ("(x+1)^2", "x^2+2x+1"), (r"\frac{x^2-1}{x-1}", "x+1"), (r"\sin 2x", r"2\sin x\cos x"), ("xy", "yx"),
    (r"\sqrt{x^2}", "|x|"), (r"a_1 + a_2", "a_2 + a_1"), (r"\binom{5}{2}", "10"), ("5!", "120"),
    (r"\lfloor 2.7 \rfloor", "2"), ("3 + 4i", r"(1+2i)^2 + 6"), ("i", r"\sqrt{-1}"),
    # tuples, sets, lists, intervals, unions, matrices
    ("(1, 2)", r"\left(1,2\right)"), (r"\{1, 2, 3\}", r"\{3, 1, 2\}"), ("1, 2", "2, 1"), ("5", r"\{5\}"),
    (r"1 \pm \sqrt 2", r"1-\sqrt{2}, 1+\sqrt{2}"), ("[2, 5)", r"\left[2,5\right)"),
    (r"(-\infty, 1) \cup (2, \infty)", r"(2,\infty) \cup (-\infty,1)"), (r"\emptyset", r"\varnothing"),
    (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{bmatrix}1 & 2 \\ 3 & 4\end{bmatrix}"),
    (r"\begin{vmatrix}1&2\\3&4\end{vmatrix}", "-2"), (r"\mathbb{R}", r"(-\infty, \infty)"),
    # equations and inequalities
    ("x = 5", "5"), ("5", "x=5"), ("y = 2x + 1", "2x - y + 1 = 0"), ("x > 3", "3 < x"),
    (r"x \ge 2", r"[2, \infty)"), ("-2 < x < 2", "(-2, 2)"), ("x = 1 or x = 2", "1, 2"),
    (r"x \in [0, 1]", "[0, 1]"), ("(p, q) = (3, 2)", "(3, 2)"), ("x = 5 + 6 = 11", "x = 11"),
    ("3:4", "0.75"), (r"\frac{NO}{BO} = \frac{1}{3}", r"\frac13"), ("AB", "BA"),
    (r"(1, 2), (3, 4), (1, 2)", r"(3, 4), (1, 2)"),  # solution sets ignore repeats
]
UNEQUAL = [
    ("0.5", r"\frac{1}{3}"), ("42", "41"), ("1000000", "1000001"), (r"\frac{4}{3}", r"\frac34"), ("-7", "7"),
    (r"\sqrt{8}", r"3\sqrt{2}"), (r"\pi", "3.14"), (r"30^\circ", r"\frac{\pi}{3}"), ("50%", "0.05"),
    ("(x+1)^2", "x^2+1"), ("x", r"\sqrt{x^2}"), ("x", "y"), ("(1, 2)", "(2, 1)"), ("[1, 2]", "(1, 2)"),
    (r"\{1, 2\}", r"\{1, 2, 3\}"), ("(1, 2)", r"\{1, 2\}"), ("y = 2x + 1", "y = 2x - 1"), ("x > 3", r"x \ge 3"),
    ("x > 3", "x < 3"), ("x = 5", "y = 5"), (r"\text{Monday}", r"\text{Tuesday}"), ("3 + 4i", "3 - 4i"),
    (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{pmatrix}1&3\\2&4\end{pmatrix}"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1&2\end{pmatrix}"), ("5", ""), ("A", "B"),
    (r"(-\infty, 1) \cup (2, \infty)", r"(-\infty, 1] \cup [2, \infty)"),
]


@pytest.mark.parametrize(("reference", "answer"), EQUAL)
def test_equal_pairs(reference: str, answer: str) -> None:
    assert compare_answers(answer, reference), (reference, answer)
    assert compare_answers(reference, answer), (answer, reference)  # symmetric for these pairs


@pytest.mark.parametrize(("reference", "answer"), UNEQUAL)
def test_unequal_pairs(reference: str, answer: str) -> None:
    assert not compare_answers(answer, reference), (reference, answer)


def test_reference_equations_unwrap_only_when_they_are_assignments() -> None:
    assert compare_answers("1", "x = 1")  # an assignment reference is its value
    assert not compare_answers("1", "2x + z = 1")  # an equation reference is not its right side
    assert compare_answers("2x + z = 1", "1")  # an equation answer is read as its last side
    assert not compare_answers("x = 1", "y = 1")


def test_relative_tolerance_applies_only_to_decimals() -> None:
    assert compare_answers("0.333333", r"\frac13")  # |diff| = 1e-6 relative: inclusive
    assert not compare_answers("0.33333", r"\frac13")
    assert compare_answers("0.33333", r"\frac13", rel_tol=1e-4)
    assert compare_answers("3.1415927", r"\pi")
    assert not compare_answers("3.14159", r"\pi", rel_tol=1e-7)
    assert not compare_answers("1000001", "1000000")  # exact integers never use the tolerance
    assert not compare_answers(r"\frac{1000001}{1000000}", "1")


def test_parser_builds_the_right_values() -> None:
    x = sympy.Symbol("x")
    assert parse_value(r"\frac{1}{2}") == sympy.Rational(1, 2)
    assert parse_value("2x^2") == 2 * x**2
    assert parse_value(r"\sqrt[3]{x}") == x ** sympy.Rational(1, 3)
    assert parse_value("[1, 2)") == Bracket("[", ")", (1, 2))
    assert parse_value("1, 2") == Bracket("", "", (1, 2))
    assert parse_value(r"x \le 3") == Relation((x, sympy.Integer(3)), ("<=",))
    assert parse_value(r"(0,1) \cup (2,3)") == SetUnion((Bracket("(", ")", (0, 1)), Bracket("(", ")", (2, 3))))
    assert parse_value(r"\begin{pmatrix}1&2\end{pmatrix}") == MatrixValue(((1, 2),))
    quarter = parse_value("0.25")
    assert isinstance(quarter, sympy.Float) and quarter == sympy.Float("0.25", 20)  # a Float marks it inexact


@pytest.mark.parametrize("text", ["Monday", r"\unknowncommand{1}", "1 +", "((1)", r"\dots", "#"])
def test_parser_rejects_what_it_does_not_know(text: str) -> None:
    with pytest.raises(NotMath):
        parse_value(text)


@pytest.mark.parametrize("text", [r"9^{9^{9^9}}", "1000000!", r"2^{2^{30}}", r"\binom{10^6}{500000}", "10^{200000}",
                                  r"(10^{5000})!"])  # n over 4,300 digits: the message must not print n
def test_size_guards(text: str) -> None:
    with pytest.raises(TooLarge):
        parse_value(text)


def test_score_answer_reasons() -> None:
    assert score_answer(r"so \boxed{\frac{1}{2}}", "0.5").reason == "correct"
    verdict = score_answer(r"so \boxed{3}", "4")
    assert (verdict.correct, verdict.reason, verdict.extracted) == (False, "wrong: value", "3")
    assert score_answer("I give up", "4").reason == "wrong: no answer"
    assert score_answer(r"\boxed{9^{9^{9^9}}}", "4").reason == "wrong: too large"
    assert score_answer(r"\boxed{(10^{5000})!}", "4").reason == "wrong: too large"  # was "wrong: error"
    assert score_answer("\\boxed{" + "1+" * 5000 + "1}", "4").reason == "wrong: too large"
    assert score_answer(r"\boxed{\text{no idea}}", r"\text{no idea}").reason == "correct"
