"""Run math checks in killable worker processes, each under a hard wall-clock limit.

`MathVerifier` owns a small pool of worker processes (started with ``forkserver`` by
default, so a training process with threads can use it safely, and so a respawn costs a
fork, not a fresh interpreter). The parent sends each idle worker a chunk of pairs; the
worker answers pair by pair, and the parent gives every pair ``timeout_s`` from the moment
the previous answer arrived. Two limits apply:

- a soft limit (``soft_fraction * timeout_s``, default 0.8) inside the worker: a ``SIGALRM`` timer interrupts a check
  stuck in Python code (most of sympy) and reports "wrong: timeout"; the worker lives on;
- the hard limit in the parent: a worker that has not answered by ``timeout_s`` (stuck in C
  code, e.g. a huge integer power) is killed, its pair is "wrong: timeout", and a fresh
  worker takes over the rest of its chunk. The caller is never blocked past the limit by one
  pair, and other workers keep going meanwhile.

Workers also run under an address-space limit (``memory_limit_mb``), so an answer that makes
sympy allocate gigabytes fails fast with MemoryError ("wrong: too large") instead of
swapping the machine. A worker that dies (segfault, OOM kill) gives "wrong: error" for its
current pair and is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from thinkrl.rewards.math.score import ERROR, MAX_ANSWER_CHARS, TIMEOUT, MathVerdict, score_answer

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0  # a new worker must report ready within this (the first start imports sympy)


class _SoftTimeout(BaseException):
    """Raised by the worker's alarm; a BaseException so no ``except Exception`` swallows it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _SoftTimeout


def _limit_memory(memory_limit_mb: int | None) -> None:
    if memory_limit_mb is None:
        return
    import resource

    limit = memory_limit_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _score_with_alarm(response: str, reference: str, rel_tol: float,
                      soft_s: float | None) -> tuple[bool, str, str]:
    try:
        if soft_s is not None:
            signal.setitimer(signal.ITIMER_REAL, soft_s)
        try:
            verdict = score_answer(response, reference, rel_tol)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _SoftTimeout:
        return False, TIMEOUT, ""
    return verdict.correct, verdict.reason, verdict.extracted[:MAX_ANSWER_CHARS]


