"""Word, date, bit and logic tasks (word sorting, calendar, bit manipulation, syllogism, cryptarithm).

Values are checked against independent implementations written here: Zeller's
congruence and a days-from-civil formula for dates, an `ast`-based evaluator
for bit expressions (parsing only, no eval), the classical list of valid
syllogisms, and SEND + MORE = MONEY.
"""

from __future__ import annotations

import ast
import itertools
import random
import re

import pytest

from thinkrl.tasks import get_task
from thinkrl.tasks.cryptarithm import solve_count
from thinkrl.tasks.syllogism import follows, holds

# ---------------------------------------------------------------- word sorting

WORDS = {"words": ["banana", "Apple", "apple", "app"], "descending": False}


@pytest.mark.parametrize(
    ("truth", "answer", "reason"),
    [
        (WORDS, "Apple, app, apple, banana", "correct"),
        (WORDS, "Apple app apple banana", "correct"),
        ({**WORDS, "descending": True}, "banana, apple, app, Apple", "correct"),
        (WORDS, "app, Apple, apple, banana", "wrong value"),  # upper case sorts first in ASCII
        (WORDS, "Apple, apple, app, banana", "wrong value"),  # a prefix sorts first
        (WORDS, "Apple, app, apple", "illegal numbers"),  # a word missing
        (WORDS, "apple, app, apple, banana", "illegal numbers"),  # re-cased
        (WORDS, "Apple, app, apple, banana, cherry", "illegal numbers"),
        (WORDS, "1. Apple 2. app 3. apple 4. banana", "unparseable"),
    ],
)
def test_word_sorting_verdicts(truth: dict, answer: str, reason: str) -> None:
    assert get_task("word_sorting").verify(truth, answer).reason == reason


def test_word_sorting_mixed_case_and_direction_knobs() -> None:
    task = get_task("word_sorting")
    problems = [task.generate(random.Random(seed), num_words=12, mixed_case=True) for seed in range(20)]
    assert any(any(w[0].isupper() for w in p.ground_truth["words"]) for p in problems)
    assert {p.ground_truth["descending"] for p in problems} == {True, False}
    assert not any(
        task.generate(random.Random(seed), allow_descending=False).ground_truth["descending"] for seed in range(20)
    )


# ---------------------------------------------------------------- calendar arithmetic

