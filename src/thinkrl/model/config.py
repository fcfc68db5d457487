"""Model configuration read from (and written to) a Hugging Face ``config.json``.

One `ModelConfig` describes every supported decoder. The four architectures
differ only in a few switches, which `from_hf_dict` sets from the
architecture name and the file's own keys:

| architecture         | q/k/v bias | o bias | q/k RMSNorm | residual dropout |
|----------------------|------------|--------|-------------|------------------|
| LlamaForCausalLM     | config     | config | no          | no               |
| Qwen2ForCausalLM     | yes        | no     | no          | no               |
| Qwen3ForCausalLM     | config     | config | yes         | no               |
| SeedOssForCausalLM   | config     | config | no          | config           |

A mixture-of-experts FFN (``num_experts > 0``) replaces the dense SwiGLU in every
layer. ``Qwen3MoeForCausalLM`` is Qwen3 with it (softmax router, top-k, optionally
renormalised, no shared expert): transformers' Qwen3-MoE, saved under that name with
one tensor per expert (``mlp.experts.{i}.gate_proj``, as transformers writes them), so
transformers loads thinkrl's MoE checkpoints and thinkrl loads Qwen3-MoE ones. A
``Qwen3ForCausalLM`` config with experts is the same model and is saved as
``Qwen3MoeForCausalLM``. MoE on the other bases (and a shared expert) is thinkrl's own
extension: it runs in memory (e.g. for `thinkrl.tune`), but saving it is an error,
since no transformers architecture would read the file back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "SeedOssForCausalLM",
    "Qwen3MoeForCausalLM",
)
MODEL_TYPES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "SeedOssForCausalLM": "seed_oss",
    "Qwen3MoeForCausalLM": "qwen3_moe",
}
_QK_NORM = ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM")
ROPE_TYPES = ("default", "linear", "llama3")


_POSITIVE = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta")
_ROPE_KEYS = {"linear": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
_KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                                       "dict": (dict,), "list": (list,)}


@dataclass
class ModelConfig:
    """Hyper-parameters of a decoder, named as in Hugging Face configs."""

    architecture: str = "SeedOssForCausalLM"
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # bias on q/k/v projections
    attention_out_bias: bool = False  # bias on the output projection
    mlp_bias: bool = False
    qk_norm: bool = False  # RMSNorm over head_dim on q and k (Qwen3)
    residual_dropout: float = 0.0
    attention_dropout: float = 0.0
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 1
    # Mixture of experts (0 experts = dense SwiGLU).
    num_experts: int = 0
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    norm_topk_prob: bool = True
    router_aux_loss_coef: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)  # unknown HF keys, written back unchanged

    def __post_init__(self) -> None:
        _check_field_types(self)  # a config.json value of the wrong type fails here, naming its key
        for name in _POSITIVE:  # (before the divisions below: a zero head count is no ZeroDivisionError)
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.architecture in _QK_NORM:
            self.qk_norm = True  # part of the architecture, not a free switch (config.json has no key for it)
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                    f"({self.num_attention_heads}) when head_dim is not given"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if self.rope_scaling is not None and self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_scaling type {self.rope_type!r} is not supported; supported: {ROPE_TYPES}")
        scaling = self.rope_scaling or {}
        missing = [key for key in _ROPE_KEYS.get(self.rope_type, ()) if not _is_number(scaling.get(key))]
        if missing:
            raise ValueError(f"rope_scaling of type {self.rope_type!r} needs the numbers {', '.join(missing)}")
        if self.num_experts:
            if not 0 < self.num_experts_per_tok <= self.num_experts:
                raise ValueError(
                    f"num_experts_per_tok ({self.num_experts_per_tok}) must be in 1..num_experts ({self.num_experts})"
                )
            if self.moe_intermediate_size <= 0:
                raise ValueError("moe_intermediate_size must be positive when num_experts > 0")
        moe_ok = self.num_experts and not self.shared_expert_intermediate_size
        if self.architecture == "Qwen3MoeForCausalLM" and not moe_ok:
            raise ValueError(
                f"Qwen3MoeForCausalLM needs num_experts > 0 (got {self.num_experts}) and no shared expert "
                f"(shared_expert_intermediate_size {self.shared_expert_intermediate_size})"
            )

    @property
    def rope_type(self) -> str:
        if not self.rope_scaling:
            return "default"
        return str(self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default")))

    @property
    def model_type(self) -> str:
        return MODEL_TYPES[self.architecture]

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """Build from the contents of a HF ``config.json`` (either the v4 or v5 rope layout)."""
        raw = dict(raw)
        archs = raw.pop("architectures", None) or []
        archs = [archs] if isinstance(archs, str) else archs  # (a bare name, as a recipe's model.init may give)
        if not isinstance(archs, list):
            raise ValueError(f"architectures must be a list of architecture names, got {archs!r}")
        if not archs:
            raise ValueError("config.json has no 'architectures' entry; cannot tell which decoder to build")
        arch = archs[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"config.json architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        # transformers >= 5 nests rope settings in rope_parameters; older files use rope_theta/rope_scaling.
        rope_params = raw.pop("rope_parameters", None)
        for key, value in (("rope_parameters", rope_params), ("rope_scaling", raw.get("rope_scaling"))):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{key} must be a mapping or null, got {value!r}")
        if rope_params:
            raw.setdefault("rope_theta", rope_params.get("rope_theta", 10000.0))
            if rope_params.get("rope_type", "default") != "default":
                raw["rope_scaling"] = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        known = {f.name for f in fields(cls)} - {"architecture", "extra"}
        kwargs: dict[str, Any] = {k: raw.pop(k) for k in list(raw) if k in known}
        if kwargs.get("num_key_value_heads") is None and "num_attention_heads" in kwargs:
            # transformers' rule: no key-value head count means one per query head (older Llama configs have none)
            kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
        if kwargs.get("rope_scaling") and kwargs["rope_scaling"].get("rope_type", "default") == "default" and (
            kwargs["rope_scaling"].get("type", "default") == "default"
        ):
            kwargs["rope_scaling"] = None
        if arch == "Qwen2ForCausalLM":
            kwargs["attention_bias"] = True  # Qwen2 always has q/k/v bias and no o bias
            kwargs["attention_out_bias"] = False
        elif arch in _QK_NORM:
            kwargs["qk_norm"] = True
            kwargs["attention_out_bias"] = kwargs.get("attention_bias", False)
        if arch == "Qwen3MoeForCausalLM":
            _read_qwen3_moe_keys(raw, kwargs)
        elif arch == "LlamaForCausalLM":
            kwargs["attention_out_bias"] = kwargs.get("attention_bias", False)
        if arch != "SeedOssForCausalLM":
            kwargs.pop("residual_dropout", None)
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {raw['hidden_act']!r} is not supported; only 'silu' (SwiGLU)")
        if raw.get("use_sliding_window"):
            raise ValueError("use_sliding_window=true is not supported (sliding-window attention)")
        return cls(architecture=arch, **kwargs, extra=raw)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` contents; readable by transformers and by `from_hf_dict`."""
        out = dict(self.extra)
        data = asdict(self)
        data.pop("extra")
        arch = data.pop("architecture")
        if not self.num_experts:
            for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                        "shared_expert_intermediate_size", "norm_topk_prob", "router_aux_loss_coef"):
                data.pop(key)
        else:
            arch = self._moe_architecture()
            data.pop("shared_expert_intermediate_size")
            # transformers 4 names the expert count num_experts, transformers 5 num_local_experts
            data.update(num_local_experts=self.num_experts, decoder_sparse_step=1, mlp_only_layers=[])
        if arch not in _QK_NORM:
            data.pop("qk_norm")
        out.update(data)
        out["architectures"] = [arch]
        out["model_type"] = MODEL_TYPES[arch]
        out.setdefault("hidden_act", "silu")
        out.setdefault("torch_dtype", "float32")
        return out

    def _moe_architecture(self) -> str:
        """The architecture a MoE config is saved under; ValueError when transformers has none for it."""
        if self.architecture in _QK_NORM and not self.shared_expert_intermediate_size:
            return "Qwen3MoeForCausalLM"
        raise ValueError(
            f"cannot save a mixture-of-experts {self.architecture} "
            f"(shared_expert_intermediate_size {self.shared_expert_intermediate_size}): transformers has no "
            "architecture for it; use architecture Qwen3MoeForCausalLM (Qwen3 base, no shared expert)"
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """Read ``config.json`` (``path`` may be the file or its folder)."""
        path, raw = read_config_json(path)
        try:
            return cls.from_hf_dict(raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def num_parameters(self) -> int:
        """Parameter count (embeddings included once when tied)."""
        c, d = self.hidden_size, self.head_dim or 0
        attn = c * d * (self.num_attention_heads * 2 + self.num_key_value_heads * 2)
        if self.num_experts:
            ffn = self.num_experts * 3 * c * self.moe_intermediate_size + c * self.num_experts
            ffn += 3 * c * self.shared_expert_intermediate_size
        else:
            ffn = 3 * c * self.intermediate_size
        per_layer = attn + ffn + 2 * c
        embed = self.vocab_size * c * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + embed + c


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_field_types(config: ModelConfig) -> None:
    """ValueError naming the first field whose value is not of its annotated type (``int | None`` allows None,
    ``float`` allows an int, ``bool`` is no int), instead of a failure deep in the model's construction."""
    for spec in fields(config):
        value = getattr(config, spec.name)
        options = [option.strip().split("[")[0] for option in str(spec.type).split("|")]
        if value is None and "None" in options:
            continue
        kinds = tuple(kind for option in options for kind in _KINDS.get(option, ()))
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ValueError(f"{spec.name} must be {' or '.join(o for o in options if o != 'None')}"
                             f"{' or null' if 'None' in options else ''}, got {value!r}")
        if isinstance(value, list) and not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            raise ValueError(f"{spec.name} must be a list of integers, got {value!r}")


def _read_qwen3_moe_keys(raw: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Qwen3-MoE keys of a ``config.json`` into ``kwargs``; layouts thinkrl does not build are errors."""
    local = raw.pop("num_local_experts", None)
    if local is not None:
        kwargs.setdefault("num_experts", local)
    step, dense_layers = raw.pop("decoder_sparse_step", 1), raw.pop("mlp_only_layers", None) or []
    if step != 1 or dense_layers:
        raise ValueError(
            f"Qwen3MoeForCausalLM with dense layers (decoder_sparse_step {step}, mlp_only_layers {dense_layers}) "
            "is not supported: every layer must be MoE"
        )


def read_config_json(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(the file, its JSON object) of a HF ``config.json`` (``path`` may be the file or its folder).

    Raises FileNotFoundError when it is missing, ValueError when it is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no model config at {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    except UnicodeDecodeError as err:  # (a ValueError whose message would not name the file)
        raise ValueError(f"{path} is not UTF-8 text (a HF config.json): {err.reason} at byte {err.start}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object (a HF config.json)")
    return path, raw
