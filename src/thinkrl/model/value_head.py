"""The critic of PPO/VAPO: the policy's decoder with a scalar value head instead of the LM head.

``ValueModel(backbone)`` runs the packed decoder forward of a `CausalLM` and maps every
final-normed hidden state to one float, ``V(s_t)``: the expected return from the state
that has seen the tokens up to and including position t. The LM head of the backbone is
kept (so the backbone still saves as a Hugging Face folder) but is never used; with
untied embeddings it receives no gradient.

On disk a value model is a Hugging Face model folder (the backbone) plus
``value_head.safetensors``; `load_value_model` on a plain policy folder (no head file)
gives a critic initialised from that policy with a fresh, zero value head — the usual
PPO/VAPO initialisation. Out of scope: losses and training (``thinkrl.rl.value_loss``,
``thinkrl.train.critic``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from thinkrl.model.decoder import CausalLM
from thinkrl.model.hf_io import load_pretrained, resolve_device, resolve_dtype, save_pretrained

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class ValueOutput:
    """Result of the value model's packed forward.

    Fields:
        values: (N,) float32 — V(s_t) at every packed position.
        aux_loss: () float32 — the backbone's MoE load-balancing loss (0 when dense).
    """

    values: torch.Tensor
    aux_loss: torch.Tensor


class ValueModel(nn.Module):
    """A decoder backbone with a linear ``C -> 1`` value head (zero-initialised, so V starts at 0).

    Args:
        backbone: the decoder; `from_policy` copies a policy so the two train independently.
    """

    def __init__(self, backbone: CausalLM) -> None:
        super().__init__()
        if not isinstance(backbone, CausalLM):
            raise TypeError(f"backbone must be a CausalLM, got {type(backbone).__name__}")
        self.backbone = backbone
        weight = backbone.model.embed_tokens.weight
        self.value_head = nn.Linear(backbone.config.hidden_size, 1, bias=True,
                                    device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.backbone.lm_head.requires_grad_(backbone.config.tie_word_embeddings)

    @classmethod
    def from_policy(cls, policy: CausalLM) -> ValueModel:
        """A critic whose backbone is a deep copy of ``policy`` (trainable) and whose head is zero."""
        backbone = copy.deepcopy(policy).train().requires_grad_(True)
        return cls(backbone)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> ValueOutput:
        """Packed forward.

        Args:
            input_ids: (N,) long — tokens of every sequence, concatenated.
            position_ids: (N,) long — position within its own sequence.
            cu_seqlens: (S+1,) int — cumulative sequence lengths, ``cu_seqlens[-1] == N``.

        Returns:
            `ValueOutput` with (N,) float32 values.
        """
        out = self.backbone(input_ids, position_ids, cu_seqlens)
        values = self.value_head(out.hidden).squeeze(-1).float()  # [N]
        return ValueOutput(values=values, aux_loss=out.aux_loss)


def save_value_model(model: ValueModel, folder: str | Path) -> Path:
    """Write the backbone as a Hugging Face folder plus ``value_head.safetensors``; returns the folder."""
    folder = Path(folder)
    save_pretrained(model.backbone, folder)
    head = {name: p.detach().contiguous().cpu() for name, p in model.value_head.named_parameters()}
    save_file(head, str(folder / VALUE_HEAD_FILE), metadata={"format": "pt"})
    return folder


def load_value_model(folder: str | Path, device: str | torch.device = "cpu",
                     dtype: str | torch.dtype = "float32") -> ValueModel:
    """Load a value model saved by `save_value_model`, or build one from a policy folder.

    A folder without ``value_head.safetensors`` (a plain policy checkpoint) gives the policy's
    backbone with a zero value head. Raises ValueError when the head file has the wrong tensors.
    """
    folder = Path(folder)
    model = ValueModel(load_pretrained(folder, device=device, dtype=dtype)).train()
    head_path = folder / VALUE_HEAD_FILE
    if head_path.exists():
        state = load_file(str(head_path))
        expected = {name: tuple(p.shape) for name, p in model.value_head.named_parameters()}
        got = {name: tuple(t.shape) for name, t in state.items()}
        if got != expected:
            raise ValueError(f"{head_path}: expected tensors {expected}, found {got}")
        model.value_head.load_state_dict(state)
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype))
