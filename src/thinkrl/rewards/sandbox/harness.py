"""Run a solution against its tests in the sandbox (`run_tests`) and report per test.

stdin/stdout tests run one sandboxed process per case. Function-call tests run in one process that
loads the solution once and calls it per case; if that process dies or hangs on a case, the case gets
the failure and a fresh process goes on from the next one, so every case has its own verdict and its
own ``timeout_s``. A script test (HumanEval) runs the solution followed by its harness and passes only
when the harness ran to its end (an early ``sys.exit(0)`` is a failure).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from thinkrl.rewards.sandbox.cases import CodeTests, call_matches, stdout_matches
from thinkrl.rewards.sandbox.limits import SandboxLimits, Status
from thinkrl.rewards.sandbox.process import ProgramResult, execute, resolve_isolation

SHOWN_CHARS = 200


@dataclass(frozen=True)
class TestResult:
    """The verdict on one test.

    Fields:
        index: the case's index in ``CodeTests.cases`` (0 for a script).
        status: ``passed``, ``wrong_answer``, ``runtime_error``, ``timeout``, ``memory``, ``output_limit``
            or ``sandbox_error``.
        reason: one line for people, e.g. ``"expected '3', got '4'"`` or ``"ZeroDivisionError: division by zero"``.
        output: what the program produced for this test (stdout, or the JSON of the returned value),
            cut to 200 characters.
        wall_s: seconds the test took (as the runner measured them, for function calls).
    """

    __test__ = False

    index: int
    status: Status
    reason: str
    output: str = ""
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the test passed."""
        return self.status is Status.PASSED


@dataclass(frozen=True)
class TestReport:
    """All verdicts for one solution.

    Fields:
        passed: how many tests passed.
        total: how many tests the problem has (``CodeTests.total``); tests not run count as failed.
        results: the verdicts of the tests that ran, in index order.
    """

    __test__ = False

    passed: int
    total: int
    results: tuple[TestResult, ...]

    @property
    def all_passed(self) -> bool:
        """True when every test passed."""
        return self.passed == self.total

    @property
    def fraction(self) -> float:
        """Passed tests over all tests."""
        return self.passed / self.total

    @property
    def first_failure(self) -> TestResult | None:
        """The first failed test's verdict, None when all passed."""
        return next((r for r in self.results if not r.passed), None)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _failure(index: int, result: ProgramResult, output: str = "") -> TestResult:
    """The verdict on a test whose program ended without an answer for it."""
    if result.status is Status.OK:  # e.g. os._exit(0) before the call returned
        return TestResult(index, Status.RUNTIME_ERROR, "exited without a result", _short(output), result.wall_s)
    return TestResult(index, result.status, result.reason, _short(output), result.wall_s)


def _run_stdio(code: str, tests: CodeTests, limits: SandboxLimits, stop_on_failure: bool) -> list[TestResult]:
    iso = resolve_isolation(limits)
    results = []
    for i, case in enumerate(tests.cases):
        run = execute(code, case.input.encode("utf-8"), limits, {"mode": "stdio"}, isolation=iso)
        if run.status is not Status.OK:
            results.append(_failure(i, run, run.stdout))
        elif stdout_matches(run.stdout, case.expected):
            results.append(TestResult(i, Status.PASSED, "output matches", _short(run.stdout), run.wall_s))
        else:
            reason = f"expected {_short(case.expected.strip())!r}, got {_short(run.stdout.strip())!r}"
            results.append(TestResult(i, Status.WRONG_ANSWER, reason, _short(run.stdout), run.wall_s))
        if stop_on_failure and not results[-1].passed:
            break
    return results


def _run_script(code: str, tests: CodeTests, limits: SandboxLimits) -> list[TestResult]:
    nonce = secrets.token_hex(16)
    run = execute(code + "\n" + (tests.harness or ""), b"", limits, {"mode": "script", "nonce": nonce})
    if run.status is Status.OK and any(e["event"] == "done" and e.get("nonce") == nonce for e in run.events):
        return [TestResult(0, Status.PASSED, "harness finished", _short(run.stdout), run.wall_s)]
    if run.status is Status.OK:
        return [TestResult(0, Status.RUNTIME_ERROR, "exited before the tests finished", _short(run.stdout), run.wall_s)]
    if run.status is Status.RUNTIME_ERROR and run.reason.startswith("AssertionError"):
        return [TestResult(0, Status.WRONG_ANSWER, run.reason, _short(run.stdout), run.wall_s)]
    return [_failure(0, run, run.stdout)]


def _call_verdict(tests: CodeTests, event: dict[str, Any]) -> TestResult:
    i = event["i"]
    raw_wall = event.get("wall_s")
    wall = raw_wall if isinstance(raw_wall, int | float) else 0.0
    if event["event"] == "error":
        status = Status.MEMORY if event.get("memory") else Status.RUNTIME_ERROR
        return TestResult(i, status, str(event.get("error", ""))[:500], "", wall)
    got, expected = event.get("value"), tests.cases[i].expected
    if call_matches(got, expected):
        return TestResult(i, Status.PASSED, "return value matches", _short(got), wall)
    return TestResult(i, Status.WRONG_ANSWER, f"expected {_short(expected)}, got {_short(got)}", _short(got), wall)


def _run_calls(code: str, tests: CodeTests, limits: SandboxLimits, stop_on_failure: bool) -> list[TestResult]:
    iso = resolve_isolation(limits)
    inputs = [case.input for case in tests.cases]
    n, start = len(inputs), 0
    verdicts: dict[int, TestResult] = {}
    while start < n:
        config = {"mode": "call", "fn_name": tests.fn_name, "inputs": inputs, "start": start}
        run = execute(code, b"", limits, config, steps=1 + n - start, isolation=iso)
        if not any(e["event"] == "loaded" for e in run.events):  # the solution did not load: all remaining fail
            for i in range(start, n):
                verdicts[i] = _failure(i, run)
            break
        for event in run.events:
            case_i = event.get("i")
            if (event["event"] in ("result", "error") and type(case_i) is int and start <= case_i < n
                    and case_i not in verdicts):
                verdicts[case_i] = _call_verdict(tests, event)
        missing = next((i for i in range(start, n) if i not in verdicts), None)
        if missing is None:
            break
        verdicts[missing] = _failure(missing, run)  # the process died or hung on this call
        if stop_on_failure:
            break
        start = missing + 1
    return [verdicts[i] for i in sorted(verdicts)]


def run_tests(code: str, tests: CodeTests, *, limits: SandboxLimits | None = None,
              stop_on_failure: bool = False) -> TestReport:
    """Run solution source ``code`` against ``tests`` in the sandbox.

    ``stop_on_failure`` skips the remaining stdin/stdout cases (and the restart after a crashed call)
    once one failed: use it when only "all pass" matters. Tests not run count as failed.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be str, got {type(code).__name__}")
    if not isinstance(tests, CodeTests):
        raise TypeError(f"tests must be CodeTests, got {type(tests).__name__}")
    limits = limits if limits is not None else SandboxLimits()
    if tests.kind == "stdio":
        results = _run_stdio(code, tests, limits, stop_on_failure)
    elif tests.kind == "call":
        results = _run_calls(code, tests, limits, stop_on_failure)
    else:
        results = _run_script(code, tests, limits)
    return TestReport(sum(r.passed for r in results), tests.total, tuple(results))
