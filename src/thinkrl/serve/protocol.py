"""Pydantic models of the requests `thinkrl serve` accepts (tool fields: `serve.tool_protocol`; responses:
`serve.responses`).

Requests forbid unknown fields, so a typo (``max_token``) is a 400 naming the field
instead of being silently ignored, and they are strictly typed (``"logprobs": false`` on a
completions request is a 400, not ``logprobs=0``; ``"echo": 0`` is not false; floats are finite, so
``"temperature": NaN`` is "Input should be a finite number"). Every field is bounded here, at the edge, so no
value can fail later inside the engine (a seed beyond 64 bits, a ``top_k`` or ``thinking_budget`` beyond
int32...). Parameters thinkrl does not implement (penalties, ``logit_bias``, ``echo``) are either absent
(400 "extra inputs are not permitted") or accepted only at their neutral value. Extensions, as in vLLM:
``top_k`` (-1 or 0 disables), ``ignore_eos`` and, on chat requests, ``thinking_budget`` (-1 unlimited,
0 answer at once, N tokens) and ``chat_template_kwargs`` (``{"thinking_budget": N}``,
``{"enable_thinking": false}``, other template variables).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from thinkrl.serve.strict import RequestError as RequestError
from thinkrl.serve.strict import StrictModel
from thinkrl.serve.tool_protocol import MessageToolCall, NamedToolChoice, ToolChoice, ToolDefinition

MAX_CHOICES = 64
"""Largest ``n`` accepted per request."""

MAX_TOTAL_CHOICES = 256
"""Largest number of engine requests one HTTP request makes (``n`` x prompts of a completions batch)."""

MAX_STOP_STRINGS = 4
"""Largest number of ``stop`` strings (the OpenAI limit)."""

MAX_TOP_LOGPROBS = 20
"""Largest ``top_logprobs`` (chat) / ``logprobs`` (completions), as OpenAI and vLLM by default."""

MAX_SEED = 2**63 - 1
"""Largest ``seed``; choice k of ``n`` uses ``seed + k``, which stays within the generator's 64 bits."""

MAX_TOP_K = 2**31 - 1
"""Largest ``top_k`` (values past the vocabulary keep every token)."""

MAX_THINKING_BUDGET = 2**31 - 1
"""Largest ``thinking_budget`` (as ``top_k``: int32); it is written into the prompt, so it is bounded too."""

MIN_TEMPERATURE = 1e-5
"""Temperatures below this are greedy (as in vLLM): dividing logits by less overflows float32."""

RESERVED_TEMPLATE_VARIABLES = frozenset({"messages", "tools", "add_generation_prompt"})
"""Template variables the server sets itself; ``chat_template_kwargs`` may not override them."""

