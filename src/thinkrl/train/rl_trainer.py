"""The RL loop (DAPO, VAPO, PPO, GRPO...): rollout → score → filter → advantages → update → sync → log.

One step:
1. ``collect_rollout_batch``: G samples per prompt from the engine, rule rewards, soft
   overlong punishment, dynamic sampling.
2. with a critic (PPO/VAPO), its values at every response token (``compute_values``).
3. advantages (and value targets) from the registered estimator (``algorithm.advantage_estimator``).
4. ``ppo_epochs`` × ``num_mini_batches`` optimizer steps of the registered PPO-clip loss
   (clip-higher, dual-clip, token-level aggregation over the whole mini-batch), with
   ratios against the behaviour log-probs returned by the engine; optional KL and VAPO's
   positive-example LM loss; then the critic's clipped value loss with its own optimizer.
5. the engine shares the policy's weights in memory, so "sync" is a version bump.

VAPO's value pretraining (`thinkrl.train.value_pretrain`) runs once before the first step.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from thinkrl.engine import LLMEngine
from thinkrl.eval.evaluate import evaluate
from thinkrl.model import CausalLM
from thinkrl.model.value_head import ValueModel
from thinkrl.records import Trajectory
from thinkrl.rl import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageInputs,
    PolicyLossInputs,
    PolicyLossMetrics,
    agg_loss,
    kl_penalty,
    positive_lm_loss,
)
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.batching import PackedBatch, pack_trajectories, split_micro_batches
from thinkrl.train.checkpoint import latest_checkpoint, load_checkpoint, restore_checkpoint, save_checkpoint
from thinkrl.train.common import (
    ResponseForward,
    clipped_step,
    forward_responses,
    load_problems,
    prepare_run,
    save_policy,
)
from thinkrl.train.config import AlgorithmSpec, RLRecipe
from thinkrl.train.critic import build_critic, compute_values, explained_variance, update_critic
from thinkrl.train.curriculum import Curriculum, PromptCursor, build_prompt_source
from thinkrl.train.metrics import MetricsLogger, Timer, plot_metrics, progress, read_metrics
from thinkrl.train.rl_rollout import RolloutBatch, collect_rollout_batch, prefilter_problems
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.value_pretrain import EV_WINDOW, pretrain_value

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
    positive_nll: float = 0.0
    num_tokens: int = 0


@dataclass
class Critic:
    """The value model of a PPO/VAPO run with its own optimizer and learning-rate schedule."""

    model: ValueModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def state(self) -> dict[str, object]:
        """The objects a checkpoint saves as extra state."""
        return {"critic": self.model, "critic_optimizer": self.optimizer, "critic_scheduler": self.scheduler}


@dataclass
class MicroBatchLoss:
    """The loss of one micro-batch and what is logged from it.

    Fields:
        loss: () float32 with grad — PPO-clip (+ KL) (+ mu * positive-example NLL) + MoE aux loss.
        forward: the policy's forward on the micro-batch.
        metrics: the PPO-clip loss metrics.
        positive_nll_sum: () detached — summed NLL of the correct responses' tokens (0 when off).
    """

    loss: torch.Tensor
    forward: ResponseForward
    metrics: PolicyLossMetrics
    positive_nll_sum: torch.Tensor


def compute_advantages(batch: PackedBatch, trajs: list[Trajectory], algo: AlgorithmSpec) -> PackedBatch:
    """Fill ``batch.advantages`` and ``batch.returns`` with the configured estimator.

    ``batch.old_values`` (the critic's values, or None) are the estimator's ``values``; gamma is 1.
    """
    inputs = AdvantageInputs(rewards=batch.rewards, response_mask=batch.response_mask,
                             group_ids=torch.tensor([t.group_id for t in trajs]), values=batch.old_values,
                             lam=algo.lam, lam_critic=algo.lam_critic,
                             length_adaptive_alpha=algo.length_adaptive_alpha,
                             whiten_advantages=algo.whiten_advantages and algo.advantage_estimator == "gae")
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


def micro_batch_loss(model: CausalLM, sub: PackedBatch, algo: AlgorithmSpec, norm: dict[str, int],
                     num_correct_tokens: int, share: float, temperature: float) -> MicroBatchLoss:
    """Loss of one micro-batch of a mini-batch.

    ``norm`` holds the mini-batch's global denominators (`_agg_normalisers`),
    ``num_correct_tokens`` the valid tokens of its correct responses (the positive LM loss is
    token-normalised over them) and ``share`` the micro-batch's fraction of its sequences.
    """
    fwd = forward_responses(model, sub, temperature)
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(PolicyLossInputs(
        fwd.logprobs, sub.old_logprobs, sub.advantages, sub.response_mask,
        eps_low=algo.eps_low, eps_high=algo.eps_high, dual_clip=algo.dual_clip,
        agg_mode=algo.loss_agg_mode, **norm))
    if algo.kl_coef > 0 and sub.ref_logprobs is not None:
        kl = kl_penalty(fwd.logprobs, sub.ref_logprobs, algo.kl_kind)
        loss = loss + algo.kl_coef * agg_loss(kl, sub.response_mask, algo.loss_agg_mode, **norm)
    nll_sum = torch.zeros((), device=loss.device)
    if algo.positive_lm_coef > 0 and num_correct_tokens > 0:
        lm_loss, _ = positive_lm_loss(fwd.logprobs, sub.response_mask, sub.is_correct, "token-mean",
                                      num_tokens=num_correct_tokens)
        loss = loss + algo.positive_lm_coef * lm_loss
        nll_sum = lm_loss.detach() * num_correct_tokens
    return MicroBatchLoss(loss + fwd.aux_loss * share, fwd, metrics, nll_sum)


def update_policy(model: CausalLM, optimizer: torch.optim.Optimizer, batch: PackedBatch, algo: AlgorithmSpec,
                  *, micro_batch_tokens: int, grad_clip: float | None, temperature: float,
                  rng: random.Random) -> UpdateStats:
    """``ppo_epochs`` × ``num_mini_batches`` optimizer steps on ``batch``.

    Raises `NonFiniteError` (before ``optimizer.step``) on a NaN/inf loss or gradient norm.
    """
    device = model.device
    stats = UpdateStats()
    sums = {"loss": 0.0, "clip": 0.0, "kl": 0.0, "ent": 0.0, "nll": 0.0, "correct_tokens": 0}
    grad_norms = []
    for _ in range(algo.ppo_epochs):
        order = list(range(batch.num_sequences))
        rng.shuffle(order)
        for mini in (order[i :: algo.num_mini_batches] for i in range(algo.num_mini_batches)):
            if not mini:
                continue
            mini_batch = batch.select(mini)
            norm = _agg_normalisers(algo, max(1, mini_batch.num_tokens), len(mini))
            correct_tokens = int((mini_batch.response_mask & mini_batch.is_correct[:, None]).sum())
            optimizer.zero_grad(set_to_none=True)
            for part in split_micro_batches(mini_batch.seq_lengths, micro_batch_tokens):
                sub = mini_batch.select(part).to(device)
                micro = micro_batch_loss(model, sub, algo, norm, correct_tokens, len(part) / len(mini), temperature)
                if not torch.isfinite(micro.loss):
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteError("policy loss is not finite; the step was not applied")
                micro.loss.backward()
                n = int(sub.response_mask.sum())
                sums["loss"] += float(micro.loss.detach())
                sums["clip"] += float(micro.metrics.clip_frac_high + micro.metrics.clip_frac_low) * n
                sums["kl"] += float(micro.metrics.approx_kl) * n
                sums["ent"] += float((micro.forward.entropy * sub.response_mask).sum())
                sums["nll"] += float(micro.positive_nll_sum)
                stats.num_tokens += n
            sums["correct_tokens"] += correct_tokens
            grad_norms.append(clipped_step(optimizer, model.parameters(), grad_clip, NonFiniteError))
    tokens = max(1, stats.num_tokens)
    stats.loss = sums["loss"] / max(1, algo.ppo_epochs * algo.num_mini_batches)
    stats.clip_frac, stats.approx_kl, stats.entropy = sums["clip"] / tokens, sums["kl"] / tokens, sums["ent"] / tokens
    stats.positive_nll = sums["nll"] / max(1, sums["correct_tokens"])
    stats.grad_norm = sum(grad_norms) / max(1, len(grad_norms))
    return stats


def make_critic(recipe: RLRecipe, policy: CausalLM) -> Critic | None:
    """The critic, its AdamW (``optim.critic_lr``, default ``optim.lr``) and schedule; None without one."""
    if not recipe.algorithm.use_critic:
        return None
    model = build_critic(policy, recipe.algorithm.critic_path)
    optimizer = build_optimizer(model.parameters(), recipe.optim, lr=recipe.optim.critic_lr or recipe.optim.lr)
    return Critic(model, optimizer, build_scheduler(optimizer, recipe.optim, recipe.trainer.steps))


def train_on_rollout(rollout: RolloutBatch, model: CausalLM, optimizer: torch.optim.Optimizer,
                     critic: Critic | None, ref_model: CausalLM | None, recipe: RLRecipe, step: int,
                     timer: Timer) -> dict[str, float]:
    """Values → advantages → policy update → critic update on one kept rollout; returns the step's metrics."""
    algo, trainer = recipe.algorithm, recipe.trainer
    trajs = rollout.trajectories
    with timer.phase("update"):
        batch = pack_trajectories(trajs, is_correct=[bool(t.metadata.get("correct", False)) for t in trajs])
        if critic is not None:
            batch = replace(batch, old_values=compute_values(critic.model, batch, trainer.micro_batch_tokens))
        batch = compute_advantages(batch, trajs, algo)
        if ref_model is not None:
            batch = replace(batch, ref_logprobs=reference_logprobs(
                ref_model, batch, trainer.micro_batch_tokens, recipe.sampling.temperature))
        stats = update_policy(model, optimizer, batch, algo, micro_batch_tokens=trainer.micro_batch_tokens,
                              grad_clip=recipe.optim.grad_clip, temperature=recipe.sampling.temperature,
                              rng=random.Random(trainer.seed * 1_000_003 + step))
    row = {"loss": stats.loss, "clip_frac": stats.clip_frac, "approx_kl": stats.approx_kl,
           "entropy": stats.entropy, "grad_norm": stats.grad_norm}
    if algo.positive_lm_coef > 0:
        row["positive_nll"] = stats.positive_nll
    if critic is not None:
        with timer.phase("critic"):
            critic_stats = update_critic(
                critic.model, critic.optimizer, batch, epochs=algo.ppo_epochs,
                num_mini_batches=algo.num_mini_batches, micro_batch_tokens=trainer.micro_batch_tokens,
                clip_range=algo.value_clip, grad_clip=recipe.optim.grad_clip,
                rng=random.Random(trainer.seed * 1_000_033 + step))
        critic.scheduler.step()
        row.update(value_loss=critic_stats.value_loss, value_clip_frac=critic_stats.value_clip_frac,
                   value_mse=critic_stats.value_mse, critic_grad_norm=critic_stats.grad_norm,
                   explained_variance=explained_variance(batch.old_values, batch.returns, batch.response_mask),
                   value_mean=float((batch.old_values * batch.response_mask).sum() / max(1, batch.num_tokens)))
    return row


def run_rl(recipe: RLRecipe) -> Path:
    """Train with RL; returns the folder of the final HF-format policy."""
    out, tokenizer, model = prepare_run(recipe)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if recipe.algorithm.kl_coef > 0 else None
    critic = make_critic(recipe, model)
    optimizer = build_optimizer(model.parameters(), recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.optim, recipe.trainer.steps)
    train_problems = load_problems(recipe.data, "train")
    test_problems = load_problems(recipe.data, "test")
    sampling, algo, trainer = recipe.sampling, recipe.algorithm, recipe.trainer
    exclude = {p.id for p in test_problems}
    source = build_prompt_source(recipe.data, train_problems, exclude_ids=exclude)
    sized = train_problems[:200] + test_problems[:200]
    if isinstance(source, Curriculum):  # the longest prompts come at the hardest difficulty it may reach
        sized += source.hardest_problems(20, seed=recipe.data.seed)
    max_prompt = max(len(tokenizer.encode_chat([{"role": "user", "content": p.prompt}], thinking_budget=b))
                     for p in sized for b in sampling.thinking_budgets)
    engine = LLMEngine(model, tokenizer, num_slots=sampling.num_slots,
                       max_seq_len=max_prompt + 16 + sampling.max_new_tokens, seed=trainer.seed)
    data_log: dict[str, float] = {}
    if recipe.data.prefilter is not None:
        # Before any checkpoint is restored: the initial policy and the seed fix the kept set, so a resumed
        # run filters exactly as the original did.
        timer = Timer()
        with timer.phase("prefilter"):
            kept = prefilter_problems(engine, tokenizer, train_problems, recipe.data.prefilter, sampling,
                                      seed=trainer.seed)
        train_problems, data_log = kept.kept, {**kept.metrics(), **timer.metrics()}
        source = build_prompt_source(recipe.data, train_problems, exclude_ids=exclude)
    ckpt_root, start = out / "checkpoints", 0
    if trainer.resume and latest_checkpoint(ckpt_root) is not None:
        state = restore_checkpoint(load_checkpoint(ckpt_root), model=model, optimizer=optimizer, scheduler=scheduler,
                                   extra=critic.state() if critic else None)
        start = state["step"]
        source = build_prompt_source(recipe.data, train_problems, exclude_ids=exclude, state=state["cursor"])
        logger.info("resumed RL at step %d", start)
    engine.policy_version = start

    def run_eval(step: int, metrics: MetricsLogger) -> None:
        if not test_problems:
            return
        result = evaluate(engine, tokenizer, test_problems, samples=trainer.eval_samples,
                          temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens, seed=1)
        metrics.log(step, {"eval/accuracy": result.accuracy, "eval/pass_at_k": result.pass_at_k,
                           "eval/response_tokens": result.mean_response_tokens})
        logger.info("step %d held-out accuracy %.3f (pass@%d %.3f)", step, result.accuracy,
                    result.samples_per_problem, result.pass_at_k)

    with MetricsLogger(out) as metrics, progress(trainer.steps, "rl") as bar:
        bar.update(start)
        if data_log and start == 0:
            metrics.log(0, data_log)
        if trainer.eval_every and start == 0:
            run_eval(0, metrics)
        if critic is not None and algo.value_pretrain_steps and start == 0:
            run_value_pretraining(critic, engine, tokenizer, train_problems, recipe, metrics, out)
        for step in range(start + 1, trainer.steps + 1):
            timer = Timer()
            with timer.phase("rollout"):
                rollout = collect_rollout_batch(engine, tokenizer, source, algo, sampling,
                                                seed=trainer.seed * 100_003 + step)
            row = {**_rollout_metrics(rollout), **rollout.data_metrics, "prompts_skipped": rollout.num_prompts_skipped}
            if rollout.trajectories:
                row.update(train_on_rollout(rollout, model, optimizer, critic, ref_model, recipe, step, timer))
                scheduler.step()  # only after an optimizer step (a step with no kept group trains nothing)
            engine.policy_version = step  # weights are shared in memory: syncing is a version bump
            row.update(timer.metrics(), lr=scheduler.get_last_lr()[0])
            row["tokens_per_s"] = sum(rollout.sampled_lengths) / max(sum(timer.metrics().values()), 1e-9)
            if step % trainer.log_every == 0:
                metrics.log(step, row)
            bar.update(1, reward=round(row["reward"], 3), acc=round(row["accuracy"], 3))
            if trainer.save_every and step % trainer.save_every == 0:
                save_checkpoint(ckpt_root, step, model=model, optimizer=optimizer, scheduler=scheduler,
                                trainer_state={"step": step, "cursor": source.state()}, recipe=recipe,
                                extra=critic.state() if critic else None, keep_last=trainer.keep_last)
            if trainer.eval_every and (step % trainer.eval_every == 0 or step == trainer.steps):
                run_eval(step, metrics)
    final = save_policy(model, tokenizer, out / "final")
    keys = ["reward", "accuracy", "response_length_mean"] + (["explained_variance"] if critic else [])
    logged = {k for r in read_metrics(out / "metrics.jsonl") for k in r}
    keys += [k for k in ("thinking_tokens_mean", "budget_adherence") if k in logged]
    plot_metrics(out / "metrics.jsonl", keys, out / "curves.png")
    return final


def run_value_pretraining(critic: Critic, engine: LLMEngine, tokenizer: TextTokenizer, train_problems: list[Problem],
                          recipe: RLRecipe, metrics: MetricsLogger, out: Path) -> None:
    """VAPO value pretraining before step 1; per-step log in ``<out>/value_pretrain/metrics.jsonl``,
    a summary (``value_pretrain/*``) at step 0 of the run's metrics."""
    algo, trainer = recipe.algorithm, recipe.trainer
    cursor = PromptCursor(train_problems, recipe.data.seed + 7_919)  # its own prompt order: RL's is unchanged
    timer = Timer()
    with timer.phase("value_pretrain"), MetricsLogger(out / "value_pretrain", use_tensorboard=False) as log:
        result = pretrain_value(critic.model, critic.optimizer, engine, tokenizer, cursor, algo, recipe.sampling,
                                max_steps=algo.value_pretrain_steps, target_ev=algo.value_pretrain_target_ev,
                                updates_per_step=algo.value_pretrain_updates,
                                micro_batch_tokens=trainer.micro_batch_tokens, grad_clip=recipe.optim.grad_clip,
                                seed=trainer.seed, metrics=log)
    evs = result.explained_variance
    recent = sum(evs[-EV_WINDOW:]) / len(evs[-EV_WINDOW:])
    metrics.log(0, {"value_pretrain/steps": result.steps, "value_pretrain/explained_variance_first": evs[0],
                    "value_pretrain/explained_variance_last": evs[-1],
                    "value_pretrain/explained_variance_recent": recent,
                    "value_pretrain/reached_target": result.reached_target, **timer.metrics()})
    logger.info("value pretraining: %d steps, explained variance %.3f -> %.3f (mean of the last %d: %.3f)",
                result.steps, evs[0], evs[-1], EV_WINDOW, recent)


def _rollout_metrics(rollout) -> dict[str, float]:
    trajs = rollout.trajectories
    n = max(1, len(rollout.sampled_correct))
    row = {
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
    if rollout.sampled_thinking_tokens:
        row["thinking_tokens_mean"] = sum(rollout.sampled_thinking_tokens) / len(rollout.sampled_thinking_tokens)
    if rollout.sampled_within_budget:
        row["budget_adherence"] = sum(rollout.sampled_within_budget) / len(rollout.sampled_within_budget)
    return row
