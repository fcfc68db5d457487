r"""Decisions on answers a new user found ambiguous (docs/rewards_math.md, "Decisions"): one test each."""

import pytest

from thinkrl.rewards.math import extract_answer, extract_reference, score_answer
from thinkrl.rewards.math.score import CORRECT, WRONG_VALUE


def _correct(response: str, reference: str) -> bool:
    return score_answer(response, reference).correct


def test_division_by_zero_equals_nothing() -> None:
    # sympy makes x/0 complex infinity: two such answers must not compare equal whatever they are
    assert not _correct(r"\boxed{1:0}", "2:0")
    assert not _correct(r"\boxed{3/0}", r"\frac{5}{0}")
    assert not _correct(r"\boxed{\frac{0}{0}}", "0/0")
    assert not _correct(r"\boxed{1:0}", r"\infty")
    assert _correct(r"\boxed{12:00}", "12:00")  # the same text is the same answer
    assert not _correct(r"\boxed{12:00}", "1:00")
    assert _correct(r"\boxed{3:4}", "0.75")  # a ratio with a non-zero part is still a number


@pytest.mark.parametrize(("response", "reference"), [
    (r"\boxed{.}", ""), (r"\boxed{\}}", ""), (r"\boxed{\\}", " "), (r"\boxed{\text{}}", ""), (r"\boxed{\,}", r"\quad"),
    (r"\boxed{\}}", r"\text{}"),
])
def test_empty_text_equals_nothing(response: str, reference: str) -> None:
    # an empty reference (a dataset row without its answer) must not reward punctuation-only answers
    assert score_answer(response, reference).reason == WRONG_VALUE


@pytest.mark.parametrize("text", [
    "I don't know the answer. It was fun, see section 3",
    "asdkj aslkdj qwe 7",
    "AZYUK2A",
    "call me at 555",
])
def test_stray_number_in_junk_is_no_answer(text: str) -> None:
    assert extract_answer(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("so she has 18 apples", "18"),
    ("Adding the parts gives 4.2", "4.2"),
    ("We had 3 apples and got 12 more, 15 in total", "15"),
    ("The work is done.\n42", "42"),
    ("#### 1,250", "1,250"),
])
def test_number_stated_as_a_result_is_the_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("response", "reference", "correct"), [
    (r"\boxed{2,74}", "2.74", True),  # decimal comma against one number
    (r"\boxed{0,111}", "0.111", True),  # a leading 0 is never a thousands group
    (r"\boxed{1000,99}", "1000.99", True),
    ("Soucis : 2,74 $ a..", "2.74", True),  # found by the last-number rule too
    (r"\boxed{2,74}", "2, 74", True),  # against a list it is a list
    (r"\boxed{2,74}", "274", False),
    (r"\boxed{1,000}", "1000", True),  # three digits after the comma: thousands
    (r"\boxed{1,000}", "1.0", False),
    (r"\boxed{1 000}", "1000", True),
    ("\\boxed{1\u2009000}", "1000", True),  # thin space
    ("\\boxed{1\u202f000\u202f000}", "1000000", True),  # narrow no-break space
    (r"\boxed{14{,}916}", "14916", True),
    (r"\boxed{14 {, }916}", "14916", True),
    ("so the total is 14 916", "14916", True),
])
def test_decimal_commas_and_thousands_spaces(response: str, reference: str, correct: bool) -> None:
    assert _correct(response, reference) is correct


@pytest.mark.parametrize(("response", "reference", "correct"), [
    (r"\boxed{-1 < x < 3}", "(-1, 3)", True),
    (r"\boxed{-1 \le x < 3}", "[-1, 3)", True),
    (r"\boxed{-1 \le x < 3}", "(-1, 3)", False),
    (r"\boxed{x < -1 \text{ or } x > 2}", r"(-\infty, -1) \cup (2, \infty)", True),
    (r"\boxed{x \le -1, x > 2}", r"(-\infty, -1] \cup (2, \infty)", True),
    (r"\boxed{x < -1 \text{ or } x > 2}", r"(-\infty, -1] \cup (2, \infty)", False),
    (r"\boxed{(-\infty, -1) \cup (2, \infty)}", r"x < -1 \text{ or } x > 2", True),  # either side
    # overlapping pieces could mean "and": not read as a union
    (r"\boxed{x > 2 \text{ and } x < 5}", r"(-\infty, \infty)", False),
    (r"\boxed{x < -1 \text{ or } y > 2}", r"(-\infty, -1) \cup (2, \infty)", False),  # two variables
    (r"\boxed{0 < f(x) < 1}", "(0, 1)", True),  # bounds on a name
    (r"\boxed{0 < 2x < 1}", "(0, 1)", False),  # bounds x by (0, 1/2)
])
def test_inequalities_against_intervals_and_unions(response: str, reference: str, correct: bool) -> None:
    assert _correct(response, reference) is correct


@pytest.mark.parametrize(("response", "reference", "correct"), [
    (r"\boxed{x = 1/3 \approx 0.33}", r"\frac{1}{3}", True),  # judged by the exact value
    (r"\boxed{x = 1/3 \approx 0.33}", "0.33", False),  # the approximation is not the answer
    (r"\boxed{\frac{1}{3} \approx 0.333}", r"\frac{1}{3}", True),
    ("\\boxed{\\frac{1}{3} \u2248 0.333}", r"\frac{1}{3}", True),
    (r"\boxed{x = 5 + 5 + 1 = 11 \approx 1/3}", "11", True),
    (r"\boxed{x \approx 0.33}", "0.33", True),  # only a name before it: the approximation is the value
    (r"\boxed{x \approx 0.33}", r"\frac{1}{3}", False),
])
def test_approximation_chains(response: str, reference: str, correct: bool) -> None:
    assert _correct(response, reference) is correct


