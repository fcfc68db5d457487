"""The RL loop (DAPO, VAPO, PPO, GRPO...). Each step is a short list of named calls:

    next batch (rollout: sample, score, dynamic sampling) → advantages → update (actor, critic)
    → push weights (engine client) → log → checkpoint / evaluate

The trainer never shares tensors with the engine: after each update it pushes the policy's weights through the
engine client, and every token sampled afterwards records the new version. VAPO's value pretraining
(`thinkrl.train.value_pretrain`) runs once before the first step. `build_run` (`rl_setup`) makes the parts.
Under torchrun every rank runs this loop: rank 0 rolls out and broadcasts the batch, every rank trains its share
(FSDP2), and rank 0 alone writes metrics, plots and the final policy; checkpoints are sharded (`thinkrl.train.dcp`).
"""

from __future__ import annotations

import io
import logging
import math
from functools import partial
from pathlib import Path

from thinkrl.eval.evaluate import evaluate
from thinkrl.rollout import PromptCursor, RolloutDriver, build_driver, collect_rollout_batch, rollout_metrics
from thinkrl.rollout.agent_rollout import collect_agent_rollout, evaluate_agent_policy
from thinkrl.rollout.agent_streaming import build_agent_driver
from thinkrl.train.common import rank_metrics, save_policy
from thinkrl.train.config import RLRecipe
from thinkrl.train.dcp import save_sharded
from thinkrl.train.distributed import broadcast_object, closing_data_parallel, data_parallel_from_env
from thinkrl.train.metrics import MetricsLogger, Timer, plot_metrics, progress, read_metrics
from thinkrl.train.rl_setup import RLRun, build_run
from thinkrl.train.rl_step import prepare_batch, update
from thinkrl.train.value_pretrain import EV_WINDOW, pretrain_value

logger = logging.getLogger(__name__)


def run_rl(recipe: RLRecipe) -> Path:
    """Train with RL (on every rank under torchrun); returns the folder of the final HF-format policy."""
    data_parallel = data_parallel_from_env(tensor_parallel=recipe.trainer.tensor_parallel,
                                           shard_size=recipe.trainer.fsdp_shard_size)
    with closing_data_parallel():
        return _run_rl(recipe, build_run(recipe, data_parallel))


def _run_rl(recipe: RLRecipe, run: RLRun) -> Path:
    driver = None
    try:
        driver = _streaming_driver(run, recipe)
        stream = None if run.is_main else io.StringIO()  # one progress bar, rank 0's
        with rank_metrics(run.out, run.data_parallel) as metrics, progress(recipe.trainer.steps, "rl",
                                                                           stream=stream) as bar:
            bar.update(run.start_step)
            if run.start_step == 0:
                before_first_step(run, recipe, metrics)
            for step in range(run.start_step + 1, recipe.trainer.steps + 1):
                row = rl_step(run, recipe, step, driver)
                if step % recipe.trainer.log_every == 0:
                    metrics.log(step, row)
                bar.update(1, reward=round(row["reward"], 3), acc=round(row.get("accuracy", float("nan")), 3))
                after_step(run, recipe, step, metrics, driver)
    except KeyboardInterrupt:
        logger.error("interrupted: the rollout and the engine stop; the last checkpoint in %s is intact",
                     run.out / "checkpoints")
        raise
    finally:
        if driver is not None:
            driver.close()
        if run.engine is not None:
            run.engine.stop()
    final = save_policy(run.actor.model, run.tokenizer, run.out / "final", run.data_parallel)
    if run.is_main:
        plot_run(run, recipe)
    return final


def _streaming_driver(run: RLRun, recipe: RLRecipe) -> RolloutDriver | None:
    """The started streaming rollout (``rollout.mode: streaming``, on the engine's rank), else None."""
    if recipe.rollout.mode != "streaming" or run.engine is None:
        return None
    if recipe.agent is not None:  # groups of multi-turn episodes (docs/agents.md)
        return build_agent_driver(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling,
                                  recipe.reward, recipe.agent, seed=recipe.trainer.seed, start_version=run.start_step,
                                  restore=run.stream_state)
    return build_driver(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling, recipe.reward,
                        seed=recipe.trainer.seed, start_version=run.start_step, restore=run.stream_state)


