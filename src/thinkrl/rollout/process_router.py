"""`Router`: the parent's tables of who waits for what from the rollout process.

Submits wait for their requests' events (delivered to their sink), weight pushes for their acknowledgement (a
`Future`). The receiver thread of `RolloutProcess` routes each record from the child here; when the child dies or
stops, `fail_all` hands every waiter the error, so nobody waits for a record that will never come.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from thinkrl.engine import Request, TokenEvent
from thinkrl.engine.loop import Sink
from thinkrl.rollout.process_wire import Event, PushDone, budget_controller

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    """One submit call: its sink, its requests' controllers (updated when they finish), the ones still open."""

    sink: Sink
    controllers: dict[Any, Any]
    open: set[Any] = field(default_factory=set)


class Router:
    """Thread-safe tables of open submits and pushes. Sinks are called outside the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._submit_of: dict[Any, int] = {}  # request id -> its submit
        self._pushes: dict[int, Future[int]] = {}

    def add_submit(self, submit_id: int, requests: list[Request], sink: Sink) -> None:
        with self._lock:
            self._pending[submit_id] = _Pending(sink, {r.request_id: r.controller for r in requests},
                                                {r.request_id for r in requests})
            self._submit_of.update((r.request_id, submit_id) for r in requests)

    def drop(self, request_id: Any) -> None:
        """Deliver no more events of ``request_id`` (aborted)."""
        with self._lock:
            submit_id = self._submit_of.pop(request_id, -1)
            pending = self._pending.get(submit_id)
            if pending is not None:
                pending.open.discard(request_id)
                if not pending.open:
                    del self._pending[submit_id]

    def add_push(self, push_id: int) -> Future[int]:
        done: Future[int] = Future()
        with self._lock:
            self._pushes[push_id] = done
        return done

    def deliver(self, message: Event) -> None:
        """Hand the event to its submit's sink (nothing when it was aborted); a finished one first copies the
        child's final controller counts into the caller's controller."""
        event = message.event
        with self._lock:
            pending = self._pending.get(message.submit_id)
            if pending is None or event.request_id not in pending.open:
                return
            if event.finished:
                pending.open.discard(event.request_id)
                self._submit_of.pop(event.request_id, None)
                if not pending.open:
                    del self._pending[message.submit_id]
        controller = budget_controller(pending.controllers.get(event.request_id))
        if message.controller_state is not None and controller is not None:
            vars(controller).update(message.controller_state)  # the caller reads the counts after generation
        _call(pending.sink, event)

    def fail_submit(self, submit_id: int, error: BaseException) -> None:
        with self._lock:
            pending = self._pending.get(submit_id)
        if pending is not None:
            _call(pending.sink, error)

    def push_done(self, message: PushDone) -> None:
        with self._lock:
            done = self._pushes.pop(message.push_id, None)
        if done is not None and message.error is not None:
            done.set_exception(message.error.to_exception())
        elif done is not None:
            done.set_result(message.count)

    def fail_all(self, error: BaseException) -> None:
        with self._lock:
            sinks = [pending.sink for pending in self._pending.values()]
            pushes = list(self._pushes.values())
            self._pending, self._pushes, self._submit_of = {}, {}, {}
        for done in pushes:
            if not done.done():
                done.set_exception(error)
        for sink in sinks:
            try:
                _call(sink, error)
            except Exception:  # one broken sink must not keep the others waiting
                logger.exception("a sink raised while being told the rollout process failed")


def _call(sink: Sink, item: TokenEvent | BaseException) -> None:
    try:
        sink(item)
    except RuntimeError:  # the handler's event loop is closed: nobody is listening any more
        logger.debug("dropped an event for a closed event loop")
