"""Chat completions: render the prompt (budget, template kwargs, tools), then split what comes back.

`render_chat` turns a validated request into a `ChatPlan`: the prompt rendered with the
tokenizer's chat template (``tools`` in the model's own format, ``thinking_budget`` and any
``chat_template_kwargs``), its thinking state, and for ``tool_choice`` "required" or a named
function the opening of a tool call appended to the prompt, so the model's turn starts inside
one. Responses are split into reasoning, content and tool calls by one `ChatSplitter` per
choice, whether streamed or not, so the deltas add up to the non-streamed message.

Tool calls are read with `thinkrl.tokenizer.tool_calls` (arguments typed by the tools' JSON
schemas). A call that cannot be read is not returned as a tool call: its text stays in the
content (appended at the end), and the finish reason is "tool_calls" only when a call was read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from thinkrl.engine.types import TokenEvent
from thinkrl.records import Trajectory
from thinkrl.serve.generation import (
    Choice,
    ChoiceResult,
    RequestError,
    ServeContext,
    event_stream,
    finish_reason,
    sse,
    usage,
    wants_logprobs,
)
from thinkrl.serve.logprobs import chat_logprobs
from thinkrl.serve.protocol import ChatCompletionRequest
from thinkrl.serve.responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    DeltaFunctionCall,
    DeltaToolCall,
    FinishReason,
    FunctionCallOut,
    ToolCallOut,
    Usage,
)
from thinkrl.serve.text import ChatSplitter, StreamedChat, prompt_thinking_state
from thinkrl.tokenizer import ThinkTags, ToolCall
from thinkrl.tokenizer.tool_calls import coerce_arguments, format_for_tags

logger = logging.getLogger(__name__)


@dataclass
class ChatPlan:
    """A rendered chat request.

    Fields:
        prompt_text: the prompt, with any forced tool-call opening at its end.
        prompt_ids: (P,) its token ids.
        prompt_state: `prompt_thinking_state` of the template's output ("open", "closed", "none").
        budget: the thinking budget (-1 unlimited).
        forced: text appended after the template's generation prompt (a tool-call opening), read as
            the start of the response.
        tool_mode: "none", "auto", "required" or "named".
        tools: the tool definitions as dicts (for argument types), empty when tools are off.
        parallel_tool_calls: False keeps only the first tool call.
    """

    prompt_text: str
    prompt_ids: list[int]
    prompt_state: str
    budget: int
    forced: str = ""
    tool_mode: str = "none"
    tools: list[dict[str, Any]] = field(default_factory=list)
    parallel_tool_calls: bool = True

    @property
    def thinking_open(self) -> bool:
        """The response starts inside thinking (the budget controller counts from token one)."""
        return self.prompt_state == "open" and not self.forced

    def splitter(self, tags: ThinkTags) -> ChatSplitter:
        """A fresh splitter for one choice."""
        return ChatSplitter(tags, self.prompt_state, self.forced, parse_tools=self.tool_mode != "none")


def render_chat(ctx: ServeContext, body: ChatCompletionRequest) -> ChatPlan:
    """Render and tokenize ``body``'s conversation (CPU-heavy: call it off the event loop)."""
    tokenizer, tags = ctx.tokenizer, ctx.tokenizer.think_tags
    budget = body.resolved_budget()
    mode = body.tool_mode
    variables = {k: v for k, v in (body.chat_template_kwargs or {}).items() if k != "thinking_budget"}
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []] if mode != "none" else []
    if tools:
        variables["tools"] = tools
    messages = [m.to_template() for m in body.messages]
    try:
        text = tokenizer.apply_chat_template(messages, thinking_budget=None if budget == -1 else budget, **variables)
    except (ValueError, TypeError) as error:
        raise RequestError(f"messages could not be rendered with the chat template: {error}", "messages") from None
    state = prompt_thinking_state(text, tags)
    forced = ""
    if mode in ("required", "named"):
        name = body.tool_choice.function.name if mode == "named" else None  # type: ignore[union-attr]
        forced = format_for_tags(tags).opening(name)
        if state == "open":  # close the thinking the template opened: the turn is a tool call
            forced = tags.close + "\n" + forced
    ids = encode_text(tokenizer, text + forced, "messages")
    return ChatPlan(text + forced, ids, state, budget, forced, mode, tools, body.parallel_tool_calls is not False)


def encode_text(tokenizer: Any, text: str, param: str) -> list[int]:
    """``tokenizer.encode(text)``; text the tokenizer cannot take (lone surrogates...) is a `RequestError`."""
    try:
        ids = tokenizer.encode(text)
    except Exception as error:  # the Rust tokenizer raises several types on invalid text
        raise RequestError(f"{param} could not be tokenized: {error}", param) from None
    if not ids:
        raise RequestError(f"{param} encodes to no tokens", param)
    return ids


# ---- tool calls and reasoning tokens ---------------------------------------------------------------


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCallSorter:
    """Sorts one choice's parsed calls into API tool calls and text left in the content."""

    plan: ChatPlan
    tags: ThinkTags
    calls: list[ToolCallOut] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    def add(self, parsed: list[ToolCall]) -> list[ToolCallOut]:
        """The API calls among ``parsed`` (malformed ones are kept back for the content)."""
        out = []
        for call in parsed:
            if not call.ok or (self.calls and not self.plan.parallel_tool_calls):
                if not call.ok:
                    logger.info("tool call not read (%s); left in the content", call.error)
                    closed = "cut off" not in (call.error or "")
                    text = self.tags.tool_open + call.raw + (self.tags.tool_close if closed else "")
                    if text not in self.unread:  # a JSON list with several bad items is one block
                        self.unread.append(text)
                continue
            # strict JSON: the parsers never produce NaN or Infinity (`tool_calls._strict_json`), so nor does this
            typed = coerce_arguments(call, self.plan.tools)
            arguments = json.dumps(typed.arguments, ensure_ascii=False, allow_nan=False)
            self.calls.append(ToolCallOut(id=_call_id(), function=FunctionCallOut(name=typed.name,
                                                                                   arguments=arguments)))
            out.append(self.calls[-1])
        return out

    def leftover(self, content: str) -> str:
        """Text of unread calls, appended at the end of ``content`` (on a new line)."""
        if not self.unread:
            return ""
        return ("\n" if content else "") + "\n".join(self.unread)

    def finish_reason(self, trajectory: Trajectory) -> FinishReason:
        reason = finish_reason(trajectory)
        return "tool_calls" if self.calls and reason == "stop" else reason


