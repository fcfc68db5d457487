"""The RL loop (DAPO by default): rollout → score → filter → advantages → update → sync → log.

One step:
1. ``collect_rollout_batch``: G samples per prompt from the engine, rule rewards, soft
   overlong punishment, dynamic sampling.
2. advantages from the registered estimator (``algorithm.advantage_estimator``).
3. ``ppo_epochs`` × ``num_mini_batches`` optimizer steps of the registered PPO-clip loss
   (clip-higher, dual-clip, token-level aggregation over the whole mini-batch), with
   ratios against the behaviour log-probs returned by the engine.
4. the engine shares the policy's weights in memory, so "sync" is a version bump.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from thinkrl.engine import LLMEngine
from thinkrl.eval.evaluate import evaluate
from thinkrl.model import CausalLM
from thinkrl.records import Trajectory
from thinkrl.rl import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageInputs,
    PolicyLossInputs,
    agg_loss,
    kl_penalty,
)
from thinkrl.train.batching import PackedBatch, pack_trajectories, split_micro_batches
from thinkrl.train.checkpoint import latest_checkpoint, load_checkpoint, restore_checkpoint, save_checkpoint
from thinkrl.train.common import (
    build_policy,
    build_tokenizer,
    forward_responses,
    load_problems,
    save_policy,
    seed_everything,
)
from thinkrl.train.config import AlgorithmSpec, RLRecipe, save_resolved
from thinkrl.train.metrics import MetricsLogger, Timer, plot_metrics, progress
from thinkrl.train.rl_rollout import PromptCursor, collect_rollout_batch
from thinkrl.train.schedule import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A loss or gradient was NaN/inf; the optimizer step was not taken."""


@dataclass
class UpdateStats:
    """Token-weighted means over one step's micro-batches (plain floats for logging)."""

    loss: float = 0.0
    clip_frac: float = 0.0
    approx_kl: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0
    num_tokens: int = 0


def compute_advantages(batch: PackedBatch, trajs: list[Trajectory], algo: AlgorithmSpec) -> PackedBatch:
    """Fill ``batch.advantages`` with the configured estimator."""
    inputs = AdvantageInputs(rewards=batch.rewards, response_mask=batch.response_mask,
                             group_ids=torch.tensor([t.group_id for t in trajs]), lam=algo.lam,
                             lam_critic=algo.lam_critic, length_adaptive_alpha=algo.length_adaptive_alpha)
    out = ADVANTAGE_ESTIMATORS.get(algo.advantage_estimator)(inputs)
    return replace(batch, advantages=out.advantages, returns=out.returns)


@torch.no_grad()
def reference_logprobs(ref_model: CausalLM, batch: PackedBatch, micro_batch_tokens: int,
                       temperature: float) -> torch.Tensor:
    """(S, R) log-probs of the response tokens under the frozen reference policy."""
    out = torch.zeros_like(batch.old_logprobs)
    for part in split_micro_batches(batch.seq_lengths, micro_batch_tokens):
        sub = batch.select(part)
        out[part, : sub.response_ids.shape[1]] = forward_responses(ref_model, sub, temperature).logprobs
    return out


def _agg_normalisers(algo: AlgorithmSpec, num_tokens: int, num_sequences: int) -> dict[str, int]:
    """Global denominators of the mini-batch, so micro-batch gradients add up to the mini-batch loss."""
    if algo.loss_agg_mode == "token-mean":
        return {"num_tokens": num_tokens}
    if algo.loss_agg_mode == "seq-mean-token-sum-norm":
        return {"num_sequences": num_sequences, "max_response_len": algo.max_response_len}
    return {"num_sequences": num_sequences}


