"""`TextTokenizer`: text <-> token ids and chat rendering for any Hugging Face tokenizer folder.

Backed directly by the fast `tokenizers.Tokenizer` (no transformers import), it
reads a folder as transformers writes it: ``tokenizer.json``,
``tokenizer_config.json`` (special tokens, ``chat_template``), optionally
``chat_template.jinja`` (which wins over the config's template),
``special_tokens_map.json`` and ``generation_config.json`` (extra stop ids).

``encode`` never adds special tokens: prompts get their turn tokens from the
chat template, so ``encode(apply_chat_template(...))`` is the model input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer

from thinkrl.tokenizer.budget import SEED_TAGS, ThinkTags, check_thinking_budget, tags_for_format
from thinkrl.tokenizer.chat_template import compile_chat_template, read_template, render_chat_template

BUILTIN_DIR = Path(__file__).parent / "builtin"
ThinkFormat = Literal["seed", "think"]

# End-of-turn tokens that stop generation when the vocabulary has them as added tokens.
_END_OF_TURN_TOKENS = ("<seed:eos>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>")


class TextTokenizer:
    """A fast tokenizer with its special tokens and chat template.

    Args:
        backend: the `tokenizers.Tokenizer`.
        bos_token / eos_token / pad_token: special-token strings (None when absent).
        chat_template: jinja2 source of the chat template (None: `apply_chat_template` raises).
        template_origin: where the template came from, for error messages.
        extra_stop_ids: ids that also end generation (e.g. from ``generation_config.json``).
        name_or_path: the folder it was loaded from.

    Raises:
        ValueError: a special token is not in the vocabulary, or the template does not compile.
    """

    def __init__(
        self,
        backend: Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
        template_origin: str = "<string>",
        extra_stop_ids: Iterable[int] = (),
        name_or_path: str = "",
    ) -> None:
        if not isinstance(backend, Tokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        self._backend = backend
        self.name_or_path = name_or_path
        self.special_tokens = {"bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token}
        self.bos_token_id, self.eos_token_id, self.pad_token_id = (
            self._special_id(name, token) for name, token in self.special_tokens.items()
        )
        self.chat_template = chat_template
        self._template_origin = template_origin
        self._template = None if chat_template is None else compile_chat_template(chat_template, template_origin)
        self.stop_token_ids = self._collect_stop_ids(extra_stop_ids)
        self.think_format = self._infer_think_format()

    def _special_id(self, name: str, token: str | None) -> int | None:
        if token is None:
            return None
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{name} {token!r} of tokenizer {self.name_or_path!r} is not in its vocabulary")
        return token_id

    def _collect_stop_ids(self, extra_stop_ids: Iterable[int]) -> tuple[int, ...]:
        added = {token.content for token in self._backend.get_added_tokens_decoder().values()}
        ids = [self.eos_token_id] + [self._backend.token_to_id(t) for t in _END_OF_TURN_TOKENS if t in added]
        ids += [int(i) for i in extra_stop_ids]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    def _infer_think_format(self) -> ThinkFormat | None:
        template = self.chat_template or ""
        if "<seed:think>" in template:
            return "seed"
        if "<think>" in template:
            return "think"
        if self.token_to_id("<seed:think>") is not None:
            return "seed"
        if self.token_to_id("<think>") is not None:
            return "think"
        return None

    @property
    def backend(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Number of tokens, added tokens included (the model's embedding may be padded larger)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def think_tags(self) -> ThinkTags:
        """Tags of `think_format` (`SEED_TAGS` when the format is unknown)."""
        return SEED_TAGS if self.think_format is None else tags_for_format(self.think_format)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in it become their ids; nothing is added."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts at once (parallel in the Rust backend)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("encode_batch expects a list of str")
        # encode_batch_fast (tokenizers >= 0.21) skips offsets; fall back on older releases.
        batch_encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        encodings = batch_encode(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of token ``ids``; with ``skip_special_tokens`` the special tokens are left out.

        Raises:
            ValueError: an id is outside ``[0, vocab_size)``.
        """
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token``, or None if it is not in the vocabulary."""
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Token string of ``token_id``, or None if out of range."""
        return self._backend.id_to_token(token_id)

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        thinking_budget: int | None = None,
        **kwargs: Any,
    ) -> str:
        """Render a conversation with the chat template.

        Args:
            messages: ``[{"role": "user", "content": "..."}, ...]``; assistant
                messages may carry ``reasoning_content`` and ``tool_calls``.
            add_generation_prompt: end with the opening of the assistant turn
                (for budget 0 the Seed-OSS templates also close an empty thinking block).
            thinking_budget: None or -1 unlimited, 0 answer at once, > 0 tokens
                (passed to the template only when not None).
            **kwargs: other template variables, e.g. ``tools=[...]``.

        Raises:
            ValueError: no chat template, a bad budget, or the template failed on these messages.
        """
        if self._template is None:
            raise ValueError(
                f"tokenizer {self.name_or_path!r} has no chat template; put one in tokenizer_config.json "
                "or chat_template.jinja, or pass chat_template= to load_tokenizer"
            )
        variables = {**self.special_tokens, **kwargs}
        if thinking_budget is not None:
            variables["thinking_budget"] = check_thinking_budget(thinking_budget)
        return render_chat_template(
            self._template,
            messages,
            origin=self._template_origin,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        thinking_budget: int | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """``encode(apply_chat_template(...))``: the prompt ids of a conversation."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt, thinking_budget, **kwargs))

    def __repr__(self) -> str:
        return f"TextTokenizer({self.name_or_path!r}, vocab_size={self.vocab_size}, think_format={self.think_format!r})"


def _token_content(value: Any) -> str | None:
    """A special token from a config: a string, or a dict with ``content`` (older transformers)."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _folder_template(folder: Path, config: Mapping[str, Any]) -> tuple[str | None, str]:
    """The folder's chat template: ``chat_template.jinja`` first, then the config's."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8"), str(jinja_file)
    template = config.get("chat_template")
    origin = str(folder / "tokenizer_config.json")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, Mapping)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"chat_template in {origin} must be a string, got {type(template).__name__}")
    return template, origin


def load_tokenizer(path: str | Path = "builtin", chat_template: str | Path | None = None) -> TextTokenizer:
    """Load a tokenizer folder (``"builtin"`` for thinkrl's own).

    Args:
        path: ``"builtin"`` or a folder holding ``tokenizer.json`` (a Hugging Face tokenizer folder).
        chat_template: override the folder's template with a shipped one
            (``"seed_oss"``, ``"think"``) or a ``.jinja`` file.

    Raises:
        FileNotFoundError: the folder or its ``tokenizer.json`` does not exist.
        ValueError: a file is malformed, a special token is missing, or the template does not compile.
    """
    folder = BUILTIN_DIR if str(path) == "builtin" else Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {folder} does not exist (or use 'builtin')")
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"{folder} has no tokenizer.json; thinkrl loads fast tokenizers only "
            "(transformers' save_pretrained of a fast tokenizer writes one)"
        )
    try:
        backend = Tokenizer.from_file(str(tokenizer_file))
    except Exception as error:  # tokenizers raises a bare Exception on malformed files
        raise ValueError(f"{tokenizer_file} is not a valid tokenizers file: {error}") from error
    config = _read_json(folder / "tokenizer_config.json")
    special_map = _read_json(folder / "special_tokens_map.json")
    specials = {
        key: _token_content(config.get(key, special_map.get(key))) for key in ("bos_token", "eos_token", "pad_token")
    }
    if chat_template is None:
        template, origin = _folder_template(folder, config)
    else:
        template, origin = read_template(chat_template)
    generation_eos = _read_json(folder / "generation_config.json").get("eos_token_id", [])
    extra_stop_ids = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    return TextTokenizer(
        backend,
        **specials,
        chat_template=template,
        template_origin=origin,
        extra_stop_ids=extra_stop_ids,
        name_or_path=str(path),
    )
