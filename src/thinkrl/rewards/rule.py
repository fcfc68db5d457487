"""Rule-based scoring of a completion: parse the chat output, then ask the task's exact verifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from thinkrl.tasks import Problem, Task
from thinkrl.tokenizer import ThinkTags, parse_completion


@dataclass(frozen=True)
class RuleScore:
    """A verifier's judgement of one response.

    Fields:
        correct: the final answer is right.
        reason: "correct", the verifier's reason ("wrong value", "illegal numbers", "unparseable",
            "no answer"), or "truncated" when generation hit its length limit.
        answer: the content after the thinking block (what was verified).
    """

    correct: bool
    reason: str
    answer: str


def score_response(task: Task, problem: Problem | Mapping[str, Any], text: str, tags: ThinkTags,
                   finished: bool) -> RuleScore:
    """Score ``text`` (decoded with special tokens kept).

    Truncated output (``finished`` False) and a thinking block that never closed are wrong:
    the answer must follow a finished thought.
    """
    parsed = parse_completion(text, tags)
    if not finished:
        return RuleScore(False, "truncated", parsed.content)
    if not parsed.thinking_finished and tags.open in text:
        return RuleScore(False, "no answer", "")
    verdict = task.verify(problem, parsed.content)
    return RuleScore(verdict.reward > 0, verdict.reason, parsed.content)
