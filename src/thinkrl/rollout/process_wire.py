"""What crosses between the trainer's process and its rollout process: typed records, and how requests, thinking-
budget controllers, tokenizers, errors and the weight buffer are packed into them.

Pickle carries these records between our own two processes only (a pipe the parent created for the child it
spawned); it never unpickles data from elsewhere, and model text travels as token ids and strings inside our own
records, never as something that is unpickled or evaluated.

A request's `SequenceController` is an object with state and bound methods; only the thinking-budget controller
crosses, as a `ControllerSpec` (its token vocabulary without the tokenizer, and its counters), rebuilt in the child
over the child's tokenizer. When the request finishes, the child's final counters are copied back into the caller's
controller object, so code that reads ``controller.thinking_tokens`` after ``generate`` works as in-process.
"""

from __future__ import annotations

import dataclasses
import pickle
import signal
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from thinkrl.engine import BudgetVocab, EngineError, Request, SamplingParams, ThinkingBudgetController, TokenEvent
from thinkrl.engine.budget import budget_vocab
from thinkrl.engine.weights import check_named_weights
from thinkrl.rollout.partial import ContinuedController
from thinkrl.tokenizer import TextTokenizer

_ALIGN = 64  # bytes: every tensor of the weight buffer starts on a cache line (and any dtype's alignment)


# ---- requests and controllers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ControllerSpec:
    """A `ThinkingBudgetController` without its tokenizer.

    Fields:
        vocab: its token vocabulary with ``encode`` dropped; the child rebuilds it from its own tokenizer and checks
            that the ids agree.
        state: the controller's attributes except ``vocab`` (budget, limits, phase, counters).
        prefix: for a partial rollout's continuation (`ContinuedController`), the response ids sampled before;
            None for a plain controller.
    """

    vocab: BudgetVocab
    state: dict[str, Any]
    prefix: list[int] | None = None


@dataclass(frozen=True)
class RequestSpec:
    """A `Request` as it crosses to the child (``controller`` as a `ControllerSpec` or None)."""

    prompt_ids: list[int]
    params: SamplingParams
    request_id: Any
    metadata: dict[str, Any]
    controller: ControllerSpec | None


def controller_state(controller: ThinkingBudgetController) -> dict[str, Any]:
    """The attributes of ``controller`` except its vocabulary (which holds the tokenizer)."""
    return {name: value for name, value in vars(controller).items() if name != "vocab"}


def budget_controller(controller: Any) -> ThinkingBudgetController | None:
    """The thinking-budget controller that holds the counts: ``controller`` itself or the one a
    `ContinuedController` wraps; None for anything else."""
    inner = controller.inner if isinstance(controller, ContinuedController) else controller
    return inner if isinstance(inner, ThinkingBudgetController) else None


def pack_request(request: Request) -> RequestSpec:
    """``request`` as a picklable `RequestSpec`.

    Raises:
        TypeError: its controller is not a `ThinkingBudgetController` or a `ContinuedController` of one (an
            arbitrary object cannot be rebuilt in the rollout process).
    """
    spec = None
    if request.controller is not None:
        inner = budget_controller(request.controller)
        if inner is None:
            raise TypeError(f"request {request.request_id!r}: the process placement carries only "
                            f"ThinkingBudgetController controllers, got {type(request.controller).__name__} "
                            "(use rollout.placement: thread)")
        prefix = list(request.controller.prefix) if isinstance(request.controller, ContinuedController) else None
        spec = ControllerSpec(dataclasses.replace(inner.vocab, encode=None), controller_state(inner), prefix)
    return RequestSpec(list(request.prompt_ids), request.params, request.request_id, dict(request.metadata), spec)


