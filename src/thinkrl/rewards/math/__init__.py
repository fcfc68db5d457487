r"""Math answer verification: extract a model's final answer and decide if it equals the reference.

```python
from thinkrl.rewards.math import MathVerifier, verify_math

verify_math(r"... so the answer is \boxed{\dfrac{1}{2}}.", "0.5")
# MathVerdict(correct=True, reason='correct', extracted='\\dfrac{1}{2}')
with MathVerifier(num_workers=2, timeout_s=5.0) as verifier:
    verdicts = verifier.verify_batch([(response, reference), ...])
```

Pipeline: `extract` (boxed / answer tags / "answer:" / last number) -> `normalize` (LaTeX
clean-up, units, percent, degrees, thousands separators) -> `latex` (own recursive-descent
parser building sympy objects with size guards; never ``sympify``/``eval``) -> `compare`
(exact, numeric with relative tolerance, random-point identity tests, tuples/sets/intervals,
matrices, equations, inequalities) -> `worker` (killable processes with a hard wall-clock
limit). See docs/rewards_math.md.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from typing import Any

from thinkrl.rewards.math.extract import extract_answer, extract_reference
from thinkrl.rewards.math.score import REASONS, MathVerdict, compare_answers, score_answer
from thinkrl.rewards.math.worker import MathVerifier

__all__ = [
    "REASONS",
    "MathVerdict",
    "MathVerifier",
    "compare_answers",
    "extract_answer",
    "extract_reference",
    "math_reward",
    "score_answer",
    "verify_math",
]

_default: MathVerifier | None = None
_default_lock = threading.Lock()


def _default_verifier() -> MathVerifier:
    global _default
    with _default_lock:
        if _default is None:
            _default = MathVerifier(num_workers=1)
            atexit.register(_default.close)
        return _default


def verify_math(answer_text: str, reference: str, *, timeout_s: float = 5.0, rel_tol: float = 1e-6) -> MathVerdict:
    """Judge one response against its reference in a killable worker (at most ``timeout_s`` seconds).

    Uses a process-wide one-worker `MathVerifier`, started on first use; score many pairs with
    your own `MathVerifier` and ``verify_batch`` instead.
    """
    return _default_verifier().verify_batch([(answer_text, reference)], timeout_s=timeout_s, rel_tol=rel_tol)[0]


def math_reward(text: str, ground_truth: str | Mapping[str, Any]) -> tuple[float, str]:
    """Reward 1.0 if ``text``'s final answer equals the reference, else 0.0; with the verdict's reason.

    ``ground_truth`` is the reference answer, or a mapping with an ``"answer"`` key (a
    `thinkrl.tasks.Problem.ground_truth`).
    """
    if isinstance(ground_truth, Mapping):
        if "answer" not in ground_truth:
            raise ValueError(f"ground_truth mapping needs an 'answer' key, got keys {sorted(ground_truth)}")
        ground_truth = ground_truth["answer"]
    if isinstance(ground_truth, int | float) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)
    if not isinstance(ground_truth, str):
        raise TypeError(f"ground_truth must be a str, a number or a mapping with 'answer', got {ground_truth!r:.100}")
    verdict = verify_math(text, ground_truth)
    return (1.0 if verdict.correct else 0.0), verdict.reason
