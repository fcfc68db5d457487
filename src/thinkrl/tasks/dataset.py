"""Datasets of problems: generation with disjoint splits, and JSONL I/O.

Split rule: a problem's split is a function of its content hash alone,
``"test" if int(id, 16) % 100 < test_percent else "train"``. The id hashes the
task name and the problem's canonical content (e.g. the sorted numbers and the
target), so the same problem lands in the same split whatever seed, number
order or run produced it: train and held-out sets never overlap as long as
they use the same ``test_percent``.

JSONL: one `Problem` per line with exactly the fields ``task``, ``id``,
``prompt``, ``ground_truth`` (object) and ``difficulty`` (object). Blank lines
are skipped; anything else malformed is a ValueError naming the file, the line
number and the field.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from thinkrl.tasks.base import Problem, Task
from thinkrl.tasks.registry import TASKS, get_task

SPLITS = ("train", "test")
_FIELDS: dict[str, type] = {"task": str, "id": str, "prompt": str, "ground_truth": dict, "difficulty": dict}


def split_of(problem_id: str, test_percent: int = 10) -> str:
    """``"test"`` if the id's hash bucket (0..99) is below ``test_percent``, else ``"train"``."""
    _check_percent(test_percent)
    try:
        bucket = int(problem_id, 16) % 100
    except ValueError:
        raise ValueError(f"problem id {problem_id!r} is not a hex content hash") from None
    return "test" if bucket < test_percent else "train"


def _check_percent(test_percent: int) -> None:
    if isinstance(test_percent, bool) or not isinstance(test_percent, int) or not 0 <= test_percent <= 100:
        raise ValueError(f"test_percent must be an int in 0..100, got {test_percent!r}")


def generate_dataset(
    task: str | Task,
    n: int,
    seed: int,
    split: str,
    difficulty: Mapping[str, Any] | None = None,
    test_percent: int = 10,
) -> list[Problem]:
    """``n`` distinct problems of ``split``, generated from ``random.Random(seed)``.

    Problems of the other split and duplicates (same id) are skipped; raises
    ValueError if ``n`` distinct problems cannot be found within ``50 * n + 1000``
    draws, or if ``50 * (k + 1) + 1000`` draws in a row bring no new one after k
    were found (the difficulty allows too few distinct problems: a huge ``n`` fails
    as soon as the space is used up, not after ``50 * n`` draws).
    """
    task = get_task(task) if isinstance(task, str) else task
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    _check_percent(test_percent)
    if n > 0 and test_percent == (0 if split == "test" else 100):
        raise ValueError(f"test_percent={test_percent} leaves no problems for split {split!r}")
    resolved = task.resolve_difficulty(difficulty)
    rng = random.Random(seed)
    problems: dict[str, Problem] = {}
    max_draws, draws, last_new = 50 * n + 1000, 0, 0
    while len(problems) < n and draws < max_draws and draws - last_new < 50 * (len(problems) + 1) + 1000:
        problem = task.generate(rng, **resolved)
        draws += 1
        if problem.id not in problems and split_of(problem.id, test_percent) == split:
            problems[problem.id] = problem
            last_new = draws
    if len(problems) < n:
        raise ValueError(
            f"found only {len(problems)} distinct {split} problems of {task.name!r} in {draws} draws "
            f"(asked for {n}); widen the difficulty {resolved}"
        )
    return list(problems.values())


def write_jsonl(problems: Iterable[Problem], out: str | Path | IO[str]) -> int:
    """Write one JSON object per problem to a path or an open text file; returns the count."""
    if isinstance(out, str | Path):
        with open(out, "w", encoding="utf-8") as handle:
            return write_jsonl(problems, handle)
    count = 0
    for problem in problems:
        out.write(json.dumps(problem.to_dict(), ensure_ascii=True, sort_keys=True) + "\n")
        count += 1
    return count


def problem_from_dict(data: Any, where: str = "problem") -> Problem:
    """Build a `Problem` from a decoded JSON object, checking every field.

    ``where`` prefixes error messages (e.g. ``"data.jsonl:line 3"``).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for name, kind in _FIELDS.items():
        if name not in data:
            raise ValueError(f"{where}: missing field {name!r}")
        if not isinstance(data[name], kind):
            raise ValueError(f"{where}: field {name!r} must be {kind.__name__}, got {type(data[name]).__name__}")
    extra = sorted(set(data) - set(_FIELDS))
    if extra:
        raise ValueError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(_FIELDS)}")
    return Problem(**{name: data[name] for name in _FIELDS})


def jsonl_objects(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of a JSONL file, ``where`` being ``"<path>:line <n>"``.

    Raises:
        ValueError: a line is not UTF-8, not valid JSON or not a JSON object (the message names file and line).
    """
    with open(path, "rb") as handle:  # bytes, decoded line by line: a bad byte is named with its line
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def read_jsonl(path: str | Path) -> list[Problem]:
    """Read problems written by `write_jsonl`; malformed lines, and tasks neither `TASKS` nor `DATASET_TASKS` has,
    raise ValueError naming file:line and field."""
    from thinkrl.tasks.external import DATASET_TASKS  # (it reads its own files with `jsonl_objects`)

    problems = []
    for where, row in jsonl_objects(path):
        problems.append(problem_from_dict(row, where))
        name = problems[-1].task
        if name not in TASKS and name not in DATASET_TASKS:
            raise ValueError(f"{where}: unknown task {name!r}; registered: "
                             f"{', '.join(sorted(TASKS.names() + DATASET_TASKS.names()))}")
    return problems
