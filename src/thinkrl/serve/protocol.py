"""Pydantic models of the OpenAI-compatible API served by `thinkrl serve`.

Requests forbid unknown fields, so a typo (``max_token``) is a 400 naming the field
instead of being silently ignored. Parameters thinkrl does not implement
(penalties, ``logit_bias``, ``top_logprobs`` > 0, tools) are either absent (400
"extra inputs are not permitted") or accepted only at their neutral value.
thinkrl extensions: ``top_k`` (as in vLLM; -1 or 0 disables) and, on chat
requests, ``thinking_budget`` (-1 unlimited, 0 answer at once, N tokens).
Responses follow the OpenAI shapes; chat messages carry ``reasoning_content``
beside ``content`` as vLLM and DeepSeek do.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

MAX_CHOICES = 64
"""Largest ``n`` accepted per request."""

MAX_STOP_STRINGS = 4
"""Largest number of ``stop`` strings (the OpenAI limit)."""


def _only_zero(value: int | None) -> int | None:
    """``logprobs`` / ``top_logprobs``: thinkrl returns the sampled token's log-prob only."""
    if value not in (None, 0):
        raise ValueError(f"only 0 is supported (the sampled token's log-prob; alternatives are not computed), "
                         f"got {value}")
    return value


def _no_stream(value: Any, info: ValidationInfo) -> Any:
    """``logprobs`` are not streamed (``stream`` is validated first: it is declared earlier)."""
    if value is not None and info.data.get("stream"):
        raise ValueError("logprobs are not supported with stream=true")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    """``stream_options``: ``include_usage`` adds a last chunk with the token usage."""

    include_usage: bool = False


class SamplingFields(_Strict):
    """Fields shared by completion and chat requests."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=100.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1, description="thinkrl/vLLM extension; -1 or 0 disables")
    seed: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop strings must be non-empty")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _check_penalty(cls, value: float) -> float:
        if value != 0.0:
            raise ValueError("penalties are not supported by thinkrl; only 0 is accepted")
        return value

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """``stop`` as a tuple (empty when unset)."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: ``prompt`` is a string, a list of token ids, or a list of either."""

    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = Field(default=None, description="0: the sampled token's log-prob")
    echo: Literal[False] = False

    @field_validator("logprobs")
    @classmethod
    def _check_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        return _no_stream(_only_zero(value), info)

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be empty")
        if isinstance(value, list) and isinstance(value[0], list) and any(not ids for ids in value):
            raise ValueError("prompt token-id lists must not be empty")
        return value

    def prompts(self) -> list[str | list[int]]:
        """The prompts of this request (one, or several for a batch)."""
        value = self.prompt
        if isinstance(value, str) or (value and isinstance(value[0], int)):
            return [value]  # type: ignore[list-item]
        return list(value)  # type: ignore[arg-type]


class TextPart(_Strict):
    """A ``{"type": "text", "text": ...}`` content part (the only kind thinkrl reads)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    """One message of a conversation."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    reasoning_content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_content(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    def to_template(self) -> dict[str, Any]:
        """The message as the chat template reads it (content parts joined)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        return message


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``, with the thinkrl extension ``thinking_budget``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False

    @field_validator("logprobs")
    @classmethod
    def _check_logprobs(cls, value: bool, info: ValidationInfo) -> bool:
        return _no_stream(value, info) if value else value
    top_logprobs: int | None = None
    thinking_budget: int = Field(default=-1, ge=-1, description="-1 unlimited, 0 answer at once, N tokens")

    @field_validator("top_logprobs")
    @classmethod
    def _check_top_logprobs(cls, value: int | None) -> int | None:
        return _only_zero(value)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` when given, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# ---- responses --------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """Legacy completions log-probs: one entry per generated token (forced tokens get 0)."""

    tokens: list[str]
    token_logprobs: list[float]
    text_offset: list[int]
    top_logprobs: None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[Any] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChatLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "thinkrl"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorInfo
