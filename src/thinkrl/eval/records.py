"""What an evaluation run writes: its settings (``config.json``) and one line per finished problem
(``samples.jsonl``), from which every report is computed.

A line holds one (problem, thinking budget) unit with all its k samples, appended and flushed as soon as the unit
is finished, so a run that is killed loses at most the units in flight; ``--resume`` reads the file and skips the
units it holds. Only the last line may be incomplete (a write cut off by the kill): it is dropped with a warning.
Any other bad line is a ValueError naming the file and line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thinkrl.tasks import Problem

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
CONFIG_FILE = "config.json"


class SampleResult(BaseModel):
    """One judged response.

    Fields:
        index: sample number j in [0, k).
        seed: the sampling seed sent with the request.
        correct: the task verifier's verdict.
        reason: "correct", the verifier's reason ("wrong value", "no answer", ...) or "truncated".
        finish_reason: "stop" or "length" (as the engine or the endpoint reported it).
        response_tokens: generated tokens.
        thinking_tokens: generated tokens up to and including the end of thinking.
        answer: the response after its thinking block (what was verified), cut to 2000 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    seed: int
    correct: bool
    reason: str
    finish_reason: str
    response_tokens: int = Field(ge=0)
    thinking_tokens: int = Field(ge=0)
    answer: str = ""


class ProblemResult(BaseModel):
    """All k samples of one problem at one thinking budget (one line of ``samples.jsonl``).

    Fields:
        problem_id: the problem's stable id (`thinkrl.tasks.Problem.id`).
        task: the task that judged it.
        thinking_budget: the budget the prompt asked for (-1 unlimited).
        samples: the k judged samples, in sample order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem_id: str
    task: str
    thinking_budget: int
    samples: list[SampleResult]

    @property
    def key(self) -> tuple[str, int]:
        """(problem id, budget): the unit a resumed run skips."""
        return self.problem_id, self.thinking_budget

    @property
    def num_correct(self) -> int:
        return sum(s.correct for s in self.samples)


class RunConfig(BaseModel):
    """The settings that make a run's samples comparable; a resumed run must match them exactly.

    Fields:
        source: ``model:<dir>`` for a local model or ``endpoint:<base_url>#<model>``.
        benchmark: what the problems are (``data:<path>`` or ``task:<name> n=.. seed=.. difficulty=..``).
        num_problems: problems in the benchmark.
        samples: k, responses per problem and budget.
        budgets: thinking budgets evaluated (-1 unlimited).
        temperature / top_p / max_tokens: sampling settings of every request.
        seed: base of the per-sample seeds (`sample_seed`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    benchmark: str
    num_problems: int
    samples: int = Field(ge=1)
    budgets: list[int]
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1)
    seed: int = Field(ge=0)


def sample_seed(seed: int, problem_index: int, samples: int, sample_index: int) -> int:
    """Seed of sample j of problem i: ``seed * 1_000_003 + i * samples + j`` (as `thinkrl.eval.evaluate`)."""
    return seed * 1_000_003 + problem_index * samples + sample_index


@dataclass(frozen=True)
class Job:
    """One unit to sample: problem number ``index`` of the benchmark at ``thinking_budget``."""

    index: int
    problem: Problem
    thinking_budget: int


def read_results(path: str | Path) -> list[ProblemResult]:
    """The finished units in ``samples.jsonl`` (none when the file does not exist).

    Raises:
        ValueError: a line other than the last is not a valid `ProblemResult` (names the file and line).
    """
    path = Path(path)
    if not path.exists():
        return []
    # bytes, not text: a write cut off by a kill may end inside a multi-byte character, and is dropped like any
    # other cut line instead of failing to decode the whole file
    lines = path.read_bytes().split(b"\n")
    results = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            results.append(ProblemResult.model_validate_json(line))
        except ValidationError as error:
            if number == len(lines):  # no newline after it: a write the interrupted run never finished
                logger.warning("%s:line %d is incomplete (an interrupted write); it will be sampled again",
                               path, number)
                continue
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"])) or "line"
            raise ValueError(f"{path}:line {number}: not a sample record ({where}: {first['msg']})") from None
    return results


def drop_incomplete_tail(path: Path) -> None:
    """End the file on a newline so the next append starts a line of its own: an unterminated last line that is
    a whole record (only its newline was lost; `read_results` counts it) gets its newline, any other is cut."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:  # in place: rewriting the whole file could lose all of it to a second kill
        try:
            ProblemResult.model_validate_json(data[start:])
        except ValidationError:
            handle.truncate(start)
        else:
            handle.seek(len(data))
            handle.write(b"\n")


def append_result(handle: TextIO, result: ProblemResult) -> None:
    """Write one line and flush it to disk."""
    handle.write(result.model_dump_json() + "\n")
    handle.flush()


def read_config(path: Path) -> RunConfig:
    try:
        return RunConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ValueError(f"{path}: not a run config ({str(error).splitlines()[0]})") from None


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``"field: old -> new"`` for every setting that differs."""
    a, b = old.model_dump(), new.model_dump()
    return [f"{name}: {a[name]!r} -> {b[name]!r}" for name in a if a[name] != b[name]]
