"""agg_loss, ppo_clip, value/positive-LM losses, KL, entropy and log-probs against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from thinkrl.rl import (
    POLICY_LOSSES,
    PolicyLossInputs,
    agg_loss,
    entropy_from_logits,
    kl_penalty,
    positive_lm_loss,
    token_logprobs,
    value_loss,
)

T, F = True, False

# ---- agg_loss ------------------------------------------------------------------------------------

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
AGG_MASK = torch.tensor([[T, T, F], [T, F, F]])


@pytest.mark.parametrize(
    ("mode", "kwargs", "expected"),
    [
        ("token-mean", {}, (1 + 2 + 4) / 3),
        ("token-mean", {"num_tokens": 7}, (1 + 2 + 4) / 7),
        ("token-mean", {"num_tokens": torch.tensor(14.0)}, (1 + 2 + 4) / 14),
        ("seq-mean-token-mean", {}, ((1 + 2) / 2 + 4 / 1) / 2),
        ("seq-mean-token-mean", {"num_sequences": 4}, ((1 + 2) / 2 + 4 / 1) / 4),
        ("seq-mean-token-sum", {}, ((1 + 2) + 4) / 2),
        ("seq-mean-token-sum-norm", {}, ((1 + 2) / 3 + 4 / 3) / 2),
        ("seq-mean-token-sum-norm", {"max_response_len": 10}, ((1 + 2) / 10 + 4 / 10) / 2),
    ],
)
def test_agg_loss_modes(mode: str, kwargs: dict, expected: float) -> None:
    result = agg_loss(LOSS, AGG_MASK, mode, **kwargs)
    assert result.shape == ()
    torch.testing.assert_close(result, torch.tensor(expected))


def test_agg_loss_ignores_empty_rows_and_garbage() -> None:
    loss = torch.tensor([[1.0, 2.0, float("nan")], [float("inf"), 5.0, 6.0]])
    mask = torch.tensor([[T, T, F], [F, F, F]])
    # the empty row is not a sequence: ((1 + 2) / 2) / 1
    torch.testing.assert_close(agg_loss(loss, mask, "seq-mean-token-mean"), torch.tensor(1.5))
    torch.testing.assert_close(agg_loss(loss, mask, "token-mean"), torch.tensor(1.5))
    # no valid token at all -> 0, not NaN
    assert agg_loss(loss, torch.zeros(2, 3, dtype=torch.bool), "token-mean").item() == 0.0


def test_agg_loss_gradient_accumulation_with_num_tokens() -> None:
    # Two micro-batches each dividing by the global count equal the full-batch token mean.
    full = agg_loss(LOSS, AGG_MASK, "token-mean")
    parts = agg_loss(LOSS[:1], AGG_MASK[:1], "token-mean", num_tokens=3) + agg_loss(
        LOSS[1:], AGG_MASK[1:], "token-mean", num_tokens=3
    )
    torch.testing.assert_close(parts, full)


def test_agg_loss_bad_arguments() -> None:
    with pytest.raises(ValueError, match="token-mean, seq-mean-token-mean"):
        agg_loss(LOSS, AGG_MASK, "mean")
    with pytest.raises(ValueError, match="num_tokens"):
        agg_loss(LOSS, AGG_MASK, "seq-mean-token-mean", num_tokens=3)
    with pytest.raises(ValueError, match="num_sequences"):
        agg_loss(LOSS, AGG_MASK, "token-mean", num_sequences=3)
    with pytest.raises(ValueError, match="num_tokens"):
        agg_loss(LOSS, AGG_MASK, "token-mean", num_tokens=0)
    with pytest.raises(ValueError, match="shape"):
        agg_loss(LOSS, AGG_MASK[:, :2], "token-mean")


# ---- ppo_clip ------------------------------------------------------------------------------------

# Ratios and advantages chosen to hit every branch (eps_low 0.2, eps_high 0.28, dual clip 3):
#  (0,0) r 1.1, A +1: inside the clip range       -> -A r        = -1.1   (gradient flows)
#  (0,1) r 1.5, A +1: above 1 + eps_high = 1.28   -> -A 1.28     = -1.28  (clipped, no gradient)
#  (0,2) r 0.5, A +1: below 0.8 but A > 0         -> max(-0.5, -0.8) = -0.5 (gradient flows)
#  (1,0) r 0.7, A -1: below 1 - eps_low = 0.8     -> max(0.7, 0.8) = 0.8  (clipped, no gradient)
#  (1,1) r 4.0, A -1: max(4, 1.28) = 4 > dual 3*1 -> 3.0                  (dual-clipped, no gradient)
#  (1,2) r 1.5, A -2: max(3, 2.56) = 3 < 3*2 = 6  -> 3.0                  (gradient flows)
RATIOS = torch.tensor([[1.1, 1.5, 0.5], [0.7, 4.0, 1.5]])
ADVANTAGES = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -2.0]])
PER_TOKEN = [[-1.1, -1.28, -0.5], [0.8, 3.0, 3.0]]
# d(loss_t)/d(logprob_t) = -A r on unclipped tokens, 0 on clipped ones
PER_TOKEN_GRAD = [[-1.1, 0.0, -0.5], [0.0, 0.0, 3.0]]


def ppo(mask: torch.Tensor | None = None, logprobs: torch.Tensor | None = None, **kwargs: object):
    if logprobs is None:
        logprobs = RATIOS.log()
    logprobs = logprobs.clone().requires_grad_(True)
    inputs = PolicyLossInputs(
        logprobs=logprobs,
        old_logprobs=torch.zeros(2, 3),
        advantages=ADVANTAGES,
        response_mask=torch.ones(2, 3, dtype=torch.bool) if mask is None else mask,
        **kwargs,
    )
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(inputs)
    loss.backward()
    return loss, metrics, logprobs.grad


def test_ppo_clip_every_branch() -> None:
    loss, metrics, grad = ppo()
    # token-mean: (-1.1 - 1.28 - 0.5 + 0.8 + 3.0 + 3.0) / 6 = 3.92 / 6
    torch.testing.assert_close(loss, torch.tensor(3.92 / 6))
    torch.testing.assert_close(grad, torch.tensor(PER_TOKEN_GRAD) / 6)
    torch.testing.assert_close(metrics.clip_frac_high, torch.tensor(1 / 6))  # (0,1)
    torch.testing.assert_close(metrics.clip_frac_low, torch.tensor(1 / 6))  # (1,0)
    torch.testing.assert_close(metrics.dual_clip_frac, torch.tensor(1 / 6))  # (1,1)
    torch.testing.assert_close(metrics.ratio_mean, torch.tensor((1.1 + 1.5 + 0.5 + 0.7 + 4.0 + 1.5) / 6))
    torch.testing.assert_close(metrics.ratio_max, torch.tensor(4.0))
    k3 = sum(r - 1 - math.log(r) for r in [1.1, 1.5, 0.5, 0.7, 4.0, 1.5]) / 6
    torch.testing.assert_close(metrics.approx_kl, torch.tensor(k3))
    torch.testing.assert_close(metrics.is_weight_mean, torch.tensor(1.0))
    assert all(not v.requires_grad for v in metrics.to_dict().values())


def test_ppo_clip_without_dual_clip_and_symmetric_eps() -> None:
    # no dual clip: (1,1) keeps 4.0 -> total 4.92; symmetric eps 0.2: (0,1) -> -1.2 -> total 5.0
    loss, metrics, _ = ppo(dual_clip=None)
    torch.testing.assert_close(loss, torch.tensor(4.92 / 6))
    assert metrics.dual_clip_frac.item() == 0.0
    loss, _, _ = ppo(dual_clip=None, eps_high=0.2)
    torch.testing.assert_close(loss, torch.tensor(5.0 / 6))


def test_ppo_clip_masked_tokens_get_exactly_zero_gradient() -> None:
    mask = torch.tensor([[T, T, F], [T, F, T]])
    logprobs = RATIOS.log().clone()
    logprobs[0, 2] = float("nan")
    logprobs[1, 1] = float("inf")
    loss, metrics, grad = ppo(mask=mask, logprobs=logprobs)
    # valid tokens (0,0), (0,1), (1,0), (1,2): (-1.1 - 1.28 + 0.8 + 3.0) / 4
    torch.testing.assert_close(loss, torch.tensor(1.42 / 4))
    assert grad[0, 2].item() == 0.0 and grad[1, 1].item() == 0.0
    torch.testing.assert_close(grad, torch.tensor([[-1.1, 0.0, 0.0], [0.0, 0.0, 3.0]]) / 4)
    torch.testing.assert_close(metrics.ratio_max, torch.tensor(1.5))


def test_ppo_clip_seq_mean_token_mean() -> None:
    # row means: (-1.1 - 1.28 - 0.5)/3 = -0.96, (0.8 + 3 + 3)/3 = 6.8/3; mean of the two
    loss, _, _ = ppo(agg_mode="seq-mean-token-mean")
    torch.testing.assert_close(loss, torch.tensor((-2.88 / 3 + 6.8 / 3) / 2))


def test_ppo_clip_behaviour_importance_weights() -> None:
    # behaviour logprobs log(0.5) below old (0): w = exp(0 - log 0.5) = 2, capped at 1.5.
    behaviour = torch.full((2, 3), math.log(0.5))
    loss, metrics, _ = ppo(behaviour_logprobs=behaviour)
    torch.testing.assert_close(loss, torch.tensor(2 * 3.92 / 6))
    torch.testing.assert_close(metrics.is_weight_mean, torch.tensor(2.0))
    loss, metrics, grad = ppo(behaviour_logprobs=behaviour, behaviour_is_cap=1.5)
    torch.testing.assert_close(loss, torch.tensor(1.5 * 3.92 / 6))
    torch.testing.assert_close(grad, 1.5 * torch.tensor(PER_TOKEN_GRAD) / 6)


def test_ppo_clip_inputs_validated() -> None:
    with pytest.raises(ValueError, match="dual_clip"):
        ppo(dual_clip=1.0)
    with pytest.raises(ValueError, match="eps_low"):
        ppo(eps_low=1.0)
    with pytest.raises(ValueError, match="agg_mode"):
        ppo(agg_mode="sum")
    with pytest.raises(ValueError, match="behaviour_logprobs"):
        ppo(behaviour_is_cap=2.0)


# ---- KL, entropy, log-probs ----------------------------------------------------------------------


def test_kl_kinds_hand_computed() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    # d = logp - ref = [0.5, -1, 0]
    torch.testing.assert_close(kl_penalty(logprobs, ref, "k1"), torch.tensor([[0.5, -1.0, 0.0]]))
    torch.testing.assert_close(kl_penalty(logprobs, ref, "k2"), torch.tensor([[0.125, 0.5, 0.0]]))
    # k3 = exp(ref - logp) - (ref - logp) - 1 = [e^-0.5 + 0.5 - 1, e^1 - 1 - 1, 0]
    k3 = [math.exp(-0.5) + 0.5 - 1, math.e - 2, 0.0]
    torch.testing.assert_close(kl_penalty(logprobs, ref, "k3"), torch.tensor([k3]))
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(logprobs, ref, "k4")


def test_entropy_and_token_logprobs_hand_computed() -> None:
    # row 0: probs (1/6, 2/6, 3/6); row 1: uniform over 3 -> entropy ln 3
    logits = torch.tensor([[0.0, math.log(2), math.log(3)], [5.0, 5.0, 5.0]])
    p = [1 / 6, 2 / 6, 3 / 6]
    entropy = [-sum(x * math.log(x) for x in p), math.log(3)]
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor(entropy))
    targets = torch.tensor([2, 0])
    torch.testing.assert_close(token_logprobs(logits, targets), torch.tensor([math.log(0.5), math.log(1 / 3)]))


def test_token_logprobs_bf16_is_computed_in_float32() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = (10 * torch.randn(2, 3, 50, generator=gen)).bfloat16()
    targets = torch.randint(0, 50, (2, 3), generator=gen)
    out = token_logprobs(logits, targets)
    assert out.dtype == torch.float32
    reference = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(out.double(), reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="target_ids"):
        token_logprobs(logits, targets[:, :2])


# ---- value loss, positive LM loss ----------------------------------------------------------------


def test_value_loss_hand_computed() -> None:
    values = torch.tensor([[1.0, 0.0, 2.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.0, 1.0]])
    returns = torch.tensor([[2.0, 1.0, 1.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    # t0: V - old = 0.5 -> V_clip = 0.7; (1-2)^2 = 1 vs (0.7-2)^2 = 1.69 -> 1.69 (clipped branch)
    # t1: V = old -> 1 vs 1 -> 1
    # t2: V - old = 1 -> V_clip = 1.2; (2-1)^2 = 1 vs (1.2-1)^2 = 0.04 -> 1 (unclipped branch)
    loss, metrics = value_loss(values, old, returns, mask, clip_range=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (1.69 + 1 + 1) / 3))
    loss.backward()
    # grad = 0.5 * 2 (V - G) / 3 on unclipped tokens: t1 (0 - 1)/3, t2 (2 - 1)/3; t0 clipped -> 0
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, -1 / 3, 1 / 3]]))
    torch.testing.assert_close(metrics.clip_frac, torch.tensor(1 / 3))
    torch.testing.assert_close(metrics.mse, torch.tensor(1.0))
    # no clipping: 0.5 * mean(1, 1, 1)
    loss, _ = value_loss(values, old, returns, mask, clip_range=None)
    torch.testing.assert_close(loss, torch.tensor(0.5))


def test_positive_lm_loss_hand_computed() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], requires_grad=True)
    mask = torch.tensor([[T, T, F], [T, T, T]])
    # only row 0 is correct; its valid tokens give NLL (1 + 2) / 2
    loss, metrics = positive_lm_loss(logprobs, mask, torch.tensor([T, F]))
    torch.testing.assert_close(loss, torch.tensor(1.5))
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.0, 0.0, 0.0]]))
    assert metrics.num_correct.item() == 1.0
    # none correct -> 0 with zero gradient
    logprobs.grad = None
    loss, metrics = positive_lm_loss(logprobs, mask, torch.tensor([F, F]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logprobs.grad, torch.zeros(2, 3))
