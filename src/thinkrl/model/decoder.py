"""The decoder: one implementation of the Llama family (Llama, Qwen2, Qwen3, Seed-OSS).

Contract:
- ``forward(input_ids, position_ids, cu_seqlens)`` is the packed training forward:
  S sequences concatenated into one row of N tokens, positions restarting per
  sequence; attention never crosses a sequence boundary and the linear layers
  never see a padding token. Returns final-normed hidden states; call
  ``lm_head`` (or ``logits``) only on the positions you need.
- ``forward_cached(input_ids, step, cache)`` is the generation forward: new
  tokens of S sequences, padded to (S, Q), written into a `KVCache` at their
  absolute positions, each attending to its own cached prefix.
- ``forward_decode(input_ids, positions, cache, context_len)`` is the same for one
  token per cache slot 0..S-1 with shapes fixed by (S, context_len) and no host
  sync, so the engine can capture it in a CUDA graph (``thinkrl.engine.cuda_graph``).
Out of scope: tokenization, sampling, scheduling (see ``thinkrl.engine``).

Attention kernels: packed attention (``thinkrl.model.packed_attention``) uses
``torch.nn.attention.varlen`` (flash) on CUDA when available; elsewhere it scatters
q/k/v into (S, T) buffers of sequences of similar length and runs causal SDPA, so
only the attention core touches padding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from thinkrl.model.config import ModelConfig
from thinkrl.model.kv_cache import CachedStep, CachedWrite, KVCache
from thinkrl.model.layers import MoE, RMSNorm, SwiGLU, apply_rope, rope_cos_sin, rope_inverse_frequencies
from thinkrl.model.packed_attention import PackedLayout, packed_attention

_PREFILL_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def cached_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of new tokens over their cached prefix.

    q: (S, H, Q, D); keys, values: (S, K, T, D) (views into the cache are fine);
    bias: (S, 1, Q, T) float, 0 where allowed and -inf where masked -> (S, H, Q, D).
    Decode on CPU is dominated by per-call overhead, and one batched ``baddbmm``
    over (S*K) groups beats SDPA's masked CPU kernel by ~2x here; multi-token
    queries (prefill) go to SDPA (on CPU with the additive mask: it never builds the
    (S*K, G*Q, T) scores, 5x faster at 32 x 286 tokens, `thinkrl bench engine-cpu`).
    """
    s, h, q_len, d = q.shape
    kv = keys.shape[1]
    if q.is_cuda and q_len > 1:
        mask = bias > float("-inf")
        # Not cuDNN: it builds a plan per new (prompt, context) shape, which continuous batching keeps producing.
        with sdpa_kernel(_PREFILL_BACKENDS):
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=h != kv)
    if q_len > 1:  # CPU prefill: SDPA's fused kernel never materialises the (S*K, G*Q, T) scores and bias copy
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, enable_gqa=h != kv)
    return batched_attention(q, keys, values, bias)