def rl_step(run: RLRun, recipe: RLRecipe, step: int, driver: RolloutDriver | None = None) -> dict[str, float]:
    """One step: next batch → advantages → update → push weights; returns its metrics row. ``driver``: the
    streaming rollout (docs/streaming.md); None samples the batch synchronously."""
    timer = Timer()
    with timer.phase("rollout"):
        rollout = None
        if driver is not None:
            rollout = driver.next_batch(step)
        elif run.engine is not None:  # rank 0 (or the single process) samples; every rank gets the same batch
            collect = (partial(collect_agent_rollout, recipe.agent) if recipe.agent is not None  # docs/agents.md
                       else collect_rollout_batch)
            rollout = collect(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling,
                              recipe.reward, seed=recipe.trainer.seed * 100_003 + step)
        # every rank gets rank 0's batch and weight version (only rank 0 holds the engine and the driver)
        rollout, current = broadcast_object((rollout, driver.version if driver is not None else step - 1),
                                            run.data_parallel)  # current: the actor's weights' version
    streaming = recipe.rollout.mode == "streaming"  # (rank 0 has the driver then)
    row = {**rollout_metrics(rollout), **rollout.data_metrics, **rollout.stream_metrics}
    # over what this step trains (the staleness bound's subject), not over what finished since the last step
    row["version_lag_max"] = max((current - t.policy_version for t in rollout.trajectories), default=0)
    if rollout.trajectories:  # a step with no kept group trains nothing (and the schedule does not move)
        with timer.phase("update"):
            batch = prepare_batch(rollout.trajectories, run.actor, run.critic, run.ref_model)
            row.update(update(batch, run.actor, run.critic, seed=recipe.trainer.seed, step=step,
                              current_version=current if streaming else None))
        with timer.phase("push"):
            weights = run.actor.weights()  # gathered on every rank (a collective); the engine's owner pushes
            if driver is not None:  # interrupts what is in flight first (partial rollouts)
                driver.push_weights(weights, version=step)
            elif run.engine is not None:
                run.engine.update_weights(weights, version=step)
    row.update(timer.metrics(), lr=run.actor.scheduler.get_last_lr()[0])
    row["tokens_per_s"] = sum(len(t.response_ids) for t in rollout.sampled) / max(sum(timer.metrics().values()), 1e-9)
    return row


def before_first_step(run: RLRun, recipe: RLRecipe, metrics: MetricsLogger) -> None:
    """Step-0 work of a fresh run: the prefilter's metrics, a held-out evaluation, VAPO's value pretraining."""
    if run.data_log:
        metrics.log(0, run.data_log)
    if recipe.trainer.eval_every:
        run_eval(run, recipe, 0, metrics)
    if run.critic is not None and recipe.critic.pretrain_steps:
        run_value_pretraining(run, recipe, metrics)


def after_step(run: RLRun, recipe: RLRecipe, step: int, metrics: MetricsLogger,
               driver: RolloutDriver | None = None) -> None:
    """Checkpoint and evaluate when the recipe asks for it at ``step`` (the prompt stream's state, and the groups
    buffered or in flight, from ``driver`` when streaming)."""
    trainer = recipe.trainer
    if trainer.save_every and step % trainer.save_every == 0:  # (the cursor that counts is rank 0's, which writes)
        save_sharded(run.out / "checkpoints", step, parts=run.checkpoint_parts(),
                     trainer_state={"step": step, "cursor": (driver or run.source).state()}, recipe=recipe,
                     config=run.actor.model.config, keep_last=trainer.keep_last, data_parallel=run.data_parallel)
    if trainer.eval_every and (step % trainer.eval_every == 0 or step == trainer.steps):
        run_eval(run, recipe, step, metrics)


