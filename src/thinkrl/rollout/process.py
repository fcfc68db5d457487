"""`RolloutProcess`: the engine client of an engine that runs in a child process (``rollout.placement: process``).

Same interface as the in-process client `EngineLoop` (submit / stream / generate / abort / interrupt /
update_weights / version / stop / is_running / error), so the trainer does not know where its engine runs. The
child (`process_child`) is started with torch.multiprocessing's spawn context and runs an `EngineLoop` of its own;
requests, events and errors cross two pipes as typed records (`process_wire`).

Weights: one flat shared-memory buffer laid out like the policy's parameters. A push copies the trainer's tensors
into it, sends ``(push id, version, names)`` and returns once the child has copied the buffer into its engine
between two steps (acknowledged): every token sampled afterwards records the new version. One push at a time.

Never hang. A receiver thread waits on the event pipe *and* the child's process sentinel: when the child dies (a
crash, SIGKILL, the OOM killer) every waiting caller and every later call gets an `EngineError` naming the exit code
or signal. An exception in the child comes back with its message and traceback text. ``stop`` asks the child to
stop, then terminates and finally kills it. The child ignores SIGINT and exits when the parent dies, so neither a
Ctrl-C nor a killed trainer leaves a rollout process behind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import wait
from typing import Any

import torch
import torch.multiprocessing as tmp

from thinkrl.engine import EngineError, Request
from thinkrl.engine.loop import BlockingClient, Sink
from thinkrl.engine.weights import named_weights
from thinkrl.model import CausalLM
from thinkrl.rollout.process_child import child_main
from thinkrl.rollout.process_router import Router
from thinkrl.rollout.process_wire import (
    Abort,
    ChildInit,
    Event,
    Fatal,
    Push,
    PushDone,
    Ready,
    Stop,
    Submit,
    SubmitFailed,
    TokenizerSpec,
    buffer_views,
    check_push,
    describe_exit,
    pack_request,
    plan_buffer,
    share_init,
)
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

_DIED_STARTING = (" before its engine started; its stderr says why (a script that starts a run needs an "
                  "`if __name__ == \"__main__\":` guard: the rollout process imports the main module again)")


class RolloutProcess(BlockingClient):
    """Client of an engine in a child process. Build it with `start_engine_process`.

    Attributes:
        error: why the child can no longer serve (it died or its engine failed), or None.
        pid: the child's process id.
        num_steps: the child engine's steps as of the last acknowledged weight push (0 before any): what
            `EngineLoop.num_steps` counts in the thread placement, reported at push boundaries.
    """

    def __init__(self, process: Any, commands: Any, events: Any, buffers: dict[str, torch.Tensor],
                 idle_wait_s: float = 0.5, push_timeout_s: float | None = 600.0) -> None:
        self._process, self._commands, self._events = process, commands, events
        self._buffers = buffers  # name -> view into the shared weight buffer
        self.idle_wait_s = idle_wait_s
        self.push_timeout_s = push_timeout_s  # a push's timeout when the caller gives none: a stuck child ends it
        self.error: BaseException | None = None
        self._version = 0
        self.num_steps = 0
        self._router = Router()
        self._send_lock = threading.Lock()
        self._push_lock = threading.Lock()  # one push at a time: the child reads the buffer until it acknowledges
        self._last_push: Future[int] | None = None
        self._ids = itertools.count()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._reap_lock = threading.Lock()  # see `_alive`
        self._receiver = threading.Thread(target=self._receive, name="thinkrl-rollout-receiver", daemon=True)

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def version(self) -> int:
        """Version of the engine's weights: the last acknowledged push (0 before any)."""
        return self._version

    @property
    def is_running(self) -> bool:
        """True while the child is alive, ready, its engine has not failed and `stop` was not called."""
        return (self._ready.is_set() and self.error is None and not self._stopping.is_set()
                and self._alive() and self._receiver.is_alive())

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float) -> RolloutProcess:
        """Start the receiver and wait until the child's engine is ready; returns self.

        Raises:
            EngineError: the child failed to start or died (the child is stopped first).
        """
        self._receiver.start()
        waited = 0.0
        while not self._ready.wait(self.idle_wait_s):
            waited += self.idle_wait_s
            if self.error is not None or waited >= timeout:
                error = self.error or EngineError(f"the rollout process did not start within {timeout} s")
                self.stop()
                raise error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (asked, then terminated after ``timeout`` s, then killed) and fail whatever is in
        flight with an `EngineError`. Safe to call twice, and from a sink."""
        self._stopping.set()
        try:
            with self._send_lock:
                self._commands.send(Stop())
        except (OSError, ValueError):  # already gone or closed
            pass
        self._join(timeout)
        if self._alive():
            logger.warning("the rollout process (pid %s) did not stop within %s s; terminating it", self.pid, timeout)
            self._process.terminate()
            self._join(5.0)
        if self._alive():
            self._process.kill()
            self._join(None)
        if threading.current_thread() is not self._receiver and self._receiver.is_alive():
            self._receiver.join(timeout)
        self._router.fail_all(EngineError("the rollout process was stopped"))
        self._commands.close()

    # ---- client API (thread-safe) ---------------------------------------------------------
    def submit(self, requests: Request | Sequence[Request], sink: Sink, *, finished_only: bool = False) -> None:
        """Queue ``requests`` (they enter the engine in the same step); ``sink`` gets their events, in the
        receiver thread.

        Raises:
            EngineError: the child is stopped, dead or its engine failed.
            TypeError: a request's controller cannot cross to the child (only thinking-budget controllers can).
        """
        batch = [requests] if isinstance(requests, Request) else list(requests)
        specs = [pack_request(r) for r in batch]
        self._check_running()
        submit_id = next(self._ids)
        self._router.add_submit(submit_id, batch, sink)
        self._send(Submit(submit_id, specs, finished_only))

    def abort(self, request_id: Any) -> None:
        """Stop ``request_id`` and deliver no more of its events."""
        self._router.drop(request_id)
        self._send(Abort(request_id), quiet=True)

    def interrupt(self, request_id: Any) -> None:
        """Stop ``request_id``; its partial trajectory arrives as its finished event (finish reason "abort")."""
        self._send(Abort(request_id, interrupt=True), quiet=True)

    def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], version: int,
                       timeout: float | None = None) -> int:
        """Copy named tensors into the shared buffer; the child copies them into its engine between two steps and
        sets ``version``. Blocks until acknowledged; returns how many tensors were copied.

        A push that timed out may still be applied later; the next push waits for it before reusing the buffer.

        Raises:
            ValueError: names or shapes do not match the engine's model, or ``version`` is older than the engine's
                (nothing was applied).
            EngineError: the child died or stopped before acknowledging.
            TimeoutError: not acknowledged within ``timeout`` seconds (None: ``push_timeout_s``).
        """
        if threading.current_thread() is self._receiver:  # a sink: it would wait for its own acknowledgement
            raise RuntimeError("update_weights was called from the rollout receiver thread (a sink?)")
        items = [(name, tensor.detach()) for name, tensor in weights]
        timeout = self.push_timeout_s if timeout is None else timeout
        check_push(self._buffers, items)
        self._check_running()
        with self._push_lock:
            if self._last_push is not None:  # a push that timed out: the child may still read the buffer
                with contextlib.suppress(ValueError, TypeError):  # its outcome: its caller no longer waits
                    self._wait(self._last_push, timeout, "the previous weight push is still being applied")
                self._last_push = None
            with torch.no_grad():
                for name, tensor in items:
                    self._buffers[name].copy_(tensor)
            push_id = next(self._ids)
            done = self._last_push = self._router.add_push(push_id)
            self._send(Push(push_id, int(version), [name for name, _ in items]))
            try:
                return self._wait(done, timeout, f"update_weights: not applied within {timeout} s")
            finally:
                if done.done():  # answered (or failed: the child is gone); else the next push waits for it
                    self._last_push = None

    # ---- helpers --------------------------------------------------------------------------
    def _alive(self) -> bool:
        """`Process.is_alive` under the reaping lock. The receiver and `stop` both reap the child; unguarded, the
        thread whose ``waitpid`` loses the race reads the dead child as alive (a false "did not stop" warning after
        a clean exit, then a needless terminate)."""
        with self._reap_lock:
            return self._process.is_alive()

    def _join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` s (None: forever) for the child to exit, then reap it under the lock."""
        if wait([self._process.sentinel], timeout):  # holds no lock, so `_alive` never waits on a slow exit
            # The sentinel closes as the child exits, a moment before it can be reaped: a blocking reap (``join``
            # without a timeout), so the exit code is there for `describe_exit` (a killed child's signal).
            with self._reap_lock:
                self._process.join()

    def _check_running(self) -> None:
        if not self.is_running:
            if self.error is None and not self._stopping.is_set() and not self._alive():
                self.error = EngineError(describe_exit(self._process))  # before the receiver noticed
            raise EngineError(f"the rollout engine is not running: {self.error or 'stopped'}")

    def _wait(self, done: Future[int], timeout: float | None, message: str) -> int:
        waited = 0.0
        while True:
            try:
                return done.result(timeout=self.idle_wait_s)
            except TimeoutError:
                waited += self.idle_wait_s
                self._check_running()
                if timeout is not None and waited >= timeout:
                    raise TimeoutError(message) from None

    def _send(self, message: object, quiet: bool = False) -> None:
        try:
            with self._send_lock:
                self._commands.send(message)
        except (OSError, ValueError) as error:  # the child's end is gone
            if not quiet:
                self._check_running()
                raise EngineError(f"the rollout process cannot be reached: {error}") from error

    # ---- receiver thread ------------------------------------------------------------------------
    def _receive(self) -> None:
        """Dispatch the child's records until it exits; then fail whatever still waits."""
        try:
            self._receive_until_exit()
        except BaseException as error:  # e.g. a sink raised: nobody would deliver again, so fail every waiter
            logger.exception("the rollout receiver thread failed")
            self.error = self.error or EngineError(f"the rollout receiver thread failed: {error!r}")
            self._router.fail_all(self.error)

    def _receive_until_exit(self) -> None:
        while True:
            ready = wait([self._events, self._process.sentinel], timeout=self.idle_wait_s)
            if self._events in ready:
                try:
                    message = self._events.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    self._dispatch(message)
                    continue
            if self._process.sentinel in ready or (not ready and not self._alive()):
                self._join(1.0)
                if self.error is None and not self._stopping.is_set():
                    self.error = EngineError(describe_exit(self._process) + ("" if self._ready.is_set() else
                                                                             _DIED_STARTING))
                    logger.error("%s", self.error)
                self._router.fail_all(self.error or EngineError("the rollout process was stopped"))
                self._events.close()
                return

    def _dispatch(self, message: object) -> None:
        if isinstance(message, Event):
            self._router.deliver(message)
        elif isinstance(message, PushDone):
            if message.error is None:
                self._version = max(self._version, message.version)  # before the caller wakes up
                self.num_steps = max(self.num_steps, message.engine_steps)
            self._router.push_done(message)
        elif isinstance(message, SubmitFailed):
            self._router.fail_submit(message.submit_id, message.error.to_exception())
        elif isinstance(message, Ready):
            self._version = message.version
            self._ready.set()
        elif isinstance(message, Fatal):
            self.error = EngineError(f"the rollout engine failed during {message.during}: "
                                     f"{message.error.type_name}: {message.error.message}\n"
                                     f"--- traceback in the rollout process ---\n{message.error.traceback}")
            logger.error("%s", self.error)
            self._router.fail_all(self.error)


