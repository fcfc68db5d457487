"""Split a model's completion into reasoning, answer, tool calls and budget reflections.

Works on text decoded *with* special tokens (the thinking tags are special
tokens). Never raises on model output: a tool call that cannot be read becomes
a `ToolCall` with ``error`` set.

Rules (tags of `ThinkTags`, Seed-OSS by default):
    * ``<open>R</close>C``: reasoning R, content C.
    * ``R</close>C`` (no opening tag, e.g. the prompt opened the block): R is reasoning.
    * ``<open>R`` (cut off while thinking): all reasoning, content empty,
      ``thinking_finished`` False, ``truncated`` True.
    * no tags: all content (or all reasoning when ``thinking_open=True``).
    * budget reflections ``<reflect>...</reflect>`` are removed from reasoning
      and content and listed in ``budget_reflections``.
    * tool calls ``<tool>...</tool>`` are removed from content; inside is JSON
      (``{"name": ..., "arguments": {...}}`` or a list of them) or the Seed-OSS
      form ``<function=NAME><parameter=KEY>VALUE</parameter>...</function>``,
      whose values stay strings (read by `thinkrl.tokenizer.tool_calls`).
    * a trailing end-of-turn token (``<seed:eos>``, ``<|im_end|>``...) is dropped;
      reasoning and content are stripped of surrounding whitespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from thinkrl.tokenizer.budget import SEED_TAGS, ThinkTags
from thinkrl.tokenizer.tool_calls import ToolCall, parse_tool_call

DEFAULT_STOP_STRINGS = ("<seed:eos>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")
__all__ = ["DEFAULT_STOP_STRINGS", "ParsedCompletion", "ToolCall", "parse_completion", "parse_tool_call"]


@dataclass
class ParsedCompletion:
    """A completion split into its parts.

    Fields:
        reasoning_content: the thinking, without budget reflections.
        content: the answer, without tool calls and reflections.
        tool_calls: tool calls in order (malformed ones have ``error`` set).
        budget_reflections: text of each budget reflection, in order.
        thinking_finished: False when the text ends inside an open thinking block.
        truncated: True when the text ends inside an unclosed block (thinking,
            reflection or tool call), i.e. it was cut off.
    """

    reasoning_content: str
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    budget_reflections: list[str] = field(default_factory=list)
    thinking_finished: bool = True
    truncated: bool = False


def _strip_stop(text: str, stop_strings: Iterable[str]) -> str:
    """``text`` without the stop strings (and the whitespace before each) that end it, however many; where two end
    it ("</s>" and "s>"), the longer is cut. Walks an end index back instead of slicing per stop: linear on a reply
    of thousands of stop strings (model output)."""
    stops = tuple(sorted({s for s in stop_strings if s}, key=len))  # the last match below is the longest
    end = len(text)
    while True:
        stripped = end
        while stripped and text[stripped - 1].isspace():  # (what str.rstrip strips)
            stripped -= 1
        cut = None
        for stop in stops:
            if text.endswith(stop, 0, stripped):
                cut = stripped - len(stop)
        if cut is None:
            return text[:end]
        end = cut


def _split_thinking(text: str, tags: ThinkTags, thinking_open: bool) -> tuple[str, str, bool]:
    """(reasoning, rest, closed) for the first thinking block of ``text``."""
    open_at, close_at = text.find(tags.open), text.find(tags.close)
    if close_at != -1 and (open_at == -1 or close_at < open_at):
        return text[:close_at], text[close_at + len(tags.close) :], True
    if open_at == -1:
        return (text, "", False) if thinking_open else ("", text, True)
    before, after = text[:open_at], text[open_at + len(tags.open) :]
    close_at = after.find(tags.close)
    if close_at == -1:
        return after, before, False
    return after[:close_at], before + after[close_at + len(tags.close) :], True


def _extract_blocks(text: str, open_tag: str, close_tag: str) -> tuple[str, list[str], bool]:
    """Remove every ``open...close`` block; returns (text left, block bodies, last block unclosed)."""
    kept, bodies, position = [], [], 0
    while (start := text.find(open_tag, position)) != -1:
        kept.append(text[position:start])
        end = text.find(close_tag, start + len(open_tag))
        if end == -1:
            bodies.append(text[start + len(open_tag) :])
            return "".join(kept), bodies, True
        bodies.append(text[start + len(open_tag) : end])
        position = end + len(close_tag)
        if text.startswith("\n", position):  # a reflection sits on its own line
            position += 1
    kept.append(text[position:])
    return "".join(kept), bodies, False


def parse_completion(
    text: str,
    tags: ThinkTags = SEED_TAGS,
    *,
    thinking_open: bool = False,
    stop_strings: Iterable[str] = DEFAULT_STOP_STRINGS,
) -> ParsedCompletion:
    """Split a completion into reasoning, content, tool calls and budget reflections.

    Args:
        text: the generated text, decoded with special tokens kept.
        tags: the thinking format's tags (`SEED_TAGS` or `THINK_TAGS`).
        thinking_open: the prompt already opened the thinking block, so text
            without any tag is all reasoning.
        stop_strings: end-of-turn strings removed from the end of ``text``.

    Raises:
        TypeError: ``text`` is not a string (model output itself never raises).
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_completion expects a str, got {type(text).__name__}")
    reasoning, rest, closed = _split_thinking(_strip_stop(text, stop_strings), tags, thinking_open)
    reasoning, reflections, reflect_cut = _extract_blocks(reasoning, tags.reflect_open, tags.reflect_close)
    rest, more_reflections, rest_reflect_cut = _extract_blocks(rest, tags.reflect_open, tags.reflect_close)
    rest, tool_bodies, tool_cut = _extract_blocks(rest, tags.tool_open, tags.tool_close)
    tool_calls = [call for body in tool_bodies for call in parse_tool_call(body)]
    if tool_cut and tool_calls:
        earlier = tool_calls[-1].error
        tool_calls[-1].error = "tool call was cut off before its closing tag" + (f" ({earlier})" if earlier else "")
    return ParsedCompletion(
        reasoning_content=reasoning.strip(),
        content=rest.strip(),
        tool_calls=tool_calls,
        budget_reflections=[r.strip() for r in reflections + more_reflections],
        thinking_finished=closed,
        truncated=not closed or reflect_cut or rest_reflect_cut or tool_cut,
    )
