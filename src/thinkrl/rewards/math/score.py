"""Score one (response, reference) pair in the current process: extract, normalise, parse, compare.

`score_answer` has **no time limit** of its own (its size guards stop the known explosions,
not every slow computation): scoring untrusted model output goes through
`thinkrl.rewards.math.MathVerifier` or `verify_math`, which run it in a killable worker.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from thinkrl.rewards.math.compare import values_equal
from thinkrl.rewards.math.extract import extract_answer, extract_reference
from thinkrl.rewards.math.latex import parse_value
from thinkrl.rewards.math.normalize import normalize_answer, text_key
from thinkrl.rewards.math.values import NotMath, Text, TooLarge, Value

logger = logging.getLogger(__name__)

#: Longest extracted answer (or reference) that is parsed; longer ones are "wrong: too large".
MAX_ANSWER_CHARS = 2000

CORRECT = "correct"
WRONG_VALUE = "wrong: value"
NO_ANSWER = "wrong: no answer"
TOO_LARGE = "wrong: too large"
TIMEOUT = "wrong: timeout"
ERROR = "wrong: error"
REASONS = (CORRECT, WRONG_VALUE, NO_ANSWER, TOO_LARGE, TIMEOUT, ERROR)


@dataclass(frozen=True)
class MathVerdict:
    """The judgement of one answer.

    Fields:
        correct: the extracted answer equals the reference.
        reason: one of `REASONS`: "correct"; "wrong: value" (extracted but different);
            "wrong: no answer" (nothing to extract); "wrong: too large" (an answer, reference
            or intermediate result past the size guards: over `MAX_ANSWER_CHARS` characters,
            ``9^{9^{9^9}}``, ``1000000!``); "wrong: timeout" (the check ran past its wall-clock
            limit and its worker was killed); "wrong: error" (the check crashed; logged).
        extracted: the answer text that was compared ("" when none).
    """

    correct: bool
    reason: str
    extracted: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"verdict reason {self.reason!r} is not one of {REASONS}")
        if self.correct != (self.reason == CORRECT):
            raise ValueError(f"correct={self.correct} contradicts reason {self.reason!r}")


@functools.lru_cache(maxsize=4096)
def parse_answer(normalized: str) -> Value:
    """Parse a normalised answer, falling back to `Text` when it is not maths (cached: groups share references)."""
    try:
        return parse_value(normalized)
    except NotMath:
        return Text(text_key(normalized))


def compare_answers(extracted: str, reference: str, rel_tol: float = 1e-6) -> bool:
    """True if an extracted answer equals a reference answer (both raw strings; no time limit)."""
    answer_norm, reference_norm = normalize_answer(extracted), normalize_answer(reference)
    if answer_norm == reference_norm and answer_norm:
        return True
    return values_equal(parse_answer(reference_norm), parse_answer(answer_norm), rel_tol)


def score_answer(response: str, reference: str, rel_tol: float = 1e-6) -> MathVerdict:
    """Judge ``response`` (a model's text) against ``reference`` in this process, without a time limit."""
    extracted = extract_answer(response)
    if extracted is None:
        return MathVerdict(False, NO_ANSWER, "")
    reference = extract_reference(reference)
    if len(extracted) > MAX_ANSWER_CHARS or len(reference) > MAX_ANSWER_CHARS:
        return MathVerdict(False, TOO_LARGE, extracted[:MAX_ANSWER_CHARS])
    try:
        same = compare_answers(extracted, reference, rel_tol)
    except (TooLarge, MemoryError, OverflowError):
        return MathVerdict(False, TOO_LARGE, extracted)
    except RecursionError:
        return MathVerdict(False, WRONG_VALUE, extracted)
    except Exception:  # a verifier never raises on model output: log it and score it wrong
        logger.warning("math check failed on %.200r vs %.200r", extracted, reference, exc_info=True)
        return MathVerdict(False, ERROR, extracted)
    return MathVerdict(same, CORRECT if same else WRONG_VALUE, extracted)
