"""Benchmarks: the problems an evaluation samples, from a file or a built-in task, each with a stable id.

File formats (``--data-format auto`` tells them apart by the first record):

- ``problems``: JSONL written by ``thinkrl data`` / `thinkrl.tasks.dataset.write_jsonl` (fields task, id, prompt,
  ground_truth, difficulty): any built-in task, judged by its own verifier. Every ground truth is shown to that
  verifier at load time (`check_ground_truths`), so a file it cannot read fails before sampling, naming the line.
- ``math``: JSONL or Parquet rows with ``problem`` and ``answer`` (`thinkrl.tasks.external.load_math_dataset`),
  judged by the math verifier.
- ``code``: APPS/TACO, LiveCodeBench or HumanEval rows (`thinkrl.tasks.external.load_code_dataset`), judged by
  running the tests in the sandbox; every row's tests are built at load time, so a bad row fails before sampling.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from thinkrl.rewards.external import code_tests, task_for
from thinkrl.tasks import Problem, get_task
from thinkrl.tasks.cli import parse_difficulty
from thinkrl.tasks.dataset import generate_dataset, jsonl_objects, read_jsonl
from thinkrl.tasks.external import load_code_dataset, load_math_dataset, read_rows

FORMATS = ("auto", "problems", "math", "code")
CODE_FIELDS = ("input_output", "public_test_cases", "entry_point")
PROBE_ANSWER = "0"
"""The answer `check_ground_truths` has each verifier judge: a verifier reads the ground truth it needs for any
answer (and raises ValueError naming a missing or mistyped field), whatever the answer's verdict."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where the problems come from: ``data`` (a file) or ``task`` (generated, ``n`` problems from ``seed``)."""

    data: str | None = None
    data_format: str = "auto"
    task: str | None = None
    n: int = 200
    seed: int = 1_000_003
    difficulty: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line naming the benchmark (stored in the run config)."""
        if self.data:
            return f"data:{Path(self.data).resolve()} format={self.data_format}"
        return f"task:{self.task} n={self.n} seed={self.seed} difficulty={' '.join(self.difficulty)}"


def detect_format(path: str | Path) -> str:
    """``problems``, ``math`` or ``code`` from the fields of the file's first record."""
    for where, row in read_rows(path):
        if {"task", "id", "prompt", "ground_truth"} <= set(row):
            return "problems"
        if "problem" in row and "answer" in row:
            return "math"
        if any(key in row for key in CODE_FIELDS):
            return "code"
        raise ValueError(f"{where}: cannot tell the benchmark format from the fields {', '.join(map(str, row))}; "
                         "expected task/id/prompt/ground_truth (thinkrl data), problem/answer (math) or "
                         "input_output / public_test_cases / test+entry_point (code); or pass --data-format")
    raise ValueError(f"benchmark file {path} holds no problems")


def check_ground_truths(path: str | Path, problems: list[Problem]) -> None:
    """ValueError naming the file, line and problem when a task's verifier cannot read a ground truth of
    ``problems`` (read from the JSONL ``path``), as SFT names a ground truth its task cannot trace.

    The check is the verifier's own: each problem's task judges `PROBE_ANSWER` (a ``code`` problem builds its
    tests, as `load_code_dataset` does, instead of running a program). Fields only a solution trace needs may be
    missing: evaluation writes no traces.
    """
    for index, problem in enumerate(problems):
        try:
            if problem.task == "code":
                code_tests(problem.ground_truth)
            else:
                task_for(problem.task).verify(problem, PROBE_ANSWER)
        except (ValueError, TypeError) as error:
            where = next(itertools.islice(jsonl_objects(path), index, None))[0]  # (read_jsonl skips blank lines)
            raise ValueError(f"{where}: problem {problem.id!r} of task {problem.task!r}: {error}") from None


def load_benchmark(spec: BenchmarkSpec) -> list[Problem]:
    """The problems of ``spec``; ValueError for an empty benchmark or two problems with one id."""
    if spec.data:
        if spec.data_format not in FORMATS:
            raise ValueError(f"data format must be one of {', '.join(FORMATS)}, got {spec.data_format!r}")
        if Path(spec.data).is_dir():
            raise IsADirectoryError(f"benchmark file {spec.data} is a folder, not a file")
        if not Path(spec.data).is_file():
            raise FileNotFoundError(f"benchmark file {spec.data} does not exist")
        fmt = detect_format(spec.data) if spec.data_format == "auto" else spec.data_format
        if fmt == "problems":
            problems = read_jsonl(spec.data)
            check_ground_truths(spec.data, problems)
        elif fmt == "math":
            problems = load_math_dataset(spec.data)
        else:
            problems = load_code_dataset(spec.data, check_tests=code_tests)
    elif spec.task:
        try:
            task = get_task(spec.task)
        except KeyError as error:
            raise ValueError(str(error).strip("'\"")) from None
        problems = generate_dataset(task, spec.n, spec.seed, "test", parse_difficulty(task, spec.difficulty))
    else:
        raise ValueError("give a benchmark: --data FILE or --task NAME")
    if not problems:
        raise ValueError(f"benchmark {spec.describe()} holds no problems")
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise ValueError(f"benchmark {spec.describe()}: problem id {problem.id} appears twice; ids must be "
                             "unique so a resumed run can tell finished problems apart")
        seen.add(problem.id)
    return problems