def start_engine_process(policy: CausalLM, tokenizer: Any, *, num_slots: int, max_seq_len: int, seed: int,
                         device: str | None = None, cuda_graphs: bool = True, admit_batch: int = 1,
                         compile_decode: bool = False, start_timeout: float = 600.0,
                         push_timeout: float | None = 600.0) -> RolloutProcess:
    """A started `RolloutProcess` whose engine holds a copy of ``policy``'s weights (version 0).

    Args:
        policy: the trainer's model; only a pickled copy of it leaves this process.
        tokenizer: a `TextTokenizer` (sent as plain data) or any picklable tokenizer.
        num_slots / max_seq_len / seed / cuda_graphs / admit_batch / compile_decode: as for `LLMEngine`.
        device: the engine's device (default: the policy's).
        start_timeout: seconds to wait for the child's engine to be ready.
        push_timeout: a weight push's timeout when its caller gives none (a child that is alive but stuck never
            acknowledges; the push then raises TimeoutError instead of hanging). None waits forever.

    Raises:
        EngineError: the child failed to start (the message carries its traceback) or died.
        TypeError: the policy does not pickle (nothing was started).
    """
    weights = named_weights(policy)
    slots, nbytes = plan_buffer(weights)
    flat = torch.empty(nbytes, dtype=torch.uint8).share_memory_()
    spec = TokenizerSpec.of(tokenizer) if isinstance(tokenizer, TextTokenizer) else tokenizer
    try:
        init = share_init(ChildInit(
            policy, spec, slots, str(device or policy.device),
            {"num_slots": num_slots, "max_seq_len": max_seq_len, "seed": seed, "cuda_graphs": cuda_graphs,
             "admit_batch": admit_batch, "compile_decode": compile_decode},
            torch.get_num_threads(), os.getpid()))
    except TypeError as error:
        raise TypeError(f"the policy cannot be copied to the rollout process ({error}); e.g. undo "
                        "thinkrl.model.compile_pointwise first, or use rollout.placement: thread") from error
    context = tmp.get_context("spawn")
    commands_out, commands_in = context.Pipe(duplex=False)  # (reader, writer)
    events_out, events_in = context.Pipe(duplex=False)
    process = context.Process(target=child_main, args=(init, flat, commands_out, events_in), name="thinkrl-rollout",
                              daemon=True)
    process.start()  # (small arguments: returns even when the child dies before reading them)
    commands_out.close()  # the child's ends: closed here, so a dead child reads as end-of-file
    events_in.close()
    client = RolloutProcess(process, commands_in, events_out, buffer_views(flat, slots), push_timeout_s=push_timeout)
    return client.start(start_timeout)
