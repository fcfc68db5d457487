"""Problems from files: math datasets (problem + reference answer) and code datasets (problem + tests).

    problems = load_math_dataset("beyond_aime.parquet")                 # fields problem, answer
    problems = load_math_dataset("aime24.jsonl", problem_key="Problem", answer_key="Answer", id_key="ID")
    problems = load_code_dataset("lcb.jsonl", check_tests=code_tests)    # APPS/TACO, LiveCodeBench, HumanEval rows
    write_jsonl(problems, "train.jsonl")                                 # then data.train_file: train.jsonl

Files are JSONL (one JSON object a line, blank lines skipped) or Parquet (read with pyarrow, an
optional dependency: a clear ImportError names it). A malformed row is a ValueError naming the
file, the line (JSONL) or row (Parquet, 1-based) and the field.

The problems belong to the tasks ``math`` and ``code``. Their verifiers are not here: ``math``
answers are judged by `thinkrl.rewards.math` (LaTeX-aware, in killable workers) and ``code`` by
running the tests in `thinkrl.rewards.sandbox`, and ``tasks/`` may not import ``rewards/``. So
`MathTask` and `CodeTask` take their checker as a constructor argument (dependency injection):
this module fixes the data contract (what ``ground_truth`` holds) and the answer routing, and
`thinkrl.rewards.external.dataset_task` builds them with the real checkers. They live in their own
registry, `DATASET_TASKS`, not in `TASKS`: they have no generator, no difficulty knobs and no
solution traces, so they are not procedural tasks (recipes may still name them in ``data.task``).

Ground truth:

- ``math``: ``{"answer": str}`` plus ``{"source_id": ...}`` when ``id_key`` is given.
- ``code``: ``{"format": "apps", "input_output": {"inputs", "outputs", "fn_name"?}}``,
  ``{"format": "livecodebench", "public_test_cases": [...], "private_test_cases": ..., "metadata": {...}}``
  or ``{"format": "humaneval", "test": str, "entry_point": str}``; the rewards side turns them into
  sandbox tests. This module checks that the fields exist and have the right JSON shape;
  pass ``check_tests`` to build every row's tests at load time and fail on the first bad one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from thinkrl.registry import Registry
from thinkrl.tasks.base import Problem, Task, Trace, Verdict, problem_id
from thinkrl.tasks.dataset import jsonl_objects

logger = logging.getLogger(__name__)

Checker = Callable[[Mapping[str, Any], str], Verdict]
"""``(ground_truth, answer_text) -> Verdict``; ``answer_text`` is the response after its thinking block."""

MATH_PROMPT = "{problem}\n\nPut your final answer within \\boxed{}."
CODE_PROMPT = "{problem}\n\n{instructions}\nWrite your solution as one Python program in a ```python block."
FILE_SUFFIXES = (".jsonl", ".parquet")


class ReferenceTask(Task):
    """A task whose problems come from files and whose answers are judged by an injected checker."""

    difficulty_knobs: ClassVar[tuple] = ()

    def __init__(self, checker: Checker) -> None:
        if not callable(checker):
            raise TypeError(f"checker must be callable (ground_truth, answer_text) -> Verdict, got {checker!r}")
        self.checker = checker

    def build(self, rng: Any, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Not available: the problems of this task are loaded from files."""
        raise ValueError(f"task {self.name!r} has no generator; load its problems from a file "
                         "(thinkrl.tasks.external) and set data.train_file / data.test_file")

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The ground truth as sorted JSON (the loaders add the problem text before hashing)."""
        return _canonical(ground_truth)

    def verify(self, problem_or_ground_truth: Problem | Mapping[str, Any], answer_text: str) -> Verdict:
        """Judge ``answer_text`` (the whole answer part: the checker does its own extraction)."""
        ground_truth = self.ground_truth_of(problem_or_ground_truth)
        if not isinstance(answer_text, str):
            raise TypeError(f"answer text must be a str, got {type(answer_text).__name__}")
        if not answer_text.strip():
            return Verdict.wrong("no answer", "the answer text is empty")
        return self.checker(ground_truth, answer_text)

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """The injected checker's verdict."""
        return self.checker(ground_truth, answer)

    def write_trace(self, problem: Problem, rng: Any, noise: float = 0.0) -> Trace:
        """Not available: file datasets carry no worked solutions in a fixed format."""
        raise ValueError(f"task {self.name!r} has no solution traces")


DATASET_TASKS: Registry[type[ReferenceTask]] = Registry("dataset task")


