"""`_strip_stop` (the stop strings ending a reply are cut before it is split into thinking and answer) gives what the
slicing loop it replaced gave, on derandomized inputs made of stop strings, whitespace and text; it walks an index
back instead of copying the reply per stop string, so thousands of them in a model's reply cost linear time. One
change: where two stop strings end the text, the longer is cut (the loop cut the one listed last: "a</s>" with
"</s>" and "s>" became "a</"), so the reference tries them shortest first."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from thinkrl.tokenizer.parse import _strip_stop


def old_strip_stop(text: str, stop_strings: Iterable[str]) -> str:
    """The replaced implementation (reference): one rstrip-and-slice pass per stop string cut; stops shortest first,
    so that the longest match is the one cut."""
    stops = tuple(sorted((s for s in stop_strings if s), key=len))
    changed = True
    while changed:
        changed = False
        stripped = text.rstrip()
        for stop in stops:
            if stripped.endswith(stop):
                text, changed = stripped[: -len(stop)], True
    return text


STOPS = ["</s>", "s>", "<|eot|>", "\n\n", "END", "", "D"]
PIECES = st.sampled_from(STOPS[:5] + [" ", "\n", "\t", "\u3000", "a", "answer 42", "E", "N"])
TEXT = st.lists(PIECES, max_size=30).map("".join)


@settings(derandomize=True, max_examples=800, deadline=None)
@given(TEXT, st.lists(st.sampled_from(STOPS), max_size=4))
def test_matches_the_slicing_loop(text: str, stops: list[str]) -> None:
    assert _strip_stop(text, stops) == old_strip_stop(text, stops)


def test_many_stop_strings_are_all_cut() -> None:
    text = "the answer is 7" + " </s>\n" * 50_000
    assert _strip_stop(text, ["</s>"]) == "the answer is 7 "
    assert _strip_stop("x" + "END" * 20_000, ["END"]) == "x"
    assert _strip_stop("xEND", ["END", "D"]) == "x"  # the longer of two matching stops, whatever their order
    assert _strip_stop("a</s>", ["</s>", "s>"]) == "a"
    assert _strip_stop("a</s>", ["s>", "</s>"]) == "a"
