"""load_tokenizer on foreign folders: errors, template sources, stop ids, think-format inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from thinkrl.tokenizer import TextTokenizer, load_tokenizer

QWEN_LIKE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def _write_folder(folder: Path, *, config: dict | None = None, jinja: str | None = None) -> Path:
    """A small word-level tokenizer folder with Qwen-style special tokens."""
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if jinja is not None:
        (folder / "chat_template.jinja").write_text(jinja)
    return folder


def test_missing_folder_and_missing_tokenizer_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_malformed_files_raise_value_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizers file"):
        load_tokenizer(tmp_path)
    folder = _write_folder(tmp_path / "cfg")
    (folder / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_tokenizer(folder)


def test_bad_template_in_folder_names_the_file(tmp_path):
    folder = _write_folder(tmp_path, config={"eos_token": "<|im_end|>"}, jinja="{% for %}")
    with pytest.raises(ValueError, match=r"chat_template.jinja does not compile"):
        load_tokenizer(folder)


def test_special_token_not_in_vocab(tmp_path):
    folder = _write_folder(tmp_path, config={"eos_token": "</s>"})
    with pytest.raises(ValueError, match="eos_token '</s>'"):
        load_tokenizer(folder)


def test_qwen_like_folder(tmp_path):
    config = {
        "eos_token": {"content": "<|im_end|>", "special": True},  # older dict form
        "pad_token": "<|endoftext|>",
        "chat_template": "ignored: chat_template.jinja wins",
    }
    folder = _write_folder(tmp_path, config=config, jinja=QWEN_LIKE_TEMPLATE)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [5, 3, 7]}))
    tok = load_tokenizer(folder)
    im_end, endoftext = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    assert (im_end, endoftext) == (5, 3)
    assert tok.eos_token_id == im_end and tok.pad_token_id == endoftext and tok.bos_token_id is None
    assert tok.stop_token_ids == (im_end, endoftext, 7)  # eos, end-of-turn tokens, generation_config
    assert tok.think_format == "think"
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}])
    assert prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert tok.encode("hello world") == [1, 2]
    assert tok.encode_batch(["hello", "world hello"]) == [[1], [2, 1]]


def test_config_template_list_form_and_no_template(tmp_path):
    listed = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
    tok = load_tokenizer(_write_folder(tmp_path / "a", config=listed))
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "D"
    bare = load_tokenizer(_write_folder(tmp_path / "b"))
    assert bare.think_format == "think"  # from the vocabulary: it has <think> but no <seed:think>
    with pytest.raises(ValueError, match="has no chat template"):
        bare.apply_chat_template([{"role": "user", "content": "x"}])


def test_template_override(tmp_path):
    custom = tmp_path / "mine.jinja"
    custom.write_text("{{ messages[0].content }}!")
    tok = load_tokenizer("builtin", chat_template=custom)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi!"
    with pytest.raises(ValueError, match="neither a shipped template"):
        load_tokenizer("builtin", chat_template="qwen3")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer("builtin", chat_template=tmp_path / "missing.jinja")


def test_encode_decode_argument_checks():
    tok = load_tokenizer()
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(b"bytes")
    with pytest.raises(TypeError, match="list of str"):
        tok.encode_batch("one string")
    with pytest.raises(ValueError, match="token id 512 is outside"):
        tok.decode([0, 512])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    assert tok.decode([]) == ""
    assert tok.token_to_id("not-a-token-at-all") is None
    assert tok.encode_batch(["a 1", ""]) == [tok.encode("a 1"), []]
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        TextTokenizer("not a backend")
