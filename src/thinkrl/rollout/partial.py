"""Partial rollouts: a response sampled in pieces across weight updates, and stitched back into one `Trajectory`.

A response interrupted by a weight push (`EngineLoop.interrupt`) comes back as a piece with finish reason "abort".
It continues as a new request whose prompt is the original prompt plus every token sampled so far, so the engine
recomputes their KV cache with the new weights; its token limit is what the original request had left, and its
budget controller is the original one (which kept its counts), shown the whole response so far. `stitch` joins
the pieces: response ids, behaviour log-probs, response mask and per-token versions concatenated, so each token
keeps the version that sampled it and the trainer's off-policy correction sees the true behaviour policy.

A stitched response equals what one uninterrupted request records, token for token, when no weights changed in
between (tests/rollout/test_streaming_partial.py), greedy or sampled: a seeded request's draws are a function of
(seed, response position) (`thinkrl.engine.sampling.stream_draw`), so a continuation with the same seed and
``seed_offset`` = the tokens so far resumes the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from thinkrl.engine import Request
from thinkrl.engine.budget import ThinkingBudgetController
from thinkrl.records import Trajectory
from thinkrl.rollout.requests import SampleRequest, build_request, fill_rollout_fields
from thinkrl.tokenizer import TextTokenizer


class ContinuedController:
    """A `SequenceController` for a continuation: the inner controller sees ``prefix`` + the new response ids, so
    its tag checks and counts run over the whole response so far. ``prefix``: the ids of the earlier pieces."""

    def __init__(self, inner: ThinkingBudgetController, prefix: Sequence[int]) -> None:
        self.inner, self.prefix = inner, list(prefix)

    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        return self.inner.banned_tokens(self.prefix + response_ids)

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        return self.inner.forced_tokens(self.prefix + response_ids)

    def replacement_tokens(self, response_ids: list[int], token: int) -> list[int]:
        return self.inner.replacement_tokens(self.prefix + response_ids, token)


@dataclass
class PartialSample:
    """One response of a group, sampled in one or more pieces.

    Fields:
        item: what to sample (prompt, sampling parameters, group).
        controller: its thinking-budget controller, shared by every piece (it keeps the counts).
        pieces: the pieces sampled so far, oldest first (each a `Trajectory` from the engine).
        result: the stitched response with its rollout fields, once a piece finished other than by interruption.
        controller_state: the controller's attributes (its vocabulary left out) as they were after the last
            piece (at the start before any): what a checkpoint saves, since the live controller of a request in
            flight counts tokens that no piece holds yet (`thinkrl.rollout.stream_state`).
    """

    item: SampleRequest
    controller: ThinkingBudgetController
    pieces: list[Trajectory] = field(default_factory=list)
    result: Trajectory | None = None
    controller_state: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        """Response tokens sampled so far, over all pieces."""
        return sum(len(p.response_ids) for p in self.pieces)

    @property
    def oldest_version(self) -> int | None:
        """The oldest weight version of any token sampled so far (None before the first token)."""
        versions = [min(p.token_versions) for p in self.pieces if p.token_versions]
        return min(versions, default=None)


def first_request(tokenizer: TextTokenizer, item: SampleRequest, request_id: Any,
                  enforce_budget: bool = False) -> tuple[Request, PartialSample]:
    """The first engine request of ``item`` (as `build_request` makes it) and its `PartialSample`."""
    request = build_request(tokenizer, item, request_id, enforce_budget)
    controller: ThinkingBudgetController = request.controller  # type: ignore[assignment]
    return request, PartialSample(item, controller, controller_state=controller_counts(controller))


def controller_counts(controller: ThinkingBudgetController) -> dict[str, Any]:
    """The attributes of ``controller`` except its vocabulary (which holds the tokenizer): budget, limits, phase,
    counters; plain JSON-able values (copied lists)."""
    return {k: list(v) if isinstance(v, list | tuple) else v for k, v in vars(controller).items() if k != "vocab"}


def record_piece(sample: Any, piece: Trajectory) -> None:
    """Append a finished ``piece`` to ``sample`` (a `PartialSample`, or an agent's episode) and, for a
    `PartialSample`, note its controller's counts (the request is done: nothing updates them now)."""
    sample.pieces.append(piece)
    if isinstance(sample, PartialSample):
        sample.controller_state = controller_counts(sample.controller)


def continuation_request(sample: PartialSample, request_id: Any) -> Request:
    """The request that continues ``sample`` after its last (interrupted) piece: prompt + response so far, the
    tokens the original request had left, the same seed from the stream position after those tokens (so it samples
    as the uninterrupted request would have), the shared controller shown the whole response."""
    prefix = [t for p in sample.pieces for t in p.response_ids]
    params = sample.item.params
    left = params.max_new_tokens - len(prefix)
    if left < 1:
        raise ValueError(f"request {request_id}: nothing left to continue ({len(prefix)} of {params.max_new_tokens} "
                         "tokens sampled)")
    prompt = list(sample.item.prompt.prompt_ids) + prefix
    return Request(prompt, replace(params, max_new_tokens=left, seed_offset=params.seed_offset + len(prefix)),
                   request_id=request_id,
                   controller=ContinuedController(sample.controller, prefix))


def stitch(pieces: Sequence[Trajectory], prompt_ids: Sequence[int], tokenizer: TextTokenizer,
           stop_token_ids: Sequence[int] | None = None, stop_strings: Sequence[str] = ()) -> Trajectory:
    """One `Trajectory` of the pieces of a response (oldest first): the original ``prompt_ids``, the pieces'
    response ids, log-probs, masks and versions concatenated, the last piece's finish reason, and the text decoded
    as the engine decodes it (without a final stop token, cut at a stop string)."""
    if not pieces:
        raise ValueError("stitch needs at least one piece")
    ids = [t for p in pieces for t in p.response_ids]
    stops = tokenizer.stop_token_ids if stop_token_ids is None else stop_token_ids
    text = tokenizer.decode(ids[:-1] if ids and ids[-1] in stops else ids)
    for stop in stop_strings:
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    last = pieces[-1]
    return Trajectory(
        prompt_ids=list(prompt_ids), response_ids=ids, logprobs=[x for p in pieces for x in p.logprobs],
        finish_reason=last.finish_reason, response_mask=[m for p in pieces for m in p.response_mask],
        token_versions=[v for p in pieces for v in p.token_versions], text=text, error=last.error,
        metadata=dict(pieces[0].metadata))


def finish_sample(sample: PartialSample, tokenizer: TextTokenizer, request_id: Any) -> Trajectory:
    """Stitch ``sample``'s pieces into its result and set the rollout fields (`fill_rollout_fields`; raises for a
    request that failed in the engine)."""
    params = sample.item.params
    traj = stitch(sample.pieces, sample.item.prompt.prompt_ids, tokenizer, params.stop_token_ids,
                  params.stop_strings)
    fill_rollout_fields(traj, sample.item, sample.controller, request_id)
    sample.result = traj
    return traj
