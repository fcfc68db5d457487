"""Tool calls in model text: one place that writes and reads them (server, agentic rollouts, parser).

Two formats, registered by name in `TOOL_CALL_FORMATS`:

* ``"seed_oss"`` (Seed-OSS): ``<seed:tool_call>\\n<function=NAME>\\n<parameter=KEY>VALUE</parameter>\\n
  </function>\\n</seed:tool_call>``; values are text (non-strings written as JSON), so reading them back
  uses the tool's JSON schema to restore numbers, booleans, arrays and objects.
* ``"json"`` (Qwen style): ``<tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>``.

`ToolCallFormat.render` writes a call exactly as the shipped chat templates write an assistant's
``tool_calls`` (so rendered histories and parsed outputs agree byte for byte); `parse_tool_call`
reads the text between the tags of either form. Model output never raises: a call that cannot be
read comes back as a `ToolCall` with ``error`` set (the typed parse-error result).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkrl.registry import Registry
from thinkrl.tokenizer.budget import ThinkTags

# Names and keys stop at "<" too: else a match attempt at each "<function=" of a text with no ">" scans to the end of
# the line, quadratic in a long degenerate call (10,000 repeats took 6 s); no tool name or key has a "<".
_FUNCTION = re.compile(r"<function=([^<>\n]+)>(.*?)(?:</function>|$)", re.DOTALL)
_PARAMETER = re.compile(r"<parameter=([^<>\n]+)>(.*?)(?:</parameter>|$)", re.DOTALL)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,), "object": (dict,),
    "null": (type(None),),
}


@dataclass
class ToolCall:
    """One tool call read from model text.

    Fields:
        name: function name ("" when it could not be read).
        arguments: keyword arguments (JSON values; ``<parameter=...>`` values are strings unless typed
            with `coerce_arguments`).
        raw: the text between the tool-call tags.
        error: why the call could not be read (malformed JSON, no function tag, cut off), None when it was.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the call was read completely."""
        return self.error is None


@dataclass(frozen=True)
class ToolCallFormat:
    """How one chat format writes tool calls.

    Fields:
        name: registry name.
        open_tag, close_tag: the tags around each call.
        write_body: ``(name, arguments) -> text`` between the tags.
        write_head: ``name -> the start of that body`` up to where the arguments begin.
    """

    name: str
    open_tag: str
    close_tag: str
    write_body: Callable[[str, Mapping[str, Any]], str]
    write_head: Callable[[str], str]

    def render(self, name: str, arguments: Mapping[str, Any] | str) -> str:
        """One call with its tags, as the chat templates write it (``arguments`` may be a JSON string)."""
        if isinstance(arguments, str):
            arguments = _decode_arguments(arguments)
        return self.open_tag + self.write_body(name, arguments) + self.close_tag

    def render_calls(self, calls: Sequence[tuple[str, Mapping[str, Any] | str]]) -> str:
        """Several calls, each on its own line (the layout of an assistant turn's ``tool_calls``)."""
        return "".join("\n" + self.render(name, arguments) for name, arguments in calls)

    def opening(self, name: str | None = None) -> str:
        """The text that starts a call (of function ``name`` when given): a prompt ending with it forces a call."""
        return self.open_tag + ("" if name is None else self.write_head(name))

    def parse(self, raw: str, tools: Sequence[Mapping[str, Any]] | None = None) -> list[ToolCall]:
        """The calls in the text between the tags; ``tools`` (OpenAI tool definitions) type the arguments."""
        calls = parse_tool_call(raw)
        return [coerce_arguments(call, tools) for call in calls] if tools else calls


TOOL_CALL_FORMATS: Registry[ToolCallFormat] = Registry("tool-call format")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _seed_head(name: str) -> str:
    return f"\n<function={name}>\n"


def _seed_body(name: str, arguments: Mapping[str, Any]) -> str:
    params = "".join(f"<parameter={key}>{value if isinstance(value, str) else _json_text(value)}</parameter>\n"
                     for key, value in arguments.items())
    return f"{_seed_head(name)}{params}</function>\n"


def _json_head(name: str) -> str:
    return f'\n{{"name": "{name}", "arguments": '


def _json_body(name: str, arguments: Mapping[str, Any]) -> str:
    return f"{_json_head(name)}{_json_text(dict(arguments))}}}\n"


SEED_OSS = TOOL_CALL_FORMATS.register("seed_oss")(
    ToolCallFormat("seed_oss", "<seed:tool_call>", "</seed:tool_call>", _seed_body, _seed_head))
JSON = TOOL_CALL_FORMATS.register("json")(
    ToolCallFormat("json", "<tool_call>", "</tool_call>", _json_body, _json_head))


def tool_call_format(name: str) -> ToolCallFormat:
    """The registered format ``name``; a `KeyError` lists the known ones."""
    return TOOL_CALL_FORMATS.get(name)


def format_for_tags(tags: ThinkTags) -> ToolCallFormat:
    """The format whose tags are the tokenizer's tool-call tags (Seed-OSS tags: seed_oss, else json)."""
    for name in TOOL_CALL_FORMATS.names():
        fmt = TOOL_CALL_FORMATS.get(name)
        if (fmt.open_tag, fmt.close_tag) == (tags.tool_open, tags.tool_close):
            return fmt
    return ToolCallFormat("json", tags.tool_open, tags.tool_close, _json_body, _json_head)


def _decode_arguments(text: str) -> dict[str, Any]:
    decoded = json.loads(text) if text.strip() else {}
    if not isinstance(decoded, dict):
        raise ValueError(f"tool call arguments must be a JSON object, got {text!r}")
    return decoded


def _strip_one_newline(value: str) -> str:
    return value.removeprefix("\n").removesuffix("\n")


def parse_tool_call(raw: str) -> list[ToolCall]:
    """Read the text between tool-call tags: ``<function=...>`` (Seed-OSS) or JSON (an object or a list).

    Never raises: unreadable text gives one `ToolCall` with ``error`` set.
    """
    body = raw.strip()
    if body.startswith("<function="):
        calls = []
        for match in _FUNCTION.finditer(body):
            arguments = {key.strip(): _strip_one_newline(value) for key, value in _PARAMETER.findall(match[2])}
            calls.append(ToolCall(name=match[1].strip(), arguments=arguments, raw=raw))
        return calls or [ToolCall(name="", raw=raw, error="tool call has no complete <function=NAME> tag")]
    try:
        decoded = _strict_json(body)
    except (ValueError, RecursionError) as error:  # ValueError, not JSONDecodeError: also an int over 4,300 digits
        return [ToolCall(name="", raw=raw, error=f"tool call is not valid JSON: {error}")]
    return [_json_tool_call(item, raw) for item in (decoded if isinstance(decoded, list) else [decoded])]


def _json_tool_call(item: Any, raw: str) -> ToolCall:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return ToolCall(name="", raw=raw, error=f"tool call needs an object with a string 'name', got {item!r}")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = _strict_json(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as error:
            return ToolCall(name=item["name"], raw=raw, error=f"arguments are not valid JSON: {error}")
    if not isinstance(arguments, dict):
        return ToolCall(name=item["name"], raw=raw, error=f"arguments must be an object, got {arguments!r}")
    return ToolCall(name=item["name"], arguments=arguments, raw=raw)


def _schema_properties(tools: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and function.get("name") == name:
            parameters = function.get("parameters")
            properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
            return properties if isinstance(properties, Mapping) else {}
    return {}


def _strict_json(text: str) -> Any:
    """``json.loads`` without what JSON has not: NaN, Infinity and floats that overflow are a ValueError, so a
    model's call never hands a tool a non-finite number (Python's json reads them by default)."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite_float)


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def coerce_arguments(call: ToolCall, tools: Sequence[Mapping[str, Any]]) -> ToolCall:
    """``call`` with string arguments turned into the JSON type its tool's schema declares.

    A string whose schema type is integer, number, boolean, array, object or null is read as JSON
    when that gives the declared type; otherwise (or without a schema) it stays a string.
    """
    if not call.ok:
        return call
    properties = _schema_properties(tools, call.name)
    arguments = {}
    for key, value in call.arguments.items():
        spec = properties.get(key)
        declared = spec.get("type") if isinstance(spec, Mapping) else None
        allowed = _JSON_TYPES.get(declared) if isinstance(declared, str) else None
        if isinstance(value, str) and allowed is not None:
            try:  # strict JSON: "NaN", "Infinity" or "1e999" stay text, not a non-finite float for the tool
                decoded = _strict_json(value)
            except (ValueError, RecursionError):
                decoded = value
            if isinstance(decoded, allowed) and not (bool not in allowed and isinstance(decoded, bool)):
                value = decoded
        arguments[key] = value
    return ToolCall(name=call.name, arguments=arguments, raw=call.raw)


# ---- multi-turn tool use: the pieces an agent loop needs -------------------------------------------------


def read_tool_calls(text: str, tags: ThinkTags, tools: Sequence[Mapping[str, Any]] | None = None) -> list[ToolCall]:
    """The tool calls of one assistant turn (decoded with special tokens), typed by ``tools`` when given.

    The same reading as `thinkrl.tokenizer.parse.parse_completion` (which the server and the verifiers use): calls
    inside the thinking block do not count, a call cut off before its closing tag has ``error`` set.
    """
    from thinkrl.tokenizer.parse import parse_completion  # parse imports this module

    calls = parse_completion(text, tags).tool_calls
    return [coerce_arguments(call, tools) for call in calls] if tools else calls


def tool_stop(tokenizer: Any) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``(stop_token_ids, stop_strings)`` that end an assistant turn at the end of a tool call.

    The tokenizer's own stop tokens plus the tool-call closing tag: as one token id when the vocabulary has it
    (the built-in tokenizer, Seed-OSS, Qwen), else as a stop string (the engine then keeps every sampled token,
    including one that runs past the tag).
    """
    close = tokenizer.think_tags.tool_close
    close_id = tokenizer.token_to_id(close)
    ids = tuple(tokenizer.stop_token_ids)
    if close_id is not None:
        return (*ids, close_id), ()
    return ids, (close,)


def tool_turn_suffix(tokenizer: Any, results: Sequence[str], *, thinking_budget: int | None = None) -> str:
    """The text the chat template writes after an assistant turn's last tool-call closing tag: the end of that
    turn, one ``tool`` turn per result, and the generation prompt of the next assistant turn.

    Derived from the template itself (a conversation rendered with and without the results), so it is exactly
    what a rendered history holds, for any template (Seed-OSS: ``<seed:eos><seed:bos>tool\\n...<seed:eos>
    <seed:bos>assistant\\n``).

    Raises:
        ValueError: the template does not render a tool-call turn as a prefix of the conversation with results.
    """
    close = tokenizer.think_tags.tool_close
    call = {"type": "function", "function": {"name": "f", "arguments": {}}}
    head = [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
    before = tokenizer.apply_chat_template(head, add_generation_prompt=False, thinking_budget=thinking_budget)
    cut = before.rfind(close)
    if cut < 0:
        raise ValueError(f"the chat template does not write tool calls with {close!r}")
    before = before[: cut + len(close)]
    after = tokenizer.apply_chat_template(head + [{"role": "tool", "content": r} for r in results],
                                          add_generation_prompt=True, thinking_budget=thinking_budget)
    if not after.startswith(before):
        raise ValueError("the chat template renders a tool-call turn differently once tool results follow it")
    return after[len(before):]
