"""`EngineLoop`: the engine client. One thread owns the `LLMEngine` and steps it while there is work.

The engine is not thread-safe and its steps block, so nobody else touches it: the server's handlers, the
rollout stage and the trainer talk to it through this client, which is the weight boundary of the system:

* ``submit(requests, sink)`` queues requests; ``sink`` (a callable) receives each `TokenEvent` of them from
  the loop thread (``finished_only`` delivers just the last one, which carries the `Trajectory`).
* ``stream(requests)`` / ``generate(requests)``: blocking helpers over ``submit`` for plain threads;
  `stream_events` is the asyncio one the server uses.
* ``abort(request_id)``: the request stops before the next step and its slot is freed.
* ``interrupt(request_id)``: like ``abort``, but the sink gets the partial `Trajectory` as the request's finished
  event (finish reason "abort"), so a partial rollout can be continued (e.g. after a weight update).
* ``update_weights(named tensors, version)``: copied into the engine's own weights in place, between two
  steps, in the order it was called relative to ``submit``; every token sampled afterwards records ``version``.
* ``version``: the version of the engine's current weights.

A request that fails on its own ends with finish reason "error" and the loop goes on (see `LLMEngine`); only a
failed engine step stops the loop, and then every waiting caller gets an `EngineError` instead of hanging.
Requests submitted together in one call enter the engine in the same step, so seeded results do not depend on
thread timing.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.types import Request, TokenEvent
from thinkrl.records import Trajectory

logger = logging.getLogger(__name__)

Sink = Callable[[TokenEvent | BaseException], None]
"""Receives a request's events in the loop thread; an exception when the request failed."""


class EngineError(RuntimeError):
    """The engine failed or the loop is not running; the request cannot complete."""


@dataclass
class _Submit:
    requests: list[Request]
    sink: Sink
    finished_only: bool


@dataclass
class _WeightPush:
    weights: list[tuple[str, torch.Tensor]]
    version: int
    done: Future[int]


class BlockingClient:
    """`stream` and `generate` for plain threads, over an engine client's ``submit`` / ``abort`` /
    ``_check_running`` and its ``idle_wait_s`` (shared by `EngineLoop` and the rollout process's client)."""

    idle_wait_s: float

    def submit(self, requests: Request | Sequence[Request], sink: Sink, *, finished_only: bool = False) -> None:
        raise NotImplementedError

    def abort(self, request_id: Any) -> None:
        raise NotImplementedError

    def _check_running(self) -> None:
        raise NotImplementedError

    def stream(self, requests: Sequence[Request], *, finished_only: bool = False) -> Iterator[TokenEvent]:
        """Submit ``requests`` and yield their events until all have finished (blocking; for plain threads).

        Leaving the iterator early aborts the unfinished ones.
        """
        inbox: queue.SimpleQueue[TokenEvent | BaseException] = queue.SimpleQueue()
        unfinished = {r.request_id for r in requests}
        self.submit(requests, inbox.put, finished_only=finished_only)
        try:
            while unfinished:
                try:
                    item = inbox.get(timeout=self.idle_wait_s)
                except queue.Empty:
                    self._check_running()
                    continue
                if isinstance(item, BaseException):
                    raise item
                if item.finished:
                    unfinished.discard(item.request_id)
                yield item
        finally:
            for request_id in unfinished:
                self.abort(request_id)

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]:
        """Complete every request; trajectories in the order of ``requests`` (like `LLMEngine.generate`)."""
        order = {r.request_id: i for i, r in enumerate(requests)}
        if len(order) != len(requests):
            raise ValueError("request ids must be unique within one generate() call")
        results: list[Trajectory | None] = [None] * len(requests)
        for event in self.stream(requests, finished_only=True):
            results[order[event.request_id]] = event.trajectory
        return results  # type: ignore[return-value]  # every request finished, or stream raised