@DATASET_TASKS.register("math")
class MathTask(ReferenceTask):
    """Math problems with a reference answer (AIME, BeyondAIME, MATH...), judged by the math verifier."""

    name = "math"


@DATASET_TASKS.register("code")
class CodeTask(ReferenceTask):
    """Programming problems with unit tests (APPS/TACO, LiveCodeBench, HumanEval), judged in the sandbox."""

    name = "code"


# --- reading rows ------------------------------------------------------------------------------------------


def read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)`` for each record of a JSONL or Parquet file; ``where`` is ``"file:line N"``.

    Raises FileNotFoundError, ValueError (unknown suffix, invalid JSON, a line that is not an
    object) or ImportError (Parquet without pyarrow).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from jsonl_objects(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise ValueError(f"dataset file {path} must end in one of {', '.join(FILE_SUFFIXES)}, got {suffix!r}")


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"reading {path} needs pyarrow (pip install pyarrow); or convert it to JSONL") from None
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}:row {number}", row


def _field(row: Mapping[str, Any], key: str, where: str) -> Any:
    """``row[key]``; a missing key is a ValueError naming it, the fields present and a same-name-other-case hint."""
    if key in row and row[key] is not None:
        return row[key]
    if key in row:
        raise ValueError(f"{where}: field {key!r} is null")
    hint = [k for k in row if k.lower() == key.lower()]
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"{where}: missing field {key!r} (fields: {', '.join(map(str, row))}){extra}")


def _text_field(row: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(row, key, where)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {value!r:.80}")
    return value.strip()


def fill_template(template: str, **fields: str) -> str:
    """Fill the ``{name}`` placeholders of ``template`` in one pass; the values may contain braces
    (they are never re-scanned), and braces not naming a field stay as they are."""
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in fields))
    return pattern.sub(lambda match: fields[match.group(0)[1:-1]], template)


def _canonical(ground_truth: Mapping[str, Any]) -> str:
    return json.dumps(ground_truth, sort_keys=True, ensure_ascii=True)


def _check_template(template: str, placeholder: str = "{problem}") -> None:
    if not isinstance(template, str) or placeholder not in template:
        raise ValueError(f"prompt_template must be a str containing {placeholder}, got {template!r:.80}")


def _dedupe(problems: list[Problem], path: str | Path) -> list[Problem]:
    unique = {p.id: p for p in reversed(problems)}  # reversed: the first occurrence wins
    if len(unique) < len(problems):
        logger.warning("%s: dropped %d duplicate problems", path, len(problems) - len(unique))
    return [p for p in problems if unique.get(p.id) is p]


# --- math ----------------------------------------------------------------------------------------------------


def _answer_text(value: Any, key: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where}: field {key!r} must be a string or a number, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{where}: field {key!r} is empty")
    return text


def load_math_dataset(path: str | Path, *, problem_key: str = "problem", answer_key: str = "answer",
                      id_key: str | None = None, prompt_template: str = MATH_PROMPT) -> list[Problem]:
    """Problems of task ``math`` from a JSONL/Parquet file with a problem text and a reference answer per row.

    ``prompt_template`` wraps the problem text (its ``{problem}`` is replaced). Numbers as answers
    become strings; duplicate problems (same text and answer) are dropped with a warning.
    """
    _check_template(prompt_template)
    problems = []
    for where, row in read_rows(path):
        text = _text_field(row, problem_key, where)
        ground_truth: dict[str, Any] = {"answer": _answer_text(_field(row, answer_key, where), answer_key, where)}
        if id_key is not None:
            ground_truth["source_id"] = _answer_text(_field(row, id_key, where), id_key, where)
        key = " ".join(text.split()) + "\n" + _canonical({"answer": ground_truth["answer"]})
        prompt = fill_template(prompt_template, problem=text)
        problems.append(Problem("math", problem_id("math", key), prompt, ground_truth, {}))
    return _dedupe(problems, path)


# --- code ----------------------------------------------------------------------------------------------------


