"""Killable workers: hard wall-clock limits, adversarial answers, batch scoring, the public helpers."""

import time

import pytest

from thinkrl.rewards.math import MathVerdict, MathVerifier, math_reward, verify_math

TIMEOUT_S = 1.0
# The verifier's own limit is what these tests bound; the slack is generous (a loaded 2-core machine,
# a respawn included) and still far below the minutes the adversarial answers take without the limit.
SLACK_S = 10.0
SLOW = r"\boxed{e^{10^{99999}}}"  # sympy/mpmath grind on this for many seconds (pure Python: the soft alarm works)


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(num_workers=2, timeout_s=TIMEOUT_S) as pool:
        pool.verify_batch([(r"\boxed{1}", "1")] * 4)  # start and warm the workers
        yield pool


def _timed(pool: MathVerifier, pairs: list[tuple[str, str]], **kwargs) -> tuple[list[MathVerdict], float]:
    start = time.perf_counter()
    verdicts = pool.verify_batch(pairs, **kwargs)
    return verdicts, time.perf_counter() - start


def test_batch_keeps_order_and_scores(verifier: MathVerifier) -> None:
    pairs = [(rf"so \boxed{{{i}/2}}", str(i / 2)) for i in range(60)] + [(r"\boxed{3}", "4"), ("nothing", "4")]
    verdicts, _ = _timed(verifier, pairs)
    assert [v.correct for v in verdicts] == [True] * 60 + [False, False]
    assert verdicts[7].extracted == "7/2"
    assert [v.reason for v in verdicts[-2:]] == ["wrong: value", "wrong: no answer"]
    assert verifier.verify_batch([]) == []


@pytest.mark.parametrize(("response", "reasons"), [
    (r"\boxed{9^9^9^9}", {"wrong: too large"}),
    (r"\boxed{9^{9^{9^{9}}}}", {"wrong: too large"}),
    (r"\boxed{1000000!}", {"wrong: too large"}),
    ("\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}", {"wrong: too large"}),
    ("\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", {"wrong: value"}),  # deep but short: the parser refuses
    ("x" * 2_000_000 + " answer: " + "1+" * 500_000 + "1", {"wrong: too large"}),  # megabytes
    (SLOW, {"wrong: timeout"}),
])
def test_adversarial_answers_finish_within_the_limit(verifier: MathVerifier, response: str, reasons: set) -> None:
    (verdict,), elapsed = _timed(verifier, [(response, "5")])
    assert not verdict.correct
    assert verdict.reason in reasons
    assert elapsed < TIMEOUT_S + SLACK_S


def test_soft_limit_interrupts_without_killing(verifier: MathVerifier) -> None:
    killed = verifier.num_killed
    (verdict,), elapsed = _timed(verifier, [(SLOW, "5")])
    assert verdict.reason == "wrong: timeout"
    assert TIMEOUT_S * 0.7 < elapsed < TIMEOUT_S + SLACK_S  # stopped by the soft alarm at 0.8 * limit
    assert verifier.num_killed == killed  # the alarm stopped it; the worker lives on


def test_hung_item_is_killed_and_does_not_block_the_others() -> None:
    pairs = [(SLOW, "5")] + [(rf"\boxed{{{i}}}", str(i)) for i in range(200)] + [(SLOW, "5")]
    with MathVerifier(num_workers=2, timeout_s=TIMEOUT_S, soft_fraction=None, chunk_size=4) as pool:
        pool.verify_batch([(r"\boxed{1}", "1")] * 2)
        verdicts, elapsed = _timed(pool, pairs)
        assert pool.num_killed == 2  # no alarm: the parent killed both hung workers
        assert [v.reason for v in verdicts] == ["wrong: timeout"] + ["correct"] * 200 + ["wrong: timeout"]
        assert elapsed < 2 * TIMEOUT_S + SLACK_S  # each hang cost one limit, not the minutes SLOW takes
        assert pool.verify(r"\boxed{2}", "2").correct  # replaced workers serve later calls
        (late,), late_s = _timed(pool, [(SLOW, "5")], timeout_s=0.5)
        assert late.reason == "wrong: timeout" and late_s < 0.5 + SLACK_S


def test_verify_math_and_math_reward() -> None:
    verdict = verify_math(r"... so the answer is $\boxed{\dfrac{1}{2}}$.", "0.5")
    assert verdict == MathVerdict(True, "correct", r"\dfrac{1}{2}")
    start = time.perf_counter()
    assert verify_math(SLOW, "5", timeout_s=0.5).reason == "wrong: timeout"
    assert time.perf_counter() - start < 0.5 + SLACK_S
    assert math_reward(r"\boxed{12}", "12") == (1.0, "correct")
    assert math_reward(r"\boxed{12}", {"answer": "13"}) == (0.0, "wrong: value")
    assert math_reward("The answer is 7", 7) == (1.0, "correct")
    with pytest.raises(ValueError, match="'answer'"):
        math_reward("1", {"target": 1})
    with pytest.raises(TypeError, match="ground_truth"):
        math_reward("1", [1])  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_workers": 0}, "num_workers"), ({"timeout_s": 0}, "timeout_s"), ({"timeout_s": float("inf")}, "timeout_s"),
    ({"rel_tol": -1}, "rel_tol"), ({"memory_limit_mb": 10}, "memory_limit_mb"), ({"chunk_size": 0}, "chunk_size"),
    ({"start_method": "thread"}, "start_method"), ({"soft_fraction": 1.5}, "soft_fraction"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MathVerifier(**kwargs)


def test_bad_pairs_and_closed_pool(verifier: MathVerifier) -> None:
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        verifier.verify_batch([("1", "1"), ("1", 1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="timeout_s"):
        verifier.verify_batch([("1", "1")], timeout_s=-1)
    pool = MathVerifier(num_workers=1)
    pool.close()
    pool.close()
    with pytest.raises(ValueError, match="closed"):
        pool.verify("1", "1")


def test_verdict_invariants() -> None:
    with pytest.raises(ValueError, match="reason"):
        MathVerdict(False, "nope", "")
    with pytest.raises(ValueError, match="contradicts"):
        MathVerdict(True, "wrong: value", "1")
