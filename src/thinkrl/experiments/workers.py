"""The worker processes of `thinkrl ablate --workers N`: a process pool that an interrupt or a failure stops at once.

`concurrent.futures.ProcessPoolExecutor` leaves its ``with`` block by waiting for every call its workers started:
a Ctrl-C (or SIGTERM) of the command then waited for whole training runs before the command ended, and a command
killed outright left its workers training on their own. `WorkerPool` cancels the queued calls and ends its workers
instead when the block is left by an exception (an interrupt, a failed cell). A worker's own helpers (a rollout
process, the math verifier's pool) exit when their parent does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from types import TracebackType
from typing import Any

STOP_GRACE_S = 10.0
"""How long a worker has to exit after SIGTERM before it is killed."""


class InProcess:
    """``map`` in this process (one worker: no spawn, easier to debug and profile)."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        return map(fn, *iterables)


class WorkerPool(ProcessPoolExecutor):
    """A spawn-context `ProcessPoolExecutor` whose ``with`` block, left by an exception, stops the workers (see
    `stop_workers`) rather than waiting for the calls they run."""

    def __init__(self, workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        super().__init__(max_workers=workers, mp_context=get_context("spawn"), initializer=initializer,
                         initargs=initargs)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        if exc_type is not None:
            self.stop_workers()
        return super().__exit__(exc_type, exc, tb)

    def stop_workers(self, grace_s: float = STOP_GRACE_S) -> None:
        """Cancel the calls not started and end every worker: SIGTERM, then SIGKILL after ``grace_s``."""
        workers = list((self._processes or {}).values())  # (Python 3.14 has terminate_workers(); 3.11 does not)
        self.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)


def executor(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> InProcess | WorkerPool:
    """`InProcess` for one worker, else a `WorkerPool` of ``workers`` processes."""
    return InProcess() if workers == 1 else WorkerPool(workers, initializer, initargs)
