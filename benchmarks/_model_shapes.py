"""The `thinkrl.model.ModelConfig` fields the benchmarks' model-size tables set, as TypedDicts: a table entry spread
into ``ModelConfig(vocab_size=..., **MODELS[name])`` is then checked field by field (a plain dict of ints is not)."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ModelShape(TypedDict):
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int


class TiedModelShape(ModelShape):
    """A shape whose LM head is the input embedding."""

    tie_word_embeddings: bool


class SizedModelShape(ModelShape):
    """A shape with its vocabulary."""

    vocab_size: int
    tie_word_embeddings: NotRequired[bool]