def run_eval(run: RLRun, recipe: RLRecipe, step: int, metrics: MetricsLogger) -> None:
    """Held-out avg@k of the engine's current policy (= the actor's after the last push); rank 0 only."""
    if not run.test_problems or run.engine is None:
        return
    sampling = recipe.sampling
    if recipe.agent is not None:  # episodes with tools, judged by the environment
        episodes = evaluate_agent_policy(recipe.agent, run.engine, run.tokenizer, run.test_problems,
                                         samples=recipe.trainer.eval_samples, temperature=sampling.temperature,
                                         max_new_tokens=sampling.max_new_tokens, seed=1)
        metrics.log(step, {"eval/accuracy": episodes.accuracy, "eval/pass_at_k": episodes.pass_at_k,
                           "eval/response_tokens": episodes.mean_response_tokens,
                           **{f"eval/{k}": v for k, v in episodes.metrics.items()}})
        return
    result = evaluate(run.engine, run.tokenizer, run.test_problems, samples=recipe.trainer.eval_samples,
                      temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens, seed=1)
    metrics.log(step, {"eval/accuracy": result.accuracy, "eval/pass_at_k": result.pass_at_k,
                       "eval/response_tokens": result.mean_response_tokens})
    logger.info("step %d held-out accuracy %.3f (pass@%d %.3f)", step, result.accuracy,
                result.samples_per_problem, result.pass_at_k)


def run_value_pretraining(run: RLRun, recipe: RLRecipe, metrics: MetricsLogger) -> None:
    """VAPO value pretraining before step 1; per-step log in ``<out>/value_pretrain/metrics.jsonl``,
    a summary (``value_pretrain/*``) at step 0 of the run's metrics."""
    critic, spec, trainer = run.critic, recipe.critic, recipe.trainer
    assert critic is not None
    assert run.engine is not None  # single process only (rl_setup refuses it under torchrun): the engine is here
    cursor = PromptCursor(run.train_problems, recipe.data.seed + 7_919)  # its own prompt order: RL's is unchanged
    timer = Timer()
    with timer.phase("value_pretrain"), MetricsLogger(run.out / "value_pretrain", use_tensorboard=False) as log:
        result = pretrain_value(critic.model, critic.optimizer, run.engine, run.tokenizer, cursor, recipe.rollout,
                                recipe.sampling, recipe.reward, max_steps=spec.pretrain_steps,
                                target_ev=spec.pretrain_target_ev, updates_per_step=spec.pretrain_updates,
                                micro_batch_tokens=trainer.micro_batch_tokens, grad_clip=recipe.optim.grad_clip,
                                seed=trainer.seed, metrics=log)
    evs = result.explained_variance
    finite = [x for x in evs[-EV_WINDOW:] if math.isfinite(x)]  # as pretrain_value's stopping rule reads them
    recent = sum(finite) / len(finite) if finite else float("nan")
    metrics.log(0, {"value_pretrain/steps": result.steps, "value_pretrain/explained_variance_first": evs[0],
                    "value_pretrain/explained_variance_last": evs[-1],
                    "value_pretrain/explained_variance_recent": recent,
                    "value_pretrain/reached_target": result.reached_target, **timer.metrics()})
    logger.info("value pretraining: %d steps, explained variance %.3f -> %.3f (mean of the last %d: %.3f)",
                result.steps, evs[0], evs[-1], EV_WINDOW, recent)


def plot_run(run: RLRun, recipe: RLRecipe) -> None:
    """``curves.png`` of the run's main metrics."""
    keys = ["reward", "accuracy", "response_length_mean"] + (["explained_variance"] if run.critic else [])
    logged = {k for r in read_metrics(run.out / "metrics.jsonl") for k in r}
    if "budget_adherence" in logged:  # budgets in play: how long the model thinks, and whether it keeps to them
        keys += ["thinking_tokens_mean", "budget_adherence"]
    keys = [k for k in keys if k in logged]  # e.g. no explained variance when no step trained (all groups dropped)
    if keys:
        plot_metrics(run.out / "metrics.jsonl", keys, run.out / "curves.png")
