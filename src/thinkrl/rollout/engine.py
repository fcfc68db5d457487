"""The rollout engine of a training run: a frozen copy of the policy's weights in an engine, behind its client.

The trainer gets back the client (submit / stream / generate / abort / interrupt / update_weights / version / stop)
and nothing else; it never holds the engine's tensors, and the engine never holds the trainer's. Where the engine
runs is the recipe's ``rollout.placement``: "thread" (`EngineLoop`, a thread of this process) or "process"
(`RolloutProcess`, a child process; weights cross through shared memory). See docs/streaming.md.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

import torch

from thinkrl.engine import LLMEngine, Request, TokenEvent
from thinkrl.engine.loop import EngineLoop, Sink
from thinkrl.model import CausalLM
from thinkrl.records import Trajectory
from thinkrl.rollout.process import start_engine_process
from thinkrl.rollout.specs import SamplingSpec
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer

Placement = Literal["thread", "process"]


class EngineClient(Protocol):
    """The engine client the trainer talks to: `EngineLoop` (thread placement) or `RolloutProcess` (process)."""

    error: BaseException | None

    @property
    def version(self) -> int: ...

    @property
    def is_running(self) -> bool: ...

    def submit(self, requests: Request | Sequence[Request], sink: Sink, *, finished_only: bool = False) -> None: ...

    def stream(self, requests: Sequence[Request], *, finished_only: bool = False) -> Iterator[TokenEvent]: ...

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]: ...

    def abort(self, request_id: Any) -> None: ...

    def interrupt(self, request_id: Any) -> None: ...

    def update_weights(self, weights: Iterable[tuple[str, torch.Tensor]], version: int,
                       timeout: float | None = None) -> int: ...

    def stop(self, timeout: float = 10.0) -> None: ...


def start_engine(policy: CausalLM, tokenizer: TextTokenizer, sampling: SamplingSpec, sized: list[Problem],
                 seed: int, placement: Placement = "thread") -> EngineClient:
    """A started engine client over a frozen copy of ``policy``'s weights (version 0), with ``sampling.num_slots``
    slots long enough for the longest of the ``sized`` problems' prompts (at any of the sampling budgets) plus
    ``sampling.max_new_tokens``; its engine runs in a thread of this process or in a child process
    (``placement``). Stop it with ``client.stop()``."""
    max_prompt = max(len(tokenizer.encode_chat([{"role": "user", "content": p.prompt}], thinking_budget=b))
                     for p in sized for b in sampling.thinking_budgets)
    return start_engine_client(policy, tokenizer, sampling, max_prompt + 16 + sampling.max_new_tokens, seed,
                               placement)


def start_engine_client(policy: CausalLM, tokenizer: Any, sampling: SamplingSpec, max_seq_len: int, seed: int,
                        placement: Placement = "thread") -> EngineClient:
    """A started engine client over a frozen copy of ``policy``'s weights (version 0) with ``sampling``'s engine
    settings (slots, admission batching, compiled decode) and ``max_seq_len``, in a thread or a child process
    (``placement``).
    ValueError when ``max_seq_len`` exceeds the model's context (the KV cache is allocated for it up front)."""
    context = policy.config.max_position_embeddings
    if max_seq_len > context:
        raise ValueError(f"the rollout needs sequences of {max_seq_len} tokens (prompts plus sampling.max_new_tokens "
                         f"{sampling.max_new_tokens}), beyond the model's context of {context} tokens; lower "
                         "sampling.max_new_tokens")
    if placement == "process":
        return start_engine_process(policy, tokenizer, num_slots=sampling.num_slots, max_seq_len=max_seq_len,
                                    seed=seed, admit_batch=sampling.admit_batch,
                                    compile_decode=sampling.compile_decode)
    if placement != "thread":
        raise ValueError(f"placement must be 'thread' or 'process', got {placement!r}")
    weights = copy.deepcopy(policy).eval().requires_grad_(False)
    engine = LLMEngine(weights, tokenizer, num_slots=sampling.num_slots, max_seq_len=max_seq_len, seed=seed,
                       admit_batch=sampling.admit_batch, compile_decode=sampling.compile_decode)
    return EngineLoop(engine).start()
