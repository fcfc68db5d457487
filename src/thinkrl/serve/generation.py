"""From validated API requests to engine `Request`s, and from `TokenEvent`s to API responses.

`ServeContext` holds what every handler needs. `plan_choices` turns one API request
into one engine `Request` per choice (``n`` per prompt); `complete` gathers the
trajectories for a non-streamed response; `completion_events` / `chat_events` yield
the SSE ``data:`` lines of a streamed one. Streamed text is built with
`thinkrl.serve.text` so the deltas add up to the non-streamed response.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from thinkrl.engine.loop import EngineError, EngineLoop, stream_events
from thinkrl.engine.types import Request, SamplingParams, SequenceController, TokenEvent
from thinkrl.records import Trajectory
from thinkrl.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    SamplingFields,
    TokenLogprob,
    Usage,
)
from thinkrl.serve.text import ChatSplitter, StreamedChat, StreamedText
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

ControllerFactory = Callable[[int, bool], SequenceController | None]
"""(thinking budget, the prompt opened thinking) -> a fresh per-request controller (None: nothing to do)."""


class RequestError(ValueError):
    """A request the server refuses; becomes an OpenAI error body.

    Args:
        message: what is wrong and what is allowed.
        param: the request field at fault.
        status: HTTP status (400 bad request, 404 unknown model, 503 engine down).
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


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


def plan_choices(body: SamplingFields, prompt_ids: list[int], max_tokens: int, *, prompt_index: int,
                 request_prefix: str, controller: Callable[[], SequenceController | None] = lambda: None
                 ) -> list[Choice]:
    """``body.n`` engine requests for prompt ``prompt_index``; the k-th uses seed ``seed + k`` when one is set."""
    choices = []
    for k in range(body.n):
        index = prompt_index * body.n + k
        params = SamplingParams(
            max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, top_k=max(body.top_k, 0),
            seed=None if body.seed is None else body.seed + k, stop_strings=body.stop_strings,
        )
        request = Request(list(prompt_ids), params, request_id=f"{request_prefix}-{index}", controller=controller())
        choices.append(Choice(index, prompt_index, request))
    return choices


async def complete(ctx: ServeContext, choices: list[Choice]) -> list[Trajectory]:
    """Run every choice to the end; trajectories in the order of ``choices``."""
    done: dict[Any, Trajectory] = {}
    async for event in stream_events(ctx.runner, [c.request for c in choices]):
        if event.finished:
            done[event.request_id] = event.trajectory
    return [done[c.request.request_id] for c in choices]


def finish_reason(trajectory: Trajectory) -> str:
    """The API finish reason: "stop" for a stop token or string, else "length"."""
    return "stop" if trajectory.finish_reason == "stop" else "length"


def usage(choices: list[Choice], trajectories: list[Trajectory]) -> Usage:
    """Token counts; a prompt shared by ``n`` choices counts once."""
    prompt_tokens = sum({c.prompt_index: len(c.request.prompt_ids) for c in choices}.values())
    completion_tokens = sum(len(t.response_ids) for t in trajectories)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