def update_policy(model: CausalLM, optimizer: torch.optim.Optimizer, batch: PackedBatch, algo: AlgorithmSpec,
                  *, micro_batch_tokens: int, grad_clip: float | None, temperature: float,
                  rng: random.Random) -> UpdateStats:
    """``ppo_epochs`` × ``num_mini_batches`` optimizer steps on ``batch``.

    Raises `NonFiniteError` (before ``optimizer.step``) on a NaN/inf loss or gradient norm.
    """
    policy_loss = POLICY_LOSSES.get("ppo_clip")
    device = model.device
    stats = UpdateStats()
    sums = {"loss": 0.0, "clip": 0.0, "kl": 0.0, "ent": 0.0}
    grad_norms = []
    for _ in range(algo.ppo_epochs):
        order = list(range(batch.num_sequences))
        rng.shuffle(order)
        for mini in (order[i :: algo.num_mini_batches] for i in range(algo.num_mini_batches)):
            if not mini:
                continue
            mini_batch = batch.select(mini)
            num_tokens = max(1, mini_batch.num_tokens)
            optimizer.zero_grad(set_to_none=True)
            for part in split_micro_batches(mini_batch.seq_lengths, micro_batch_tokens):
                sub = mini_batch.select(part).to(device)
                fwd = forward_responses(model, sub, temperature)
                norm = _agg_normalisers(algo, num_tokens, len(mini))
                loss, metrics = policy_loss(PolicyLossInputs(
                    fwd.logprobs, sub.old_logprobs, sub.advantages, sub.response_mask,
                    eps_low=algo.eps_low, eps_high=algo.eps_high, dual_clip=algo.dual_clip,
                    agg_mode=algo.loss_agg_mode, **norm))
                if algo.kl_coef > 0 and sub.ref_logprobs is not None:
                    kl = kl_penalty(fwd.logprobs, sub.ref_logprobs, algo.kl_kind)
                    loss = loss + algo.kl_coef * agg_loss(kl, sub.response_mask, algo.loss_agg_mode, **norm)
                loss = loss + fwd.aux_loss * (len(part) / len(mini))
                if not torch.isfinite(loss):
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteError("policy loss is not finite; the step was not applied")
                loss.backward()
                n = int(sub.response_mask.sum())
                sums["loss"] += float(loss.detach())
                sums["clip"] += float(metrics.clip_frac_high + metrics.clip_frac_low) * n
                sums["kl"] += float(metrics.approx_kl) * n
                sums["ent"] += float((fwd.entropy * sub.response_mask).sum())
                stats.num_tokens += n
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
            if not math.isfinite(float(norm)):
                optimizer.zero_grad(set_to_none=True)
                raise NonFiniteError(f"gradient norm is {float(norm)}; the step was not applied")
            grad_norms.append(float(norm))
            optimizer.step()
    tokens = max(1, stats.num_tokens)
    stats.loss = sums["loss"] / max(1, algo.ppo_epochs * algo.num_mini_batches)
    stats.clip_frac, stats.approx_kl, stats.entropy = sums["clip"] / tokens, sums["kl"] / tokens, sums["ent"] / tokens
    stats.grad_norm = sum(grad_norms) / max(1, len(grad_norms))
    return stats


