"""Response text for the server: incremental decoding for streams and the chat reasoning/answer split.

A streamed response must add up to the non-streamed one. Three things could break
that, and each is held back until it is safe:

* a multi-byte character split over tokens decodes to U+FFFD until its last byte
  arrives (`IncrementalText` waits for it);
* a stop string is cut from the final text, so the last ``len(stop) - 1``
  characters are not sent until the next token shows they do not start one;
* `parse_completion` reads ``R</think>C`` without an opening tag as reasoning R,
  so text before any tag is ambiguous. `ChatSplitter` decides the thinking state
  once, from the prompt and the first characters of the response, and parses
  every prefix the same way, so the reasoning and content it reports only grow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from thinkrl.tokenizer import ParsedCompletion, ThinkTags, ToolCall, parse_completion

logger = logging.getLogger(__name__)

_NEVER = "\x00<no tool calls>\x00"  # tool-call tags when tool calls are not parsed (tool_choice "none")


class IncrementalText:
    """Decodes a growing list of token ids a few tokens at a time (vLLM's prefix-window scheme).

    Args:
        tokenizer: anything with ``decode(ids)``.
        stop_strings: text is cut before the first of them; while generation runs, a
            tail that could be the start of one is held back.
    """

    def __init__(self, tokenizer: Any, stop_strings: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop_strings = stop_strings
        self._hold = max((len(s) - 1 for s in stop_strings), default=0)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._text = ""

    def push(self, token_ids: list[int]) -> str:
        """Add tokens; returns the text that is safe to show so far (it only grows)."""
        self._ids += token_ids
        window = self._ids[self._prefix_offset :]
        prefix_text = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._tokenizer.decode(window)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self._text += new_text[len(prefix_text) :]
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self.visible()

    def visible(self) -> str:
        """Decoded text before any stop string, without a tail that may start one."""
        cuts = [cut for stop in self._stop_strings if (cut := self._text.find(stop)) >= 0]
        if cuts:  # generation ends here: nothing left to hold back
            return self._text[: min(cuts)]
        return self._text[: len(self._text) - self._hold]


def prompt_thinking_state(prompt_text: str, tags: ThinkTags) -> str:
    """``"open"`` when the prompt ends inside a thinking block, ``"closed"`` when it ends right
    after one (budget 0), else ``"none"`` (the model opens thinking itself, or does not think)."""
    if prompt_text.rstrip().endswith(tags.close):
        return "closed"
    return "open" if tags.ends_inside_thinking(prompt_text) else "none"


class ChatSplitter:
    """Splits (partial) chat responses into reasoning, content and tool calls, consistently across prefixes.

    Args:
        tags: the thinking tags of the tokenizer.
        prompt_state: `prompt_thinking_state` of the rendered prompt.
        forced: text the prompt forced at the start of the response (a tool-call opening); it is
            read as if the model had written it.
        parse_tools: read tool-call blocks into ``tool_calls``; False leaves them in the content.
    """

    def __init__(self, tags: ThinkTags, prompt_state: str, forced: str = "", parse_tools: bool = True) -> None:
        self.tags = tags if parse_tools else replace(tags, tool_open=_NEVER, tool_close=_NEVER)
        self.forced = forced
        self._prefix: str | None = tags.open if prompt_state == "open" else None

    def split(self, text: str, final: bool) -> ParsedCompletion | None:
        """``text`` split into its parts; None while it is too short to decide (not ``final``)."""
        text = self.forced + text
        if self._prefix is None:
            head = text.lstrip()
            if not final and (not head or self.tags.open.startswith(head)):
                return None
            # The model opened thinking itself: parse as is. Otherwise its thinking is over
            # (or it does not think): a later close tag is content, not the end of reasoning.
            self._prefix = "" if head.startswith(self.tags.open) else self.tags.open + self.tags.close
        return parse_completion(self._prefix + text, self.tags)

    @property
    def thinking(self) -> bool:
        """The response starts with thinking (the model opened it, or the prompt did and nothing closed it)."""
        return self._prefix == "" or (self._prefix == self.tags.open and not self.forced)

    def complete_tool_calls(self, text: str) -> list[ToolCall]:
        """The tool calls of ``text`` whose closing tag has arrived (call after `split` decided)."""
        full = self.forced + text
        end = full.rfind(self.tags.tool_close)
        if end == -1 or self._prefix is None:
            return []
        return parse_completion(self._prefix + full[: end + len(self.tags.tool_close)], self.tags).tool_calls


def new_suffix(sent: str, current: str, final: bool = False) -> str:
    """The part of ``current`` after ``sent``; "" when ``current`` does not extend ``sent``.

    With ``final`` such a divergence (a bug: streams must only grow) is logged.
    """
    if current.startswith(sent):
        return current[len(sent) :]
    if final:
        logger.warning("streamed text diverged from the final text: sent %r, final %r", sent[-40:], current[-40:])
    return ""


class StreamedText:
    """Text deltas of one streamed completion choice.

    Args:
        tokenizer: decodes the tokens.
        stop_strings: the request's stop strings.
    """

    def __init__(self, tokenizer: Any, stop_strings: tuple[str, ...] = ()) -> None:
        self._text = IncrementalText(tokenizer, stop_strings)
        self._sent = ""

    def push(self, token_ids: list[int]) -> str:
        """New text after these tokens (may be empty)."""
        return self._advance(self._text.push(token_ids), final=False)

    def finish(self, final_text: str) -> str:
        """The rest of the text, given the final response text (``Trajectory.text``)."""
        return self._advance(final_text, final=True)

    def _advance(self, text: str, final: bool) -> str:
        delta = new_suffix(self._sent, text, final)
        self._sent += delta
        return delta


def _without_partial_tag(text: str, tag: str) -> str:
    """``text`` without a tail that may be the start of ``tag`` (held back until the next token decides)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return text[:-size]
    return text


@dataclass
class ChatPiece:
    """What one step adds to a streamed chat choice.

    Fields:
        reasoning: new reasoning text.
        content: new content text.
        tool_calls: tool calls completed since the last piece (malformed ones have ``error`` set).
    """

    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.content or self.tool_calls)