def reasoning_tokens(tokenizer: Any, tags: ThinkTags, splitter: ChatSplitter, response_ids: list[int]) -> int:
    """How many response tokens are thinking: up to and including the close tag (all, if never closed)."""
    if not splitter.thinking or not response_ids:
        return 0
    close_id = tokenizer.token_to_id(tags.close)
    if close_id is not None:
        return response_ids.index(close_id) + 1 if close_id in response_ids else len(response_ids)
    low, high = 1, len(response_ids)  # the shortest prefix whose text holds the close tag
    if tags.close not in tokenizer.decode(response_ids):
        return len(response_ids)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if tags.close in tokenizer.decode(response_ids[:middle]) else (middle + 1, high)
    return low


# ---- responses ------------------------------------------------------------------------------------


def chat_response(ctx: ServeContext, response_id: str, plan: ChatPlan, choices: list[Choice],
                  results: list[ChoiceResult]) -> ChatCompletionResponse:
    """The non-streamed ``chat.completion`` object."""
    tags = ctx.tokenizer.think_tags
    out, thinking = [], 0
    for choice, result in zip(choices, results, strict=True):
        traj = result.trajectory
        splitter = plan.splitter(tags)
        split = splitter.split(traj.text, final=True)
        assert split is not None  # final splits always decide
        sorter = ToolCallSorter(plan, tags)
        sorter.add(split.tool_calls)
        logprobs = None
        if wants_logprobs(choice):
            logprobs = chat_logprobs(ctx.tokenizer, traj.response_ids, traj.logprobs, result.top_logprobs)
        content = split.content + sorter.leftover(split.content)
        message = AssistantMessage(content=content if content or not sorter.calls else None,
                                   reasoning_content=split.reasoning_content or None, tool_calls=sorter.calls)
        out.append(ChatChoice(index=choice.index, message=message,
                              finish_reason=sorter.finish_reason(traj),
                              logprobs=logprobs))
        thinking += reasoning_tokens(ctx.tokenizer, tags, splitter, traj.response_ids)
    return ChatCompletionResponse(id=response_id, model=ctx.model_name, choices=out,
                                  usage=usage(choices, [r.trajectory for r in results], thinking))


def chat_events(ctx: ServeContext, response_id: str, plan: ChatPlan, choices: list[Choice],
                include_usage: bool) -> AsyncIterator[str]:
    """SSE lines of a streamed chat completion: a role chunk, reasoning/content/tool-call deltas, finish, ``[DONE]``."""
    tags = ctx.tokenizer.think_tags
    chats = {c.request.request_id: StreamedChat(ctx.tokenizer, plan.splitter(tags), c.request.params.stop_strings)
             for c in choices}
    sorters = {c.request.request_id: ToolCallSorter(plan, tags) for c in choices}
    thinking = [0]

    def chunk(index: int, delta: ChatDelta, reason: FinishReason | None = None, logprobs: Any = None) -> str:
        out = ChatChunkChoice(index=index, delta=delta, finish_reason=reason, logprobs=logprobs)
        return sse(ChatCompletionChunk(id=response_id, model=ctx.model_name, choices=[out]))

    def on_event(choice: Choice, event: TokenEvent) -> str | None:
        streamed, sorter = chats[event.request_id], sorters[event.request_id]
        first_call = len(sorter.calls)
        piece = streamed.finish(event.trajectory.text) if event.finished else streamed.push(event.token_ids)
        new_calls = sorter.add(piece.tool_calls)
        content = piece.content + (sorter.leftover(streamed.content) if event.finished else "")
        reason = sorter.finish_reason(event.trajectory) if event.finished else None
        logprobs = None
        if wants_logprobs(choice) and event.token_ids:
            logprobs = chat_logprobs(ctx.tokenizer, event.token_ids, event.logprobs or [0.0] * len(event.token_ids),
                                     event.top_logprobs)
        if event.finished:
            thinking[0] += reasoning_tokens(ctx.tokenizer, tags, streamed.splitter, event.trajectory.response_ids)
        if not (piece.reasoning or content or new_calls or reason or logprobs):
            return None
        deltas = [DeltaToolCall(index=first_call + i, id=call.id, type="function",
                                function=DeltaFunctionCall(name=call.function.name, arguments=call.function.arguments))
                  for i, call in enumerate(new_calls)]
        delta = ChatDelta(reasoning_content=piece.reasoning or None, content=content or None, tool_calls=deltas or None)
        return chunk(choice.index, delta, reason, logprobs)

    def usage_chunk(counts: Usage) -> BaseModel:
        return ChatCompletionChunk(id=response_id, model=ctx.model_name, choices=[], usage=counts)

    first = "".join(chunk(c.index, ChatDelta(role="assistant", content="")) for c in choices)
    return event_stream(ctx, choices, on_event, usage_chunk if include_usage else None, first=first,
                        reasoning_tokens=lambda: thinking[0])