def run_rl(recipe: RLRecipe) -> Path:
    """Train with RL; returns the folder of the final HF-format policy."""
    out = Path(recipe.trainer.output_dir or f"runs/{recipe.name}")
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(recipe, out / "recipe.yaml")
    seed_everything(recipe.trainer.seed)
    tokenizer = build_tokenizer(recipe.tokenizer)
    model = build_policy(recipe.model, tokenizer, seed=recipe.trainer.seed)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if recipe.algorithm.kl_coef > 0 else None
    optimizer = build_optimizer(model.parameters(), recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.optim, recipe.trainer.steps)
    train_problems = load_problems(recipe.data, "train")
    test_problems = load_problems(recipe.data, "test")
    cursor = PromptCursor(train_problems, recipe.data.seed)
    sampling, algo = recipe.sampling, recipe.algorithm
    max_prompt = max(len(tokenizer.encode_chat([{"role": "user", "content": p.prompt}], thinking_budget=b))
                     for p in train_problems[:200] + test_problems[:200] for b in sampling.thinking_budgets)
    engine = LLMEngine(model, tokenizer, num_slots=sampling.num_slots,
                       max_seq_len=max_prompt + 16 + sampling.max_new_tokens, seed=recipe.trainer.seed)
    ckpt_root, start = out / "checkpoints", 0
    if recipe.trainer.resume and latest_checkpoint(ckpt_root) is not None:
        state = restore_checkpoint(load_checkpoint(ckpt_root), model=model, optimizer=optimizer, scheduler=scheduler)
        start = state["step"]
        cursor = PromptCursor(train_problems, recipe.data.seed, **state["cursor"])
        logger.info("resumed RL at step %d", start)
    engine.policy_version = start

    def run_eval(step: int, metrics: MetricsLogger) -> None:
        if not test_problems:
            return
        result = evaluate(engine, tokenizer, test_problems, samples=recipe.trainer.eval_samples,
                          temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens, seed=1)
        metrics.log(step, {"eval/accuracy": result.accuracy, "eval/pass_at_k": result.pass_at_k,
                           "eval/response_tokens": result.mean_response_tokens})
        logger.info("step %d held-out accuracy %.3f (pass@%d %.3f)", step, result.accuracy,
                    result.samples_per_problem, result.pass_at_k)

    with MetricsLogger(out) as metrics, progress(recipe.trainer.steps, "rl") as bar:
        bar.update(start)
        if recipe.trainer.eval_every and start == 0:
            run_eval(0, metrics)
        for step in range(start + 1, recipe.trainer.steps + 1):
            timer = Timer()
            with timer.phase("rollout"):
                rollout = collect_rollout_batch(engine, tokenizer, cursor, algo, sampling,
                                                seed=recipe.trainer.seed * 100_003 + step)
            row = _rollout_metrics(rollout)
            if rollout.trajectories:
                with timer.phase("update"):
                    batch = compute_advantages(pack_trajectories(rollout.trajectories), rollout.trajectories, algo)
                    if ref_model is not None:
                        batch = replace(batch, ref_logprobs=reference_logprobs(
                            ref_model, batch, recipe.trainer.micro_batch_tokens, sampling.temperature))
                    stats = update_policy(model, optimizer, batch, algo,
                                          micro_batch_tokens=recipe.trainer.micro_batch_tokens,
                                          grad_clip=recipe.optim.grad_clip, temperature=sampling.temperature,
                                          rng=random.Random(recipe.trainer.seed * 1_000_003 + step))
                row.update(loss=stats.loss, clip_frac=stats.clip_frac, approx_kl=stats.approx_kl,
                           entropy=stats.entropy, grad_norm=stats.grad_norm)
                scheduler.step()  # only after an optimizer step (a step with no kept group trains nothing)
            engine.policy_version = step  # weights are shared in memory: syncing is a version bump
            row.update(timer.metrics(), lr=scheduler.get_last_lr()[0])
            elapsed = sum(timer.metrics().values())
            row["tokens_per_s"] = sum(rollout.sampled_lengths) / max(elapsed, 1e-9)
            if step % recipe.trainer.log_every == 0:
                metrics.log(step, row)
            bar.update(1, reward=round(row["reward"], 3), acc=round(row["accuracy"], 3))
            if recipe.trainer.save_every and step % recipe.trainer.save_every == 0:
                save_checkpoint(ckpt_root, step, model=model, optimizer=optimizer, scheduler=scheduler,
                                trainer_state={"step": step, "cursor": cursor.state()}, recipe=recipe,
                                keep_last=recipe.trainer.keep_last)
            if recipe.trainer.eval_every and step % recipe.trainer.eval_every == 0:
                run_eval(step, metrics)
    final = save_policy(model, tokenizer, out / "final")
    plot_metrics(out / "metrics.jsonl", ["reward", "accuracy", "response_length_mean"], out / "curves.png")
    return final


def _rollout_metrics(rollout) -> dict[str, float]:
    trajs = rollout.trajectories
    n = max(1, len(rollout.sampled_correct))
    return {
        "reward": sum(float(t.reward) for t in trajs) / max(1, len(trajs)),
        "accuracy": sum(rollout.sampled_correct) / n,
        "response_length_mean": sum(rollout.sampled_lengths) / n,
        "response_length_max": max(rollout.sampled_lengths, default=0),
        "groups_sampled": rollout.num_groups_sampled,
        "groups_dropped": rollout.num_groups_dropped,
        "groups_kept_trained": len({t.group_id for t in trajs}),
        "sampling_rounds": rollout.num_rounds,
        "truncated_frac": rollout.reasons.get("truncated", 0) / n,
    }