def unpack_request(spec: RequestSpec, tokenizer: Any) -> Request:
    """The `Request` of ``spec`` in the child, its controller rebuilt over ``tokenizer``.

    Raises:
        ValueError: the controller's vocabulary differs from ``tokenizer``'s (built for another tokenizer).
    """
    controller = None
    if spec.controller is not None:
        vocab = budget_vocab(tokenizer, spec.controller.vocab.tags)
        if vocab != spec.controller.vocab:  # ``encode`` is not compared: the ids are
            raise ValueError(f"request {spec.request_id!r}: its thinking-budget controller was built for another "
                             "tokenizer than the rollout engine's")
        # Bypass __init__: the caller's controller was validated there, and it may already be mid-way (its phase
        # and counters are part of the state).
        inner = ThinkingBudgetController.__new__(ThinkingBudgetController)
        vars(inner).update(spec.controller.state, vocab=vocab)
        prefix = spec.controller.prefix
        controller = inner if prefix is None else ContinuedController(inner, prefix)
    return Request(spec.prompt_ids, spec.params, spec.request_id, spec.metadata, controller)


# ---- the tokenizer -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerSpec:
    """A `TextTokenizer` as plain data (its compiled chat template does not pickle)."""

    backend_json: str
    special_tokens: dict[str, str | None]
    chat_template: str | None
    template_origin: str
    stop_token_ids: tuple[int, ...]
    name_or_path: str

    @staticmethod
    def of(tokenizer: TextTokenizer) -> TokenizerSpec:
        return TokenizerSpec(tokenizer.backend.to_str(), dict(tokenizer.special_tokens), tokenizer.chat_template,
                             getattr(tokenizer, "_template_origin", "<string>"), tuple(tokenizer.stop_token_ids),
                             tokenizer.name_or_path)

    def build(self) -> TextTokenizer:
        from tokenizers import Tokenizer

        tokenizer = TextTokenizer(Tokenizer.from_str(self.backend_json), **self.special_tokens,
                                  chat_template=self.chat_template, template_origin=self.template_origin,
                                  extra_stop_ids=self.stop_token_ids, name_or_path=self.name_or_path)
        assert tokenizer.stop_token_ids == self.stop_token_ids, "the rebuilt tokenizer's stop tokens differ"
        return tokenizer


# ---- the weight buffer ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferSlot:
    """Where one named tensor lives in the shared weight buffer: bytes ``[offset, offset + nbytes)``."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        return int(torch.Size(self.shape).numel()) * torch.empty((), dtype=self.dtype).element_size()


def plan_buffer(weights: list[tuple[str, torch.Tensor]]) -> tuple[list[BufferSlot], int]:
    """Slots of ``weights`` (each aligned) in one flat buffer, and its size in bytes."""
    slots, offset = [], 0
    for name, tensor in weights:
        slots.append(BufferSlot(name, tuple(tensor.shape), tensor.dtype, offset))
        offset += -(-slots[-1].nbytes // _ALIGN) * _ALIGN
    return slots, max(offset, _ALIGN)


def buffer_views(flat: torch.Tensor, slots: list[BufferSlot]) -> dict[str, torch.Tensor]:
    """name -> the tensor view of its slot in the flat uint8 buffer ``flat``."""
    return {s.name: flat[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape) for s in slots}


def check_push(buffers: dict[str, torch.Tensor], items: list[tuple[str, torch.Tensor]]) -> None:
    """The checks of `copy_weights_into` against the buffer's layout, so a bad push never reaches the child.

    Raises:
        ValueError: an unknown name, a name given twice, a shape mismatch or a missing parameter.
    """
    check_named_weights(buffers, items)


def describe_exit(process: Any) -> str:
    """How the child process ended, naming its exit code or the signal that killed it."""
    code = process.exitcode
    if code is None:
        return f"the rollout process (pid {process.pid}) is not responding"
    if code < 0:
        return f"the rollout process (pid {process.pid}) was killed by signal {signal.Signals(-code).name}"
    return f"the rollout process (pid {process.pid}) exited with code {code}"


# ---- messages --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteError:
    """An exception raised in the other process: its type name, message and formatted traceback."""

    type_name: str
    message: str
    traceback: str

    @staticmethod
    def of(error: BaseException) -> RemoteError:
        return RemoteError(type(error).__name__, str(error), "".join(traceback.format_exception(error)))

    def to_exception(self) -> Exception:
        """The same type for the errors a caller handles (ValueError, TypeError, EngineError, TimeoutError);
        otherwise an `EngineError` with the rollout process's traceback."""
        if self.type_name in ("ValueError", "TypeError", "TimeoutError", "EngineError"):
            kind = {"ValueError": ValueError, "TypeError": TypeError, "TimeoutError": TimeoutError}.get(
                self.type_name, EngineError)
            return kind(f"{self.message} (in the rollout process)")
        return EngineError(f"the rollout process raised {self.type_name}: {self.message}\n"
                           f"--- traceback in the rollout process ---\n{self.traceback}")


