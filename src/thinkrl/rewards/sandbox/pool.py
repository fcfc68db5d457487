"""Run many sandboxed programs at once (`SandboxPool`).

Each program is its own sandboxed process group (and, as root, its own dedicated uid), so the pool is a
thread pool of waiters: threads spend their time blocked on pipes, never running untrusted code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from thinkrl.rewards.sandbox.cases import CodeTests
from thinkrl.rewards.sandbox.harness import TestReport, run_tests
from thinkrl.rewards.sandbox.limits import SandboxLimits
from thinkrl.rewards.sandbox.process import ProgramResult, resolve_isolation, run_program

T = TypeVar("T")


class SandboxPool:
    """Runs up to ``max_workers`` sandboxed programs concurrently; results keep the input order.

    ``max_workers`` defaults to the number of CPUs; as root it may not exceed ``limits.num_uids``.
    Use as a context manager (or call `close`).
    """

    def __init__(self, max_workers: int | None = None, *, limits: SandboxLimits | None = None) -> None:
        self.limits = limits if limits is not None else SandboxLimits()
        workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if os.geteuid() == 0 and workers > self.limits.num_uids:
            raise ValueError(f"max_workers ({workers}) must not exceed limits.num_uids ({self.limits.num_uids})")
        self.max_workers = workers
        self.isolation = resolve_isolation(self.limits)  # probe once, before the threads start
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` (e.g. `run_program`) on the pool."""
        return self._executor.submit(fn, *args, **kwargs)

    def run_programs(self, codes: Sequence[str], stdins: Sequence[str | bytes] | None = None) -> list[ProgramResult]:
        """`run_program` for every ``codes[i]`` with ``stdins[i]`` (default empty), concurrently."""
        stdins = stdins if stdins is not None else [""] * len(codes)
        if len(stdins) != len(codes):
            raise ValueError(f"got {len(codes)} programs but {len(stdins)} stdins")
        futures = [self.submit(run_program, c, s, limits=self.limits) for c, s in zip(codes, stdins, strict=True)]
        return [f.result() for f in futures]

    def run_tests(self, codes: Sequence[str], tests: Sequence[CodeTests],
                  stop_on_failure: bool = False) -> list[TestReport]:
        """`run_tests` for every ``(codes[i], tests[i])``, concurrently."""
        if len(tests) != len(codes):
            raise ValueError(f"got {len(codes)} programs but {len(tests)} test sets")
        futures = [self.submit(run_tests, c, t, limits=self.limits, stop_on_failure=stop_on_failure)
                   for c, t in zip(codes, tests, strict=True)]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Wait for running programs and stop the threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