class StreamedChat:
    """Reasoning, content and tool-call deltas of one streamed chat choice.

    Args:
        tokenizer: decodes the tokens.
        splitter: a fresh `ChatSplitter` for this choice.
        stop_strings: the request's stop strings.
    """

    def __init__(self, tokenizer: Any, splitter: ChatSplitter, stop_strings: tuple[str, ...] = ()) -> None:
        self._text = IncrementalText(tokenizer, stop_strings)
        self.splitter = splitter
        self._sent = ["", ""]
        self._num_calls = 0

    @property
    def content(self) -> str:
        """The content sent so far."""
        return self._sent[1]

    def push(self, token_ids: list[int]) -> ChatPiece:
        """What these tokens add (possibly nothing yet)."""
        return self._advance(self._text.push(token_ids), final=False)

    def finish(self, final_text: str) -> ChatPiece:
        """The rest, given the final response text (``Trajectory.text``)."""
        return self._advance(final_text, final=True)

    def _advance(self, text: str, final: bool) -> ChatPiece:
        split = self.splitter.split(text, final)
        if split is None:
            return ChatPiece()
        reasoning = new_suffix(self._sent[0], split.reasoning_content, final)
        visible = split.content if final else _without_partial_tag(split.content, self.splitter.tags.tool_open).rstrip()
        content = new_suffix(self._sent[1], visible, final)
        self._sent[0] += reasoning
        self._sent[1] += content
        calls = split.tool_calls if final else self.splitter.complete_tool_calls(text)
        new_calls, self._num_calls = calls[self._num_calls :], max(self._num_calls, len(calls))
        return ChatPiece(reasoning, content, new_calls)
