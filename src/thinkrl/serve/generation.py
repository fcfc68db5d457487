"""From validated API requests to engine `Request`s, and from `TokenEvent`s to completion responses.

`ServeContext` holds what every handler needs. `plan_choices` turns one API request into
one engine `Request` per choice (``n`` per prompt); `complete` gathers the results of a
non-streamed response; `event_stream` runs choices and yields SSE ``data:`` lines through a
per-event formatter. Completions live here, chat in `serve.chat`. Streamed text is built with
`thinkrl.serve.text` so the deltas add up to the non-streamed response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from thinkrl.engine.loop import EngineError, EngineLoop, stream_events
from thinkrl.engine.types import Request, SamplingParams, SequenceController, TokenEvent
from thinkrl.records import Trajectory
from thinkrl.serve.logprobs import TopList, completion_logprobs
from thinkrl.serve.protocol import MIN_TEMPERATURE, RequestError, SamplingFields
from thinkrl.serve.responses import (
    CompletionChoice,
    CompletionResponse,
    CompletionTokensDetails,
    FinishReason,
    Usage,
)
from thinkrl.serve.text import StreamedText
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

__all__ = ["ChoiceResult", "ControllerFactory", "RequestError", "ServeContext", "complete", "plan_choices"]

ControllerFactory = Callable[[int, bool], SequenceController | None]
"""(thinking budget, the prompt opened thinking) -> a fresh per-request controller (None: nothing to do)."""


class RequestFailed(RuntimeError):
    """A request ended with finish reason "error" in the engine (the engine itself goes on)."""


@dataclass
class ServeContext:
    """What the handlers share.

    Fields:
        runner: the engine thread.
        tokenizer: renders chat prompts and decodes responses.
        model_name: the served model id (requests must name it).
        max_seq_len: prompt + response limit of the engine.
        vocab_size: the model's vocabulary (token-id prompts must stay below it).
        make_controller: the engine-side thinking-budget controller factory.
    """

    runner: EngineLoop
    tokenizer: TextTokenizer
    model_name: str
    max_seq_len: int
    vocab_size: int
    make_controller: ControllerFactory = field(default=lambda budget, thinking_open: None)


@dataclass
class Choice:
    """One engine request of an API response.

    Fields:
        index: the choice index in the response.
        prompt_index: which prompt of the request it completes (a batch of completions has several).
        request: the engine request.
    """

    index: int
    prompt_index: int
    request: Request


@dataclass
class ChoiceResult:
    """A finished choice.

    Fields:
        trajectory: the engine's result (response ids, log-probs, text, finish reason).
        top_logprobs: per response token, the k most likely (id, log-prob) pairs; None when not asked.
    """

    trajectory: Trajectory
    top_logprobs: list[TopList] | None = None


def check_length(ctx: ServeContext, num_prompt_tokens: int, max_tokens: int | None, default: int | None) -> int:
    """The generation limit for a prompt; a `RequestError` when prompt + limit exceed ``max_seq_len``."""
    room = ctx.max_seq_len - num_prompt_tokens
    if room < 1:
        raise RequestError(f"the prompt has {num_prompt_tokens} tokens but the model's maximum context length is "
                           f"{ctx.max_seq_len} tokens (prompt + completion)", "prompt")
    if max_tokens is None:
        return room if default is None else min(default, room)
    if max_tokens > room:
        raise RequestError(f"max_tokens is {max_tokens} but the prompt has {num_prompt_tokens} tokens and the "
                           f"maximum context length is {ctx.max_seq_len}; ask for at most {room}", "max_tokens")
    return max_tokens


def sampling_params(body: SamplingFields, max_tokens: int, vocab_size: int, choice: int) -> SamplingParams:
    """The engine's parameters for choice ``choice`` of ``body`` (seed + choice; tiny temperatures greedy)."""
    temperature = body.temperature if body.temperature >= MIN_TEMPERATURE else 0.0
    return SamplingParams(
        max_new_tokens=max_tokens, temperature=temperature, top_p=body.top_p,
        top_k=min(max(body.top_k, 0), vocab_size), seed=None if body.seed is None else body.seed + choice,
        stop_strings=body.stop_strings, top_logprobs=body.num_top_logprobs or 0,
        stop_token_ids=() if body.ignore_eos else None,
    )


def plan_choices(body: SamplingFields, prompt_ids: list[int], max_tokens: int, *, prompt_index: int,
                 request_prefix: str, vocab_size: int,
                 controller: Callable[[], SequenceController | None] = lambda: None) -> list[Choice]:
    """``body.n`` engine requests for prompt ``prompt_index``; the k-th uses seed ``seed + k`` when one is set."""
    choices = []
    for k in range(body.n):
        index = prompt_index * body.n + k
        params = sampling_params(body, max_tokens, vocab_size, k)
        request = Request(list(prompt_ids), params, request_id=f"{request_prefix}-{index}", controller=controller(),
                          metadata={"logprobs": body.num_top_logprobs is not None})
        choices.append(Choice(index, prompt_index, request))
    return choices


def check_finished(event: TokenEvent) -> None:
    """Raise `RequestFailed` when ``event`` ends its request with an engine-side error."""
    if event.finished and event.trajectory is not None and event.trajectory.finish_reason == "error":
        raise RequestFailed(f"the request failed in the engine: {event.trajectory.error}")


