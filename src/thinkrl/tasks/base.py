"""The task contract: problems, verdicts, solution traces and difficulty knobs.

A `Task` generates `Problem`s from a `random.Random`, scores a model's final
answer with an exact verifier (`verify` -> `Verdict`), and writes worked
solutions (`write_trace` -> `Trace`) for cold-start SFT. Tasks map text to
rewards only: no torch, no model, no tokenizer (the chat template and the
thinking-block split are applied elsewhere).

Answer extraction (`extract_answer`), applied to the text after the thinking
block, takes the first rule that matches:

1. the content of the last ``\\boxed{...}`` (braces balanced);
2. the rest of the line after the last ``answer:`` (case-insensitive; ``Answer =``,
   ``answer is`` and ``The answer is:`` also work), or the next non-empty line
   when nothing follows on that line;
3. the last non-empty line.

The result is stripped of spaces, surrounding ``$`` / ``**`` / backticks and one
trailing ``.``; an empty result means "no answer".
"""

from __future__ import annotations

import hashlib
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

REASONS = ("correct", "wrong value", "illegal numbers", "unparseable", "no answer")

_ANSWER_RE = re.compile(r"\banswer\b\s*(?:is\b\s*[:=]?|[:=])", re.IGNORECASE)
_BOXED = "\\boxed{"


