"""Rewards: rule-based scoring of completions, math answer verification, sandboxed code execution.

- `score_response`: parse the chat output and ask a built-in task's exact verifier.
- `thinkrl.rewards.math`: final-answer extraction and LaTeX-aware comparison in killable workers.
- `thinkrl.rewards.sandbox` / `thinkrl.rewards.code`: untrusted Python against unit tests, isolated.
"""

from thinkrl.rewards.code import code_reward, code_rewards, extract_code
from thinkrl.rewards.math import MathVerdict, MathVerifier, math_reward, verify_math
from thinkrl.rewards.rule import RuleScore, score_response
from thinkrl.rewards.sandbox import (
    CodeTests,
    SandboxLimits,
    SandboxPool,
    run_program,
    run_tests,
    tests_from_apps,
    tests_from_humaneval,
    tests_from_livecodebench,
)

__all__ = [
    "CodeTests",
    "MathVerdict",
    "MathVerifier",
    "RuleScore",
    "SandboxLimits",
    "SandboxPool",
    "code_reward",
    "code_rewards",
    "extract_code",
    "math_reward",
    "run_program",
    "run_tests",
    "score_response",
    "tests_from_apps",
    "tests_from_humaneval",
    "tests_from_livecodebench",
    "verify_math",
]