class StreamOptions(StrictModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token usage."""

    include_usage: bool = False


class SamplingFields(StrictModel):
    """Fields shared by completion and chat requests."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=100.0, description="below 1e-5: greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1, le=MAX_TOP_K, description="thinkrl/vLLM extension; -1 or 0 disables")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(default=False, description="vLLM extension: end-of-turn tokens do not stop generation")
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

    @property
    def num_top_logprobs(self) -> int | None:
        """How many alternatives per token to return; None: no log-probs at all."""
        return None


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: ``prompt`` is a string, a list of token ids, or a list of either."""

    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS,
                                 description="k: the sampled token's log-prob and the k most likely tokens'")
    echo: bool = Field(default=False, description="not supported: only false is accepted")

    @field_validator("echo")
    @classmethod
    def _check_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported by thinkrl; only false is accepted")
        return value

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be empty")
        if isinstance(value, list) and isinstance(value[0], list) and any(not ids for ids in value):
            raise ValueError("prompt token-id lists must not be empty")
        return value

    def check(self) -> None:
        """Cross-field checks; a `RequestError` naming the field."""
        total = self.n * len(self.prompts())
        if total > MAX_TOTAL_CHOICES:
            raise RequestError(f"n ({self.n}) x prompts ({len(self.prompts())}) = {total} choices; at most "
                               f"{MAX_TOTAL_CHOICES} per request", "n")

    def prompts(self) -> list[str | list[int]]:
        """The prompts of this request (one, or several for a batch)."""
        value = self.prompt
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]  # token ids: one prompt
        return list(cast(list[str] | list[list[int]], value))  # what the field's type leaves

    @property
    def num_top_logprobs(self) -> int | None:
        return self.logprobs


class TextPart(StrictModel):
    """A ``{"type": "text", "text": ...}`` content part (the only kind thinkrl reads)."""

    type: str
    text: str

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if value != "text":
            raise ValueError(f"content parts of type {value!r} are not supported; only 'text' parts are")
        return value


def _content_kind(value: Any) -> str | None:
    return "str" if isinstance(value, str) else "list[TextPart]" if isinstance(value, list) else None


# Chosen by the JSON type, so a list of parts with a bad part is reported inside that part
# ("messages.0.content.0.type: ...") instead of as "Input should be a valid string".
MessageContent = Annotated[
    Annotated[str, Tag("str")] | Annotated[list[TextPart], Tag("list[TextPart]")],
    Discriminator(_content_kind, custom_error_type="content_type",
                  custom_error_message="content must be a string or a list of text parts"),
]


class ChatMessage(StrictModel):
    """One message of a conversation (roles system, developer, user, assistant, tool)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: MessageContent | None = None
    reasoning_content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[MessageToolCall] | None = None

    @model_validator(mode="after")
    def _check_content(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages have tool_calls")
        return self

    def to_template(self) -> dict[str, Any]:
        """The message as the chat template reads it (content parts joined; developer is system)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        role = "system" if self.role == "developer" else self.role
        message: dict[str, Any] = {"role": role, "content": content or ""}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``, with the extensions ``thinking_budget`` and ``chat_template_kwargs``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    thinking_budget: int | None = Field(default=None, ge=-1, le=MAX_THINKING_BUDGET,
                                       description="-1 unlimited, 0 answer at once, N tokens")
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _check_top_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs=true")
        return value

    @field_validator("chat_template_kwargs")
    @classmethod
    def _check_template_kwargs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if not value:
            return value
        reserved = sorted(RESERVED_TEMPLATE_VARIABLES & value.keys())
        if reserved:
            raise ValueError(f"{reserved[0]!r} is set by the server and cannot be a template variable")
        budget = value.get("thinking_budget")
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)
                                   or not -1 <= budget <= MAX_THINKING_BUDGET):
            raise ValueError(f"thinking_budget must be an integer in [-1, {MAX_THINKING_BUDGET}], got {budget!r}")
        if "enable_thinking" in value and not isinstance(value["enable_thinking"], bool):
            raise ValueError(f"enable_thinking must be true or false, got {value['enable_thinking']!r}")
        return value

    def check(self) -> None:
        """Cross-field checks (tools, tool_choice, budgets); a `RequestError` naming the field."""
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise RequestError("tools: function names must be unique", "tools")
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise RequestError("tool_choice: 'required' or a named function needs tools", "tool_choice")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise RequestError(f"tool_choice: function {choice.function.name!r} is not in tools "
                               f"({', '.join(names)})", "tool_choice")
        self.resolved_budget()

    def resolved_budget(self) -> int:
        """The thinking budget from ``thinking_budget`` and ``chat_template_kwargs`` (-1 unlimited).

        ``enable_thinking: false`` is budget 0. Two different values are a `RequestError`.
        """
        kwargs = self.chat_template_kwargs or {}
        given = {"thinking_budget": self.thinking_budget, "chat_template_kwargs.thinking_budget":
                 kwargs.get("thinking_budget"), "chat_template_kwargs.enable_thinking":
                 0 if kwargs.get("enable_thinking") is False else None}
        values = {name: v for name, v in given.items() if v is not None}
        if len(set(values.values())) > 1:
            raise RequestError(f"thinking budgets disagree: {values}", "thinking_budget")
        return next(iter(values.values()), -1)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` when given, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def num_top_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @property
    def tool_mode(self) -> str:
        """"none" (no tools, or tool_choice none), "auto", "required" or "named"."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"
