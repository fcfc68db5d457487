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
# A number not glued to letters ("AZYUK2A" has none): a leading-zero decimal comma (0,5), thousands
# groups (1,000 / 1{,}000 / 1\,000 / 1 000), a decimal comma (2,74), a/b, a decimal, \frac{a}{b}.
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z\d.,])(?:-?\\frac\{\d+\}\{\d+\}|-?0,\d+"
    r"|-?[1-9]\d{0,2}(?:(?:,|\{,\}|\\,|[ \u00a0\u2009\u202f])\d{3})+(?:\.\d+)?(?!\d)"
    r"|-?\d+,(?!\d{3}(?!\d))\d+|-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+)"
)
# A bare number found by the last fallback counts only when stated as a result: after a cue word or
# sign ("= 15", "gives 4.2", "#### 18", "costs \$5"), before "in total" / "left", or alone on its line.
_PRE_CUE_RE = re.compile(
    r"(?:[=:]|####|\b(?:is|it's|are|was|were|be|equals?|gives?|get|gets|got|makes?|has|have|had|costs?|totals?|"
    r"leaves?|remains?|thus|therefore|hence|so|yields?|obtain|obtains|obtained|needs?|needed|takes?|took|"
    r"earns?|earned|pays?|paid|spends?|spent|sells?|sold|buys?|bought|answer|result|sum|comes? to)\b)"
    r"(?:\s|\\\$|\$|\*|\b(?:of|about|only|exactly|approximately|just|now|then|a total of)\b)*$",
    re.IGNORECASE,
)
_POST_CUE_RE = re.compile(r"\s*(?:[A-Za-z]+\s+)?(?:in total|in all|altogether|total|left|remaining)\b", re.IGNORECASE)
_LINE_START_RE = re.compile(r"(?:^|\n)[\s$*>#-]*$")
_CUE_WINDOW = 80
_REFERENCE_BOX_WORDS = 3  # boxes of a reference parted by at most this many words form one list
_SOLUTION_WORDS = 5  # a reference with this many words is a worked solution, not an answer


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


def final_boxed(text: str, max_words: int = 0) -> str | None:
    r"""The last box, joined with the boxes just before it that only separators part (``1, 2``).

    With ``max_words``, boxes parted by at most that many words (``oxed{1} papers and oxed{2}``)
    join too; a box repeated with the same content counts once.
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    first = len(boxes) - 1
    while first > 0 and _joins(text[boxes[first - 1][1]:boxes[first][0]], max_words):
        first -= 1
    contents = dict.fromkeys(strip_delimiters(content) for _, _, content in boxes[first:])
    return ", ".join(contents)


def _joins(gap: str, max_words: int) -> bool:
    if _BOX_GAP_RE.fullmatch(gap):
        return True
    return max_words > 0 and len(gap) < 80 and "\n" not in gap and len(gap.split()) <= max_words


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
    spans = _final_spans(line)
    if spans is not None:
        return spans
    if _WORDY_RE.search(line):
        return _last_number(line) or line
    return line


def _final_spans(line: str) -> str | None:
    """The last math span of an answer line, joined with the spans before it that only separators part
    (``$12$ and $13$`` is ``12, 13``)."""
    spans = list(_MATH_SPAN_RE.finditer(line))
    if not spans:
        return None
    first = len(spans) - 1
    while first > 0 and _BOX_GAP_RE.fullmatch(line, spans[first - 1].end(), spans[first].start()):
        first -= 1
    return ", ".join(next(g for g in m.groups() if g is not None).strip() for m in spans[first:])


def _last_math_span(text: str) -> tuple[int, str] | None:
    """End position and content of the last math span in the text's last `_MAX_LINE` characters."""
    last = None
    for last in _MATH_SPAN_RE.finditer(text, max(0, len(text) - _MAX_LINE)):  # noqa: B007 (the last match)
        pass
    return (last.end(), next(g for g in last.groups() if g is not None)) if last else None


def _last_math(text: str) -> str | None:
    """Whichever of the last math span and the last number stated as a result ends later in the text."""
    span = _last_math_span(text)
    number = _last_number_match(text)
    if number is not None and not _stated_as_result(text, number[0] - len(number[1]), number[0]):
        number = None
    if span is None or (number is not None and number[0] > span[0]):
        return number[1] if number else None
    return span[1]


def _stated_as_result(text: str, start: int, end: int) -> bool:
    """True if the number at ``text[start:end]`` follows a cue, precedes "in total"/"left", or starts its line."""
    before = text[max(0, start - _CUE_WINDOW):start]
    return bool(_PRE_CUE_RE.search(before) or _LINE_START_RE.search(before)
                or _POST_CUE_RE.match(text, end, min(len(text), end + _CUE_WINDOW)))


def _last_number_match(text: str) -> tuple[int, str] | None:
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007 (we want the last match)
        pass
    return (last.end(), last.group()) if last else None


def _last_number(text: str) -> str | None:
    found = _last_number_match(text)
    return found[1] if found else None


def last_boxes(text: str, count: int) -> str | None:
    """The last ``count`` top-level boxes after the thinking block joined as a list (None if there are fewer)."""
    boxes = _boxes(_after_thinking(text))
    if count < 1 or len(boxes) < count:
        return None
    return ", ".join(strip_delimiters(content) for _, _, content in boxes[-count:])


def _after_thinking(text: str) -> str:
    closes = list(_THINK_CLOSE_RE.finditer(text))
    return text[closes[-1].end():] if closes else text


def _answer_after_last_box(text: str) -> str | None:
    """What an "answer is" statement after the last box says, if it states a number or maths (else None)."""
    boxes = _boxes(text)
    matches = list(_ANSWER_WORD_RE.finditer(text, boxes[-1][1])) if boxes else []
    if not matches:
        return None
    found = _after_answer_word(text[matches[0].start():])
    return found if found and re.search(r"[\d\\]", found) else None


def extract_answer(text: str) -> str | None:
    """The final answer of a response (see the module docstring), stripped of delimiters; None if none."""
    if not isinstance(text, str):
        raise TypeError(f"response must be a str, got {type(text).__name__}")
    text = _after_thinking(text)
    for rule in (_answer_after_last_box, final_boxed, _answer_tag, _after_answer_word, _last_math):
        found = rule(text)
        if found is not None:
            inner = final_boxed(found) if rule is not final_boxed else None
            answer = strip_delimiters(inner if inner is not None else found)
            if answer:
                return answer
    return None


def extract_reference(reference: str) -> str:
    r"""The reference answer itself: the content of its final ``\boxed{}`` if it has one.

    Boxes parted by at most three words join into one list (``\boxed{1} papers and \boxed{2} bins``
    is ``1, 2``: a reference is written by a person, and such boxes are parts of one answer); a
    response's boxes join only across separators (`final_boxed`), since its earlier boxes may be
    drafts. A reference without a box that reads as a worked solution (five or more words) is
    reduced to its final answer by the rules of `extract_answer`.
    """
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a str, got {type(reference).__name__}")
    boxed = final_boxed(reference, max_words=_REFERENCE_BOX_WORDS)
    if boxed is None and len(_WORDY_RE.findall(reference)) >= _SOLUTION_WORDS:
        boxed = extract_answer(reference)  # a worked solution given as the reference: its final answer
    return strip_delimiters(boxed if boxed is not None else reference)