def _json_value(value: Any, key: str, where: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: field {key!r} is not valid JSON ({error.msg})") from None
    return value


def _apps_tests(row: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    spec = _json_value(_field(row, "input_output", where), "input_output", where)
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: field 'input_output' must be an object, got {type(spec).__name__}")
    for key in ("inputs", "outputs"):
        if not isinstance(spec.get(key), list):
            raise ValueError(f"{where}: field 'input_output.{key}' must be a list, got {spec.get(key)!r:.60}")
    if len(spec["inputs"]) != len(spec["outputs"]) or not spec["inputs"]:
        raise ValueError(f"{where}: 'input_output' needs as many outputs as inputs, at least one "
                         f"(got {len(spec['inputs'])} and {len(spec['outputs'])})")
    fn_name = spec.get("fn_name")
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise ValueError(f"{where}: field 'input_output.fn_name' must be an identifier, got {fn_name!r}")
    tests = {"inputs": spec["inputs"], "outputs": spec["outputs"]}
    if fn_name:
        tests["fn_name"] = fn_name
    text = _text_field(row, "question", where)
    return text, {"format": "apps", "input_output": tests}


def _lcb_tests(row: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    public = _json_value(_field(row, "public_test_cases", where), "public_test_cases", where)
    if not isinstance(public, list) or not public:
        raise ValueError(f"{where}: field 'public_test_cases' must be a non-empty list of tests")
    for i, case in enumerate(public):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str) for k in ("input", "output")):
            raise ValueError(f"{where}: field 'public_test_cases[{i}]' needs string 'input' and 'output'")
    metadata = _json_value(row.get("metadata") or {}, "metadata", where)
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: field 'metadata' must be an object, got {type(metadata).__name__}")
    private = row.get("private_test_cases") or None
    if private is not None and not isinstance(private, str | list):
        raise ValueError(f"{where}: field 'private_test_cases' must be a string or a list")
    text = _text_field(row, "question_content", where)
    return text, {"format": "livecodebench", "public_test_cases": public, "private_test_cases": private,
                  "metadata": metadata}


def _humaneval_tests(row: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    entry_point = _text_field(row, "entry_point", where)
    if not entry_point.isidentifier():
        raise ValueError(f"{where}: field 'entry_point' must be an identifier, got {entry_point!r}")
    return _text_field(row, "prompt", where), {"format": "humaneval", "test": _text_field(row, "test", where),
                                               "entry_point": entry_point}


def _code_instructions(ground_truth: Mapping[str, Any], starter: str | None) -> str:
    fmt = ground_truth["format"]
    if fmt == "humaneval":
        return f"Complete the function `{ground_truth['entry_point']}` (repeat its signature)."
    fn_name = (ground_truth["input_output"].get("fn_name") if fmt == "apps"
               else ground_truth["metadata"].get("func_name"))
    if fn_name and starter:
        return f"Implement `{fn_name}`, starting from:\n```python\n{starter.rstrip()}\n```"
    if fn_name:
        return f"Implement the function `{fn_name}`."
    return "Read the input from standard input and print the answer to standard output."


def load_code_dataset(path: str | Path, *, prompt_template: str = CODE_PROMPT,
                      check_tests: Callable[[Mapping[str, Any]], object] | None = None) -> list[Problem]:
    """Problems of task ``code`` from a JSONL/Parquet file of APPS/TACO, LiveCodeBench or HumanEval rows.

    The format is read per row: ``input_output`` (+ ``question``) is APPS/TACO; ``public_test_cases``
    (+ ``question_content``, optional ``private_test_cases``, ``metadata``, ``starter_code``) is
    LiveCodeBench; ``test`` + ``entry_point`` (+ ``prompt``) is HumanEval. ``prompt_template`` has
    ``{problem}`` and ``{instructions}`` placeholders. ``check_tests`` (e.g.
    `thinkrl.rewards.external.code_tests`) is called on every ground truth; its ValueError is
    re-raised naming the row.
    """
    _check_template(prompt_template)
    problems = []
    for where, row in read_rows(path):
        if "input_output" in row:
            text, ground_truth = _apps_tests(row, where)
        elif "public_test_cases" in row:
            text, ground_truth = _lcb_tests(row, where)
        elif "test" in row and "entry_point" in row:
            text, ground_truth = _humaneval_tests(row, where)
        else:
            raise ValueError(f"{where}: cannot tell the test format; expected 'input_output' (APPS/TACO), "
                             f"'public_test_cases' (LiveCodeBench) or 'test' + 'entry_point' (HumanEval); "
                             f"fields: {', '.join(map(str, row))}")
        if check_tests is not None:
            try:
                check_tests(ground_truth)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{where}: bad tests: {error}") from None
        starter = row.get("starter_code") if isinstance(row.get("starter_code"), str) else None
        prompt = fill_template(prompt_template, problem=text, instructions=_code_instructions(ground_truth, starter))
        key = " ".join(text.split()) + "\n" + _canonical(ground_truth)
        problems.append(Problem("code", problem_id("code", key), prompt, ground_truth, {}))
    return _dedupe(problems, path)
