"""Preallocated key/value cache with a fixed number of slots, one sequence per slot.

The cache knows nothing about requests or scheduling: the engine decides which
slot a sequence uses and how long it is. ``forward_cached`` writes the keys and
values of new tokens at their absolute positions and reads ``[0, context_len)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    """Per-layer key and value buffers.

    Fields:
        keys, values: lists over layers of (num_slots, K, max_seq_len, D) tensors.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(
        cls,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        max_seq_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        """Allocate zeroed buffers: 2 * L * slots * K * T * D elements."""
        shape = (num_slots, num_kv_heads, max_seq_len, head_dim)
        keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        return cls(keys, values)

    @property
    def num_slots(self) -> int:
        return self.keys[0].shape[0]

    @property
    def max_seq_len(self) -> int:
        return self.keys[0].shape[2]

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


@dataclass
class CachedStep:
    """Where the new tokens of one cached forward go.

    Fields:
        slot_ids: (S,) long — cache slot of each sequence.
        start_positions: (S,) long — tokens already in the cache for each sequence
            (the absolute position of its first new token).
        query_lens: (S,) long — number of new (non-padding) tokens per sequence, >= 0.
        context_len: int — keys are read from [0, context_len); at least
            max(start_positions + query_lens).
        slots_are_prefix: bool — slot_ids == arange(S), so the cache is read as a
            view instead of gathered (the decode fast path).
    """

    slot_ids: torch.Tensor
    start_positions: torch.Tensor
    query_lens: torch.Tensor
    context_len: int
    slots_are_prefix: bool = False


@dataclass
class CachedWrite:
    """Where the M valid new tokens of a cached forward sit in the padded (S, Q) layout and in the cache.

    Fields:
        rows, cols: (M,) long — row (sequence) and column (query index) of each valid token, row-major.
        slots, positions: (M,) long — its cache slot and absolute position.
        dense: bool — every (S, Q) cell is valid (M == S * Q), so padding and packing are views.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    slots: torch.Tensor
    positions: torch.Tensor
    dense: bool

    def to_padded(self, x: torch.Tensor, s: int, q_len: int) -> torch.Tensor:
        """x (M, ...) -> (S, Q, ...), zeros at padding."""
        if self.dense:
            return x.view(s, q_len, *x.shape[1:])
        return x.new_zeros(s, q_len, *x.shape[1:]).index_put_((self.rows, self.cols), x)

    def from_padded(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, Q, ...) -> (M, ...), the valid cells."""
        return x.reshape(-1, *x.shape[2:]) if self.dense else x[self.rows, self.cols]
