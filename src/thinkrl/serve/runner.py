"""`EngineRunner`: one background thread owns the `LLMEngine` and steps it while there is work.

HTTP handlers run on the asyncio event loop; the engine is not thread-safe and its
steps block. So the handlers never touch the engine: `EngineRunner.submit` puts a
`Request` and a *sink* (a callable taking each `TokenEvent`) on a thread-safe
queue, the runner thread adds it to the engine between two steps and calls the
sink from the runner thread for every event of that request. `stream_events`
wraps this for asyncio: the sink hands events to an `asyncio.Queue` through
``loop.call_soon_threadsafe``. Every request in flight shares the engine's
continuous batching, whichever HTTP request it came from.

A request whose client went away (`drop`) is aborted in the engine before the next
step, so its slot goes to the next request instead of generating unread tokens.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch

from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.types import Request, TokenEvent

logger = logging.getLogger(__name__)

Sink = Callable[[TokenEvent | BaseException], None]
"""Receives a request's events in the runner thread; an exception when the request failed."""


class EngineError(RuntimeError):
    """The engine failed or the runner is not running; the request cannot complete."""


class EngineRunner:
    """Runs ``engine.step()`` in a daemon thread while requests are queued or running.

    Args:
        engine: the engine; after `start` only the runner thread may use it.
        idle_wait_s: how long the idle thread blocks on the queue before checking for `stop`.

    Attributes:
        num_steps: engine steps run so far.
        num_aborted: requests aborted in the engine because their client went away.
        error: the exception that stopped the engine, or None.
    """

    def __init__(self, engine: LLMEngine, idle_wait_s: float = 0.5) -> None:
        self.engine = engine
        self.idle_wait_s = idle_wait_s
        self._inbox: queue.SimpleQueue[tuple[Request, Sink] | None] = queue.SimpleQueue()
        self._sinks: dict[Any, Sink] = {}  # admitted requests
        self._queued: set[Any] = set()  # submitted, not yet admitted
        self._dropped: set[Any] = set()  # dropped while queued
        self._to_abort: set[Any] = set()  # dropped while in the engine: aborted before the next step
        self.num_aborted = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.num_steps = 0

    @property
    def is_running(self) -> bool:
        """True while the thread is alive and the engine has not failed."""
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def start(self) -> None:
        """Start the runner thread (once)."""
        if self._thread is not None:
            raise RuntimeError("EngineRunner.start() called twice")
        self._thread = threading.Thread(target=self._loop, name="thinkrl-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step; requests still in flight get an `EngineError`."""
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_all(EngineError("the server is shutting down"))

    def submit(self, request: Request, sink: Sink) -> None:
        """Queue ``request``; ``sink`` gets its events (from the runner thread). Thread-safe.

        Raises:
            EngineError: the runner is stopped or the engine failed earlier.
        """
        if not self.is_running or self._stopping.is_set():
            raise EngineError(f"the engine is not running: {self.error or 'stopped'}")
        with self._lock:
            self._queued.add(request.request_id)
        self._inbox.put((request, sink))

    def drop(self, request_id: Any) -> None:
        """Stop delivering events of ``request_id`` (its client went away). Thread-safe."""
        with self._lock:
            if request_id in self._queued:
                self._dropped.add(request_id)
            elif self._sinks.pop(request_id, None) is not None:
                self._to_abort.add(request_id)

    # ---- runner thread ----------------------------------------------------------------
    def _loop(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                if not self._admit(block=not self.engine.has_unfinished()):
                    continue
                self._abort_dropped()
                if not self.engine.has_unfinished():
                    continue
                try:
                    events = self.engine.step()
                except Exception as error:  # the engine state is undefined now: fail everything
                    logger.exception("engine step failed; the server stops accepting requests")
                    self.error = error
                    self._fail_all(EngineError(f"engine step failed: {error!r}"))
                    return
                self.num_steps += 1
                for event in events:
                    self._deliver(event)

    def _admit(self, block: bool) -> bool:
        """Move queued requests into the engine; False when woken only to stop."""
        try:
            item = self._inbox.get(timeout=self.idle_wait_s) if block else self._inbox.get_nowait()
        except queue.Empty:
            return not block
        while item is not None:
            request, sink = item
            with self._lock:
                self._queued.discard(request.request_id)
                dropped = request.request_id in self._dropped
                self._dropped.discard(request.request_id)
            if not dropped:  # a request dropped before admission never reaches the engine
                try:
                    self.engine.add_request(request)
                except Exception as error:  # refused (e.g. too long): the requester gets the error
                    self._call(sink, error)
                else:
                    with self._lock:
                        self._sinks[request.request_id] = sink
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True
        return False

    def _abort_dropped(self) -> None:
        with self._lock:
            doomed, self._to_abort = self._to_abort, set()
        for request_id in doomed:
            if self.engine.abort(request_id) is not None:
                self.num_aborted += 1

    def _deliver(self, event: TokenEvent) -> None:
        with self._lock:
            sink = self._sinks.pop(event.request_id, None) if event.finished else self._sinks.get(event.request_id)
        if sink is not None:
            self._call(sink, event)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            sinks, self._sinks = list(self._sinks.values()), {}
            self._queued.clear()
            self._dropped.clear()
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                sinks.append(item[1])
        for sink in sinks:
            self._call(sink, error)

    @staticmethod
    def _call(sink: Sink, item: TokenEvent | BaseException) -> None:
        try:
            sink(item)
        except RuntimeError:  # the handler's event loop is closed: nobody is listening any more
            logger.debug("dropped an event for a closed event loop")


async def stream_events(runner: EngineRunner, requests: list[Request]) -> AsyncIterator[TokenEvent]:
    """Submit ``requests`` and yield their events (interleaved) until every one has finished.

    Must be called from a running event loop. When the consumer stops early (client
    disconnect, error), the unfinished requests are dropped from delivery.

    Raises:
        EngineError: the runner is not running or the engine failed mid-way.
        ValueError: the engine refused a request (e.g. its prompt does not fit).
    """
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[TokenEvent | BaseException] = asyncio.Queue()
    sink: Sink = lambda item: loop.call_soon_threadsafe(inbox.put_nowait, item)
    unfinished = {r.request_id for r in requests}
    try:
        for request in requests:
            runner.submit(request, sink)
        while unfinished:
            item = await inbox.get()
            if isinstance(item, BaseException):
                raise item
            if item.finished:
                unfinished.discard(item.request_id)
            yield item
    finally:
        for request_id in unfinished:
            runner.drop(request_id)
