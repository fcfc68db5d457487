"""Thinking-budget control at generation time: one `ThinkingBudgetController` per request.

The controller is a `SequenceController` (see ``types.py``): the engine asks it, per
sequence, which tokens to ban before sampling, which tokens to force after a sampled
token, and (optional hook ``replacement_tokens``) whether to drop a sampled token and
force others instead. It works on token ids only: the tag and sentence ids are encoded
once per tokenizer (`budget_vocab`), each sampled token costs a few integer comparisons
(O(1); a reflection sentence is encoded once per reflection interval), and nothing is
ever decoded. Requests without a controller pay nothing.

Counting rule: ``thinking_tokens`` counts the **sampled** tokens strictly between the
thinking open tag and close tag (of every thinking block: without enforcement a model that
reopens thinking in its answer, even after a budget-0 prompt, keeps counting). Forced tokens
(reflections, "Wait", the exhausted sentence, the close tag) do not count toward the budget; every sampled one
does, a reflection the model writes itself included (so enforcement can never be dodged by opening a reflection).
Forced tokens do count toward the request's ``max_new_tokens`` (the engine's rule), so leave room for them.

Per request (see `make_budget_controller` and docs/thinking_budget.md):

* ``enforce``: right after the ``budget``-th thinking token, force the end of thinking
  (``"\\n<seed:cot_budget_reflect>I have exhausted ...</seed:cot_budget_reflect>\\n</seed:think>"``
  or just ``"\\n</seed:think>"``); afterwards the open tag is banned (a single-token tag),
  so thinking never resumes.
* ``reflect``: after the k-th thinking token, for every multiple k of the reflection
  interval below the budget, force ``"\\n<seed:cot_budget_reflect>I have used k tokens, and
  there are budget-k tokens remaining for use.</seed:cot_budget_reflect>\\n"``.
* ``min_thinking_tokens`` (s1 budget forcing): below the floor, a sampled close tag or stop
  token is dropped and ``"Wait"`` is forced in its place.
* ``max_answer_tokens``: after that many sampled answer tokens, force the eos token.

Budget 0 means the prompt already closed the thinking block (the Seed-OSS generation
prompt for budget 0 does), so the sequence starts in the answer; with ``thinking_open``
the prompt opened it, and the first sampled token is replaced by the end of thinking.

Out of scope: rendering prompts (the chat template) and parsing the output (``thinkrl.tokenizer``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from thinkrl.tokenizer.budget import (
    BUDGET_EXHAUSTED_TEXT,
    UNLIMITED_BUDGET,
    ThinkTags,
    check_thinking_budget,
    reflection_interval,
    reflection_text,
)

WAIT_TEXT = "Wait"
"""What s1-style budget forcing writes instead of ending thinking below the floor."""

Phase = Literal["before", "thinking", "answer"]


@dataclass(frozen=True)
class BudgetVocab:
    """Token ids of the tags and sentences for one tokenizer and tag set (see `budget_vocab`).

    Fields:
        tags: the thinking format's tags.
        open_ids: ids of ``tags.open`` (one id when it is a special token).
        close_ids: ids of ``tags.close``.
        end_ids: forced to end thinking without the sentence: ``"\\n" + tags.close``.
        exhausted_end_ids: forced to end thinking with the sentence:
            ``"\\n" + tags.wrap_reflection(BUDGET_EXHAUSTED_TEXT) + "\\n" + tags.close``.
        wait_ids: ids of `WAIT_TEXT`.
        stop_ids: the tokenizer's stop tokens (a sampled one ends thinking too).
        eos_id: forced when the answer limit is reached (None: the tokenizer has none).
        encode: the tokenizer's ``encode``, for the reflection sentences (None while packed to cross to the
            rollout process, which sets its own tokenizer's).
    """

    tags: ThinkTags
    open_ids: tuple[int, ...]
    close_ids: tuple[int, ...]
    end_ids: tuple[int, ...]
    exhausted_end_ids: tuple[int, ...]
    wait_ids: tuple[int, ...]
    stop_ids: frozenset[int]
    eos_id: int | None
    encode: Callable[[str], list[int]] | None = field(compare=False, repr=False)

    def reflection_ids(self, used: int, remaining: int) -> list[int]:
        """Ids of ``"\\n" + wrap_reflection(reflection_text(used, remaining)) + "\\n"``."""
        if self.encode is None:
            raise RuntimeError("this BudgetVocab was packed for the rollout process and has no encoder yet")
        return self.encode("\n" + self.tags.wrap_reflection(reflection_text(used, remaining)) + "\n")


def _build_vocab(tokenizer: Any, tags: ThinkTags) -> BudgetVocab:
    encode = tokenizer.encode
    ids = {name: tuple(encode(text)) for name, text in (
        ("open", tags.open), ("close", tags.close), ("end", "\n" + tags.close), ("wait", WAIT_TEXT),
        ("exhausted", "\n" + tags.wrap_reflection(BUDGET_EXHAUSTED_TEXT) + "\n" + tags.close))}
    for name in ("open", "close", "wait"):
        if not ids[name]:
            raise ValueError(f"the {name} text of the thinking format encodes to no tokens; tags: {tags}")
    stop_ids = frozenset(int(i) for i in (getattr(tokenizer, "stop_token_ids", ()) or ()))
    eos = getattr(tokenizer, "eos_token_id", None)
    eos_id = int(eos) if eos is not None else min(stop_ids, default=None)
    return BudgetVocab(tags, ids["open"], ids["close"], ids["end"], ids["exhausted"], ids["wait"], stop_ids, eos_id,
                       encode)


@functools.lru_cache(maxsize=16)
def _cached_vocab(tokenizer: Any, tags: ThinkTags) -> BudgetVocab:
    return _build_vocab(tokenizer, tags)


def budget_vocab(tokenizer: Any, tags: ThinkTags | None = None) -> BudgetVocab:
    """The `BudgetVocab` of ``tokenizer`` (cached per tokenizer object and tag set).

    Args:
        tokenizer: anything with ``encode(text) -> list[int]``, ``stop_token_ids`` and
            ``eos_token_id`` (e.g. ``thinkrl.tokenizer.TextTokenizer``).
        tags: the thinking format; None takes ``tokenizer.think_tags``.

    Raises:
        TypeError: no ``encode``, or ``tags`` is not a `ThinkTags`.
        ValueError: a tag encodes to no tokens.
    """
    if not callable(getattr(tokenizer, "encode", None)):
        raise TypeError(f"tokenizer must have an encode(text) method, got {type(tokenizer).__name__}")
    tags = getattr(tokenizer, "think_tags", None) if tags is None else tags
    if not isinstance(tags, ThinkTags):
        raise TypeError(f"tags must be a ThinkTags (pass tags= when the tokenizer has no think_tags), got {tags!r}")
    try:
        return _cached_vocab(tokenizer, tags)
    except TypeError:  # an unhashable duck-typed tokenizer: build without the cache
        return _build_vocab(tokenizer, tags)


def _ends_with(ids: Sequence[int], tag: tuple[int, ...]) -> bool:
    """True when ``ids`` ends with ``tag`` (O(len(tag)))."""
    n = len(tag)
    return len(ids) >= n and ids[-1] == tag[-1] and (n == 1 or tuple(ids[-n:]) == tag)


def _check_count(name: str, value: object, allow_none: bool = False, minimum: int = 0) -> None:
    """Raise TypeError unless ``value`` is an int (or None when allowed), ValueError if below ``minimum``."""
    if value is None and allow_none:
        return
    allowed = f"{'None or ' if allow_none else ''}an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {allowed}, got {value}")


class ThinkingBudgetController:
    """Counts the thinking tokens of one sequence and forces reflections and the end of thinking.

    Build it with `make_budget_controller`; one instance per request (it keeps state).

    Attributes (read them after generation, e.g. for evaluation):
        thinking_tokens: sampled tokens inside the thinking block so far.
        answer_tokens: sampled tokens after the thinking block.
        forced_end: True once enforcement forced the end of thinking at the budget.
        closed_at_stop: True when enforcement turned a stop token sampled inside thinking into the end of it.
        num_reflections: budget reflections forced.
        num_waits: close tags / stop tokens replaced by "Wait" below the floor.
        phase: "before" (waiting for the model to open thinking), "thinking" or "answer".
    """

    def __init__(self, vocab: BudgetVocab, thinking_budget: int, *, enforce: bool = True, reflect: bool = False,
                 min_thinking_tokens: int = 0, exhausted_sentence: bool = True,
                 max_answer_tokens: int | None = None, thinking_open: bool = False,
                 reflect_interval: int | None = None) -> None:
        """Args: ``vocab`` from `budget_vocab`; the others as in `make_budget_controller` (which also returns
        None instead of a controller that would never act). Raises TypeError / ValueError naming a bad value."""
        budget = check_thinking_budget(thinking_budget)
        for name, flag in (("enforce", enforce), ("reflect", reflect), ("exhausted_sentence", exhausted_sentence),
                           ("thinking_open", thinking_open)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        _check_count("min_thinking_tokens", min_thinking_tokens)
        _check_count("max_answer_tokens", max_answer_tokens, allow_none=True)
        _check_count("reflect_interval", reflect_interval, allow_none=True, minimum=1)
        if enforce and budget >= 0 and min_thinking_tokens > budget:
            raise ValueError(f"min_thinking_tokens ({min_thinking_tokens}) must be <= thinking_budget ({budget}) "
                             "when the budget is enforced")
        if max_answer_tokens is not None and vocab.eos_id is None:
            raise ValueError("max_answer_tokens needs an eos token, but the tokenizer has none")
        self.vocab = vocab
        self.thinking_budget = budget
        self.min_thinking_tokens = min_thinking_tokens
        self.max_answer_tokens = max_answer_tokens
        self.interval = (reflection_interval(budget) if reflect_interval is None else reflect_interval) if (
            reflect and budget > 0) else 0
        self._limit = budget if enforce and budget != UNLIMITED_BUDGET else None
        self._eos = [] if vocab.eos_id is None else [vocab.eos_id]
        self._end_ids = list(vocab.exhausted_end_ids if exhausted_sentence else vocab.end_ids)
        self._answer_bans = [vocab.open_ids[0]] if self._limit is not None and len(vocab.open_ids) == 1 else []
        self._next_reflection: int | None = self.interval if 0 < self.interval < budget else None
        self._run = 0  # sampled thinking tokens since the last forced one (to uncount a multi-token close tag)
        self.thinking_tokens = 0
        self.answer_tokens = 0
        self.forced_end = False
        self.closed_at_stop = False
        self.num_reflections = 0
        self.num_waits = 0
        self.phase: Phase = "thinking" if thinking_open else ("answer" if budget == 0 else "before")

    @property
    def thinking_finished(self) -> bool:
        """True once the thinking block is closed (for budget 0 without ``thinking_open``: from the start)."""
        return self.phase == "answer"

    @property
    def kept_budget(self) -> bool:
        """The adherence rule: not left inside a thinking block, and at most ``thinking_budget`` thinking tokens
        (any count for an unlimited budget; a response that never opened thinking thought 0 tokens)."""
        return self.phase != "thinking" and (self.thinking_budget < 0 or self.thinking_tokens <= self.thinking_budget)

    @property
    def active(self) -> bool:
        """False when this controller can never ban, replace or force anything."""
        return bool(self._limit is not None or self._next_reflection is not None or self.min_thinking_tokens
                    or self.max_answer_tokens is not None)

    # ---- SequenceController ------------------------------------------------------------
    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        """The open tag in the answer when the budget is enforced (thinking must not resume); else nothing."""
        return self._answer_bans if self.phase == "answer" else []

    def replacement_tokens(self, response_ids: list[int], token: int) -> list[int]:
        """Tokens to force instead of the sampled ``token`` (which is then dropped); [] keeps it.

        Below the floor a close tag or stop token becomes "Wait"; a thinking token past an
        enforced budget of 0 (``thinking_open``) becomes the end of thinking; with enforcement a stop
        token inside thinking becomes the end of thinking too (so enforced thinking always closes).
        """
        if self.phase != "thinking":
            return []
        if self._limit is not None and self.thinking_tokens >= self._limit:
            return self._end_thinking()
        if self.thinking_tokens < self.min_thinking_tokens and (token in self.vocab.stop_ids or self._completes_close(
                response_ids, token)):
            self.num_waits += 1
            self._run = 0
            return list(self.vocab.wait_ids)
        if self._limit is not None and token in self.vocab.stop_ids:
            # Enforced thinking ends with the close tag: a stop token sampled inside it becomes the end of
            # thinking (no "exhausted" sentence: the budget was not used up), and the model answers.
            self.phase = "answer"
            self.closed_at_stop = True
            return list(self.vocab.end_ids)
        return []

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        """Update the counts with the last (sampled) token of ``response_ids``; return the tokens to force."""
        if self.phase == "answer":
            if self._limit is None and _ends_with(response_ids, self.vocab.open_ids):
                self.phase = "thinking"  # unenforced, the model reopened thinking: it counts toward the budget
                return []
            self.answer_tokens += 1
            if self.answer_tokens == self.max_answer_tokens:  # once: the eos must be a stop token of the request
                return list(self._eos)
            return []
        if self.phase == "before":
            if _ends_with(response_ids, self.vocab.open_ids):
                self.phase = "thinking"
            return []
        if _ends_with(response_ids, self.vocab.close_ids):
            self.thinking_tokens -= min(len(self.vocab.close_ids) - 1, self._run)
            self.phase = "answer"
            return list(self._eos) if self.max_answer_tokens == 0 else []
        self.thinking_tokens += 1
        self._run += 1
        if self._limit is not None and self.thinking_tokens >= self._limit:
            return self._end_thinking()
        if self.thinking_tokens == self._next_reflection:
            return self._reflect()
        return []

    # ---- internals -----------------------------------------------------------------------
    def _completes_close(self, response_ids: list[int], token: int) -> bool:
        close = self.vocab.close_ids
        return token == close[-1] and (len(close) == 1 or _ends_with(response_ids, close[:-1]))

    def _end_thinking(self) -> list[int]:
        self.phase = "answer"
        self.forced_end = True
        return self._end_ids + (self._eos if self.max_answer_tokens == 0 else [])

    def _reflect(self) -> list[int]:
        used = self.thinking_tokens
        nxt = used + self.interval
        self._next_reflection = nxt if nxt < self.thinking_budget else None
        self.num_reflections += 1
        self._run = 0
        return self.vocab.reflection_ids(used, self.thinking_budget - used)

    def __repr__(self) -> str:
        return (f"ThinkingBudgetController(budget={self.thinking_budget}, phase={self.phase!r}, "
                f"thinking_tokens={self.thinking_tokens}, answer_tokens={self.answer_tokens}, "
                f"forced_end={self.forced_end})")


def make_budget_controller(tokenizer: Any, thinking_budget: int, *, enforce: bool = True, reflect: bool = False,
                           min_thinking_tokens: int = 0, exhausted_sentence: bool = True,
                           max_answer_tokens: int | None = None, thinking_open: bool = False,
                           tags: ThinkTags | None = None,
                           reflect_interval: int | None = None) -> ThinkingBudgetController | None:
    """A thinking-budget controller for one request, or None when there is nothing to control.

    Args:
        tokenizer: the request's tokenizer (``encode``, ``stop_token_ids``, ``eos_token_id``, ``think_tags``).
        thinking_budget: -1 unlimited, 0 answer at once (the prompt closed the thinking block), > 0 tokens.
        enforce: force the end of thinking right after ``thinking_budget`` thinking tokens.
        reflect: force a budget reflection every reflection interval (below the budget).
        min_thinking_tokens: s1 floor: below it a close tag or stop token is replaced by "Wait".
        exhausted_sentence: write `BUDGET_EXHAUSTED_TEXT` (in reflection tags) before the forced close tag.
        max_answer_tokens: force the eos token after this many sampled answer tokens (None: no limit).
        thinking_open: the prompt already opened the thinking block; otherwise thinking starts
            when the model writes the open tag.
        tags: the thinking format (None: ``tokenizer.think_tags``).
        reflect_interval: override the Seed-OSS interval table (``reflection_interval(budget)``),
            e.g. for short tests; the reflection sentence is unchanged.

    Returns:
        A fresh `ThinkingBudgetController`, or None when it would never act (e.g. budget -1
        without a floor or answer limit, or a reflect-only budget below its first interval).

    Raises:
        TypeError / ValueError: a bad budget, count, flag or tokenizer (the message names it).
    """
    controller = ThinkingBudgetController(
        budget_vocab(tokenizer, tags), thinking_budget, enforce=enforce, reflect=reflect,
        min_thinking_tokens=min_thinking_tokens, exhausted_sentence=exhausted_sentence,
        max_answer_tokens=max_answer_tokens, thinking_open=thinking_open, reflect_interval=reflect_interval)
    return controller if controller.active else None