@dataclass(frozen=True)
class Problem:
    """One generated problem.

    Fields:
        task: registry name of the task that made it.
        id: stable content hash (16 hex digits) of the task name and the
            problem's canonical content; the same problem always gets the same id,
            whatever seed or number order produced it.
        prompt: the user-message text (plain ASCII, no chat template).
        ground_truth: JSON-serialisable data the verifier needs (and a
            reference solution).
        difficulty: the full, validated difficulty it was generated with.
    """

    task: str
    id: str
    prompt: str
    ground_truth: dict[str, Any]
    difficulty: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one answer.

    Fields:
        reward: 1.0 if correct else 0.0 (reward shaping, e.g. DAPO's +1/-1, is
            applied by `thinkrl.rewards`).
        reason: one of `REASONS`.
        detail: a human-readable explanation (for logs, never for the reward).
    """

    reward: float
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"verdict reason {self.reason!r} is not one of {REASONS}")

    @property
    def correct(self) -> bool:
        """True when the answer was judged correct."""
        return self.reason == "correct"

    @classmethod
    def right(cls, detail: str = "") -> Verdict:
        """A correct verdict (reward 1)."""
        return cls(1.0, "correct", detail)

    @classmethod
    def wrong(cls, reason: str, detail: str = "") -> Verdict:
        """An incorrect verdict (reward 0) with one of the non-"correct" reasons."""
        if reason == "correct":
            raise ValueError("Verdict.wrong needs a failure reason, got 'correct'")
        return cls(0.0, reason, detail)


@dataclass(frozen=True)
class Trace:
    """A worked solution: the chain of thought and the final answer text."""

    thinking: str
    answer: str


@dataclass(frozen=True)
class Knob:
    """One difficulty setting of a task.

    Fields:
        name: the key in the difficulty dict.
        kind: ``int``, ``float`` or ``bool``.
        default: value used when the key is not given.
        low, high: inclusive range for numbers (None for bools).
        help: one line for ``thinkrl data --list`` and the docs.
    """

    name: str
    kind: type
    default: int | float | bool
    low: int | float | None = None
    high: int | float | None = None
    help: str = ""

    def validate(self, value: Any) -> int | float | bool:
        """Return ``value`` if it has the right type and range, else raise ValueError naming the knob."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"difficulty {self.name!r} must be a bool, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"difficulty {self.name!r} must be {self.kind.__name__}, got {value!r}")
        if self.kind is int and not isinstance(value, int):
            raise ValueError(f"difficulty {self.name!r} must be an int, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"difficulty {self.name!r}={value!r} is out of range [{self.low}, {self.high}]")
        return self.kind(value)

    def parse(self, text: str) -> int | float | bool:
        """Parse a command-line string (``"4"``, ``"0.5"``, ``"true"``) and validate it."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"difficulty {self.name!r} must be true or false, got {text!r}")
            return lowered in ("true", "1", "yes")
        try:
            value = self.kind(text)
        except ValueError:
            raise ValueError(f"difficulty {self.name!r} must be {self.kind.__name__}, got {text!r}") from None
        return self.validate(value)

    def describe(self) -> str:
        """One line: ``name (type, low..high, default D): help``."""
        span = "" if self.kind is bool else f", {self.low}..{self.high}"
        return f"{self.name} ({self.kind.__name__}{span}, default {self.default}): {self.help}"


def problem_id(task: str, canonical_key: str) -> str:
    """Stable 16-hex-digit id from the task name and the problem's canonical content."""
    return hashlib.sha256(f"{task}\n{canonical_key}".encode()).hexdigest()[:16]


def extract_answer(text: str) -> str | None:
    """The final answer inside ``text`` by the rules of the module docstring, or None."""
    if not isinstance(text, str):
        raise TypeError(f"answer text must be a str, got {type(text).__name__}")
    start = text.rfind(_BOXED)
    if start >= 0:
        candidate = _boxed_content(text, start + len(_BOXED))
    else:
        matches = list(_ANSWER_RE.finditer(text))
        if matches:
            candidate = text[matches[-1].end() :].lstrip().split("\n", 1)[0]
        else:
            lines = [line for line in text.splitlines() if line.strip()]
            candidate = lines[-1] if lines else ""
    return _clean(candidate) or None


def _boxed_content(text: str, start: int) -> str:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def _clean(candidate: str) -> str:
    candidate = candidate.strip()
    for wrapper in ("**", "$", "`"):
        if len(candidate) >= 2 * len(wrapper) and candidate.startswith(wrapper) and candidate.endswith(wrapper):
            candidate = candidate[len(wrapper) : -len(wrapper)].strip()
    if candidate.endswith("."):
        candidate = candidate[:-1].rstrip()
    return candidate


def check_noise(noise: float) -> float:
    """Validate a trace-noise probability (a float in [0, 1])."""
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a probability in [0, 1], got {noise!r}")
    return float(noise)


class Task(ABC):
    """Base class of a procedural task: generator, exact verifier, trace writer.

    Subclasses set `name` and `difficulty_knobs` and implement `build`,
    `canonical_key`, `check` and `write_trace`. `generate` and `verify` are
    shared: they validate the difficulty, hash the problem and extract the
    answer before the task-specific part runs.
    """

    name: ClassVar[str]
    difficulty_knobs: ClassVar[tuple[Knob, ...]]

    @property
    def default_difficulty(self) -> dict[str, Any]:
        """Every knob at its default."""
        return {knob.name: knob.default for knob in self.difficulty_knobs}

    def knob(self, name: str) -> Knob:
        """The knob called ``name``; ValueError listing the known ones otherwise."""
        for knob in self.difficulty_knobs:
            if knob.name == name:
                return knob
        known = ", ".join(k.name for k in self.difficulty_knobs)
        raise ValueError(f"unknown difficulty {name!r} for task {self.name!r}; known: {known}")

    def resolve_difficulty(self, difficulty: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``difficulty``, every value validated.

        Raises ValueError naming unknown keys or a bad value (wrong type or out of range).
        """
        difficulty = dict(difficulty or {})
        known = {knob.name for knob in self.difficulty_knobs}
        unknown = sorted(set(difficulty) - known)
        if unknown:
            raise ValueError(
                f"unknown difficulty {', '.join(map(repr, unknown))} for task {self.name!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        resolved = self.default_difficulty
        for key, value in difficulty.items():
            resolved[key] = self.knob(key).validate(value)
        self.check_difficulty(resolved)
        return resolved

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:  # noqa: B027  (optional hook)
        """Hook for constraints between knobs (e.g. min <= max); raise ValueError."""

    def generate(self, rng: random.Random, **difficulty: Any) -> Problem:
        """A random problem of the given difficulty (unset knobs take their defaults)."""
        if not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
        resolved = self.resolve_difficulty(difficulty)
        prompt, ground_truth = self.build(rng, resolved)
        key = self.canonical_key(ground_truth)
        return Problem(self.name, problem_id(self.name, key), prompt, ground_truth, resolved)

    def ground_truth_of(self, problem_or_ground_truth: Problem | Mapping[str, Any]) -> Mapping[str, Any]:
        """The ground truth of a problem of this task (ValueError for another task's), or the mapping as given."""
        if isinstance(problem_or_ground_truth, Problem):
            if problem_or_ground_truth.task != self.name:
                raise ValueError(f"problem of task {problem_or_ground_truth.task!r} given to {self.name!r}")
            return problem_or_ground_truth.ground_truth
        return problem_or_ground_truth

    def verify(self, problem_or_ground_truth: Problem | Mapping[str, Any], answer_text: str) -> Verdict:
        """Score a model's final answer (the text after its thinking block).

        Never raises on model output: bad answers get reward 0 and a reason.
        Raises ValueError only if the problem belongs to another task or its
        ground truth is malformed.
        """
        ground_truth = self.ground_truth_of(problem_or_ground_truth)
        answer = extract_answer(answer_text)
        if answer is None:
            return Verdict.wrong("no answer", "the answer text is empty")
        return self.check(ground_truth, answer)

    @abstractmethod
    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Return (prompt, ground_truth) for a validated difficulty."""

    @abstractmethod
    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Text that identifies the problem regardless of presentation (e.g. sorted numbers)."""

    @abstractmethod
    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Score an extracted, non-empty answer against the ground truth."""

    @abstractmethod
    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """A worked solution; with probability ``noise`` it holds a mistake and a wrong answer."""


def require(ground_truth: Mapping[str, Any], key: str, kind: type) -> Any:
    """``ground_truth[key]`` checked to be of type ``kind``; ValueError naming the key otherwise."""
    if key not in ground_truth:
        raise ValueError(f"ground truth has no {key!r} field: {dict(ground_truth)!r}")
    value = ground_truth[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"ground truth field {key!r} must be {kind.__name__}, got {value!r}")
    return value
