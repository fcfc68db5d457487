"""The built-in BPE: special ids, digits, exact ASCII round trip, regeneration, transformers parity."""

from __future__ import annotations

import json
import random
import string

import pytest

from thinkrl.tokenizer import BUILTIN_DIR, load_tokenizer
from thinkrl.tokenizer.builtin import SPECIAL_TOKENS, build_corpus, write_builtin


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("builtin")


def _random_ascii(rng: random.Random, max_len: int = 80) -> str:
    # Mostly words and digits, with every printable character (whitespace included) possible.
    pieces = [" ", "\n", "the", "answer", "24", " = ", "(", "<seed", ">", "  ", "\t"] + list(string.printable)
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, max_len)))


def test_special_token_ids_match_seed_oss(tok):
    assert tok.token_to_id("<seed:bos>") == 0 == tok.bos_token_id
    assert tok.token_to_id("<seed:pad>") == 1 == tok.pad_token_id
    assert tok.token_to_id("<seed:eos>") == 2 == tok.eos_token_id
    assert tok.stop_token_ids == (2,)
    assert tok.vocab_size <= 512
    added = {t.content: t.special for t in tok.backend.get_added_tokens_decoder().values()}
    for token in SPECIAL_TOKENS:
        assert added.get(token) is True, token


def test_special_tokens_are_never_split(tok):
    text = "<seed:think>a<seed:cot_budget_reflect>b</seed:cot_budget_reflect></seed:think><think></think>"
    ids = tok.encode(text)
    tokens = [tok.id_to_token(i) for i in ids]
    assert tokens == [
        "<seed:think>", "a", "<seed:cot_budget_reflect>", "b", "</seed:cot_budget_reflect>",
        "</seed:think>", "<think>", "</think>",
    ]  # fmt: skip
    assert tok.decode(ids, skip_special_tokens=True) == "ab"


def test_every_digit_is_its_own_token(tok):
    text = "12345 + 67890 = 80235, x9 (3.14)"
    tokens = [tok.id_to_token(i) for i in tok.encode(text)]
    digit_tokens = [t for t in tokens if any(ch.isdigit() for ch in t)]
    assert digit_tokens == list("1234567890" + "80235" + "9" + "314")
    for digit in string.digits:
        assert tok.encode(digit) == [tok.token_to_id(digit)]


def test_printable_ascii_round_trips_exactly(tok):
    unk = tok.token_to_id("<unk>")
    rng = random.Random(1234)
    samples = [_random_ascii(rng) for _ in range(400)] + [string.printable, "", " ", "\n\n", "  lead and trail  "]
    for text in samples:
        ids = tok.encode(text)
        assert unk not in ids, repr(text)
        assert tok.decode(ids) == text, repr(text)


def test_decode_is_concatenation_of_token_texts(tok):
    # The Fuse decoder makes decoding additive, which streaming detokenization relies on.
    text = "Let me try (8 - 2) * (7 - 3) = 24.\n<seed:eos>"
    ids = tok.encode(text)
    assert "".join(tok.decode([i]) for i in ids) == text
    assert tok.decode(ids[:5]) + tok.decode(ids[5:]) == text


def test_non_ascii_becomes_unk(tok):
    ids = tok.encode("caf\u00e9")
    assert ids[-1] == tok.token_to_id("<unk>")
    assert tok.decode(ids, skip_special_tokens=True) == "caf"


def test_common_words_are_single_tokens(tok):
    for word in (" answer", " think", " tokens", " remaining", " numbers", " target", " try", " use", " budget"):
        assert len(tok.encode(word)) == 1, word
    # The reflection sentence stays short: 21 tokens for 67 characters.
    assert len(tok.encode("I have used 129 tokens, and there are 383 tokens remaining for use.")) == 21


def test_corpus_is_plain_ascii_without_special_tokens():
    corpus = build_corpus()
    assert all(set(line) <= set(string.printable) for line in corpus)
    assert not any(special in line for line in corpus for special in SPECIAL_TOKENS)


def test_regenerating_gives_identical_files(tmp_path):
    write_builtin(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).read_bytes() == (BUILTIN_DIR / name).read_bytes(), name


def test_config_carries_the_seed_oss_template():
    config = json.loads((BUILTIN_DIR / "tokenizer_config.json").read_text())
    template = (BUILTIN_DIR.parent / "templates" / "seed_oss.jinja").read_text()
    assert config["chat_template"] == template
    assert (config["bos_token"], config["pad_token"], config["eos_token"]) == ("<seed:bos>", "<seed:pad>", "<seed:eos>")


def test_transformers_autotokenizer_agrees(tok):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(BUILTIN_DIR))
    assert (hf.bos_token_id, hf.pad_token_id, hf.eos_token_id) == (0, 1, 2)
    assert len(hf) == tok.vocab_size
    rng = random.Random(7)
    texts = [_random_ascii(rng) for _ in range(50)]
    texts.append("<seed:bos>user\nUse 3, 7, 8, 2 to make 24.<seed:eos><seed:bos>assistant\n<seed:think>hmm")
    for text in texts:
        ids = tok.encode(text)
        assert hf.encode(text) == ids, repr(text)
        assert hf.decode(ids) == tok.decode(ids) == text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    for budget in (None, 0, 512, 1000, 5000):
        extra = {} if budget is None else {"thinking_budget": budget}
        expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        assert tok.apply_chat_template(messages, thinking_budget=budget) == expected
