"""Chat templates rendered with jinja2 the way Hugging Face transformers renders them.

Same environment as `transformers.utils.chat_template_utils`: an
`ImmutableSandboxedEnvironment` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``tojson`` filter that does not escape HTML, and
the globals ``raise_exception`` and ``strftime_now``; the ``{% generation %}``
tag some templates use is accepted and passes its body through. So a template
from any Hub tokenizer folder renders here exactly as in transformers, without
importing it.

Two templates ship with thinkrl in ``templates/`` (``seed_oss`` and ``think``);
see docs/tokenizer.md for their layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("seed_oss", "think")
"""Templates shipped in ``templates/``: ``seed_oss`` (``<seed:think>``) and ``think`` (``<think>``)."""

# Names a message's reasoning may come under; templates read `reasoning_content`.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask tag), rendered as its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def compile_chat_template(source: str, origin: str = "<string>") -> jinja2.Template:
    """Compile a chat template.

    Args:
        source: the jinja2 template text.
        origin: where it came from (a path or name), used in error messages.

    Raises:
        TypeError: ``source`` is not a string.
        ValueError: the template does not compile; the message names ``origin`` and the line.
    """
    if not isinstance(source, str):
        raise TypeError(f"chat template from {origin} must be a string, got {type(source).__name__}")
    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"chat template from {origin} does not compile (line {error.lineno}): {error}") from error


def read_template(name_or_path: str | Path) -> tuple[str, str]:
    """The source of a shipped template (``"seed_oss"``, ``"think"``) or of a ``.jinja`` file.

    Returns:
        ``(source, origin)`` where origin is the file read.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a string that is neither a shipped name nor a path to a file.
    """
    if isinstance(name_or_path, str) and name_or_path in TEMPLATE_NAMES:
        path = TEMPLATES_DIR / f"{name_or_path}.jinja"
    else:
        path = Path(name_or_path)
        if isinstance(name_or_path, str) and path.suffix != ".jinja" and not path.exists():
            raise ValueError(
                f"chat template {name_or_path!r} is neither a shipped template ({', '.join(TEMPLATE_NAMES)}) "
                "nor a path to a .jinja file"
            )
        if not path.is_file():
            raise FileNotFoundError(f"chat template file {path} does not exist")
    return path.read_text(encoding="utf-8"), str(path)


def prepare_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check chat messages and return plain-dict copies ready for a template.

    Each message needs a string ``role``; ``content`` must be a string (an
    assistant message may have ``None`` when it carries ``tool_calls``).
    Reasoning given as ``thinking`` or ``reasoning`` is copied to
    ``reasoning_content``; tool-call ``arguments`` given as a JSON string are
    decoded into a dict (templates iterate over them).

    Raises:
        TypeError: ``messages`` is not a list of mappings, or a field has the wrong type.
        ValueError: a tool call's arguments string is not a JSON object.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of dicts, got {type(messages).__name__}")
    prepared = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{index}] must be a dict, got {type(message).__name__}")
        message = dict(message)
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise TypeError(f"messages[{index}]['role'] must be a non-empty string, got {role!r}")
        if not isinstance(content, str) and not (role == "assistant" and content is None):
            raise TypeError(
                f"messages[{index}]['content'] must be a string (None only for an assistant), got "
                f"{type(content).__name__}"
            )
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        if message.get("tool_calls") is not None:
            message["tool_calls"] = [_prepare_tool_call(index, call) for call in message["tool_calls"]]
        prepared.append(message)
    return prepared


def _prepare_tool_call(index: int, call: Any) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise TypeError(f"messages[{index}] has a tool call that is not a dict: {call!r}")
    call = dict(call)
    target = dict(call["function"]) if isinstance(call.get("function"), Mapping) else call
    arguments = target.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"messages[{index}] tool call arguments are not JSON: {arguments!r}") from error
        if not isinstance(arguments, dict):
            raise ValueError(f"messages[{index}] tool call arguments must be a JSON object, got {arguments!r}")
        target["arguments"] = arguments
    if target is not call:
        call["function"] = target
    return call


def render_chat_template(
    template: jinja2.Template,
    messages: Sequence[Mapping[str, Any]],
    *,
    origin: str = "<string>",
    add_generation_prompt: bool = True,
    **variables: Any,
) -> str:
    """Render ``messages`` (checked by `prepare_messages`) with a compiled template.

    Args:
        template: from `compile_chat_template`.
        messages: chat messages, each ``{"role": ..., "content": ...}``.
        origin: where the template came from, for error messages.
        add_generation_prompt: end with the opening of an assistant turn.
        **variables: other template variables (``tools``, ``thinking_budget``, special tokens...).

    Raises:
        ValueError: the template raised (``raise_exception``) or failed on these inputs.
    """
    prepared = prepare_messages(messages)
    try:
        return template.render(messages=prepared, add_generation_prompt=add_generation_prompt, **variables)
    except (jinja2.TemplateError, TypeError) as error:
        raise ValueError(f"chat template from {origin} failed to render: {error}") from error
