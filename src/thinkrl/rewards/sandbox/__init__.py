"""Sandboxed execution of untrusted Python programs against tests; `thinkrl.rewards.code` builds rewards on it.

    from thinkrl.rewards.sandbox import SandboxLimits, run_program, run_tests, tests_from_apps
    run_program("print(input()[::-1])", "abc\\n").stdout          # 'cba\\n'
    run_tests(code, tests_from_apps(row), limits=SandboxLimits(timeout_s=2)).fraction

See docs/sandbox.md for the isolation each mode guarantees.
"""

from thinkrl.rewards.sandbox.cases import (
    CodeTests,
    TestCase,
    call_matches,
    stdout_matches,
    tests_from_apps,
    tests_from_humaneval,
    tests_from_livecodebench,
    values_match,
)
from thinkrl.rewards.sandbox.harness import TestReport, TestResult, run_tests
from thinkrl.rewards.sandbox.limits import SandboxLimits, Status
from thinkrl.rewards.sandbox.pool import SandboxPool
from thinkrl.rewards.sandbox.process import ProgramResult, resolve_isolation, run_program

__all__ = [
    "CodeTests",
    "ProgramResult",
    "SandboxLimits",
    "SandboxPool",
    "Status",
    "TestCase",
    "TestReport",
    "TestResult",
    "call_matches",
    "resolve_isolation",
    "run_program",
    "run_tests",
    "stdout_matches",
    "tests_from_apps",
    "tests_from_humaneval",
    "tests_from_livecodebench",
    "values_match",
]
