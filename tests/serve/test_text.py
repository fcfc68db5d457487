"""Streamed text adds up to the final text: incremental decoding, stop-string hold-back, reasoning split."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from thinkrl.serve.text import ChatSplitter, IncrementalText, StreamedChat, prompt_thinking_state
from thinkrl.tokenizer import SEED_TAGS, THINK_TAGS, TextTokenizer, load_tokenizer

TOK = load_tokenizer("builtin")
REFLECTION = "<seed:cot_budget_reflect>I have used 3 tokens, and there are 5 tokens remaining for use." \
             "</seed:cot_budget_reflect>"


def _byte_level_tokenizer() -> TextTokenizer:
    """A byte-level BPE (as GPT-2/Qwen use) whose vocabulary has no merges for CJK characters."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"])
    backend.train_from_iterator(["hello world", "hello again"], trainer)
    return TextTokenizer(backend, eos_token="<eos>")


def test_incremental_text_waits_for_whole_characters() -> None:
    tok = _byte_level_tokenizer()
    text = "héllo 中文 world ünïcode"
    ids = tok.encode(text)
    assert len(ids) > len(text) // 2 and tok.decode(ids) == text
    assert any("\ufffd" in tok.decode(ids[:k]) for k in range(len(ids)))  # cut mid-character somewhere
    inc = IncrementalText(tok)
    seen = [inc.push([i]) for i in ids]
    assert all("\ufffd" not in s and text.startswith(s) for s in seen)
    assert seen[-1] == text


def test_incremental_text_holds_back_a_possible_stop_string() -> None:
    text = "hello world and hello again"
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    inc = IncrementalText(TOK, stop_strings=("lo ag", "x"))
    final = text[: text.find("lo ag")]  # what the engine's trajectory text would be
    seen = [inc.push([i]) for i in ids]
    assert all(final.startswith(s) for s in seen)  # "hel" of "hello again" was never sent early
    assert seen[-1] == final
    # Before the stop string completes, at most len("lo ag") - 1 characters are held back.
    complete = next(k for k in range(len(ids)) if "lo ag" in TOK.decode(ids[: k + 1]))
    assert len(seen[complete - 1]) >= len(TOK.decode(ids[:complete])) - 4


def test_prompt_thinking_state() -> None:
    assert prompt_thinking_state(TOK.apply_chat_template([{"role": "user", "content": "hi"}]), SEED_TAGS) == "none"
    assert prompt_thinking_state(TOK.apply_chat_template([{"role": "user", "content": "hi"}], thinking_budget=0),
                                 SEED_TAGS) == "closed"
    assert prompt_thinking_state("<|im_start|>assistant\n<think>\n", THINK_TAGS) == "open"
    assert prompt_thinking_state("<think>a</think>b<|im_start|>assistant\n", THINK_TAGS) == "none"


@pytest.mark.parametrize(("text", "state", "reasoning", "content"), [
    (f"<seed:think>plan it\n{REFLECTION}\nthen more</seed:think>\nThe answer is 5", "none",
     "plan it\nthen more", "The answer is 5"),
    ("plain answer</seed:think> tail", "none", "", "plain answer</seed:think> tail"),
    ("\n<seed:think>cut off while thin", "none", "cut off while thin", ""),
    ("still thinking</seed:think>answer", "open", "still thinking", "answer"),
    ("answer only", "closed", "", "answer only"),
    (f"\n{REFLECTION}\nanswer", "closed", "", "answer"),
])
def test_streamed_chat_deltas_add_up_to_the_final_split(text: str, state: str, reasoning: str, content: str) -> None:
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    final = ChatSplitter(SEED_TAGS, state).split(text, final=True)
    assert final is not None and (final.reasoning_content, final.content) == (reasoning, content)
    streamed = StreamedChat(TOK, ChatSplitter(SEED_TAGS, state))
    deltas = [streamed.push([i]) for i in ids] + [streamed.finish(text)]
    assert "".join(d.reasoning for d in deltas) == reasoning
    assert "".join(d.content for d in deltas) == content
    if content and reasoning:  # reasoning streams before the answer starts
        first_content = next(k for k, d in enumerate(deltas) if d.content)
        assert all(not d.reasoning for d in deltas[first_content:])


SEED_CALL = "<seed:tool_call>\n<function=calc>\n<parameter=expr>2+3</parameter>\n</function>\n</seed:tool_call>"
JSON_CALL = '<tool_call>\n{"name": "calc", "arguments": {"expr": "2+3"}}\n</tool_call>'


@pytest.mark.parametrize(("tags", "text", "forced", "content", "num_calls"), [
    (SEED_TAGS, f"<seed:think>use the tool</seed:think>Let me compute.\n{SEED_CALL}\n{SEED_CALL}", "",
     "Let me compute.", 2),
    (SEED_TAGS, "\n<function=calc>\n<parameter=expr>2+3</parameter>\n</function>\n</seed:tool_call>after",
     "<seed:tool_call>", "after", 1),
    (THINK_TAGS, f"<think>plan</think>Sure: {JSON_CALL}\nDone.", "", "Sure: Done.", 1),
    (THINK_TAGS, f"<think>plan</think>a <tool_cal b {JSON_CALL}", "", "a <tool_cal b", 1),
])
def test_streamed_tool_calls_arrive_when_their_block_closes(tags, text: str, forced: str, content: str,
                                                            num_calls: int) -> None:
    final = ChatSplitter(tags, "none", forced).split(text, final=True)
    assert final is not None and final.content == content and len(final.tool_calls) == num_calls
    streamed = StreamedChat(TOK, ChatSplitter(tags, "none", forced))
    ids = TOK.encode(text)
    deltas = []
    for k, token in enumerate(ids):
        piece = streamed.push([token])
        deltas.append(piece)
        for call in piece.tool_calls:  # a call is announced only once its closing tag is in the text
            assert call.ok and TOK.decode(ids[: k + 1]).count(tags.tool_close) >= 1
    deltas.append(streamed.finish(text))
    assert "".join(d.content for d in deltas) == content
    calls = [c for d in deltas for c in d.tool_calls]
    assert [(c.name, c.arguments) for c in calls] == [("calc", {"expr": "2+3"})] * num_calls


def test_tool_blocks_stay_content_when_tools_are_off() -> None:
    text = f"Here: {SEED_CALL}"
    split = ChatSplitter(SEED_TAGS, "none", parse_tools=False).split(text, final=True)
    assert split is not None and split.content == text and split.tool_calls == []