def _token_texts(tokenizer: TextTokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def completion_response(ctx: ServeContext, response_id: str, choices: list[Choice], trajectories: list[Trajectory],
                        with_logprobs: bool) -> CompletionResponse:
    """The non-streamed ``text_completion`` object."""
    out = []
    for choice, traj in zip(choices, trajectories, strict=True):
        logprobs = None
        if with_logprobs:
            tokens = _token_texts(ctx.tokenizer, traj.response_ids)
            offsets = list(itertools.accumulate((len(t) for t in tokens[:-1]), initial=0)) if tokens else []
            logprobs = CompletionLogprobs(tokens=tokens, token_logprobs=list(traj.logprobs), text_offset=offsets)
        out.append(CompletionChoice(index=choice.index, text=traj.text, finish_reason=finish_reason(traj),
                                    logprobs=logprobs))
    return CompletionResponse(id=response_id, model=ctx.model_name, choices=out, usage=usage(choices, trajectories))


def chat_response(ctx: ServeContext, response_id: str, choices: list[Choice], trajectories: list[Trajectory],
                  prompt_state: str, with_logprobs: bool) -> ChatCompletionResponse:
    """The non-streamed ``chat.completion`` object (reasoning split from content)."""
    out = []
    for choice, traj in zip(choices, trajectories, strict=True):
        split = ChatSplitter(ctx.tokenizer.think_tags, prompt_state).split(traj.text, final=True)
        assert split is not None  # final splits always decide
        logprobs = None
        if with_logprobs:
            content = [TokenLogprob(token=t, logprob=lp, bytes=list(t.encode("utf-8")))
                       for t, lp in zip(_token_texts(ctx.tokenizer, traj.response_ids), traj.logprobs, strict=True)]
            logprobs = ChatLogprobs(content=content)
        message = AssistantMessage(content=split.content, reasoning_content=split.reasoning_content or None)
        out.append(ChatChoice(index=choice.index, message=message, finish_reason=finish_reason(traj),
                              logprobs=logprobs))
    return ChatCompletionResponse(id=response_id, model=ctx.model_name, choices=out,
                                  usage=usage(choices, trajectories))


def sse(payload: BaseModel | dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump_json(exclude_none=True)
    elif isinstance(payload, dict):
        payload = json.dumps(payload)
    return f"data: {payload}\n\n"


def completion_events(ctx: ServeContext, response_id: str, choices: list[Choice],
                      include_usage: bool) -> AsyncIterator[str]:
    """SSE lines of a streamed completion: text deltas per choice, then usage, then ``[DONE]``."""
    texts = {c.request.request_id: StreamedText(ctx.tokenizer, c.request.params.stop_strings) for c in choices}

    def on_event(choice: Choice, event: TokenEvent) -> str | None:
        streamed = texts[event.request_id]
        delta = streamed.finish(event.trajectory.text) if event.finished else streamed.push(event.token_ids)
        reason = finish_reason(event.trajectory) if event.finished else None
        if not delta and not reason:
            return None
        out = CompletionChoice(index=choice.index, text=delta, finish_reason=reason)  # type: ignore[arg-type]
        return sse(CompletionResponse(id=response_id, model=ctx.model_name, choices=[out]))

    def usage_chunk(counts: Usage) -> BaseModel:
        return CompletionResponse(id=response_id, model=ctx.model_name, choices=[], usage=counts)

    return _event_stream(ctx, choices, on_event, usage_chunk if include_usage else None)


def chat_events(ctx: ServeContext, response_id: str, choices: list[Choice], prompt_state: str,
                include_usage: bool) -> AsyncIterator[str]:
    """SSE lines of a streamed chat completion: a role chunk, reasoning/content deltas, finish, ``[DONE]``."""
    tags = ctx.tokenizer.think_tags
    chats = {c.request.request_id: StreamedChat(ctx.tokenizer, tags, prompt_state, c.request.params.stop_strings)
             for c in choices}

    def chunk(index: int, delta: ChatDelta, reason: str | None = None) -> str:
        out = ChatChunkChoice(index=index, delta=delta, finish_reason=reason)  # type: ignore[arg-type]
        return sse(ChatCompletionChunk(id=response_id, model=ctx.model_name, choices=[out]))

    def on_event(choice: Choice, event: TokenEvent) -> str | None:
        streamed = chats[event.request_id]
        reasoning, content = streamed.finish(event.trajectory.text) if event.finished else streamed.push(
            event.token_ids)
        reason = finish_reason(event.trajectory) if event.finished else None
        if not reasoning and not content and not reason:
            return None
        return chunk(choice.index, ChatDelta(reasoning_content=reasoning or None, content=content or None), reason)

    def usage_chunk(counts: Usage) -> BaseModel:
        return ChatCompletionChunk(id=response_id, model=ctx.model_name, choices=[], usage=counts)

    first = "".join(chunk(c.index, ChatDelta(role="assistant", content="")) for c in choices)
    return _event_stream(ctx, choices, on_event, usage_chunk if include_usage else None, first=first)


async def _event_stream(ctx: ServeContext, choices: list[Choice], on_event: Callable[[Choice, TokenEvent], str | None],
                        usage_chunk: Callable[[Usage], BaseModel] | None, first: str = "") -> AsyncIterator[str]:
    """Run ``choices`` and yield ``first``, then ``on_event`` of each event, the usage chunk and ``[DONE]``.

    An engine failure mid-stream becomes an SSE error event (the status line is already sent).
    """
    if first:
        yield first
    by_id = {c.request.request_id: c for c in choices}
    finished: dict[Any, Trajectory] = {}
    try:
        async for event in stream_events(ctx.runner, [c.request for c in choices]):
            if event.finished:
                finished[event.request_id] = event.trajectory
            line = on_event(by_id[event.request_id], event)
            if line:
                yield line
    except (EngineError, ValueError) as error:
        logger.warning("streamed request failed: %s", error)
        yield sse({"error": {"message": str(error), "type": "server_error", "param": None, "code": None}})
        yield sse("[DONE]")
        return
    if usage_chunk is not None:
        yield sse(usage_chunk(usage(choices, [finished[c.request.request_id] for c in choices])))
    yield sse("[DONE]")
