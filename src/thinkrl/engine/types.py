"""Plain dataclasses exchanged with the engine: sampling parameters, requests, per-step events."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

_request_counter = itertools.count()


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request.

    Fields:
        max_new_tokens: generated-token limit (forced tokens count too); finish reason "length".
        temperature: 0 means greedy; logits are divided by it before softmax.
        top_p: nucleus sampling mass in (0, 1]; 1 disables.
        top_k: keep the k most likely tokens; 0 disables.
        seed: per-request seed; the same seed gives the same output whatever else is in the batch. Response
            token p is drawn with draw ``seed_offset + p`` of the seed's stream (`thinkrl.engine.sampling`).
        seed_offset: the stream position of the first response token: a continuation of a response that already
            has n tokens passes n (and the same seed), so it samples as the uninterrupted request would have.
        stop_token_ids: tokens that end generation (kept in the output); None = the tokenizer's stop tokens.
        stop_strings: strings that end generation; the text is cut before the stop string.
        top_logprobs: per sampled token, also return the k most likely tokens and their log-probs
            (`TokenEvent.top_logprobs`); 0 returns none.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    seed_offset: int = 0
    stop_token_ids: tuple[int, ...] | None = None
    stop_strings: tuple[str, ...] = ()
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):  # (nan would sample garbage)
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.seed_offset < 0:
            raise ValueError(f"seed_offset must be >= 0, got {self.seed_offset}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {self.top_logprobs}")
        if any(not stop for stop in self.stop_strings):  # "" is in every text: it would end after one token
            raise ValueError("stop_strings must not contain an empty string")


class SequenceController(Protocol):
    """Per-request hook used by the thinking-budget controller (and anything like it).

    ``banned_tokens`` is asked before each sampling step; ``forced_tokens`` after each
    sampled token: the tokens it returns are appended to the response unsampled
    (``response_mask`` False, log-prob 0) and fed to the model on the next step.
    Optional hook ``replacement_tokens(response_ids, token) -> list[int]``: when it returns
    tokens, the sampled ``token`` is dropped and those are forced instead (s1-style "Wait").
    A forced stop token ends the sequence (finish reason "stop").
    """

    def banned_tokens(self, response_ids: list[int]) -> list[int]: ...

    def forced_tokens(self, response_ids: list[int]) -> list[int]: ...


@dataclass
class Request:
    """A prompt to complete.

    Fields:
        prompt_ids: (P,) token ids of the rendered prompt.
        params: sampling parameters.
        request_id: unique id (auto-assigned when omitted).
        metadata: copied into the resulting `Trajectory` (task, ground truth, group id...).
        controller: optional per-request `SequenceController`.
    """

    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    controller: SequenceController | None = None

    def __post_init__(self) -> None:
        if self.request_id is None:
            self.request_id = next(_request_counter)
        if not self.prompt_ids:
            raise ValueError(f"request {self.request_id}: prompt_ids is empty")


@dataclass
class TokenEvent:
    """Tokens appended to one request by one engine step (for streaming).

    Fields:
        request_id: the request.
        token_ids: new tokens (sampled first, then any forced ones).
        finished: True on the request's last event; then ``trajectory`` is set.
        trajectory: the finished request's `Trajectory` (last event only).
        logprobs: one per token of ``token_ids``: the sampled token's log-prob, 0.0 for forced tokens.
        top_logprobs: when the request asks for ``top_logprobs`` k > 0, one list per token of
            ``token_ids``: the k most likely ``(token_id, logprob)`` pairs of the distribution the
            token was sampled from, most likely first (empty for forced tokens); else None.
    """

    request_id: Any
    token_ids: list[int]
    finished: bool = False
    trajectory: Any = None
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