DAY_NAMES = ("Saturday", "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def zeller(year: int, month: int, day: int) -> str:
    """Weekday by Zeller's congruence (Gregorian)."""
    if month < 3:
        month, year = month + 12, year - 1
    k, j = year % 100, year // 100
    return DAY_NAMES[(day + 13 * (month + 1) // 5 + k + k // 4 + j // 4 + 5 * j) % 7]


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + (yoe * 365 + yoe // 4 - yoe // 100 + doy) - 719468


def parse_date(text: str) -> tuple[int, int, int]:
    year, month, day = map(int, text.split("-"))
    return year, month, day


def test_calendar_answers_match_independent_formulas() -> None:
    task = get_task("calendar_arithmetic")
    kinds = set()
    for seed in range(150):
        truth = task.generate(random.Random(seed), min_year=1600, max_year=2400, max_days=3000).ground_truth
        kinds.add(truth["kind"])
        start = parse_date(truth["date"])
        if truth["kind"] == "weekday":
            assert truth["answer"] == zeller(*start)
        elif truth["kind"] == "days_between":
            assert int(truth["answer"]) == days_from_civil(*parse_date(truth["end"])) - days_from_civil(*start)
        else:
            assert days_from_civil(*parse_date(truth["answer"])) - days_from_civil(*start) == truth["days"]
    assert kinds == {"weekday", "days_between", "add_days"}


@pytest.mark.parametrize(
    ("truth", "answer", "reason"),
    [
        ({"kind": "add_days", "date": "2024-02-27", "days": 3, "answer": "2024-03-01"}, "2024-03-01", "correct"),
        ({"kind": "add_days", "date": "2024-02-27", "days": 3, "answer": "2024-03-01"}, "2024-02-30", "unparseable"),
        ({"kind": "add_days", "date": "2024-02-27", "days": 3, "answer": "2024-03-01"}, "2024-03-02", "wrong value"),
        ({"kind": "add_days", "date": "2024-02-27", "days": 3, "answer": "2024-03-01"}, "March 1, 2024", "unparseable"),
        ({"kind": "weekday", "date": "2021-07-04", "answer": "Sunday"}, "sunday", "correct"),
        ({"kind": "weekday", "date": "2021-07-04", "answer": "Sunday"}, "Monday", "wrong value"),
        ({"kind": "weekday", "date": "2021-07-04", "answer": "Sunday"}, "Sun", "unparseable"),
        ({"kind": "days_between", "date": "2021-03-01", "end": "2021-07-04", "answer": "125"}, "125", "correct"),
        ({"kind": "days_between", "date": "2021-03-01", "end": "2021-07-04", "answer": "125"}, "126", "wrong value"),
        (
            {"kind": "days_between", "date": "2021-03-01", "end": "2021-07-04", "answer": "125"},
            "125 days",
            "unparseable",
        ),
    ],
)
def test_calendar_verdicts(truth: dict, answer: str, reason: str) -> None:
    assert get_task("calendar_arithmetic").verify(truth, answer).reason == reason


def test_calendar_kind_knobs() -> None:
    task = get_task("calendar_arithmetic")
    only = {"ask_add_days": False, "ask_days_between": False}
    assert {task.generate(random.Random(s), **only).ground_truth["kind"] for s in range(10)} == {"weekday"}


# ---------------------------------------------------------------- bit manipulation


def evaluate_bits(text: str, bits: int) -> int:
    """Evaluate with Python's parser (ast, no eval), keeping every result to ``bits`` bits."""
    mask = (1 << bits) - 1

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return ~value(node.operand) & mask
        assert isinstance(node, ast.BinOp), ast.dump(node)
        a, b = value(node.left), value(node.right)
        ops = {ast.BitAnd: a & b, ast.BitOr: a | b, ast.BitXor: a ^ b}
        if isinstance(node.op, ast.LShift):
            return (a << b) & mask
        if isinstance(node.op, ast.RShift):
            return a >> b
        return ops[type(node.op)] & mask

    return value(ast.parse(text, mode="eval").body)


def test_bit_manipulation_matches_an_independent_evaluator() -> None:
    task = get_task("bit_manipulation")
    for seed in range(200):
        bits = 4 + seed % 29
        problem = task.generate(random.Random(seed), bits=bits, num_ops=1 + seed % 8, hex_operands=seed % 2 == 0)
        expression = problem.ground_truth["expression"]
        assert f"Compute {expression}." in problem.prompt
        assert problem.ground_truth["answer"] == evaluate_bits(expression, bits), expression


@pytest.mark.parametrize(
    ("answer", "reason"),
    [("200", "correct"), ("0xC8", "correct"), ("0b11001000", "correct"), ("+200", "unparseable"),
     ("201", "wrong value"), ("-56", "unparseable"), ("200.0", "unparseable"), ("0xZZ", "unparseable")],
)  # fmt: skip
def test_bit_manipulation_verdicts(answer: str, reason: str) -> None:
    truth = {"bits": 8, "expression": "0x32 << 2", "tree": ["<<", 50, 2], "answer": 200}
    assert get_task("bit_manipulation").verify(truth, answer).reason == reason


# ---------------------------------------------------------------- syllogism

FIGURES = {
    1: (("M", "P"), ("S", "M")),
    2: (("P", "M"), ("S", "M")),
    3: (("M", "P"), ("M", "S")),
    4: (("P", "M"), ("M", "S")),
}
LETTER = {"A": "all", "E": "no", "I": "some", "O": "some_not"}
# The 24 valid moods with existential import; the first 15 are valid without it (Boolean reading).
UNCONDITIONAL = {"AAA-1", "EAE-1", "AII-1", "EIO-1", "EAE-2", "AEE-2", "EIO-2", "AOO-2", "IAI-3", "AII-3", "OAO-3",
                 "EIO-3", "AEE-4", "IAI-4", "EIO-4"}  # fmt: skip
CONDITIONAL = {"AAI-1", "EAO-1", "AEO-2", "EAO-2", "AAI-3", "EAO-3", "AEO-4", "EAO-4", "AAI-4"}


def test_syllogism_validity_matches_the_classical_table() -> None:
    for moods in ("".join(m) for m in itertools.product("AEIO", repeat=3)):
        for figure, (major, minor) in FIGURES.items():
            premises = [[LETTER[moods[0]], *major], [LETTER[moods[1]], *minor]]
            conclusion = [LETTER[moods[2]], "S", "P"]
            name = f"{moods}-{figure}"
            assert follows(premises, conclusion, existential_import=True) == (name in UNCONDITIONAL | CONDITIONAL), name
            assert follows(premises, conclusion, existential_import=False) == (name in UNCONDITIONAL), name


def test_syllogism_verdicts_and_balance() -> None:
    task = get_task("syllogism")
    truth = {"names": {"S": "poets", "M": "sailors", "P": "kings"}, "premises": [["all", "M", "P"], ["all", "S", "M"]],
             "conclusion": ["all", "S", "P"], "existential_import": True, "answer": "Yes"}  # fmt: skip
    assert task.verify(truth, "Yes").correct and task.verify(truth, "yes.").correct
    assert task.verify(truth, "No").reason == "wrong value"
    assert task.verify(truth, "Yes, it follows").reason == "unparseable"
    answers = [task.generate(random.Random(seed)).ground_truth["answer"] for seed in range(60)]
    assert 15 <= answers.count("Yes") <= 45
    assert {task.generate(random.Random(s), valid_share=0.0).ground_truth["answer"] for s in range(10)} == {"No"}


def test_syllogism_traces_name_a_real_counterexample() -> None:
    task = get_task("syllogism")
    for seed in range(40):
        problem = task.generate(random.Random(seed), valid_share=0.0)
        trace = task.write_trace(problem, random.Random(0))
        regions = re.search(r"only (.*) filled", trace.thinking)[1].split(", ")
        filled = frozenset(tuple(ch.isupper() for ch in name) for name in regions)
        truth = problem.ground_truth
        assert all(holds(p, filled) for p in truth["premises"]) and not holds(truth["conclusion"], filled)
        assert all(any(region[i] for region in filled) for i in range(3))  # no term is empty


# ---------------------------------------------------------------- cryptarithm


def test_send_more_money() -> None:
    count, solution = solve_count(["SEND", "MORE"], "MONEY")
    assert count == 1
    assert solution == {"S": 9, "E": 5, "N": 6, "D": 7, "M": 1, "O": 0, "R": 8, "Y": 2}
    truth = {"addends": ["SEND", "MORE"], "result": "MONEY"}
    task = get_task("cryptarithm")
    assert task.verify(truth, "D=7, E=5, M=1, N=6, O=0, R=8, S=9, Y=2").correct
    assert task.verify(truth, "S=9,E=5,N=6,D=7,M=1,O=0,R=8,Y=2").correct  # any order, rg's layout
    assert task.verify(truth, "D=7, E=5, M=1, N=6, O=0, R=8, S=9, Y=3").reason == "wrong value"
    assert task.verify(truth, "D=7, E=5, M=1, N=6, O=0, R=8, S=9, Y=7").reason == "illegal numbers"
    assert task.verify(truth, "D=7, E=5, M=1, N=6, O=0, R=8, S=9").reason == "unparseable"
    assert task.verify(truth, "D=7, E=5, M=1, N=6, O=0, R=8, S=9, Y=22").reason == "unparseable"


def test_cryptarithm_leading_zero_is_illegal_and_any_solution_counts() -> None:
    task = get_task("cryptarithm")
    truth = {"addends": ["A", "B"], "result": "CD"}  # many solutions: A+B = 10*C+D with C != 0
    assert task.verify(truth, "A=9, B=8, C=1, D=7").correct
    assert task.verify(truth, "A=8, B=9, C=1, D=7").correct
    assert task.verify(truth, "A=5, B=4, C=0, D=9").reason == "illegal numbers"  # CD starts with 0
    assert solve_count(["A", "B"], "CD", limit=5)[0] == 5


def test_cryptarithm_unique_knob() -> None:
    problem = get_task("cryptarithm").generate(random.Random(2), num_digits=6, require_unique=True)
    assert solve_count(problem.ground_truth["addends"], problem.ground_truth["result"])[0] == 1
