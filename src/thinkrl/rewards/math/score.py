"""Score one (response, reference) pair in the current process: extract, normalise, parse, compare.

`score_answer` has **no time limit** of its own (its size guards stop the known explosions,
not every slow computation): scoring untrusted model output goes through
`thinkrl.rewards.math.MathVerifier` or `verify_math`, which run it in a killable worker.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import sympy

from thinkrl.rewards.math.compare import values_equal
from thinkrl.rewards.math.extract import extract_answer, extract_reference, last_boxes
from thinkrl.rewards.math.latex import parse_value
from thinkrl.rewards.math.normalize import normalize_answer, text_key
from thinkrl.rewards.math.values import Bracket, NotMath, Text, TooLarge, Value

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


_DECIMAL_COMMA_RE = re.compile(r"-?\d+,\d+")


def _decimal_comma(normalized: str, other: Value) -> Value | None:
    """``2,74`` read as 2.74 when the other side is one number (thousands groups are gone by now)."""
    if isinstance(other, sympy.Expr) and _DECIMAL_COMMA_RE.fullmatch(normalized):
        return parse_answer(normalized.replace(",", "."))
    return None


def compare_answers(extracted: str, reference: str, rel_tol: float = 1e-6) -> bool:
    """True if an extracted answer equals a reference answer (both raw strings; no time limit).

    A lone ``digits,digits`` (``2,74``, ``0,111``; ``1,000`` is a thousands group) is a decimal comma
    when the other side is a single number, else a list of two numbers.
    """
    answer_norm, reference_norm = normalize_answer(extracted), normalize_answer(reference)
    if answer_norm == reference_norm and answer_norm:
        return True
    ref, answer = parse_answer(reference_norm), parse_answer(answer_norm)
    ref = _decimal_comma(reference_norm, answer) or ref
    answer = _decimal_comma(answer_norm, ref) or answer
    return values_equal(ref, answer, rel_tol)


def _list_length(reference: str) -> int:
    """Items in a reference that is a list or set of two or more (0 otherwise)."""
    value = parse_answer(normalize_answer(reference))
    return len(value.items) if isinstance(value, Bracket) and value.open in ("", "{") else 0


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
        if not same and (count := _list_length(reference)) > 1:  # a list answer split across boxes with words
            joined = last_boxes(response, count)
            if joined is not None and joined != extracted and compare_answers(joined, reference, rel_tol):
                return MathVerdict(True, CORRECT, joined)
    except (TooLarge, MemoryError, OverflowError):
        return MathVerdict(False, TOO_LARGE, extracted)
    except RecursionError:
        return MathVerdict(False, WRONG_VALUE, extracted)
    except Exception:  # a verifier never raises on model output: log it and score it wrong
        logger.warning("math check failed on %.200r vs %.200r", extracted, reference, exc_info=True)
        return MathVerdict(False, ERROR, extracted)
    return MathVerdict(same, CORRECT if same else WRONG_VALUE, extracted)
