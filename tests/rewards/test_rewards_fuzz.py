r"""Property tests: answer extraction and scoring never raise on model text, whatever it holds.

Hypothesis draws texts mixing LaTeX fragments (``\boxed{``, ``\frac``, powers, huge exponents, intervals, matrices,
answer phrases, thinking tags) with random unicode; derandomized, so every run checks the same examples.
`score_answer` runs in-process here (no worker, no time limit): the size guards must keep each example fast.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrl.rewards.code import extract_code
from thinkrl.rewards.math import REASONS, MathVerdict, compare_answers, extract_answer, extract_reference, score_answer
from thinkrl.rewards.math.normalize import normalize_answer
from thinkrl.rewards.math.score import ERROR

FRAGMENTS = [
    r"\boxed{", r"\fbox{", "{", "}", r"\{", r"\}", r"\frac", r"\dfrac{1}{2}", "^", "^{", "_", "10^10^10",
    r"9^{9^{9^9}}", r"(10^{5000})!", r"\binom{10^6}{5*10^5}", "1000000!", r"\sqrt", r"\sqrt[", "(", ")", "[", "]",
    ":", ",", ".", "-", "+", "=", "<", r"\le", r"\infty", r"\pi", r"\cup", "|", "$", "$$", r"\(", r"\)", r"\[",
    r"\]", r"\text{", r"\left(", r"\right)", r"\begin{pmatrix}", r"\end{pmatrix}", "&", "\\\\", "\\", "!",
    r"\approx", r"\pm", "%", r"^\circ", "°", "−", "√", "∞", "x", "e", "i", "0", "1", "12", "1,000", "0/0", "1:0",
    "1e308", r"\log_", r"\sin", r"\mathbb{R}", r"\emptyset", "The final answer is ", "answer: ", "</think>",
    "<answer>", "</answer>", " and ", " ", "\n", "9" * 5000,
]
TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4), st.integers(-10**30, 10**30).map(str)),
                max_size=30).map("".join)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(TEXT)
def test_extraction_returns_text_or_none(text: str) -> None:
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer)
    assert isinstance(extract_reference(text), str)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_scoring_never_raises_and_never_errors(response: str, reference: str) -> None:
    for text in (response, r"\boxed{" + response + "}"):
        verdict = score_answer(text, reference)
        assert isinstance(verdict, MathVerdict) and verdict.reason in REASONS
        assert verdict.reason != ERROR  # "wrong: error" is the logged fallback for a crash in the checks


@settings(derandomize=True, max_examples=200, deadline=None)
@given(TEXT)
def test_identical_answers_are_equal(text: str) -> None:
    if normalize_answer(text):  # the same text is the same answer (docs: "Decisions"), even an undefined value
        assert compare_answers(text, text)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["```", "`", "```python", "py", "\n", " ", "x = 1", "é"]), max_size=40).map("".join))
def test_extract_code_returns_text(text: str) -> None:
    code = extract_code(text)
    assert code == text or code.endswith("\n")
