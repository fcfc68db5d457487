"""The rollout process's side: build the engine, run its `EngineLoop`, serve the parent's commands.

The main thread reads commands (submit, abort/interrupt, weight push, stop) from the parent's pipe; the loop thread
steps the engine and sends each event back from its sink. The process ends when the parent says stop, when the
parent's end of the pipe closes or the parent's pid changes (the parent died: no orphan is left behind), or after
its engine failed (the parent is told why first). SIGINT is ignored here: a Ctrl-C in the terminal reaches the
whole process group, and the parent, not the child, decides how the run ends (it stops the child).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
from typing import Any

import torch

from thinkrl.engine import LLMEngine, TokenEvent
from thinkrl.engine.loop import EngineLoop
from thinkrl.rollout.process_wire import (
    Abort,
    ChildInit,
    Event,
    Fatal,
    Push,
    PushDone,
    Ready,
    RemoteError,
    Stop,
    Submit,
    SubmitFailed,
    TokenizerSpec,
    budget_controller,
    buffer_views,
    controller_state,
    load_init,
    unpack_request,
)

logger = logging.getLogger(__name__)

POLL_S = 0.2
"""How often the idle child checks that its parent and its engine are alive."""


class _Sender:
    """Sends records to the parent from any thread; exits the process when the parent is gone."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: object) -> None:
        try:
            with self.lock:
                self.conn.send(message)
        except (OSError, EOFError):  # the parent closed its end or died: nobody is listening any more
            os._exit(0)


def build_engine(init: ChildInit, flat: torch.Tensor) -> tuple[EngineLoop, Any, dict[str, torch.Tensor]]:
    """The started engine loop, its tokenizer and the views of the shared weight buffer ``flat``."""
    torch.set_num_threads(init.num_threads)
    tokenizer = init.tokenizer.build() if isinstance(init.tokenizer, TokenizerSpec) else init.tokenizer
    model = init.policy  # unpickled from the record our parent wrote (see process_wire.share_init)
    # A private copy: the engine owns its weights (none of them in memory another process maps).
    model = copy.deepcopy(model).to(init.device).eval().requires_grad_(False)
    engine = LLMEngine(model, tokenizer, **init.engine)
    return EngineLoop(engine).start(), tokenizer, buffer_views(flat, init.slots)


def child_main(shared_init: torch.Tensor, flat: torch.Tensor, commands: Any, events: Any) -> None:
    """Entry point of the rollout process: ``shared_init`` holds its `ChildInit` (`share_init`), ``flat`` is the
    weight buffer, ``commands``/``events`` the pipe ends from and to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sender = _Sender(events)
    try:
        init = load_init(shared_init)
        # Unmap it (the spawn arguments keep this tensor alive for the process's lifetime); torch's stubs lack
        # set_()'s no-argument form.
        shared_init.set_()  # type: ignore[call-overload]
        loop, tokenizer, buffers = build_engine(init, flat)
        parent_pid = init.parent_pid
        del init  # (and its policy: the engine has its own copy)
    except BaseException as error:  # tell the parent why, then exit
        sender.send(Fatal(RemoteError.of(error), during="start-up"))
        return
    sender.send(Ready(loop.version, os.getpid()))
    try:
        _serve(parent_pid, loop, tokenizer, buffers, commands, sender)
    finally:
        loop.stop(timeout=5.0)


def _serve(parent_pid: int, loop: EngineLoop, tokenizer: Any, buffers: dict[str, torch.Tensor], commands: Any,
           sender: _Sender) -> None:
    while True:
        if loop.error is not None:
            sender.send(Fatal(RemoteError.of(loop.error)))
            return
        if os.getppid() != parent_pid:  # reparented: the parent died without closing the pipe
            return
        try:
            if not commands.poll(POLL_S):
                continue
            message = commands.recv()
        except (EOFError, OSError):  # the parent's end closed: it died or let us go
            return
        if isinstance(message, Stop):
            return
        _handle(message, loop, tokenizer, buffers, sender)


def _handle(message: object, loop: EngineLoop, tokenizer: Any, buffers: dict[str, torch.Tensor],
            sender: _Sender) -> None:
    if isinstance(message, Submit):
        _submit(message, loop, tokenizer, sender)
    elif isinstance(message, Abort):
        if message.interrupt:
            loop.interrupt(message.request_id)
        else:
            loop.abort(message.request_id)
    elif isinstance(message, Push):
        try:
            count = loop.update_weights([(name, buffers[name]) for name in message.names], message.version)
        except Exception as error:  # a bad push fails the caller, not the engine (nothing was copied)
            sender.send(PushDone(message.push_id, error=RemoteError.of(error)))
        else:
            sender.send(PushDone(message.push_id, count, message.version, engine_steps=loop.num_steps))
    else:
        raise TypeError(f"rollout process: unknown command {type(message).__name__}")


def _submit(message: Submit, loop: EngineLoop, tokenizer: Any, sender: _Sender) -> None:
    try:
        requests = [unpack_request(spec, tokenizer) for spec in message.requests]
        controllers = {r.request_id: r.controller for r in requests}

        def sink(item: TokenEvent | BaseException) -> None:
            if isinstance(item, BaseException):
                # After a failed engine step the loop hands every sink a summary; send the cause, with its traceback.
                cause = loop.error if loop.error is not None else item
                sender.send(SubmitFailed(message.submit_id, RemoteError.of(cause)))
                return
            controller = budget_controller(controllers.get(item.request_id)) if item.finished else None
            state = controller_state(controller) if controller is not None else None
            sender.send(Event(message.submit_id, item, state))

        loop.submit(requests, sink, finished_only=message.finished_only)
    except Exception as error:  # refused here (e.g. a controller for another tokenizer): its caller hears why
        sender.send(SubmitFailed(message.submit_id, RemoteError.of(error)))
