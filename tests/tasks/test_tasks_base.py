"""Answer extraction, verdicts, difficulty knobs, the registry, and the no-torch rule."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from thinkrl.tasks import TASKS, Knob, Verdict, extract_answer, get_task


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25*4-3", "25*4-3"),
        ("answer: 25*4-3", "25*4-3"),
        ("Answer = 28", "28"),
        ("The answer is 28.", "28"),
        ("The final answer is: 28", "28"),
        ("Answer:\n\n  42\n", "42"),
        ("answer: 1\nanswer: 2\nok", "2"),  # last answer: wins over the last line
        ("so \\boxed{8/(3-8/3)} done", "8/(3-8/3)"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("answer: \\boxed{7}", "7"),
        ("some work\n\n 42 \n\n", "42"),
        ("**42**", "42"),
        ("$42$", "42"),
        ("`3*8`", "3*8"),
        ("I answered: 5", "I answered: 5"),  # "answered" is not the word "answer"
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "answer:", "\\boxed{}", "$$", "."])
def test_extract_answer_none(text: str) -> None:
    assert extract_answer(text) is None


def test_extract_answer_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        extract_answer(None)  # type: ignore[arg-type]


def test_extract_answer_on_long_output() -> None:
    assert extract_answer("\\boxed{" * 100_000) is None  # unclosed: empty content after the last one
    assert extract_answer("answer is: " * 100_000 + "7") == "7"
    assert extract_answer("answer " * 200_000) == ("answer " * 200_000).strip()


def test_verdict() -> None:
    assert Verdict.right().reward == 1.0 and Verdict.right().correct
    wrong = Verdict.wrong("wrong value", "3 is not 4")
    assert (wrong.reward, wrong.reason, wrong.correct) == (0.0, "wrong value", False)
    with pytest.raises(ValueError, match="reason"):
        Verdict(0.0, "nope")
    with pytest.raises(ValueError):
        Verdict.wrong("correct")


def test_knob_validation_and_parsing() -> None:
    knob = Knob("num_terms", int, 4, 2, 8, "terms")
    assert knob.validate(5) == 5
    assert knob.parse("8") == 8
    with pytest.raises(ValueError, match="num_terms.*out of range"):
        knob.validate(9)
    with pytest.raises(ValueError, match="num_terms"):
        knob.validate(4.5)
    with pytest.raises(ValueError, match="num_terms"):
        knob.validate(True)
    with pytest.raises(ValueError, match="num_terms"):
        knob.parse("four")
    flag = Knob("allow_division", bool, False)
    assert flag.parse("true") is True and flag.parse("0") is False
    with pytest.raises(ValueError, match="allow_division"):
        flag.validate(1)
    with pytest.raises(ValueError, match="allow_division"):
        flag.parse("maybe")


@pytest.mark.parametrize("name", TASKS.names())
def test_registry_members_build_and_name_themselves(name: str) -> None:
    task = get_task(name)
    assert task.name == name
    assert set(task.default_difficulty) == {knob.name for knob in task.difficulty_knobs}
    assert task.resolve_difficulty() == task.default_difficulty
    for knob in task.difficulty_knobs:
        assert knob.validate(knob.default) == knob.default
        assert knob.help


def test_builtin_tasks_are_registered() -> None:
    assert {"countdown", "game24", "arithmetic"} <= set(TASKS.names())


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="countdown"):
        get_task("sudoku-9000")


@pytest.mark.parametrize("name", TASKS.names())
def test_unknown_and_bad_difficulty_are_named(name: str) -> None:
    task = get_task(name)
    with pytest.raises(ValueError, match="'bogus'"):
        task.generate(random.Random(0), bogus=1)
    first = task.difficulty_knobs[0]
    with pytest.raises(ValueError, match=first.name):
        task.resolve_difficulty({first.name: "not a value"})


def test_cross_knob_constraints() -> None:
    with pytest.raises(ValueError, match="min_target"):
        get_task("countdown").resolve_difficulty({"min_target": 50, "max_target": 20})
    with pytest.raises(ValueError, match="min_used"):
        get_task("countdown").resolve_difficulty({"num_numbers": 3, "min_used": 4})
    with pytest.raises(ValueError, match="min_solutions"):
        get_task("game24").resolve_difficulty({"min_solutions": 10, "max_solutions": 5})


def test_tasks_package_imports_neither_torch_nor_other_thinkrl_parts() -> None:
    code = (
        "import sys, thinkrl.tasks, thinkrl.tasks.dataset, thinkrl.tasks.cli\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "bad += [m for m in sys.modules if m.startswith('thinkrl.') and not m.startswith('thinkrl.tasks')"
        " and m != 'thinkrl.registry']\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
