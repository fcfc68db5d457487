"""The fused, chunked LM-head log-probs equal the unfused reference (values and gradients), and the actor's loss
through them equals the loss through `forward_responses` to 1e-6."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from thinkrl.model import ModelConfig, build_model, response_logprobs
from thinkrl.records import Trajectory
from thinkrl.rl import POLICY_LOSSES, PolicyLossInputs, entropy_from_logits, token_logprobs
from thinkrl.train.actor import Actor
from thinkrl.train.batching import pack_trajectories
from thinkrl.train.common import forward_responses
from thinkrl.train.fused_forward import fused_forward_responses
from thinkrl.train.specs import AlgorithmSpec

CONFIG = ModelConfig(architecture="Qwen2ForCausalLM", vocab_size=97, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                     max_position_embeddings=128, tie_word_embeddings=False)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_response_logprobs_matches_the_unfused_computation(chunk_size, temperature, with_bias, dtype):
    gen = torch.Generator().manual_seed(chunk_size)
    m, c, v = 23, 16, 50
    hidden = torch.randn(m, c, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(v, c, generator=gen, dtype=dtype).requires_grad_()
    bias = torch.randn(v, generator=gen, dtype=dtype).requires_grad_() if with_bias else None
    targets = torch.randint(0, v, (m,), generator=gen)
    upstream = torch.randn(m, generator=gen, dtype=dtype)
    inputs = [hidden, weight] + ([bias] if with_bias else [])

    logprobs, entropy = response_logprobs(hidden, weight, targets, temperature, bias, chunk_size)
    grads = torch.autograd.grad((logprobs * upstream).sum(), inputs)
    logits = F.linear(hidden, weight, bias) / temperature  # the reference: full (M, V) logits, autograd through
    want = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    want_grads = torch.autograd.grad((want * upstream).sum(), inputs)

    # float64: the maths (hand-derived backward) is exact; float32: rounding only (a chunk's matmul may sum in
    # another order), 1e-6 relative on log-probs of size ~5; the entropy (a logged metric, lse - sum p z) cancels
    # two numbers of that size, so 1e-5 absolute.
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(logprobs, want, **tol)
    probs = logits.detach().softmax(-1)
    torch.testing.assert_close(entropy, -(probs * probs.log()).sum(-1), rtol=0, atol=1e-12 if dtype == torch.float64
                               else 1e-5)
    if dtype == torch.float32:  # and what the losses used so far (rl.token_logprobs / entropy_from_logits)
        torch.testing.assert_close(logprobs, token_logprobs(logits, targets), **tol)
        torch.testing.assert_close(entropy, entropy_from_logits(logits.detach()), rtol=0, atol=1e-5)
    assert not entropy.requires_grad
    grad_tol = tol if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for got, ref in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, ref, **grad_tol)


def test_response_logprobs_rejects_bad_shapes_and_temperature():
    hidden, weight = torch.zeros(3, 4), torch.zeros(5, 4)
    with pytest.raises(ValueError, match="target_ids"):
        response_logprobs(hidden, weight, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="weight must be"):
        response_logprobs(hidden, torch.zeros(5, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        response_logprobs(hidden, weight, torch.zeros(3, dtype=torch.long), temperature=0.0)


def _batch():
    """Four responses of different lengths (padding in (S, R)), one with forced tokens (mask False), advantages
    of both signs, and old log-probs off the current policy so the clip is active on some tokens."""
    gen = torch.Generator().manual_seed(0)
    trajs = []
    for i, (p, r) in enumerate([(5, 9), (3, 4), (7, 12), (4, 1)]):
        prompt = torch.randint(0, CONFIG.vocab_size, (p,), generator=gen).tolist()
        response = torch.randint(0, CONFIG.vocab_size, (r,), generator=gen).tolist()
        mask = [not (i == 2 and 3 <= j < 6) for j in range(r)]  # tokens 3..5 of response 2 were forced
        old = (torch.randn(r, generator=gen) * 0.3 - 4.5).tolist()
        trajs.append(Trajectory(prompt, response, old, response_mask=mask, group_id=0, reward=float(i % 2)))
    advantages = [torch.randn(len(t.response_ids), generator=gen) for t in trajs]
    return pack_trajectories(trajs, advantages, is_correct=[True, False, True, False])


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_actor_loss_through_the_fused_path_equals_the_reference(temperature):
    torch.manual_seed(0)
    model = build_model(CONFIG, seed=3)
    batch = _batch()
    algo = AlgorithmSpec(positive_lm_coef=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    actor = Actor(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), algo,
                  micro_batch_tokens=4096, grad_clip=None, temperature=temperature, max_response_len=16)
    correct = int((batch.response_mask & batch.is_correct[:, None]).sum())
    norm = {"num_tokens": batch.num_tokens}
    micro = actor.micro_batch_loss(batch, norm, correct, 1.0)  # the fused path
    fused_grads = torch.autograd.grad(micro.loss, list(model.parameters()))

    ref = forward_responses(model, batch, temperature)  # the unfused (S, R, V) path
    loss, _ = POLICY_LOSSES.get(algo.policy_loss)(PolicyLossInputs(
        ref.logprobs, batch.old_logprobs, batch.advantages, batch.response_mask, eps_low=algo.eps_low,
        eps_high=algo.eps_high, dual_clip=algo.dual_clip, agg_mode=algo.loss_agg_mode, **norm))
    positive = batch.response_mask & batch.is_correct[:, None]
    loss = loss + algo.positive_lm_coef * -(ref.logprobs * positive).sum() / correct
    ref_grads = torch.autograd.grad(loss, list(model.parameters()))

    assert float(micro.metrics.clip_frac_high + micro.metrics.clip_frac_low) > 0  # the clip is exercised
    assert abs(float(micro.loss.detach()) - float(loss.detach())) < 1e-6
    for got, want in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    real = batch.response_mask | (torch.arange(batch.response_ids.shape[1]) < batch.response_lengths[:, None])
    torch.testing.assert_close(micro.forward.logprobs[real], ref.logprobs[real].detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(micro.forward.entropy[real], ref.entropy[real], rtol=0, atol=1e-6)
    assert torch.all(micro.forward.logprobs[~real] == 0)  # padding is 0, not a logit of a pad token


def test_fused_forward_matches_with_a_tied_head_and_small_chunks():
    model = build_model(dataclasses.replace(CONFIG, tie_word_embeddings=True), seed=1)
    batch = _batch()
    fused = fused_forward_responses(model, batch, 1.0, chunk_size=5)
    ref = forward_responses(model, batch, 1.0)
    real = torch.arange(batch.response_ids.shape[1]) < batch.response_lengths[:, None]
    torch.testing.assert_close(fused.logprobs[real], ref.logprobs[real], rtol=0, atol=1e-6)
    grad = torch.autograd.grad(fused.logprobs[real].sum(), model.model.embed_tokens.weight)[0]
    want = torch.autograd.grad(ref.logprobs[real].sum(), model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6)
