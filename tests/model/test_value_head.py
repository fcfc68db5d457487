"""The value model: a copy of the policy's decoder with a zero-initialised scalar head; save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from thinkrl.model import ModelConfig, build_model, save_pretrained
from thinkrl.model.value_head import VALUE_HEAD_FILE, ValueModel, load_value_model, save_value_model

CONFIG = {"architectures": ["SeedOssForCausalLM"], "vocab_size": 61, "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": True}


def _policy(tied: bool = True):
    return build_model(ModelConfig.from_hf_dict({**CONFIG, "tie_word_embeddings": tied}), seed=0)


def _packed(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, CONFIG["vocab_size"], (sum(lengths),), generator=gen)
    positions = torch.cat([torch.arange(n) for n in lengths])
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return ids, positions, cu


def test_fresh_head_predicts_zero_and_backbone_copies_the_policy():
    policy = _policy()
    critic = ValueModel.from_policy(policy)
    out = critic(*_packed([5, 3]))
    assert out.values.shape == (8,) and out.values.dtype == torch.float32
    assert torch.equal(out.values, torch.zeros(8))
    for (name, p), q in zip(policy.named_parameters(), critic.backbone.parameters(), strict=True):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr(), f"{name} is shared with the policy"


def test_values_are_the_head_applied_to_the_hidden_states_per_sequence():
    """Packed values equal each sequence run alone through the backbone and a hand-applied head."""
    critic = ValueModel.from_policy(_policy())
    with torch.no_grad():
        critic.value_head.weight.normal_(generator=torch.Generator().manual_seed(1))
        critic.value_head.bias.fill_(0.3)
    ids, positions, cu = _packed([4, 6, 2])
    packed = critic(ids, positions, cu).values
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        n = end - start
        hidden = critic.backbone(ids[start:end], torch.arange(n), torch.tensor([0, n], dtype=torch.int32)).hidden
        expected = hidden @ critic.value_head.weight[0] + 0.3
        torch.testing.assert_close(packed[start:end], expected, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_backbone_and_head_but_not_an_untied_lm_head():
    critic = ValueModel.from_policy(_policy(tied=False))
    assert not critic.backbone.lm_head.weight.requires_grad
    with torch.no_grad():
        critic.value_head.weight.fill_(0.1)
    (critic(*_packed([5, 4])).values - 1.0).square().sum().backward()
    assert critic.value_head.weight.grad.abs().sum() > 0
    assert critic.backbone.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
    assert critic.backbone.lm_head.weight.grad is None


def test_save_and_load_round_trip(tmp_path: Path):
    critic = ValueModel.from_policy(_policy())
    with torch.no_grad():
        critic.value_head.weight.uniform_(-0.5, 0.5)
        critic.value_head.bias.fill_(-0.2)
    save_value_model(critic, tmp_path / "critic")
    loaded = load_value_model(tmp_path / "critic")
    batch = _packed([7, 3], seed=3)
    torch.testing.assert_close(loaded(*batch).values, critic(*batch).values)


def test_policy_folder_gives_a_zero_head(tmp_path: Path):
    policy = _policy()
    save_pretrained(policy, tmp_path / "policy")
    critic = load_value_model(tmp_path / "policy")
    assert torch.equal(critic(*_packed([4])).values, torch.zeros(4))
    assert torch.equal(critic.backbone.model.embed_tokens.weight, policy.model.embed_tokens.weight)


def test_bad_head_file_is_named(tmp_path: Path):
    critic = ValueModel.from_policy(_policy())
    save_value_model(critic, tmp_path / "critic")
    save_file({"weight": torch.zeros(2, 32), "bias": torch.zeros(2)}, str(tmp_path / "critic" / VALUE_HEAD_FILE))
    with pytest.raises(ValueError, match="value_head.safetensors"):
        load_value_model(tmp_path / "critic")


def test_backbone_must_be_a_causal_lm():
    with pytest.raises(TypeError, match="CausalLM"):
        ValueModel(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