def test_several_boxes_with_words_between() -> None:
    response = r"The roots are \boxed{2} and then also we found \boxed{3}"
    assert extract_answer(response) == "3"  # the last box (a model that corrects itself boxes last)
    assert _correct(response, "3")
    assert _correct(response, "2, 3")  # a list reference of k items takes the last k boxes
    assert _correct(response, r"\{2, 3\}")
    assert not _correct(response, "2, 5")
    assert not _correct(r"first I got \boxed{7}, no wait, it is \boxed{4}", "7")
    # in a reference, boxes parted by at most three words are one list; repeated boxes count once
    assert extract_reference(r"\boxed{1} papers and \boxed{2} bins") == "1, 2"
    assert extract_reference(r"\boxed{1} no no no no no \boxed{2}") == "2"
    assert extract_reference(r"so \boxed{004}. Check: yes. **Final Answer** \boxed{004}") == "004"


def test_answer_statement_after_an_intermediate_box_wins() -> None:
    response = r"First, \boxed{12} is the sum. The final answer is 15."
    assert extract_answer(response) == "15"
    assert _correct(response, "15") and not _correct(response, "12")
    # a statement after the box that states no number or maths leaves the box the answer
    assert extract_answer(r"So \boxed{12}. I hope the answer is correct.") == "12"
    assert extract_answer(r"The final answer is $\boxed{15}$.") == "15"
    # math spans that only "and" or commas part in the answer line are one list answer
    assert extract_answer(r"Final Answer: The final answer is $12$ and $13$. I hope it is correct.") == "12, 13"
    assert extract_answer(r"The answer is $x$ when $y = 2$") == "y = 2"


def test_worked_solution_as_reference_is_reduced_to_its_answer() -> None:
    reference = "The stock loses 10% and then 20%, so its value is 72. The final answer is $28\\%$."
    assert extract_reference(reference) == r"28\%"
    assert extract_reference("x^2 + 2x + 1 = 5") == "x^2 + 2x + 1 = 5"  # no words: kept whole


A = r"\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}"
B = r"\begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix}"


@pytest.mark.parametrize(("answer", "reference", "correct"), [
    (f"{A} + {B}", r"\begin{pmatrix}6 & 8 \\ 10 & 12\end{pmatrix}", True),
    (f"{A} - {A}", r"\begin{pmatrix}0 & 0 \\ 0 & 0\end{pmatrix}", True),
    (f"{A} {B}", r"\begin{pmatrix}19 & 22 \\ 43 & 50\end{pmatrix}", True),  # 1*5+2*7, 1*6+2*8; 3*5+4*7, 3*6+4*8
    (f"{A} \\cdot {B}", r"\begin{pmatrix}19 & 22 \\ 43 & 50\end{pmatrix}", True),
    (f"{B} {A}", r"\begin{pmatrix}19 & 22 \\ 43 & 50\end{pmatrix}", False),  # the product does not commute
    (f"2{A}", r"\begin{pmatrix}2 & 4 \\ 6 & 8\end{pmatrix}", True),
    (f"{A} + 1", r"\begin{pmatrix}2 & 3 \\ 4 & 5\end{pmatrix}", False),  # a matrix plus a number is no arithmetic
    (r"\begin{pmatrix}1 & 2\end{pmatrix} \begin{pmatrix}1 & 2\end{pmatrix}", "5", False),  # shapes do not match
])
def test_matrix_arithmetic(answer: str, reference: str, correct: bool) -> None:
    assert _correct(rf"\boxed{{{answer}}}", reference) is correct


@pytest.mark.parametrize(("answer", "reference", "correct"), [
    (r"z \in \left[-\frac{3}{2}, -1\right] \cup \left[1, \frac{3}{2}\right]", r"1 \le |z| \le \frac{3}{2}", True),
    (r"\left[1, \frac{3}{2}\right]", r"1 \le |z| \le \frac{3}{2}", False),  # only half of the values of z
    ("(-2, 2)", "|x| < 2", True),
    (r"(-\infty, -1) \cup (1, \infty)", "|x| > 1", True),
    (r"(-2, 0) \cup (0, 2)", "0 < |x| < 2", True),
    ("(-2, 2)", "0 < |x| < 2", False),  # 0 is excluded
])
def test_absolute_value_bounds_describe_both_signs(answer: str, reference: str, correct: bool) -> None:
    assert _correct(rf"\boxed{{{answer}}}", reference) is correct


@pytest.mark.parametrize(("answer", "correct"), [
    ("|x| < 1 or |x| > 3", True),  # |x| > 3 is a union of two intervals: three disjoint parts in all
    ("|x| > 3, x < 1", False),  # overlapping parts (could mean "and"): a wrong value, not a checker error
])
def test_list_of_absolute_value_inequalities_against_a_union(answer: str, correct: bool) -> None:
    verdict = score_answer(rf"\boxed{{{answer}}}", r"(-\infty, -3) \cup (-1, 1) \cup (3, \infty)")
    assert (verdict.correct, verdict.reason) == (correct, CORRECT if correct else WRONG_VALUE)