def batched_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`cached_attention`'s CPU decode path: one ``baddbmm`` and one ``bmm`` over the (S*K) query groups, the
    scores materialised. Same shapes as `cached_attention`."""
    s, h, q_len, d = q.shape
    kv = keys.shape[1]
    group = h // kv
    ctx = keys.shape[2]
    qg = (q * d**-0.5).reshape(s * kv, group * q_len, d)  # [S*K, G*Q, D] (heads of a group are adjacent)
    bias_g = bias.unsqueeze(2).expand(s, kv, group, q_len, ctx)  # [S, K, G, Q, T], rows ordered like qg
    scores = torch.baddbmm(bias_g.reshape(s * kv, group * q_len, ctx), qg,
                           keys.reshape(s * kv, ctx, d).transpose(1, 2))  # [S*K, G*Q, T]
    out = torch.bmm(scores.softmax(-1), values.reshape(s * kv, ctx, d))  # [S*K, G*Q, D]
    return out.view(s, h, q_len, d)


class Attention(nn.Module):
    """Grouped-query attention with rotary embeddings and optional q/k RMSNorm (Qwen3)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c, d = config.hidden_size, config.head_dim
        assert d is not None
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, d
        self.q_proj = nn.Linear(c, self.num_heads * d, bias=config.attention_bias)
        self.k_proj = nn.Linear(c, self.num_kv_heads * d, bias=config.attention_bias)
        self.v_proj = nn.Linear(c, self.num_kv_heads * d, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.num_heads * d, c, bias=config.attention_out_bias)
        self.q_norm = RMSNorm(d, config.rms_norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(d, config.rms_norm_eps) if config.qk_norm else None
        self.attention_dropout = config.attention_dropout
        # q/k/v as one prepacked projection, set by `thinkrl.model.pack_linears` (returns None under autograd)
        self.fused_qkv: Callable[[torch.Tensor], torch.Tensor | None] | None = None
        self.rope_kernel: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None  # compiled rope of q and k

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (..., C) -> q (..., H, D), k and v (..., K, D), rotated."""
        lead = x.shape[:-1]
        qkv = self.fused_qkv(x) if self.fused_qkv is not None else None  # [..., (H + 2K) D] (inference, packed)
        if qkv is not None:
            q, k, v = qkv.split([self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim,
                                 self.num_kv_heads * self.head_dim], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(*lead, self.num_heads, self.head_dim)  # [..., H, D]
        k = k.view(*lead, self.num_kv_heads, self.head_dim)  # [..., K, D]
        v = v.view(*lead, self.num_kv_heads, self.head_dim)  # [..., K, D]
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_kernel is not None:  # compiled (`thinkrl.model.compile_pointwise`)
            q, k = self.rope_kernel(q, k, cos, sin)
            return q, k, v
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        """Packed: x (N, C), cos/sin (N, D) -> (N, C)."""
        q, k, v = self._qkv(x, cos, sin)
        dropout = self.attention_dropout if self.training else 0.0
        out = packed_attention(q, k, v, layout, dropout)  # [N, H, D]
        return self.o_proj(out.reshape(x.shape[0], -1))

    def forward_cached(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, step: CachedStep,
                       write: CachedWrite, attn_mask: torch.Tensor, cache_k: torch.Tensor,
                       cache_v: torch.Tensor) -> torch.Tensor:
        """Cached: x (M, C), the M valid new tokens -> (M, C); writes their k/v into the cache.

        The projections run on the M valid tokens only (a prefill padded to (S, Q) would multiply the padding
        too); only the attention core sees the padded (S, H, Q, D) layout.
        attn_mask: (S, 1, Q, context_len) float additive bias (0 allowed, -inf masked).
        """
        q, k, v = self._qkv(x, cos, sin)  # [M, H, D], [M, K, D], [M, K, D]
        cache_k[write.slots, :, write.positions] = k  # [M, K, D] into (slots, K, T, D)
        cache_v[write.slots, :, write.positions] = v
        ctx = step.context_len
        s, q_len = attn_mask.shape[0], attn_mask.shape[2]
        if step.slots_are_prefix:
            keys, values = cache_k[:s, :, :ctx], cache_v[:s, :, :ctx]  # [S, K, ctx, D] views
        else:
            keys, values = cache_k[step.slot_ids, :, :ctx], cache_v[step.slot_ids, :, :ctx]
        out = cached_attention(write.to_padded(q, s, q_len).transpose(1, 2), keys, values, attn_mask)  # [S, H, Q, D]
        return self.o_proj(write.from_padded(out.transpose(1, 2)).reshape(x.shape[0], -1))  # [M, C]


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ffn(norm(x)); residual dropout for Seed-OSS."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        if config.num_experts:
            self.mlp: nn.Module = MoE(
                config.hidden_size, config.moe_intermediate_size, config.num_experts,
                config.num_experts_per_tok, config.shared_expert_intermediate_size, config.norm_topk_prob,
            )
        else:
            self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, config.mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.residual_dropout = config.residual_dropout

    def _ffn(self, x: torch.Tensor, dropout: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        y, aux = self.mlp(self.post_attention_layernorm(x).reshape(-1, x.shape[-1]))
        return F.dropout(y.view(*lead, -1), self.residual_dropout, dropout), aux

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                layout: PackedLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed: x (N, C) -> ((N, C), aux_loss ())."""
        x = x + F.dropout(self.self_attn(self.input_layernorm(x), cos, sin, layout),
                          self.residual_dropout, self.training)
        y, aux = self._ffn(x, self.training)
        return x + y, aux

    def forward_cached(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, step: CachedStep,
                       write: CachedWrite, attn_mask: torch.Tensor,
                       cache_k: torch.Tensor, cache_v: torch.Tensor) -> torch.Tensor:
        """Cached: x (M, C) valid new tokens -> (M, C). Generation never applies dropout, even in train mode."""
        x = x + self.self_attn.forward_cached(
            self.input_layernorm(x), cos, sin, step, write, attn_mask, cache_k, cache_v
        )
        return x + self._ffn(x, dropout=False)[0]


@dataclass
class DecoderOutput:
    """Result of the packed forward.

    Fields:
        hidden: (N, C) final-normed hidden states.
        aux_loss: () MoE load-balancing loss, already scaled by router_aux_loss_coef (0 when dense).
    """

    hidden: torch.Tensor
    aux_loss: torch.Tensor


class DecoderModel(nn.Module):
    """Embeddings, layers and final norm (HF's ``model.*`` submodule)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class CausalLM(nn.Module):
    """Decoder-only language model; parameter names match HF ``*ForCausalLM`` checkpoints."""

    inv_freq: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        assert config.head_dim is not None
        inv_freq = rope_inverse_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.activation_checkpointing = False

    def init_weights(self, std: float = 0.02, seed: int | None = None) -> None:
        """Fresh init for training from scratch: N(0, std), output projections scaled by 1/sqrt(2L)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out_std = std / (2 * self.config.num_hidden_layers) ** 0.5
        for name, param in self.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    param.fill_(1.0)
                elif name.endswith(".bias"):
                    param.zero_()
                else:
                    scale = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                    param.copy_(torch.randn(param.shape, generator=gen) * scale)

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                cu_seqlens: torch.Tensor) -> DecoderOutput:
        """Packed forward.

        input_ids: (N,) long; position_ids: (N,) long, restarting at 0 per sequence;
        cu_seqlens: (S+1,) int, cumulative sequence lengths with cu_seqlens[-1] == N.
        """
        if input_ids.dim() != 1 or input_ids.shape != position_ids.shape:
            raise ValueError(
                f"input_ids and position_ids must both be (N,), got {tuple(input_ids.shape)} and "
                f"{tuple(position_ids.shape)}"
            )
        if int(cu_seqlens[-1]) != input_ids.shape[0]:
            raise ValueError(f"cu_seqlens[-1] ({int(cu_seqlens[-1])}) must equal N ({input_ids.shape[0]})")
        layout = PackedLayout.build(cu_seqlens.to(input_ids.device))
        x = self.model.embed_tokens(input_ids)  # [N, C]
        cos, sin = rope_cos_sin(position_ids, self.inv_freq, x.dtype)  # [N, D]
        aux_total = x.new_zeros((), dtype=torch.float32)
        for layer in self.model.layers:
            if self.activation_checkpointing and self.training:
                x, aux = checkpoint(layer, x, cos, sin, layout, use_reentrant=False)
            else:
                x, aux = layer(x, cos, sin, layout)
            aux_total = aux_total + aux
        return DecoderOutput(self.model.norm(x), aux_total * self.config.router_aux_loss_coef)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., C) -> logits (..., V)."""
        return self.lm_head(hidden)

    @torch.no_grad()
    def forward_cached(self, input_ids: torch.Tensor, step: CachedStep, cache: KVCache) -> torch.Tensor:
        """Generation forward over the cache.

        input_ids: (S, Q) long, new tokens (padding past ``step.query_lens`` is ignored).
        Returns final-normed hidden states (S, Q, C); rows past query_lens are garbage.
        """
        s, q_len = input_ids.shape
        cols = torch.arange(q_len, device=input_ids.device)
        positions = step.start_positions[:, None] + cols  # [S, Q]
        valid = cols[None, :] < step.query_lens[:, None]  # [S, Q]
        rows_idx, cols_idx = valid.nonzero(as_tuple=True)  # [M] each, row-major
        write = CachedWrite(rows_idx, cols_idx, step.slot_ids[rows_idx], positions[rows_idx, cols_idx],
                            dense=rows_idx.numel() == s * q_len)
        hidden = self._run_cached(write.from_padded(input_ids), write.positions, positions, step, write, cache)
        return write.to_padded(hidden, s, q_len)  # [S, Q, C]

    @torch.no_grad()
    def forward_decode(self, input_ids: torch.Tensor, positions: torch.Tensor, cache: KVCache,
                       context_len: int, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Fixed-shape decode of one token in each of the cache slots 0..S-1 (CUDA-graph capturable), or in the
        cache slots ``slots`` (S,) long when given (the rows gather their slots' keys: no padding rows).

        input_ids: (S,) long, the new token of slot i in row i; positions: (S,) long, its absolute
        position (the tokens already cached in slot i). Every row writes its key/value at
        (slot i, positions[i]) and attends to keys [0, context_len) of slot i up to its own position;
        shapes depend only on (S, context_len) and nothing syncs with the host. A row whose output is
        not used must still get a position that nothing reads before it is rewritten (the slot's next
        write position, or 0 for a free slot). Returns final-normed hidden states (S, C).
        """
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        targets = rows if slots is None else slots
        step = CachedStep(targets, positions, torch.ones_like(rows), context_len, slots_are_prefix=slots is None)
        write = CachedWrite(rows, torch.zeros_like(rows), targets, positions, dense=True)
        return self._run_cached(input_ids, positions, positions[:, None], step, write, cache)

    def _run_cached(self, input_ids: torch.Tensor, token_positions: torch.Tensor, positions: torch.Tensor,
                    step: CachedStep, write: CachedWrite, cache: KVCache) -> torch.Tensor:
        """Layers over the cache on the M valid tokens: input_ids and token_positions (M,) long, positions (S, Q)
        long (for the attention mask) -> hidden (M, C)."""
        key_pos = torch.arange(step.context_len, device=input_ids.device)
        x = self.model.embed_tokens(input_ids)  # [M, C]
        allowed = (key_pos[None, None, :] <= positions[:, :, None]).unsqueeze(1)  # [S, 1, Q, ctx]
        attn_mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        cos, sin = rope_cos_sin(token_positions, self.inv_freq, x.dtype)  # [M, D]
        layers = cast(Iterable[DecoderLayer], self.model.layers)  # an nn.ModuleList: its items are typed Module
        for layer, cache_k, cache_v in zip(layers, cache.keys, cache.values, strict=True):
            x = layer.forward_cached(x, cos, sin, step, write, attn_mask, cache_k, cache_v)
        return self.model.norm(x)

    def allocate_cache(self, num_slots: int, max_seq_len: int) -> KVCache:
        """A KV cache sized for this model, on its device and dtype."""
        c = self.config
        assert c.head_dim is not None
        return KVCache.allocate(c.num_hidden_layers, num_slots, c.num_key_value_heads, max_seq_len, c.head_dim,
                                self.dtype, self.device)
