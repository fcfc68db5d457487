"""Client-side thinking-budget control for any OpenAI-compatible server (vLLM, SGLang, thinkrl).

The server only needs the raw completions API (``POST /v1/completions``). Two requests:

1. **think**: the rendered prompt, ``max_tokens = thinking_budget`` and ``stop = [close tag]``.
   The model either closes its thinking (finish "stop") or runs out of budget
   (finish "length"); ``usage.completion_tokens`` is the thinking-token count.
2. **answer**: prompt + thinking + the end of thinking (the close tag; when the
   budget ran out, first the "I have exhausted my token budget..." reflection),
   with ``max_tokens = max_answer_tokens``.

With budget 0 the first request is skipped: Seed-OSS-style templates already close an
empty thinking block for budget 0, and otherwise an empty block is appended.

Compared with engine-side enforcement (``thinking_budget`` on thinkrl's chat API):
the prompt is re-tokenized after the thinking, so the token boundaries at the cut may
differ from what the model sampled; the thinking request stops at the budget, not at
the reflection interval, so no periodic reflections are inserted; and it costs a
second request (a second prefill, mostly served from the prefix cache of servers
that have one). It works against servers you cannot change.

Server notes: vLLM drops special tokens from text by default; for models whose thinking
tags are special tokens pass ``extra_body={"skip_special_tokens": False}`` (and
``"add_special_tokens": False`` when the rendered prompt already holds the BOS token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from thinkrl.tokenizer.budget import BUDGET_EXHAUSTED_TEXT, SEED_TAGS, ThinkTags, check_thinking_budget
from thinkrl.tokenizer.parse import parse_completion


@dataclass
class BudgetedCompletion:
    """The result of `generate_with_budget`.

    Fields:
        reasoning: the thinking (budget reflections removed).
        answer: the text after the thinking.
        thinking_tokens: tokens generated while thinking (``usage.completion_tokens`` of request 1).
        answer_tokens: tokens generated for the answer.
        forced: True when the budget ran out and the end of thinking was appended by the client.
        raw_text: everything generated or appended after the prompt, in order.
        finish_reason: finish reason of the answer request ("stop" or "length").
    """

    reasoning: str
    answer: str
    thinking_tokens: int
    forced: bool
    raw_text: str
    answer_tokens: int = 0
    finish_reason: str = "stop"


def end_of_thinking(tags: ThinkTags, announce: bool) -> str:
    """Text the client appends when the budget runs out: the exhausted reflection (if ``announce``), the close tag.

    Follows the Seed-OSS model card: ``\\n<reflect>I have exhausted ...</reflect>\\n</think>``.
    """
    reflection = f"\n{tags.wrap_reflection(BUDGET_EXHAUSTED_TEXT)}" if announce else ""
    return f"{reflection}\n{tags.close}"


def render_prompt(messages_or_prompt: str | Sequence[Mapping[str, Any]], thinking_budget: int,
                  tokenizer: Any | None) -> str:
    """The prompt text: a string as given, or messages rendered with ``tokenizer``'s chat template.

    ``tokenizer`` may be a thinkrl `TextTokenizer` or a transformers tokenizer; the budget is
    passed to the template as ``thinking_budget`` (None for unlimited).

    Raises:
        ValueError: messages without a tokenizer.
        TypeError: ``messages_or_prompt`` is neither a string nor a list of messages.
    """
    if isinstance(messages_or_prompt, str):
        return messages_or_prompt
    if not isinstance(messages_or_prompt, Sequence) or not all(isinstance(m, Mapping) for m in messages_or_prompt):
        raise TypeError(f"messages_or_prompt must be a str or a list of message dicts, got {messages_or_prompt!r}")
    if tokenizer is None:
        raise ValueError("messages need a tokenizer to render them; pass tokenizer= or a rendered prompt string")
    budget = None if thinking_budget == -1 else thinking_budget
    text = tokenizer.apply_chat_template(list(messages_or_prompt), add_generation_prompt=True, tokenize=False,
                                         thinking_budget=budget)
    if not isinstance(text, str):
        raise TypeError(f"tokenizer.apply_chat_template returned {type(text).__name__}, expected str")
    return text


def _complete(client: httpx.Client, base_url: str, payload: dict[str, Any]) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of one raw completion request."""
    response = client.post(f"{base_url.rstrip('/')}/completions", json=payload)
    if response.status_code != 200:
        raise RuntimeError(f"completion request failed with HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    choice = body["choices"][0]
    return choice["text"], int(body["usage"]["completion_tokens"]), choice.get("finish_reason") or "stop"


def generate_with_budget(
    base_url: str,
    model: str,
    messages_or_prompt: str | Sequence[Mapping[str, Any]],
    thinking_budget: int,
    max_answer_tokens: int,
    *,
    think_tags: ThinkTags = SEED_TAGS,
    tokenizer: Any | None = None,
    client: httpx.Client | None = None,
    announce_exhausted: bool = True,
    max_thinking_tokens: int | None = None,
    sampling: Mapping[str, Any] | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> BudgetedCompletion:
    """Generate with at most ``thinking_budget`` thinking tokens, then at most ``max_answer_tokens`` more.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model id the server knows.
        messages_or_prompt: the rendered prompt text, or chat messages (then ``tokenizer`` renders them
            with the budget, as the server's own template would).
        thinking_budget: 0 answer at once, N tokens, or -1 unlimited (then ``max_thinking_tokens`` caps it).
        max_answer_tokens: limit of the answer request.
        think_tags: the model's thinking tags (`SEED_TAGS` or `THINK_TAGS`).
        tokenizer: renders messages (thinkrl `TextTokenizer` or a transformers tokenizer).
        client: the HTTP client (default: a new one with a 600 s timeout, closed afterwards).
        announce_exhausted: write the "I have exhausted my token budget" reflection before the forced close tag.
        max_thinking_tokens: ``max_tokens`` of the thinking request for budget -1 (required then).
        sampling: sampling fields sent with both requests (``temperature``, ``top_p``, ``seed``...).
        extra_body: server-specific fields sent with both requests (e.g. vLLM's ``skip_special_tokens``).

    Raises:
        ValueError / TypeError: a bad budget, limit or prompt.
        RuntimeError: the server answered with an error.
    """
    budget = check_thinking_budget(thinking_budget)
    if isinstance(max_answer_tokens, bool) or not isinstance(max_answer_tokens, int) or max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens must be an int >= 1, got {max_answer_tokens!r}")
    if budget == -1 and (max_thinking_tokens is None or max_thinking_tokens < 1):
        raise ValueError(f"thinking_budget -1 needs max_thinking_tokens >= 1 to cap the thinking request, "
                         f"got {max_thinking_tokens!r}")
    prompt = render_prompt(messages_or_prompt, budget, tokenizer)
    common = {"model": model, **(sampling or {}), **(extra_body or {})}
    own_client = client is None
    http = client or httpx.Client(timeout=600.0)
    try:
        thinking, thinking_tokens, forced = _think(http, base_url, prompt, budget, max_thinking_tokens, think_tags,
                                                   announce_exhausted, common)
        answer, answer_tokens, finish = _complete(
            http, base_url, {**common, "prompt": prompt + thinking, "max_tokens": max_answer_tokens})
    finally:
        if own_client:
            http.close()
    opened = think_tags.ends_inside_thinking(prompt)
    reasoning = parse_completion(thinking, think_tags, thinking_open=opened).reasoning_content if thinking else ""
    return BudgetedCompletion(reasoning=reasoning, answer=answer.strip(), thinking_tokens=thinking_tokens,
                              forced=forced, raw_text=thinking + answer, answer_tokens=answer_tokens,
                              finish_reason=finish)


def _think(http: httpx.Client, base_url: str, prompt: str, budget: int, max_thinking_tokens: int | None,
           tags: ThinkTags, announce: bool, common: dict[str, Any]) -> tuple[str, int, bool]:
    """The thinking request: (thinking text ending with the close tag, tokens generated, forced)."""
    if budget == 0:
        if prompt.rstrip().endswith(tags.close):  # the template closed an empty block already
            return "", 0, False
        opened = tags.ends_inside_thinking(prompt)
        return ("" if opened else tags.open) + f"\n{tags.close}", 0, False
    limit = max_thinking_tokens if budget == -1 else budget
    text, tokens, finish = _complete(http, base_url, {**common, "prompt": prompt, "max_tokens": limit,
                                                      "stop": [tags.close]})
    if finish == "length":
        return text + end_of_thinking(tags, announce), tokens, True
    return text + tags.close, tokens, False
