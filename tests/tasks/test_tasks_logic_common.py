"""Every logic task: determinism, reference and trace answers verify, noise, knobs, junk; the whole registry."""

from __future__ import annotations

import json
import random

import pytest

from thinkrl.tasks import REASONS, TASKS, Problem, get_task
from thinkrl.tasks.base import problem_id

# Small difficulties keep the suite fast; each task's defaults are exercised once in test_defaults_generate.
SMALL: dict[str, dict] = {
    "binary_matrix": {"rows": 3, "cols": 4},
    "bit_manipulation": {"num_ops": 3},
    "calendar_arithmetic": {},
    "cryptarithm": {"num_digits": 3},
    "futoshiki": {"size": 4},
    "graph_coloring": {"num_vertices": 6},
    "kakurasu": {"rows": 3, "cols": 3},
    "knights_knaves": {"num_people": 3},
    "maze": {"rows": 5, "cols": 5, "min_distance": 3},
    "mini_sudoku": {"num_empty": 8},
    "n_queens": {"n": 6, "num_given": 1},
    "nonogram": {"rows": 4, "cols": 4},
    "sat": {"num_vars": 4, "num_clauses": 8},
    "sudoku": {"num_empty": 30},
    "syllogism": {},
    "tower_of_hanoi": {"min_disks": 2, "max_disks": 4},
    "word_sorting": {"num_words": 5},
    "zebra_puzzle": {"num_houses": 3, "num_attributes": 3},
}
NAMES = sorted(SMALL)
ORIGINAL = ("arithmetic", "countdown", "game24")
PER_TASK = 12  # problems per task in the shared fixture (sudoku: 4)


def reference(problem: Problem) -> str:
    """The reference answer text stored in the ground truth."""
    truth = problem.ground_truth
    return str(truth["solution"] if "solution" in truth else truth["answer"])


@pytest.fixture(scope="module")
def problems() -> dict[str, list[Problem]]:
    out = {}
    for name in NAMES:
        count = 4 if name == "sudoku" else PER_TASK
        out[name] = [get_task(name).generate(random.Random(seed), **SMALL[name]) for seed in range(count)]
    return out


def test_registry_has_at_least_twenty_tasks_and_all_of_these() -> None:
    assert len(TASKS) >= 20
    assert set(NAMES) | set(ORIGINAL) <= set(TASKS.names())


@pytest.mark.parametrize("name", TASKS.names())
def test_every_registered_task_generates_traces_and_verifies(name: str) -> None:
    task = get_task(name)
    problem = task.generate(random.Random(5), **SMALL.get(name, {}))
    trace = task.write_trace(problem, random.Random(0))
    assert task.verify(problem, trace.answer).correct, (problem, trace)
    assert task.verify(problem, f"thinking...\n\\boxed{{{trace.answer}}}").correct
    noisy = task.write_trace(problem, random.Random(0), noise=1.0)
    assert not task.verify(problem, noisy.answer).correct, (problem, noisy)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_generate(name: str) -> None:
    task = get_task(name)
    problem = task.generate(random.Random(0))
    assert problem.difficulty == task.default_difficulty
    assert task.verify(problem, reference(problem)).correct


@pytest.mark.parametrize("name", NAMES)
def test_problems_are_well_formed_and_references_verify(name: str, problems) -> None:
    task = get_task(name)
    for problem in problems[name]:
        assert problem.task == name
        assert problem.prompt.isascii() and problem.prompt.strip() == problem.prompt
        assert "Answer" in problem.prompt  # the answer format is spelled out
        assert json.loads(json.dumps(problem.to_dict())) == problem.to_dict()
        assert problem.id == problem_id(name, task.canonical_key(problem.ground_truth))
        verdict = task.verify(problem, reference(problem))
        assert verdict.correct, (problem, verdict)
        assert task.verify(json.loads(json.dumps(problem.ground_truth)), f"Answer: {reference(problem)}").correct


