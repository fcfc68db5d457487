"""Checkers for the file-loaded tasks ``math`` and ``code`` (see `thinkrl.tasks.external`).

    task = task_for("math")                     # a MathTask whose checker is `math_check`
    task.verify(problem, r"... so \\boxed{17}")   # Verdict(reward=1.0, reason='correct', ...)
    task_for("countdown")                       # procedural tasks come from thinkrl.tasks.TASKS

`thinkrl.tasks` may not import the verifiers, so its `MathTask` / `CodeTask` take a checker; this
module supplies them: `math_check` runs `thinkrl.rewards.math.verify_math` (killable worker, time
limit) and `code_check` runs the problem's tests in the sandbox. Verifier reasons map onto the task
reasons ("correct", "wrong value", "no answer", "unparseable"); the verifier's own reason goes in
``Verdict.detail``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from thinkrl.rewards.code import code_reward
from thinkrl.rewards.math import verify_math
from thinkrl.rewards.sandbox import CodeTests, tests_from_apps, tests_from_humaneval, tests_from_livecodebench
from thinkrl.tasks import TASKS, Task, Verdict, get_task
from thinkrl.tasks.external import DATASET_TASKS, Checker, ReferenceTask

_MATH_REASONS = {"wrong: value": "wrong value", "wrong: no answer": "no answer"}


def math_check(ground_truth: Mapping[str, Any], answer_text: str) -> Verdict:
    """Verdict of ``answer_text`` against ``ground_truth["answer"]`` by the math verifier (5 s limit)."""
    reference = ground_truth.get("answer")
    if not isinstance(reference, str):
        raise ValueError(f"math ground truth needs a string 'answer', got {dict(ground_truth)!r:.120}")
    verdict = verify_math(answer_text, reference)
    if verdict.correct:
        return Verdict.right(verdict.extracted)
    return Verdict.wrong(_MATH_REASONS.get(verdict.reason, "unparseable"), f"{verdict.reason}: {verdict.extracted}")


def code_tests(ground_truth: Mapping[str, Any]) -> CodeTests:
    """The sandbox tests of a ``code`` ground truth (ValueError naming the problem with them)."""
    fmt = ground_truth.get("format")
    if fmt == "apps":
        return tests_from_apps(ground_truth)
    if fmt == "livecodebench":  # a copy: tests_from_livecodebench extends a decoded public list in place
        public = ground_truth.get("public_test_cases")
        return tests_from_livecodebench(dict(ground_truth, public_test_cases=list(public))
                                        if isinstance(public, list) else ground_truth)
    if fmt == "humaneval":
        return tests_from_humaneval(ground_truth)
    raise ValueError(f"code ground truth 'format' must be 'apps', 'livecodebench' or 'humaneval', got {fmt!r}")


def code_check(ground_truth: Mapping[str, Any], answer_text: str) -> Verdict:
    """Verdict of the program in ``answer_text`` (last ```python block) run against the problem's tests."""
    reward, reason = code_reward(answer_text, code_tests(ground_truth))
    if reward == 1.0:
        return Verdict.right(reason)
    return Verdict.wrong("no answer" if reason == "no code" else "wrong value", reason)


CHECKERS: dict[str, Checker] = {"math": math_check, "code": code_check}


@functools.cache
def dataset_task(name: str) -> ReferenceTask:
    """The file-loaded task ``name`` ("math" or "code") built with its checker (one shared instance)."""
    if name not in CHECKERS:
        raise KeyError(f"no checker for dataset task {name!r}; known: {', '.join(sorted(CHECKERS))}")
    return DATASET_TASKS.get(name)(CHECKERS[name])


def task_for(name: str) -> Task:
    """The task that scores problems of ``name``: a procedural task from `TASKS`, else a dataset task."""
    if name in TASKS:
        return get_task(name)
    if name in DATASET_TASKS:
        return dataset_task(name)
    known = sorted(TASKS.names() + DATASET_TASKS.names())
    raise KeyError(f"unknown task {name!r}; registered: {', '.join(known)}")