async def complete(ctx: ServeContext, choices: list[Choice]) -> list[ChoiceResult]:
    """Run every choice to the end; results in the order of ``choices``."""
    done: dict[Any, ChoiceResult] = {}
    tops: dict[Any, list[TopList]] = {c.request.request_id: [] for c in choices}
    try:
        async for event in stream_events(ctx.runner, [c.request for c in choices]):
            check_finished(event)
            if event.top_logprobs is not None:
                tops[event.request_id] += event.top_logprobs
            if event.finished:
                done[event.request_id] = ChoiceResult(event.trajectory, tops[event.request_id])
    except ValueError as error:  # the engine refused a request (the edge checks should have caught it)
        raise RequestError(f"the engine refused the request: {error}") from None
    return [ChoiceResult(done[c.request.request_id].trajectory,
                         done[c.request.request_id].top_logprobs if c.request.params.top_logprobs else None)
            for c in choices]


def finish_reason(trajectory: Trajectory) -> FinishReason:
    """The API finish reason: "stop" for a stop token or string, else "length"."""
    return "stop" if trajectory.finish_reason == "stop" else "length"


def usage(choices: list[Choice], trajectories: list[Trajectory], reasoning_tokens: int | None = None) -> Usage:
    """Token counts; a prompt shared by ``n`` choices counts once."""
    prompt_tokens = sum({c.prompt_index: len(c.request.prompt_ids) for c in choices}.values())
    completion_tokens = sum(len(t.response_ids) for t in trajectories)
    details = None if reasoning_tokens is None else CompletionTokensDetails(reasoning_tokens=reasoning_tokens)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens, completion_tokens_details=details)


def completion_response(ctx: ServeContext, response_id: str, choices: list[Choice],
                        results: list[ChoiceResult]) -> CompletionResponse:
    """The non-streamed ``text_completion`` object."""
    out = []
    for choice, result in zip(choices, results, strict=True):
        traj = result.trajectory
        logprobs = None
        if wants_logprobs(choice):
            logprobs = completion_logprobs(ctx.tokenizer, traj.response_ids, traj.logprobs, result.top_logprobs)
        out.append(CompletionChoice(index=choice.index, text=traj.text, finish_reason=finish_reason(traj),
                                    logprobs=logprobs))
    return CompletionResponse(id=response_id, model=ctx.model_name, choices=out,
                              usage=usage(choices, [r.trajectory for r in results]))


def wants_logprobs(choice: Choice) -> bool:
    """Whether the request asked for log-probs (``logprobs`` given; alternatives only when k > 0)."""
    return bool(choice.request.metadata.get("logprobs"))


def sse(payload: BaseModel | dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump_json(exclude_none=True)
    elif isinstance(payload, dict):
        payload = json.dumps(payload)
    return f"data: {payload}\n\n"


def completion_events(ctx: ServeContext, response_id: str, choices: list[Choice],
                      include_usage: bool) -> AsyncIterator[str]:
    """SSE lines of a streamed completion: text (and log-prob) deltas per choice, then usage, then ``[DONE]``."""
    texts = {c.request.request_id: StreamedText(ctx.tokenizer, c.request.params.stop_strings) for c in choices}
    sent_chars = {c.request.request_id: 0 for c in choices}

    def on_event(choice: Choice, event: TokenEvent) -> str | None:
        streamed = texts[event.request_id]
        delta = streamed.finish(event.trajectory.text) if event.finished else streamed.push(event.token_ids)
        reason = finish_reason(event.trajectory) if event.finished else None
        logprobs = None
        if wants_logprobs(choice) and event.token_ids:
            logprobs = completion_logprobs(ctx.tokenizer, event.token_ids, event.logprobs or [0.0] * len(
                event.token_ids), event.top_logprobs, text_offset=sent_chars[event.request_id])
        sent_chars[event.request_id] += len(delta)
        if not delta and not reason and logprobs is None:
            return None
        out = CompletionChoice(index=choice.index, text=delta, finish_reason=reason,
                               logprobs=logprobs)
        return sse(CompletionResponse(id=response_id, model=ctx.model_name, choices=[out]))

    def usage_chunk(counts: Usage) -> BaseModel:
        return CompletionResponse(id=response_id, model=ctx.model_name, choices=[], usage=counts)

    return event_stream(ctx, choices, on_event, usage_chunk if include_usage else None)


async def event_stream(ctx: ServeContext, choices: list[Choice], on_event: Callable[[Choice, TokenEvent], str | None],
                       usage_chunk: Callable[[Usage], BaseModel] | None, first: str = "",
                       reasoning_tokens: Callable[[], int] | None = None) -> AsyncIterator[str]:
    """Run ``choices`` and yield ``first``, then ``on_event`` of each event, the usage chunk and ``[DONE]``.

    A failure mid-stream (engine down, a request that failed in the engine) becomes an SSE error
    event (the status line is already sent), then ``[DONE]``.
    """
    if first:
        yield first
    by_id = {c.request.request_id: c for c in choices}
    finished: dict[Any, Trajectory] = {}
    try:
        async for event in stream_events(ctx.runner, [c.request for c in choices]):
            check_finished(event)
            if event.finished:
                finished[event.request_id] = event.trajectory
            line = on_event(by_id[event.request_id], event)
            if line:
                yield line
    except (EngineError, RequestFailed, ValueError) as error:
        logger.warning("streamed request failed: %s", error)
        yield sse({"error": {"message": str(error), "type": "server_error", "param": None, "code": None}})
        yield sse("[DONE]")
        return
    if usage_chunk is not None:
        counts = usage(choices, [finished[c.request.request_id] for c in choices],
                       None if reasoning_tokens is None else reasoning_tokens())
        yield sse(usage_chunk(counts))
    yield sse("[DONE]")