@pytest.mark.parametrize("name", NAMES)
def test_clean_traces_verify_and_are_ascii(name: str, problems) -> None:
    task = get_task(name)
    rng = random.Random(0)
    for problem in problems[name]:
        trace = task.write_trace(problem, rng)
        assert trace.thinking and trace.thinking.isascii() and trace.answer.isascii()
        assert task.verify(problem, trace.answer).correct, (problem, trace)


@pytest.mark.parametrize("name", NAMES)
def test_noisy_traces_are_wrong_and_differ(name: str, problems) -> None:
    task = get_task(name)
    rng = random.Random(1)
    for problem in problems[name]:
        clean = task.write_trace(problem, random.Random(0))
        noisy = task.write_trace(problem, rng, noise=1.0)
        verdict = task.verify(problem, noisy.answer)
        assert not verdict.correct and verdict.reason in REASONS, (problem, noisy)
        assert noisy.thinking != clean.thinking or noisy.answer != clean.answer


@pytest.mark.parametrize("name", NAMES)
def test_noise_rate_is_respected(name: str, problems) -> None:
    task = get_task(name)
    rng = random.Random(3)
    pool = problems[name] * (40 // len(problems[name]) + 1)
    wrong = sum(not task.verify(p, task.write_trace(p, rng, noise=0.3).answer).correct for p in pool)
    assert 0.12 <= wrong / len(pool) <= 0.5


@pytest.mark.parametrize("name", NAMES)
def test_seed_determinism_and_variety(name: str) -> None:
    task = get_task(name)
    first = [task.generate(random.Random(42), **SMALL[name]) for _ in range(2)]
    assert first[0] == first[1]
    traces = [task.write_trace(first[0], random.Random(7), noise=0.5) for _ in range(2)]
    assert traces[0] == traces[1]
    count = 4 if name == "sudoku" else 15
    ids = {task.generate(random.Random(seed), **SMALL[name]).id for seed in range(count)}
    assert len(ids) >= count - 3  # different seeds give different problems


@pytest.mark.parametrize("name", NAMES)
def test_difficulty_knobs_are_validated(name: str) -> None:
    task = get_task(name)
    with pytest.raises(ValueError, match="'bogus'"):
        task.generate(random.Random(0), bogus=1)
    for knob in task.difficulty_knobs:
        wrong_type = "text"
        with pytest.raises(ValueError, match=knob.name):
            task.resolve_difficulty({knob.name: wrong_type})
        if knob.kind is not bool:
            assert knob.low is not None and knob.high is not None
            with pytest.raises(ValueError, match=knob.name):
                task.resolve_difficulty({knob.name: knob.high + 1})
            with pytest.raises(ValueError, match=knob.name):
                task.resolve_difficulty({knob.name: knob.low - 1})
        assert knob.help


@pytest.mark.parametrize(
    ("name", "difficulty", "size_of"),
    [
        ("graph_coloring", {"num_vertices": 9, "num_colors": 4}, lambda t: (t["num_vertices"], t["num_colors"])),
        ("sat", {"num_vars": 7, "num_clauses": 9, "clause_size": 2}, lambda t: (t["num_vars"], len(t["clauses"]))),
        ("nonogram", {"rows": 3, "cols": 6}, lambda t: (len(t["rows"]), len(t["cols"]))),
        ("kakurasu", {"rows": 2, "cols": 5}, lambda t: (len(t["row_sums"]), len(t["col_sums"]))),
        ("binary_matrix", {"rows": 2, "cols": 7}, lambda t: (len(t["matrix"]), len(t["matrix"][0]))),
        ("zebra_puzzle", {"num_houses": 4, "num_attributes": 2}, lambda t: (len(t["values"][0]), len(t["values"]))),
        ("knights_knaves", {"num_people": 5}, lambda t: len(t["names"])),
        ("futoshiki", {"size": 5}, lambda t: len(t["puzzle"])),
        ("word_sorting", {"num_words": 9}, lambda t: len(t["words"])),
        ("bit_manipulation", {"bits": 12}, lambda t: t["bits"]),
        ("tower_of_hanoi", {"min_disks": 6, "max_disks": 6}, lambda t: len(t["start"])),
        ("cryptarithm", {"num_addends": 3, "num_digits": 4}, lambda t: (len(t["addends"]), len(t["addends"][0]))),
    ],
)
def test_size_knobs_shape_the_problem(name: str, difficulty: dict, size_of) -> None:
    expected = {
        "graph_coloring": (9, 4), "sat": (7, 9), "nonogram": (3, 6), "kakurasu": (2, 5), "binary_matrix": (2, 7),
        "zebra_puzzle": (4, 2), "knights_knaves": 5, "futoshiki": 5, "word_sorting": 9, "bit_manipulation": 12,
        "tower_of_hanoi": 6, "cryptarithm": (3, 4),
    }[name]  # fmt: skip
    for seed in range(3):
        assert size_of(get_task(name).generate(random.Random(seed), **difficulty).ground_truth) == expected


@pytest.mark.parametrize(
    ("name", "difficulty", "match"),
    [
        ("n_queens", {"n": 4, "num_given": 4}, "num_given"),
        ("tower_of_hanoi", {"min_disks": 5, "max_disks": 3}, "min_disks"),
        ("graph_coloring", {"num_vertices": 3, "num_colors": 4}, "num_colors"),
        ("sat", {"num_vars": 2, "clause_size": 3}, "clause_size"),
        ("calendar_arithmetic", {"min_year": 2000, "max_year": 1999}, "min_year"),
        ("calendar_arithmetic", {"ask_add_days": False, "ask_weekday": False, "ask_days_between": False}, "ask"),
        ("maze", {"rows": 2, "cols": 2, "min_distance": 4}, "min_distance"),
    ],
)
def test_cross_knob_constraints(name: str, difficulty: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_task(name).resolve_difficulty(difficulty)


@pytest.mark.parametrize(
    ("name", "difficulty"),
    [
        ("futoshiki", {"size": 3, "empty_fraction": 1.0, "inequality_density": 0.0}),  # never unique
        ("maze", {"rows": 2, "cols": 2, "min_distance": 3}),  # no two cells of a 2x2 grid are 3 apart
    ],
)
def test_infeasible_difficulty_is_a_clear_error(name: str, difficulty: dict) -> None:
    with pytest.raises(ValueError, match="widen"):
        get_task(name).generate(random.Random(0), **difficulty)


@pytest.mark.parametrize("name", NAMES)
def test_verifiers_never_raise_on_junk(name: str, problems) -> None:
    task = get_task(name)
    problem = problems[name][0]
    rng = random.Random(0)
    alphabet = "0123456789ABCDLRUxXabc=,:/ \n-<>.#?\\{}"
    samples = [reference(problem)[: rng.randint(0, 40)] for _ in range(50)]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    samples += ["1" * 50_000, "A=" * 20_000, "x1=1, " * 5000]
    for junk in samples:
        verdict = task.verify(problem, junk)
        assert verdict.reason in REASONS
        assert verdict.correct == (verdict.reward == 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_problem_of_another_task_is_refused(name: str, problems) -> None:
    other = next(n for n in NAMES if n != name)
    with pytest.raises(ValueError, match="given to"):
        get_task(name).verify(problems[other][0], "1")


@pytest.mark.parametrize("name", NAMES)
def test_empty_answer_is_no_answer(name: str, problems) -> None:
    assert get_task(name).verify(problems[name][0], "  \n ").reason == "no answer"


@pytest.mark.parametrize("name", NAMES)
def test_bad_noise_is_rejected(name: str, problems) -> None:
    with pytest.raises(ValueError, match="noise"):
        get_task(name).write_trace(problems[name][0], random.Random(0), noise=-0.1)
