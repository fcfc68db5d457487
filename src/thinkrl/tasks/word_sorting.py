"""Word sorting: sort words in ASCII order, ascending or descending.

Prompt::

    Sort these words in ascending ASCII order (compare character by character by
    character code, so every upper-case letter comes before every lower-case
    letter, and a word comes before any longer word that starts with it):
    pear, Apple, bread, apple
    Answer with the sorted words separated by a comma and a space, for example
    one, two, three.

Verification: the answer is split on commas and spaces; a token that is not a
word of letters is "unparseable"; another multiset of words than the given one
(a word missing, added, repeated or re-cased) is "illegal numbers"; the words
in another order is "wrong value".

Trace: the words grouped by first letter in sort order, ties inside a group
explained by the first differing letter, then the list. A noisy trace
misorders one pair of neighbours.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping
from itertools import groupby
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, check_length, require_strings
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.words import WORDS

_SEPARATORS = re.compile(r"[,\s]+")


def first_difference(a: str, b: str) -> str:
    """Why ``a`` sorts before ``b``: the first differing letter, or that ``a`` is a prefix of ``b``."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"letter {i + 1}: {x} < {y}"
    return f"{a} is a prefix of {b}"


def parse_words(answer: str) -> list[str]:
    """Words separated by commas and/or spaces; AnswerFormatError on a token that is not letters."""
    check_length(answer)
    tokens = [t for t in _SEPARATORS.split(answer.strip()) if t]
    for token in tokens:
        if not (token.isascii() and token.isalpha()):
            raise AnswerFormatError(f"{token[:30]!r} is not a word of letters")
    return tokens


@TASKS.register("word_sorting")
class WordSortingTask(Task):
    """Sort words by ASCII code, ascending or descending."""

    name = "word_sorting"
    difficulty_knobs = (
        Knob("num_words", int, 6, 2, 40, "how many words"),
        Knob("mixed_case", bool, False, help="capitalise some words (upper case sorts before lower case)"),
        Knob("allow_descending", bool, True, help="half the problems ask for descending order"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Distinct random words, some capitalised if mixed_case, and a random direction."""
        words = rng.sample(WORDS, difficulty["num_words"])
        if difficulty["mixed_case"]:
            words = [w.capitalize() if rng.random() < 0.4 else w for w in words]
        descending = difficulty["allow_descending"] and rng.random() < 0.5
        direction = "descending" if descending else "ascending"
        rule = "after" if descending else "before"
        prompt = (
            f"Sort these words in {direction} ASCII order (compare character by character by character code, so "
            f"every upper-case letter comes {rule} every lower-case letter, and a word comes {rule} any longer "
            f"word that starts with it):\n{', '.join(words)}\n"
            "Answer with the sorted words separated by a comma and a space, for example one, two, three."
        )
        solution = ", ".join(sorted(words, reverse=descending))
        return prompt, {"words": words, "descending": descending, "solution": solution}

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The sorted words and the direction."""
        words = require_strings(ground_truth, "words")
        return f"{sorted(words)}:{require(ground_truth, 'descending', bool)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Same words (case-sensitive), in sorted order."""
        words = require_strings(ground_truth, "words")
        descending = require(ground_truth, "descending", bool)
        try:
            given = parse_words(answer)
        except AnswerFormatError as error:
            return Verdict.wrong("unparseable", str(error))
        if Counter(given) != Counter(words):
            missing = sorted((Counter(words) - Counter(given)).elements())
            extra = sorted((Counter(given) - Counter(words)).elements())
            return Verdict.wrong(ILLEGAL, f"words differ: missing {missing[:5]}, not given {extra[:5]}")
        expected = sorted(words, reverse=descending)
        if given != expected:
            i = next(i for i, (a, b) in enumerate(zip(given, expected, strict=True)) if a != b)
            return Verdict.wrong("wrong value", f"position {i + 1} should be {expected[i]!r}, not {given[i]!r}")
        return Verdict.right("sorted")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Groups by first letter with tie-breaks; noise swaps one neighbouring pair."""
        noise = check_noise(noise)
        words = require_strings(problem.ground_truth, "words")
        descending = require(problem.ground_truth, "descending", bool)
        ordered = sorted(words, reverse=descending)
        swap = rng.randrange(len(ordered) - 1) if len(ordered) > 1 and rng.random() < noise else -1
        if swap >= 0:
            ordered[swap], ordered[swap + 1] = ordered[swap + 1], ordered[swap]
        lines = []
        for letter, group in groupby(ordered, key=lambda w: w[0]):
            members = list(group)
            line = f"{letter}: {', '.join(members)}"
            if len(members) > 1:
                pairs = [(a, b) if not descending else (b, a) for a, b in zip(members, members[1:], strict=False)]
                line += " (" + "; ".join(first_difference(a, b) for a, b in pairs) + ")"
            lines.append(line)
        return Trace("\n".join(lines), ", ".join(ordered))
