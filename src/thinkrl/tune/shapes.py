"""The numbers of a decoder that the memory and time model needs, read from a Hugging Face ``config.json``.

`ModelShape` is built from `thinkrl.model.ModelConfig` (so every architecture thinkrl runs is read the way
thinkrl builds it), plus a small alias table for HF mixture-of-experts architectures whose decoder is a
thinkrl base with an MoE FFN (Qwen2-MoE, Qwen3-MoE, Mixtral): their keys are renamed to thinkrl's MoE keys.
Legend: L layers, C hidden size, H query heads, K KV heads, D head dim, I FFN width, V vocab, E experts,
k experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrl.model.config import ModelConfig, read_config_json

# HF architecture -> (thinkrl base architecture, {hf key: thinkrl key}); every layer is assumed to be MoE.
MOE_ALIASES: dict[str, tuple[str, dict[str, str]]] = {
    "Qwen2MoeForCausalLM": ("Qwen2ForCausalLM", {}),
    "Qwen3MoeForCausalLM": ("Qwen3ForCausalLM", {}),
    "MixtralForCausalLM": ("LlamaForCausalLM", {"num_local_experts": "num_experts",
                                                "intermediate_size": "moe_intermediate_size"}),
    "MistralForCausalLM": ("LlamaForCausalLM", {}),
}


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts and sizes of a decoder (counts are numbers of parameters, not bytes).

    Fields:
        name: a label (the config file's stem or architecture).
        num_layers, hidden_size, num_heads, num_kv_heads, head_dim, vocab_size: L, C, H, K, D, V.
        intermediate_size: I of the dense SwiGLU (0 for MoE layers).
        num_experts, experts_per_token, moe_intermediate_size, shared_expert_size: E, k, I_moe, I_shared.
        tied_embeddings: lm_head shares the input embedding.
        qk_norm: per-head RMSNorm on q and k (Qwen3); its 2 x D weights per layer are not counted (< 0.01%).
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    shared_expert_size: int
    tied_embeddings: bool
    qk_norm: bool = False

    @classmethod
    def from_config(cls, config: ModelConfig, name: str = "") -> ModelShape:
        moe = config.num_experts > 0
        assert config.head_dim is not None
        return cls(
            name=name or config.architecture, num_layers=config.num_hidden_layers, hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim, vocab_size=config.vocab_size,
            intermediate_size=0 if moe else config.intermediate_size,
            num_experts=config.num_experts, experts_per_token=config.num_experts_per_tok if moe else 0,
            moe_intermediate_size=config.moe_intermediate_size if moe else 0,
            shared_expert_size=config.shared_expert_intermediate_size if moe else 0,
            tied_embeddings=config.tie_word_embeddings, qk_norm=config.qk_norm,
        )

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attention_params(self) -> int:
        """q, k, v, o projections of one layer (biases ignored: < 0.01% of a layer)."""
        return self.hidden_size * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)

    @property
    def expert_params(self) -> int:
        """Routed-expert weights of one layer (E SwiGLUs)."""
        return self.num_experts * 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def layer_dense_params(self) -> int:
        """Everything in one layer except routed experts: attention, dense or shared FFN, router, two norms."""
        c = self.hidden_size
        dense_ffn = 3 * c * self.intermediate_size
        ffn = 3 * c * self.shared_expert_size + c * self.num_experts if self.is_moe else dense_ffn
        return self.attention_params + ffn + 2 * c

    @property
    def layer_norm_params(self) -> int:
        """The two RMSNorm weights of one layer (replicated on the tp ranks, never split)."""
        return 2 * self.hidden_size

    @property
    def vocab_params(self) -> int:
        """Input embedding plus lm_head (once when tied): what vocabulary parallelism splits."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def embedding_params(self) -> int:
        """Input embedding plus lm_head (once when tied) plus the final norm."""
        return self.vocab_params + self.hidden_size

    @property
    def total_params(self) -> int:
        return self.num_layers * (self.layer_dense_params + self.expert_params) + self.embedding_params

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (k of E experts)."""
        routed = self.experts_per_token * 3 * self.hidden_size * self.moe_intermediate_size
        return self.num_layers * (self.layer_dense_params + routed) + self.embedding_params


def read_hf_config(raw: dict[str, Any]) -> ModelConfig:
    """`ModelConfig` from a plain HF ``config.json`` mapping, accepting the MoE aliases of `MOE_ALIASES`."""
    archs = raw.get("architectures") or []
    if archs and archs[0] in MOE_ALIASES:
        base, renames = MOE_ALIASES[archs[0]]
        raw = {renames.get(key, key): value for key, value in raw.items()}
        raw["architectures"] = [base]
        # HF MoE configs also carry a dense intermediate_size used only by non-MoE layers; thinkrl needs it > 0.
        raw.setdefault("intermediate_size", raw.get("moe_intermediate_size", 1))
    return ModelConfig.from_hf_dict(raw)


def load_model_shape(path: str | Path) -> ModelShape:
    """Read ``config.json`` (a file or its folder) into a `ModelShape`; ValueError names the file and problem."""
    try:
        path, raw = read_config_json(path)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    try:
        config = read_hf_config(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    return ModelShape.from_config(config, name=path.stem if path.name != "config.json" else path.parent.name)
