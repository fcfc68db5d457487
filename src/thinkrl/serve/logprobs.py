"""Log-probs in the API shapes: chat (``content`` list with ``top_logprobs``) and legacy completions.

Inputs are per generated token: the id, its log-prob (0.0 for tokens the engine forced) and,
when asked, the k most likely ``(id, logprob)`` pairs of the distribution it was sampled
from (empty for forced tokens). A token's text is its own decode, so a character split over
byte-level tokens shows as U+FFFD in single tokens (its ``bytes`` are exact only for whole
characters), as in vLLM.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from thinkrl.serve.responses import (
    ChatLogprobs,
    CompletionLogprobs,
    TokenLogprob,
    TopLogprob,
    finite_logprob,
)

TopList = list[tuple[int, float]]
"""The k most likely (token id, log-prob) pairs of one position."""


def _text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id])


def chat_logprobs(tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float],
                  tops: Sequence[TopList] | None) -> ChatLogprobs:
    """``{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}`` for ``ids``."""
    content = []
    for position, (token_id, logprob) in enumerate(zip(ids, logprobs, strict=True)):
        text = _text(tokenizer, token_id)
        alternatives = [] if tops is None else [
            TopLogprob(token=(t := _text(tokenizer, i)), logprob=finite_logprob(lp), bytes=list(t.encode("utf-8")))
            for i, lp in tops[position]]
        content.append(TokenLogprob(token=text, logprob=finite_logprob(logprob), bytes=list(text.encode("utf-8")),
                                    top_logprobs=alternatives))
    return ChatLogprobs(content=content)


def completion_logprobs(tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float],
                        tops: Sequence[TopList] | None, text_offset: int = 0) -> CompletionLogprobs:
    """The legacy shape; ``text_offset`` is where the first token's text starts in the choice's text."""
    tokens = [_text(tokenizer, i) for i in ids]
    offsets = list(itertools.accumulate((len(t) for t in tokens[:-1]), initial=text_offset)) if tokens else []
    top = None if tops is None else [_top_dict(tokenizer, position) for position in tops]
    return CompletionLogprobs(tokens=tokens, token_logprobs=[finite_logprob(lp) for lp in logprobs],
                              text_offset=offsets, top_logprobs=top)


def _top_dict(tokenizer: Any, pairs: TopList) -> dict[str, float]:
    """Text -> log-prob, most likely first; two ids with the same text keep the likelier one."""
    out: dict[str, float] = {}
    for token_id, logprob in pairs:
        out.setdefault(_text(tokenizer, token_id), finite_logprob(logprob))
    return out