@dataclass(frozen=True)
class ChildInit:
    """Everything the rollout process needs to build its engine, besides the weight buffer. It reaches the child
    pickled in shared memory (`share_init`), not in the spawn arguments: those are written into a pipe the child
    reads only after importing the parent's main module, so a child that dies there (a script without a
    ``__main__`` guard) would block a large write, and the parent's start, forever.

    Fields:
        policy: the trainer's policy (pickled once, with this record); moved to ``device`` in the child.
        tokenizer: a `TokenizerSpec`, or the tokenizer object itself when it pickles (e.g. a test stub).
        slots: the layout of the shared-memory weight buffer (uint8, passed beside this record).
        device: the engine's device.
        engine: keyword arguments of `LLMEngine` (num_slots, max_seq_len, seed, cuda_graphs, ...).
        num_threads: torch intra-op threads (the parent's, so results match the in-process engine bit for bit).
        parent_pid: the child exits when its parent is no longer this pid.
    """

    policy: Any
    tokenizer: Any
    slots: list[BufferSlot]
    device: str
    engine: dict[str, Any]
    num_threads: int
    parent_pid: int


def share_init(init: ChildInit) -> torch.Tensor:
    """``init`` pickled into a shared-memory uint8 tensor (what the spawn arguments carry: a small handle).

    Raises:
        TypeError: something in ``init`` (usually the policy) does not pickle.
    """
    try:
        data = pickle.dumps(init, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise TypeError(str(error)) from error
    shared = torch.empty(len(data), dtype=torch.uint8).share_memory_()
    shared.numpy()[:] = np.frombuffer(data, dtype=np.uint8)
    return shared


def load_init(shared: torch.Tensor) -> ChildInit:
    """The `ChildInit` in ``shared`` (written by `share_init`)."""
    return pickle.loads(shared.numpy().data)


@dataclass(frozen=True)
class Submit:
    submit_id: int
    requests: list[RequestSpec]
    finished_only: bool


@dataclass(frozen=True)
class Abort:
    request_id: Any
    interrupt: bool = False  # True: stop it and deliver its partial trajectory (finish reason "abort")


@dataclass(frozen=True)
class Push:
    push_id: int
    version: int
    names: list[str]


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Ready:
    version: int
    pid: int


@dataclass(frozen=True)
class Event:
    """A `TokenEvent` of submit ``submit_id``; a finished one carries the controller's final state."""

    submit_id: int
    event: TokenEvent
    controller_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class SubmitFailed:
    submit_id: int
    error: RemoteError


@dataclass(frozen=True)
class PushDone:
    push_id: int
    count: int = 0
    version: int = 0
    error: RemoteError | None = None
    engine_steps: int = 0  # the child's engine steps so far (`EngineLoop.num_steps`), for benchmarks


@dataclass(frozen=True)
class Fatal:
    """The child's engine cannot go on (failed to start, or an engine step raised)."""

    error: RemoteError
    during: str = field(default="an engine step")
