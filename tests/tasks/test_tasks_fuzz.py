"""Property tests: every built-in task's verifier scores any answer text without raising.

Hypothesis draws a task's problem and either junk (numbers, operators, huge literals, deep parentheses, moves,
grids, names, random unicode) or the task's own reference answer with a few edits; derandomized.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrl.tasks import TASKS, Problem, Task, get_task
from thinkrl.tasks.base import REASONS, Verdict


def _problems() -> list[tuple[Task, Problem, str]]:
    """(task, one problem, its reference answer) for every registered task."""
    problems = []
    for name in TASKS.names():
        task = get_task(name)
        problem = task.generate(random.Random(0))
        problems.append((task, problem, task.write_trace(problem, random.Random(0)).answer))
    return problems


PROBLEMS = _problems()

PIECES = st.one_of(st.sampled_from([
    "0", "1", "9", "-", "+", "*", "/", "**", "^", "(", ")", "=", ",", ";", " ", "\n", "x1", "True", "no", "A", "B",
    "->", ":", "|", ".", "0x", "0b", "1e9", "9" * 5000, "(" * 500, "knight", "Monday", "2024-02-30", "\\boxed{", "}",
    "answer: ", "1/0", "×", "÷", "−", "٣", "²", "½", "\u00a0", "\x00",
]), st.text(max_size=4), st.integers(-10**6, 10**6).map(str))


@st.composite
def _edited(draw: st.DrawFn, answer: str) -> str:
    chars = list(answer)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(chars)))
        if draw(st.booleans()) or not chars:
            chars[at:at] = draw(PIECES)
        else:
            del chars[at:at + draw(st.integers(1, 4))]
    return "".join(chars)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.data())
def test_verifiers_score_any_text(data: st.DataObject) -> None:
    task, problem, answer = data.draw(st.sampled_from(PROBLEMS))
    junk = st.lists(PIECES, max_size=30).map("".join)
    text = data.draw(st.one_of(junk, _edited(answer), _edited(answer).map(lambda a: f"The answer is \\boxed{{{a}}}")))
    verdict = task.verify(problem, text)
    assert isinstance(verdict, Verdict) and verdict.reason in REASONS
    assert verdict.reward == (1.0 if verdict.correct else 0.0)


def test_reference_answers_are_correct() -> None:  # the fuzzed edits start from answers the verifiers accept
    assert [task.name for task, problem, answer in PROBLEMS if not task.verify(problem, answer).correct] == []
