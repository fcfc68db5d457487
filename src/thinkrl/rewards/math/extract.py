r"""Find the final answer in a model's response.

`extract_answer` applies the first rule that matches, to the text after the last closing
thinking tag (``</think>``, ``</seed:think>``) if there is one:

1. the content of the last top-level ``\boxed{...}`` or ``\fbox{...}`` (nested braces are
   balanced; ``\boxed 5`` also works); boxes that end the text separated only by commas, "and",
   "or" or spacing (``\boxed{1}, \boxed{2}``) are one answer, the list ``1, 2``;
2. the content of the last ``<answer>...</answer>`` (an unclosed tag takes the rest of the text);
3. the rest of the line after the last "answer:" / "answer is" / "final answer is" (or the next
   non-empty line when nothing follows on that line), up to the end of its sentence; of that,
   what follows a last " is " ("The largest $n$ is 34."), then a math span (``$...$``,
   ``\(...\)``) in preference to words, and the last number when words remain;
4. the last math span (``$...$``, ``$$...$$``, ``\(...\)``, ``\[...\]``) in the text's tail, or
   the last number (integers, decimals, thousands separators, ``a/b``, ``\frac{a}{b}``) if that
   ends later.

Every scan is linear in the length of the text (span searches look at the last `_MAX_LINE`
characters), so megabyte-long responses cost milliseconds.
"""

from __future__ import annotations

import re

from thinkrl.rewards.math.normalize import strip_delimiters

_THINK_CLOSE_RE = re.compile(r"</(?:seed:)?think>")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_WORD_RE = re.compile(r"[^\s$]+")
_MAX_LINE = 4096  # the answer line is cut here before looking for a math span (keeps the scan linear)
_ANSWER_TAG_OPEN = "<answer>"
_ANSWER_TAG_CLOSE = "</answer>"
_ANSWER_WORD_RE = re.compile(r"\banswer\b\s*(?:is\b\s*[:=]?|[:=])", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(
    r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$((?:[^$\n\\]|\\.)+?)\$|\\\(((?:[^\n\\]|\\[^)])+?)\\\)|\\\[(.+?)\\\]",
    re.DOTALL,
)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|\bI hope\b|<\|")
_IS_RE = re.compile(r"\bis\s+")
_WORDY_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")
# What may separate boxes that together form one answer: spacing, commas, "and"/"or", math delimiters.
_BOX_GAP_RE = re.compile(
    r"(?:\s|[,;&$.]|\\quad|\\qquad|\\[,;!]|\\[()\[\]]|\band\b|\bor\b|\\text\{\s*(?:and|or|,)?\s*\})*"
)
_NUMBER_RE = re.compile(
    r"-?\\frac\{\d+\}\{\d+\}|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+"
)


def _braced(text: str, start: int) -> int:
    """Index just past the brace matching ``text[start] == '{'``, or -1 if it never closes."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _boxes(text: str) -> list[tuple[int, int, str]]:
    r"""``(start, end, content)`` of every top-level ``\boxed{}`` / ``\fbox{}``, left to right."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        match = _BOX_RE.search(text, pos)
        if match is None:
            return found
        start = match.end()
        if start < len(text) and text[start] == "{":
            end = _braced(text, start)
            if end < 0:
                return found
            found.append((match.start(), end, text[start + 1:end - 1]))
            pos = end
        else:
            word = _WORD_RE.match(text, start)
            if word and match.group().endswith((" ", "\t")):
                found.append((match.start(), word.end(), word.group()))
            pos = start


def last_boxed(text: str) -> str | None:
    r"""Content of the last top-level ``\boxed{}`` / ``\fbox{}`` (None if there is none)."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def final_boxed(text: str) -> str | None:
    r"""The last box, joined with the boxes just before it that only separators part (``1, 2``)."""
    boxes = _boxes(text)
    if not boxes:
        return None
    first = len(boxes) - 1
    while first > 0 and _BOX_GAP_RE.fullmatch(text, boxes[first - 1][1], boxes[first][0]):
        first -= 1
    return ", ".join(strip_delimiters(content) for _, _, content in boxes[first:])


def _answer_tag(text: str) -> str | None:
    start = text.rfind(_ANSWER_TAG_OPEN)
    if start < 0:
        return None
    start += len(_ANSWER_TAG_OPEN)
    end = text.find(_ANSWER_TAG_CLOSE, start)
    return text[start:] if end < 0 else text[start:end]


def _after_answer_word(text: str) -> str | None:
    matches = list(_ANSWER_WORD_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    lines = (line.strip() for line in rest.split("\n", 8))
    line = next((line for line in lines if line), "")[:_MAX_LINE]
    end = _SENTENCE_END_RE.search(line)
    line = line[:end.start()] if end else line
    is_matches = list(_IS_RE.finditer(line))
    if is_matches:
        line = line[is_matches[-1].end():]
    span = _last_math_span(line)
    if span is not None:
        return span[1]
    if _WORDY_RE.search(line):
        return _last_number(line) or line
    return line


def _last_math_span(text: str) -> tuple[int, str] | None:
    """End position and content of the last math span in the text's last `_MAX_LINE` characters."""
    last = None
    for last in _MATH_SPAN_RE.finditer(text, max(0, len(text) - _MAX_LINE)):  # noqa: B007 (the last match)
        pass
    return (last.end(), next(g for g in last.groups() if g is not None)) if last else None


def _last_math(text: str) -> str | None:
    """Whichever of the last math span and the last number ends later in the text."""
    span = _last_math_span(text)
    number = _last_number_match(text)
    if span is None or (number is not None and number[0] > span[0]):
        return number[1] if number else None
    return span[1]


def _last_number_match(text: str) -> tuple[int, str] | None:
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007 (we want the last match)
        pass
    return (last.end(), last.group()) if last else None


def _last_number(text: str) -> str | None:
    found = _last_number_match(text)
    return found[1] if found else None


def extract_answer(text: str) -> str | None:
    """The final answer of a response (see the module docstring), stripped of delimiters; None if none."""
    if not isinstance(text, str):
        raise TypeError(f"response must be a str, got {type(text).__name__}")
    closes = list(_THINK_CLOSE_RE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    for rule in (final_boxed, _answer_tag, _after_answer_word, _last_math):
        found = rule(text)
        if found is not None:
            inner = final_boxed(found) if rule is not final_boxed else None
            answer = strip_delimiters(inner if inner is not None else found)
            if answer:
                return answer
    return None


def extract_reference(reference: str) -> str:
    r"""The reference answer itself: the content of its final ``\boxed{}`` (see `final_boxed`) if it has one."""
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a str, got {type(reference).__name__}")
    boxed = final_boxed(reference)
    return strip_delimiters(boxed if boxed is not None else reference)
