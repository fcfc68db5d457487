r"""Answer normalisation stays linear on long runs of ``$``, ``\,`` and spaces, and gives what it gave before.

`normalize_answer` once took quadratic time on such runs (8,000 ``$`` took seconds): the degree and percent patterns
began with ``\s*``, so a run of n spaces was rescanned from each of its n positions. The reference below is that
implementation (the changed patterns and functions copied, the unchanged parts imported); a derandomized hypothesis
test compares the two on inputs made of those runs, and a 200,000-character run must finish far within a limit the
quadratic version misses by orders of magnitude (it needs minutes; the linear one, milliseconds).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrl.rewards.math import normalize
from thinkrl.rewards.math.normalize import normalize_answer, text_key

# --- the reference: normalize_answer and text_key as they were before the fix -------------------------------------
_OLD_DEGREE_RE = re.compile(
    r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|\^\s*\{\s*\\degree\s*\}|"
    r"(?<![A-Za-z\\])degrees?(?![A-Za-z]))"
)
_OLD_PERCENT_RE = re.compile(r"\s*(?:\\?%|(?<![A-Za-z\\])percent(?:age)?(?![A-Za-z]))")


def _old_unwrap(text: str) -> str:
    pattern = re.compile(r"\\(" + "|".join(normalize._WRAPPERS) + r")\s*\{")
    out: list[str] = []
    pos = 0
    while True:
        match = pattern.search(text, pos)
        if match is None:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:match.start()])
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        content = text[match.end():i - 1] if depth == 0 else text[match.end():]
        if content.strip().lower().replace("\\", "") in normalize._UNIT_SET:
            tail = re.match(r"\s*\^\s*\{?[23]\}?", text[i:])
            i += tail.end() if tail else 0
            content = " "
        out.append(content)
        pos = i


def old_normalize_answer(text: str) -> str:
    """The quadratic implementation (reference)."""
    text = normalize.strip_delimiters(text)
    text = normalize._UNICODE_RE.sub(lambda m: normalize._UNICODE[m.group()], text)
    text = text.replace("\\$", " ").replace("$", " ")
    text = _old_unwrap(text)
    text = re.sub(r"(?<=\d),\s*\\[!,]\s*(?=\d)", ",", text)
    text = re.sub(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d)", "{,}", text)
    if "\\begin" not in text:
        text = re.sub(r"\\\\(?=[A-Za-z])", r"\\", text)
    text = normalize._SPACING_RE.sub(lambda m: m.group() if m.group() == "\\\\" else " ", text)
    text = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", text)
    text = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", text)
    text = _OLD_DEGREE_RE.sub(r"\\degree ", text)
    text = _OLD_PERCENT_RE.sub(r"\\% ", text)
    text = normalize._UNIT_RE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = normalize.strip_delimiters(text).rstrip(",;:").strip()
    words = normalize._TRAILING_WORDS_RE.fullmatch(text)
    if words and not set(text[words.end(1):].split()) & normalize._KEEP_WORDS:
        text = words.group(1)
    if normalize._THOUSANDS_RE.fullmatch(text):
        text = re.sub(r",|\{,\}| ", "", text)
    return text


def old_text_key(text: str) -> str:
    """`text_key` over the reference normalisation."""
    key = re.sub(r"[\s{}\\$.]|\btext\b|\bmathrm\b", "", old_normalize_answer(text).lower())
    if re.fullmatch(r"\([a-z]\)", key):
        key = key[1]
    return key


# --- generated inputs: runs of delimiters, spacing and braces around what the changed patterns match ---------------
PIECES = [
    "$", "$$", "\\$", "\\,", "\\!", "\\;", "\\ ", "~", " ", "  ", "\t", "\n", "\u00a0", "{", "}", "{,}", "{ , }",
    "%", "\\%", " percent", "percentage", "^\\circ", "^{\\circ}", "\\circ", "\\degree", "^{\\degree}", " degrees",
    "°", "\\text{", "\\text{ cm}", "\\mathrm{kg}", "^2", "^{3}", "cm", " inches", "1", "12", "1,000", "1\\,000",
    ",", ".", "(", ")", "a", "x", "(C)", "\\(", "\\)", "\\[", "\\]", "\\left(", "\\right)", "\\dfrac{1}{2}", "**",
    "−", "apples", "text", "\\\\",
]
RUNS = st.tuples(st.sampled_from(PIECES), st.integers(1, 40)).map(lambda piece: piece[0] * piece[1])
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), RUNS), max_size=25).map("".join)


@settings(derandomize=True, max_examples=600, deadline=None)
@given(TEXT)
def test_normalize_answer_and_text_key_match_the_quadratic_reference(text: str) -> None:
    assert normalize_answer(text) == old_normalize_answer(text)
    assert text_key(text) == old_text_key(text)


@pytest.mark.parametrize("text", ["$" * 3000, "\\," * 1500, " $ \\, " * 500, "5" + " " * 3000 + "\\%",
                                  "90" + "$" * 2000 + "^\\circ", "\\text{cm}" * 400 + "^2"])
def test_long_runs_match_the_reference(text: str) -> None:
    assert normalize_answer(text) == old_normalize_answer(text)
    assert text_key(text) == old_text_key(text)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Raise TimeoutError when the block runs past ``seconds`` (SIGALRM; the regex engine checks for signals)."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("text, normalized", [
    ("$" * 200_000, ""),
    ("\\," * 100_000, ""),
    ("$ " * 100_000, ""),
    ("7" + "$" * 200_000 + "\\%", "7\\%"),
    ("\\text{cm}" * 25_000, ""),
])
def test_huge_runs_finish(text: str, normalized: str) -> None:
    # Milliseconds with linear matching; the quadratic version needs about half an hour for 200,000 "$" here.
    with within(30):
        assert normalize_answer(text) == normalized
        assert text_key(text) == normalized.lower().replace("\\", "")