def worker_main(conn: Connection, memory_limit_mb: int | None) -> None:
    """Worker loop: receive ``(soft_s, rel_tol, [(index, response, reference), ...])``, answer each pair.

    Sends ``"ready"`` once set up; each answer is ``(index, correct, reason, extracted)``;
    ``None`` as a request ends the loop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, _on_alarm)
    _limit_memory(memory_limit_mb)
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        soft_s, rel_tol, items = request
        for index, response, reference in items:
            correct, reason, extracted = _score_with_alarm(response, reference, rel_tol, soft_s)
            conn.send((index, correct, reason, extracted))


class _Worker:
    """One worker process, its pipe, and the chunk of pair indices it is working on."""

    def __init__(self, ctx: Any, memory_limit_mb: int | None) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child, memory_limit_mb), daemon=True,
                                   name="thinkrl-math-verify")
        self.process.start()
        child.close()
        self.chunk: deque[int] = deque()
        self.deadline = math.inf
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            ready = self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(
                f"a math-verify worker failed to start (exit code {self.process.exitcode}); with the "
                "'forkserver' or 'spawn' start method the main script must guard its entry point with "
                "`if __name__ == '__main__':` (see the worker's stderr)")

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class MathVerifier:
    """A pool of killable worker processes that score (response, reference) pairs.

    Args:
        num_workers: worker processes (>= 1).
        timeout_s: wall-clock limit of one pair, in seconds (> 0).
        rel_tol: relative tolerance of numeric comparisons involving decimals (>= 0).
        memory_limit_mb: address-space limit of each worker (None: no limit).
        chunk_size: most pairs sent to a worker at once (>= 1; per-pair limits still apply).
        start_method: multiprocessing start method ("forkserver", "spawn" or "fork").
        soft_fraction: the in-worker alarm fires at ``soft_fraction * timeout_s`` (in (0, 1]); None
            disables it, leaving only the parent's kill at ``timeout_s``.

    Use as a context manager, or call `close`. Thread-safe (calls are serialised).
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 5.0, rel_tol: float = 1e-6,
                 memory_limit_mb: int | None = 4096, chunk_size: int = 32, start_method: str = "forkserver",
                 soft_fraction: float | None = 0.8) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        _check_timeout(timeout_s)
        _check_rel_tol(rel_tol)
        if memory_limit_mb is not None and (not isinstance(memory_limit_mb, int) or memory_limit_mb < 256):
            raise ValueError(f"memory_limit_mb must be None or an int >= 256, got {memory_limit_mb!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method must be one of {multiprocessing.get_all_start_methods()}, "
                             f"got {start_method!r}")
        if soft_fraction is not None and (isinstance(soft_fraction, bool) or not isinstance(soft_fraction, int | float)
                                          or not 0 < soft_fraction <= 1):
            raise ValueError(f"soft_fraction must be None or a number in (0, 1], got {soft_fraction!r}")
        self.soft_fraction = soft_fraction
        self.num_workers, self.timeout_s, self.rel_tol = num_workers, float(timeout_s), float(rel_tol)
        self.memory_limit_mb, self.chunk_size = memory_limit_mb, chunk_size
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["thinkrl.rewards.math.worker"])
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.num_killed = 0  # workers killed at the hard limit or found dead (for logs and tests)

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                worker.stop()
            self._workers = []

    def verify(self, response: str, reference: str, *, timeout_s: float | None = None) -> MathVerdict:
        """Score one response against its reference (see `verify_batch`)."""
        return self.verify_batch([(response, reference)], timeout_s=timeout_s)[0]

    def verify_batch(self, pairs: Sequence[tuple[str, str]], *, timeout_s: float | None = None,
                     rel_tol: float | None = None) -> list[MathVerdict]:
        """Score ``(response, reference)`` pairs on the pool; verdicts come back in input order.

        Each pair gets at most ``timeout_s`` (default: the verifier's) of wall-clock time; a pair
        that runs past it is "wrong: timeout" and does not hold up the others.
        """
        timeout_s = self.timeout_s if timeout_s is None else _check_timeout(timeout_s)
        rel_tol = self.rel_tol if rel_tol is None else _check_rel_tol(rel_tol)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise TypeError(f"pairs[{i}] must be a (response: str, reference: str) pair, got {pair!r:.200}")
        with self._lock:
            if self._closed:
                raise ValueError("MathVerifier is closed")
            return self._run(list(pairs), timeout_s, rel_tol)

    # -- scheduling ----------------------------------------------------------------------------
    def _run(self, pairs: list[tuple[str, str]], timeout_s: float, rel_tol: float) -> list[MathVerdict]:
        results: list[MathVerdict | None] = [None] * len(pairs)
        todo = deque(range(len(pairs)))
        size = max(1, min(self.chunk_size, math.ceil(len(pairs) / (self.num_workers * 4))))
        while len(self._workers) < min(self.num_workers, max(1, len(pairs))):
            self._workers.append(_Worker(self._ctx, self.memory_limit_mb))
        for worker in self._workers:
            self._assign(worker, todo, size, pairs, timeout_s, rel_tol)
        while any(worker.chunk for worker in self._workers):
            busy = [w for w in self._workers if w.chunk]
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = set(wait([w.conn for w in busy], timeout=wait_s))
            for slot, worker in enumerate(list(self._workers)):
                if not worker.chunk:
                    continue
                if worker.conn in ready:
                    self._receive(slot, worker, results, pairs, timeout_s, rel_tol)
                elif time.monotonic() >= worker.deadline:
                    self._replace(slot, worker, results, TIMEOUT, pairs, timeout_s, rel_tol)
                    continue
                worker = self._workers[slot]
                if not worker.chunk:
                    self._assign(worker, todo, size, pairs, timeout_s, rel_tol)
        done = [r for r in results if r is not None]
        assert len(done) == len(results), "every pair gets a verdict"
        return done

    def _assign(self, worker: _Worker, todo: deque[int], size: int, pairs: list[tuple[str, str]],
                timeout_s: float, rel_tol: float) -> None:
        chunk = [todo.popleft() for _ in range(min(size, len(todo)))]
        if chunk:
            self._send(worker, chunk, pairs, timeout_s, rel_tol)

    def _send(self, worker: _Worker, chunk: list[int], pairs: list[tuple[str, str]],
              timeout_s: float, rel_tol: float) -> None:
        worker.chunk = deque(chunk)
        worker.deadline = time.monotonic() + timeout_s
        try:
            soft_s = None if self.soft_fraction is None else timeout_s * self.soft_fraction
            worker.conn.send((soft_s, rel_tol, [(i, *pairs[i]) for i in chunk]))
        except OSError:  # the worker died: wait() sees its pipe closed and _receive replaces it
            pass

    def _receive(self, slot: int, worker: _Worker, results: list[MathVerdict | None],
                 pairs: list[tuple[str, str]], timeout_s: float, rel_tol: float) -> None:
        try:
            while worker.chunk and worker.conn.poll():
                index, correct, reason, extracted = worker.conn.recv()
                assert index == worker.chunk[0], (index, worker.chunk[0])
                results[index] = MathVerdict(correct, reason, extracted)
                worker.chunk.popleft()
                worker.deadline = time.monotonic() + timeout_s
        except (EOFError, OSError):
            logger.warning("math worker died (exit code %s); replacing it", worker.process.exitcode)
            self._replace(slot, worker, results, ERROR, pairs, timeout_s, rel_tol)

    def _replace(self, slot: int, worker: _Worker, results: list[MathVerdict | None], reason: str,
                 pairs: list[tuple[str, str]], timeout_s: float, rel_tol: float) -> None:
        """Kill ``worker``, give its current pair ``reason``, and start a new worker on the rest of its chunk."""
        worker.kill()
        self.num_killed += 1
        results[worker.chunk.popleft()] = MathVerdict(False, reason, "")
        fresh = _Worker(self._ctx, self.memory_limit_mb)
        self._workers[slot] = fresh
        if worker.chunk:
            self._send(fresh, list(worker.chunk), pairs, timeout_s, rel_tol)


def _check_timeout(timeout_s: float) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s < math.inf:
        raise ValueError(f"timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def _check_rel_tol(rel_tol: float) -> float:
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, int | float) or not 0 <= rel_tol < 1:
        raise ValueError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}")
    return float(rel_tol)