class EngineLoop(BlockingClient):
    """Runs ``engine.step()`` in a daemon thread while requests are queued or running.

    Args:
        engine: the engine; after `start` only the loop thread may use it.
        idle_wait_s: how long the idle thread blocks on its inbox before checking for `stop` (and how often a
            blocked caller checks that the loop is still alive).

    Attributes:
        num_steps: engine steps run so far.
        num_aborted: requests aborted in the engine (their client went away or called `abort`).
        error: the exception that stopped the engine, or None.
    """

    def __init__(self, engine: LLMEngine, idle_wait_s: float = 0.5) -> None:
        self.engine = engine
        self.idle_wait_s = idle_wait_s
        self._inbox: queue.SimpleQueue[_Submit | _WeightPush | None] = queue.SimpleQueue()
        self._sinks: dict[Any, tuple[Sink, bool]] = {}  # admitted requests -> (sink, finished_only)
        self._queued: set[Any] = set()  # submitted, not yet admitted
        self._dropped: set[Any] = set()  # dropped while queued
        self._to_abort: set[Any] = set()  # dropped while in the engine: aborted before the next step
        self._to_interrupt: dict[Any, Sink] = {}  # interrupted in the engine: partial delivered before the next step
        self._interrupted_queued: set[Any] = set()  # interrupted while queued: an empty partial is delivered
        self.num_aborted = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.num_steps = 0

    # ---- lifecycle ----------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while the thread is alive and the engine has not failed."""
        return self._thread is not None and self._thread.is_alive() and self.error is None

    @property
    def version(self) -> int:
        """Version of the engine's current weights."""
        return self.engine.version

    def start(self) -> EngineLoop:
        """Start the loop thread (once); returns self."""
        if self._thread is not None:
            raise RuntimeError("EngineLoop.start() called twice")
        self._thread = threading.Thread(target=self._loop, name="thinkrl-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step; requests and weight pushes still in flight get an `EngineError`."""
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_all(EngineError("the engine loop is shutting down"))

    def __enter__(self) -> EngineLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- client API (thread-safe) ---------------------------------------------------------
    def submit(self, requests: Request | Sequence[Request], sink: Sink, *, finished_only: bool = False) -> None:
        """Queue ``requests`` (they enter the engine in the same step); ``sink`` gets their events.

        Raises:
            EngineError: the loop is stopped or the engine failed earlier.
        """
        batch = [requests] if isinstance(requests, Request) else list(requests)
        self._check_running()
        with self._lock:
            self._queued.update(r.request_id for r in batch)
        self._inbox.put(_Submit(batch, sink, finished_only))

    def abort(self, request_id: Any) -> None:
        """Stop ``request_id`` and deliver no more of its events (e.g. its client went away)."""
        with self._lock:
            if request_id in self._queued:
                self._dropped.add(request_id)
            elif self._sinks.pop(request_id, None) is not None:
                self._to_abort.add(request_id)

    def interrupt(self, request_id: Any) -> None:
        """Stop ``request_id`` before the next step and deliver its partial trajectory (finish reason "abort")
        to its sink as the finished event; no-op when it already finished (its sink had the finished event)."""
        with self._lock:
            if request_id in self._queued:
                self._interrupted_queued.add(request_id)
            elif (entry := self._sinks.pop(request_id, None)) is not None:
                self._to_interrupt[request_id] = entry[0]

    def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], version: int,
                       timeout: float | None = None) -> int:
        """Copy named tensors into the engine's weights between two steps and set ``version``; blocks until done.

        Returns how many tensors were copied. The caller may change its tensors once this returns.

        Raises:
            ValueError: names or shapes do not match the engine's model (nothing was copied).
            EngineError: the loop stopped before the push was applied.
            TimeoutError: not applied within ``timeout`` seconds.
        """
        self._check_running()
        if threading.current_thread() is self._thread:  # e.g. from a sink: it would wait for itself forever
            raise RuntimeError("update_weights was called from the engine loop's own thread (a sink?)")
        done: Future[int] = Future()
        self._inbox.put(_WeightPush(list(weights), int(version), done))
        waited = 0.0
        while True:
            try:
                return done.result(timeout=self.idle_wait_s)
            except TimeoutError:
                waited += self.idle_wait_s
                self._check_running()
                if timeout is not None and waited >= timeout:
                    raise TimeoutError(f"update_weights: not applied within {timeout} s") from None

    def _check_running(self) -> None:
        if not self.is_running or self._stopping.is_set():
            raise EngineError(f"the engine is not running: {self.error or 'stopped'}")

    # ---- loop thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                if not self._drain(block=not self.engine.has_unfinished()):
                    continue
                self._abort_dropped()
                if not self.engine.has_unfinished():
                    continue
                try:
                    events = self.engine.step()
                except Exception as error:  # the engine state is undefined now: fail everything
                    logger.exception("engine step failed; the engine loop stops")
                    self.error = error
                    self._fail_all(EngineError(f"engine step failed: {error!r}"))
                    return
                self.num_steps += 1
                for event in events:
                    self._deliver(event)

    def _drain(self, block: bool) -> bool:
        """Handle everything in the inbox, in order; False when woken only to stop."""
        try:
            item = self._inbox.get(timeout=self.idle_wait_s) if block else self._inbox.get_nowait()
        except queue.Empty:
            return not block
        while item is not None:
            if isinstance(item, _WeightPush):
                self._push(item)
            else:
                self._admit(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True
        return False

    def _push(self, push: _WeightPush) -> None:
        try:
            push.done.set_result(self.engine.update_weights(push.weights, push.version))
        except Exception as error:  # a bad push fails the caller, not the loop: nothing was copied
            push.done.set_exception(error)

    def _admit(self, item: _Submit) -> None:
        for request in item.requests:
            with self._lock:
                self._queued.discard(request.request_id)
                dropped = request.request_id in self._dropped
                self._dropped.discard(request.request_id)
                interrupted = request.request_id in self._interrupted_queued
                self._interrupted_queued.discard(request.request_id)
            if dropped:  # a request dropped before admission never reaches the engine
                continue
            if interrupted:  # interrupted before admission: its partial is empty
                traj = Trajectory(list(request.prompt_ids), [], [], finish_reason="abort",
                                  metadata=dict(request.metadata))
                self._call(item.sink, TokenEvent(request.request_id, [], finished=True, trajectory=traj))
                continue
            try:
                self.engine.add_request(request)
            except Exception as error:  # refused (e.g. too long): the requester gets the error
                self._call(item.sink, error)
            else:
                with self._lock:
                    self._sinks[request.request_id] = (item.sink, item.finished_only)

    def _abort_dropped(self) -> None:
        with self._lock:
            doomed, self._to_abort = self._to_abort, set()
            interrupted, self._to_interrupt = self._to_interrupt, {}
        for request_id in doomed:
            if self.engine.abort(request_id) is not None:
                self.num_aborted += 1
        for request_id, sink in interrupted.items():
            traj = self.engine.abort(request_id)
            if traj is not None:
                self.num_aborted += 1
                self._call(sink, TokenEvent(request_id, [], finished=True, trajectory=traj))

    def _deliver(self, event: TokenEvent) -> None:
        with self._lock:
            entry = self._sinks.pop(event.request_id, None) if event.finished else self._sinks.get(event.request_id)
            if entry is None and event.finished and event.request_id in self._to_interrupt:
                # finished in the step that raced the interrupt: the sink gets its real finished event
                entry = (self._to_interrupt.pop(event.request_id), True)
        if entry is not None and (event.finished or not entry[1]):
            self._call(entry[0], event)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            sinks = [sink for sink, _ in self._sinks.values()] + list(self._to_interrupt.values())
            self._sinks, self._to_interrupt = {}, {}
            self._interrupted_queued.clear()
            self._queued.clear()
            self._dropped.clear()
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Submit):
                sinks.append(item.sink)
            elif isinstance(item, _WeightPush):
                item.done.set_exception(error)
        for sink in sinks:
            self._call(sink, error)

    @staticmethod
    def _call(sink: Sink, item: TokenEvent | BaseException) -> None:
        try:
            sink(item)
        except RuntimeError:  # the handler's event loop is closed: nobody is listening any more
            logger.debug("dropped an event for a closed event loop")


async def stream_events(loop_client: EngineLoop, requests: list[Request]) -> AsyncIterator[TokenEvent]:
    """Submit ``requests`` and yield their events (interleaved) until every one has finished.

    Must be called from a running event loop. When the consumer stops early (client
    disconnect, error), the unfinished requests are aborted.

    Raises:
        EngineError: the loop is not running or the engine failed mid-way.
        ValueError: the engine refused a request (e.g. its prompt does not fit).
    """
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[TokenEvent | BaseException] = asyncio.Queue()

    def sink(item: TokenEvent | BaseException) -> None:
        loop.call_soon_threadsafe(inbox.put_nowait, item)

    unfinished = {r.request_id for r in requests}
    try:
        loop_client.submit(requests, sink)
        while unfinished:
            item = await inbox.get()
            if isinstance(item, BaseException):
                raise item
            if item.finished:
                unfinished.discard(item.request_id)
            yield item
    finally:
        for request_id in unfinished:
            loop_client.abort(request_id)
