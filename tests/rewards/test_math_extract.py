"""Answer extraction and string normalisation (thinkrl.rewards.math.extract / normalize)."""

import pytest

from thinkrl.rewards.math import extract_answer, extract_reference
from thinkrl.rewards.math.extract import last_boxed
from thinkrl.rewards.math.normalize import normalize_answer, strip_delimiters, text_key


@pytest.mark.parametrize(("text", "expected"), [
    (r"so \boxed{5}.", "5"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{3}}{\left(2\right)}}", r"\frac{\sqrt{3}}{\left(2\right)}"),  # nested braces
    (r"first \boxed{3}, then corrected to \boxed{4}", "4"),  # the last one
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces inside
    (r"\boxed 7 is it", "7"),
    (r"\fbox{9}", "9"),
    (r"$\boxed{x^{2}}$ and more text", "x^{2}"),
    (r"\boxed{1} \boxed{2", "1"),  # an unclosed box is skipped
])
def test_boxed(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_boxed_beats_tags_and_answer_words() -> None:
    assert extract_answer(r"<answer>3</answer> The answer is 4. \boxed{5}") == "5"


@pytest.mark.parametrize(("text", "expected"), [
    ("<answer>42</answer>", "42"),
    ("<answer> $\\frac{3}{4}$ </answer>", r"\frac{3}{4}"),
    ("<answer>1</answer> retry <answer>2</answer>", "2"),
    ("<answer>17", "17"),  # unclosed: rest of the text
    ("<answer>so \\boxed{8}</answer>", "8"),
    ("<think>the answer is 3</think><answer>4</answer>", "4"),
])
def test_answer_tags(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Answer: 12", "12"),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
    ("the answer is 7 apples.", "7"),  # words left over: the last number
    ("Final Answer: The largest $n$ is 34.", "34"),  # what follows the last " is "
    ("The final answer is 12,000,023. I hope it is correct.", "12,000,023"),
    ("Final Answer: Jane started growing Sphere 3 hours ago.", "3"),
    ("Answer: Evelyn", "Evelyn"),
    ("ANSWER = -3", "-3"),
    ("Answer:\n\n  x = 2", "x = 2"),
    ("answer: 1. Then again, the answer is 2", "2"),
])
def test_answer_words(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("We had 3 apples and got 12 more, 15 in total", "15"),
    ("so it costs 1,250 dollars", "1,250"),
    ("half is 0.5", "0.5"),
    ("it is 3/4 of the cake", "3/4"),
    ("#### -18", "-18"),
])
def test_last_number_fallback(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("We find that $x \\lt 3$.", r"x \lt 3"),
    ("so the result is $\\frac13$ and that is all", r"\frac13"),
    ("first $1$ then \\(2+x\\) and then \\[\n y \n\\]", "y"),
    ("it costs \\$5 and the total is \\$7", "7"),  # escaped dollars are no math span
])
def test_last_math_span(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (r"so $\boxed{1}$ and $\boxed{2}$", "1, 2"),
    (r"\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}", "k = 45, n = 2"),
    (r"\boxed{1},\boxed{2},\boxed{3}.", "1, 2, 3"),
    (r"first \boxed{3}, then corrected to \boxed{4}", "4"),  # words between: only the last
])
def test_adjacent_boxes_form_one_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_thinking_block_is_skipped_and_nothing_means_none() -> None:
    assert extract_answer("<think>maybe 3</think> I do not know") is None
    assert extract_answer("no digits here") is None
    assert extract_answer("<seed:think>5</seed:think>6") == "6"


def test_reference_is_unboxed_and_stripped() -> None:
    assert extract_reference(r"$\boxed{\frac{1}{2}}$") == r"\frac{1}{2}"
    assert extract_reference(r"$x+1$") == "x+1"
    with pytest.raises(TypeError, match="reference"):
        extract_reference(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="response"):
        extract_answer(None)  # type: ignore[arg-type]


def test_extraction_of_huge_inputs() -> None:
    """Megabyte inputs give a bounded answer (their speed is measured by benchmarks, not asserted here)."""
    assert extract_answer("\\boxed{" + "{" * 500_000) is None  # unclosed, deeply nested: no box, no number
    assert extract_answer("\\boxed " * 100_000) == "\\boxed"  # the last box holds the word after it
    assert extract_answer("answer: " + "\\(" * 200_000) == "\\(" * 2048  # the answer line is cut at 4,096 chars
    assert extract_answer("1" * 1_000_000) == "1" * 1_000_000  # alone on its line (too large to score later)
    assert last_boxed("\\boxed{" + "{" * 1000) is None


@pytest.mark.parametrize(("raw", "normalized"), [
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac12"),
    (r"\left( 1, 2 \right)", "( 1, 2 )"),
    (r"\displaystyle \frac{a}{b}", r"\frac{a}{b}"),
    (r"30^\circ", r"30\degree"),
    (r"30^{\circ}", r"30\degree"),
    ("30°", r"30\degree"),
    ("45 degrees", r"45\degree"),
    ("50%", r"50\%"),
    (r"50\%", r"50\%"),
    ("50 percent", r"50\%"),
    (r"\text{Monday}", "Monday"),
    (r"\textbf{(C)}", "(C)"),
    (r"\mathrm{e}", "e"),
    (r"12 \text{ cm}^2", "12"),
    (r"5\,\mathrm{kg}", "5"),
    ("12 inches", "12"),
    ("7 square units", "7"),
    (r"\$1,250", "1250"),
    ("1,000,000", "1000000"),
    (r"1{,}000", "1000"),
    (r"1\,000", "1000"),
    ("1 000 000", "1000000"),
    ("1,234.5", "1234.5"),
    ("(1,000, 2)", "(1,000, 2)"),  # not a lone number: commas stay
    ("\u22123 \u00d7 \u03c0", r"-3 \times \pi"),
    ("$$x$$.", "x"),
])
def test_normalize(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def test_strip_delimiters_and_text_key() -> None:
    assert strip_delimiters("**$5$**.") == "5"
    assert strip_delimiters(r"\(x\)") == "x"
    assert strip_delimiters("3.5.") == "3.5"
    assert text_key(r"\text{(C)}") == text_key("c") == "c"
    assert text_key(r"\textbf{New York}") == "newyork"
