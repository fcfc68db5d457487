"""Every rl function gives the same result on CUDA as on CPU (device handling, no CPU-only tensors)."""

from __future__ import annotations

import pytest
import torch

from thinkrl.rl import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageInputs,
    PolicyLossInputs,
    agg_loss,
    entropy_from_logits,
    group_has_variance,
    kl_penalty,
    positive_lm_loss,
    soft_overlong_penalty,
    token_logprobs,
    value_loss,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

B, R, V = 8, 12, 32


def make_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, R + 1, (B,), generator=gen)
    mask = torch.arange(R)[None, :] < lengths[:, None]
    mask[:, 1] &= torch.rand(B, generator=gen) > 0.3  # some interior forced tokens
    return {
        "rewards": torch.randint(0, 2, (B,), generator=gen).float(),
        "mask": mask,
        "group_ids": torch.arange(B) // 4,
        "values": torch.randn(B, R, generator=gen),
        "logprobs": -torch.rand(B, R, generator=gen),
        "old_logprobs": -torch.rand(B, R, generator=gen),
        "advantages": torch.randn(B, R, generator=gen),
        "logits": torch.randn(B, R, V, generator=gen),
        "targets": torch.randint(0, V, (B, R), generator=gen),
        "lengths": lengths,
    }


def compute_all(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in ADVANTAGE_ESTIMATORS.names():
        inputs = AdvantageInputs(
            rewards=batch["rewards"],
            response_mask=batch["mask"],
            group_ids=batch["group_ids"],
            values=batch["values"] if name == "gae" else None,
            length_adaptive_alpha=0.2 if name == "gae" else None,
        )
        result = ADVANTAGE_ESTIMATORS.get(name)(inputs)
        out[f"adv_{name}"], out[f"ret_{name}"] = result.advantages, result.returns
    for name in POLICY_LOSSES.names():
        inputs = PolicyLossInputs(
            logprobs=batch["logprobs"],
            old_logprobs=batch["old_logprobs"],
            advantages=batch["advantages"],
            response_mask=batch["mask"],
            behaviour_logprobs=batch["old_logprobs"] - 0.1,
            behaviour_is_cap=2.0,
        )
        loss, metrics = POLICY_LOSSES.get(name)(inputs)
        out[f"loss_{name}"] = loss
        out.update({f"{name}_{k}": v for k, v in metrics.to_dict().items()})
    for mode in ("token-mean", "seq-mean-token-sum-norm"):
        out[f"agg_{mode}"] = agg_loss(batch["values"], batch["mask"], mode)
    out["kl_k3"] = kl_penalty(batch["logprobs"], batch["old_logprobs"], "k3")
    out["entropy"] = entropy_from_logits(batch["logits"])
    out["token_logprobs"] = token_logprobs(batch["logits"], batch["targets"])
    out["value_loss"] = value_loss(batch["values"], batch["values"] * 0.5, batch["advantages"], batch["mask"])[0]
    out["positive_lm"] = positive_lm_loss(batch["logprobs"], batch["mask"], batch["rewards"] > 0)[0]
    out["overlong"] = soft_overlong_penalty(batch["lengths"], max_len=10, cache_len=4)
    out["has_variance"] = group_has_variance(batch["rewards"], batch["group_ids"]).float()
    return out


def test_cuda_matches_cpu() -> None:
    batch = make_batch()
    cpu = compute_all(batch)
    gpu = compute_all({k: v.cuda() for k, v in batch.items()})
    for key, expected in cpu.items():
        assert gpu[key].device.type == "cuda", key
        torch.testing.assert_close(gpu[key].cpu(), expected, rtol=1e-5, atol=1e-5, msg=key)
