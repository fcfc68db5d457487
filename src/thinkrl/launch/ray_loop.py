"""The RL loop over a Ray cluster: the driver samples through the rollout workers, the trainer ranks update.

Each step is the single-process step (`thinkrl.train.rl_loop.rl_step`) with its two halves placed elsewhere:

    driver: collect_rollout_batch over `RayEngineClient` (prompt source, scoring, dynamic sampling stay here)
    -> trainer ranks: prepare_batch + update on the kept trajectories (one object-store copy; FSDP2 over N ranks)
    -> rank 0's full weights -> every rollout worker (object store, node to node) -> metrics logged on the driver

Same recipe, same seeds, same rows in ``metrics.jsonl``: with one rollout worker the run samples what the
single-process run samples, and N ranks update as one (tested against `run_rl`). The final policy is written by
the driver to ``<out>/final`` (HF format); checkpoints are the torchrun path's sharded DCP ones. Not yet on Ray:
VAPO value pretraining and the streaming rollout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from thinkrl.eval.evaluate import evaluate
from thinkrl.launch.ray_placement import RayCluster, RayPlacement, import_ray, place_run
from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.rollout import (
    Curriculum,
    PromptSource,
    build_prompt_source,
    collect_rollout_batch,
    load_problems,
    prefilter_problems,
    rollout_metrics,
    training_problems,
)
from thinkrl.rollout.stream_state import split_state
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.common import build_tokenizer, drop_metrics_after, save_policy, seed_everything
from thinkrl.train.config import RLRecipe, save_resolved
from thinkrl.train.dcp import has_checkpoint
from thinkrl.train.metrics import MetricsLogger, Timer, plot_metrics, progress
from thinkrl.train.rl_setup import rl_cursor

logger = logging.getLogger(__name__)


@dataclass
class PromptData:
    """The run's problems and prompt source, built on the driver as `thinkrl.train.rl_setup.build_run` does.

    Fields:
        train_problems / test_problems: the (possibly prefiltered) training set and the held-out set.
        source: where training prompts come from.
        sized: the problems whose longest prompt sizes the engines.
        data_log: step-0 metrics of the prefilter (empty without one).
    """

    train_problems: list[Problem]
    test_problems: list[Problem]
    source: PromptSource
    sized: list[Problem]
    data_log: dict[str, float]


def check_ray_recipe(recipe: RLRecipe, resuming: bool) -> None:
    """ValueError for what a Ray run cannot do yet; a warning for what it ignores. ``resuming``: a checkpoint will
    be loaded (so VAPO's value pretraining, a step-0 affair, is behind the run)."""
    if recipe.critic.enabled and recipe.critic.pretrain_steps and not resuming:
        raise ValueError(f"critic.pretrain_steps ({recipe.critic.pretrain_steps}): VAPO value pretraining runs in a "
                         "single process only so far; pretrain without --ray (save_every > 0) and resume that run "
                         "with --ray, or set critic.pretrain_steps=0")
    if recipe.agent is not None:
        raise ValueError("agent: multi-turn tool episodes are not wired into the Ray driver yet; run agent recipes "
                         "without --ray")
    if recipe.rollout.mode != "sync":
        raise ValueError(f"rollout.mode {recipe.rollout.mode!r}: --ray runs the synchronous rollout only so far; "
                         "set rollout.mode=sync")
    trainer = recipe.trainer
    if trainer.tensor_parallel > 1 or trainer.fsdp_shard_size or trainer.offload_optimizer:
        raise ValueError("trainer.tensor_parallel / fsdp_shard_size / offload_optimizer: the Ray trainer ranks run "
                         "plain FSDP2 over all ranks so far; launch these layouts with torchrun (docs/distributed.md)")
    if recipe.rollout.placement != "thread":  # a rollout worker is its own process already
        logger.warning("rollout.placement=%s: ignored by --ray (each rollout worker is a Ray actor process)",
                       recipe.rollout.placement)


def load_prompt_data(recipe: RLRecipe) -> PromptData:
    """Problems, prompt source and engine sizing, exactly as the single-process run picks them."""
    test_problems = load_problems(recipe.data, "test")
    train_problems = training_problems(recipe.data, exclude_ids={p.id for p in test_problems})
    source = build_prompt_source(recipe.data, train_problems, exclude_ids={p.id for p in test_problems})
    sized = train_problems[:200] + test_problems[:200]
    if isinstance(source, Curriculum):  # the longest prompts come at the hardest difficulty it may reach
        sized += source.hardest_problems(20, seed=recipe.data.seed)
    return PromptData(train_problems, test_problems, source, sized, {})


def prefilter(data: PromptData, cluster: RayCluster, tokenizer: TextTokenizer, recipe: RLRecipe) -> None:
    """Keep the prompts the initial policy sometimes solves (``data.prefilter``), sampling on the workers."""
    if recipe.data.prefilter is None:
        return
    timer = Timer()
    with timer.phase("prefilter"):
        kept = prefilter_problems(cluster.engine, tokenizer, data.train_problems, recipe.data.prefilter,
                                  recipe.sampling, seed=recipe.trainer.seed)
    data.train_problems, data.data_log = kept.kept, {**kept.metrics(), **timer.metrics()}
    data.source = build_prompt_source(recipe.data, kept.kept, exclude_ids={p.id for p in data.test_problems})


def run_rl_on_ray(recipe: RLRecipe, placement: RayPlacement) -> Path:
    """Train with RL on the Ray cluster ``ray.init`` connected to; returns the folder of the final HF policy.

    Checkpoints (``trainer.save_every``) are sharded DCP folders under ``<out>/checkpoints`` written by the ranks;
    ``trainer.resume`` continues from the latest one (saved by Ray or torchrun, on any number of ranks)."""
    out = Path(recipe.trainer.output_dir or f"runs/{recipe.name}")
    check_ray_recipe(recipe, resuming=recipe.trainer.resume and has_checkpoint(out / "checkpoints"))
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(recipe, out / "recipe.yaml")
    seed_everything(recipe.trainer.seed)
    tokenizer = build_tokenizer(recipe.tokenizer)
    data = load_prompt_data(recipe)
    cluster = place_run(recipe, placement, data.sized)
    try:
        prefilter(data, cluster, tokenizer, recipe)  # before resuming: the initial policy fixes the kept set
        start_step = resume(cluster, data, recipe, out) if recipe.trainer.resume else 0
        with MetricsLogger(out) as metrics, progress(recipe.trainer.steps, "rl (ray)") as bar:
            bar.update(start_step)
            if start_step == 0 and data.data_log:
                metrics.log(0, data.data_log)
            if start_step == 0 and recipe.trainer.eval_every:
                run_eval(cluster, tokenizer, data.test_problems, recipe, 0, metrics)
            for step in range(start_step + 1, recipe.trainer.steps + 1):
                row = ray_rl_step(cluster, tokenizer, data.source, recipe, step)
                if step % recipe.trainer.log_every == 0:
                    metrics.log(step, row)
                bar.update(1, reward=round(row["reward"], 3), acc=round(row.get("accuracy", float("nan")), 3))
                after_step(cluster, tokenizer, data, recipe, step, metrics, out)
        final = save_policy(policy_from_weights(_model_config(cluster), gather_weights(cluster)), tokenizer,
                            out / "final")
    finally:
        cluster.stop()
    keys = ["reward", "accuracy", "response_length_mean"] + (["explained_variance"] if recipe.critic.enabled else [])
    plot_metrics(out / "metrics.jsonl", keys, out / "curves.png")
    return final


def resume(cluster: RayCluster, data: PromptData, recipe: RLRecipe, out: Path) -> int:
    """Load the latest checkpoint on every rank, restore the prompt cursor, push the restored policy to the
    workers; returns its step (0, and nothing loaded, without a checkpoint)."""
    root = out / "checkpoints"
    if not has_checkpoint(root):
        return 0
    ray = import_ray()
    state = ray.get([trainer.resume.remote(str(root)) for trainer in cluster.trainers])[0]
    step = int(state["step"])
    cursor, held = split_state(rl_cursor(state, root))  # a streaming run's checkpoint also holds its rollout state
    if held is not None:  # the Ray loop samples synchronously: groups the streaming run held are not resumed
        logger.warning("resuming a streaming checkpoint synchronously: %d held groups are not restored",
                       len(held.buffered) + len(held.in_flight))
    data.source = build_prompt_source(recipe.data, data.train_problems,
                                      exclude_ids={p.id for p in data.test_problems}, state=cursor)
    cluster.engine.update_weights(push_weights(cluster), version=step)
    drop_metrics_after(out, step)
    logger.info("resumed RL at step %d", step)
    return step


def after_step(cluster: RayCluster, tokenizer: TextTokenizer, data: PromptData, recipe: RLRecipe, step: int,
               metrics: MetricsLogger, out: Path) -> None:
    """Checkpoint (every rank writes its shards; the driver's prompt cursor goes in) and evaluate when due."""
    trainer = recipe.trainer
    if trainer.save_every and step % trainer.save_every == 0:
        state = {"step": step, "cursor": data.source.state()}
        import_ray().get([rank.save_checkpoint.remote(str(out / "checkpoints"), step, state)
                          for rank in cluster.trainers])
    if trainer.eval_every and (step % trainer.eval_every == 0 or step == trainer.steps):
        run_eval(cluster, tokenizer, data.test_problems, recipe, step, metrics)


def ray_rl_step(cluster: RayCluster, tokenizer: TextTokenizer, source: PromptSource, recipe: RLRecipe,
                step: int) -> dict[str, float]:
    """One step: rollout on the workers → update on the ranks → push rank 0's weights; returns its metrics row
    (the keys of `thinkrl.train.rl_loop.rl_step`)."""
    ray = import_ray()
    timer = Timer()
    with timer.phase("rollout"):  # the seed of rl_loop.rl_step, so both sample the same prompts and responses
        rollout = collect_rollout_batch(cluster.engine, tokenizer, source, recipe.rollout, recipe.sampling,
                                        recipe.reward, seed=recipe.trainer.seed * 100_003 + step)
    row: dict[str, Any] = {**rollout_metrics(rollout), **rollout.data_metrics}
    row["version_lag_max"] = max((step - 1 - t.policy_version for t in rollout.trajectories), default=0)  # trained
    if rollout.trajectories:  # a step with no kept group trains nothing (and the schedule does not move)
        with timer.phase("update"):
            batch = ray.put(rollout.trajectories)  # one copy in the object store for all ranks
            row.update(ray.get([trainer.train.remote(batch, step) for trainer in cluster.trainers])[0])
        with timer.phase("push"):
            cluster.engine.update_weights(push_weights(cluster), version=step)
    else:
        row["lr"] = ray.get(cluster.trainers[0].learning_rate.remote())
    row.update(timer.metrics())
    row["tokens_per_s"] = sum(len(t.response_ids) for t in rollout.sampled) / max(sum(timer.metrics().values()), 1e-9)
    return row


def push_weights(cluster: RayCluster) -> Any:
    """An ObjectRef of rank 0's full weights (every rank joins the gather; the others return None)."""
    refs = [trainer.weights.remote() for trainer in cluster.trainers]
    import_ray().get(refs[1:])  # the other ranks finished the collective (or raise their error); rank 0's stays put
    return refs[0]


def gather_weights(cluster: RayCluster) -> list[tuple[str, torch.Tensor]]:
    """Rank 0's full weights, fetched to the driver."""
    return import_ray().get(push_weights(cluster))


def _model_config(cluster: RayCluster) -> ModelConfig:
    if cluster.model_config is None:
        raise RuntimeError("the trainer ranks were not set up")
    return cluster.model_config


def policy_from_weights(config: ModelConfig, weights: list[tuple[str, torch.Tensor]]) -> CausalLM:
    """A CPU `CausalLM` of ``config`` holding ``weights`` (named full tensors, as `Actor.weights` gives them)."""
    model = build_model(config, dtype=weights[0][1].dtype, seed=None)
    params = dict(model.named_parameters())
    if set(params) != {name for name, _ in weights}:
        raise ValueError(f"weights do not match the model: {sorted(set(params) ^ {n for n, _ in weights})[:10]}")
    with torch.no_grad():
        for name, tensor in weights:
            params[name].copy_(tensor)
    return model


def run_eval(cluster: RayCluster, tokenizer: TextTokenizer, problems: list[Problem], recipe: RLRecipe, step: int,
             metrics: MetricsLogger) -> None:
    """Held-out avg@k of the workers' current policy (as `thinkrl.train.rl_loop.run_eval`)."""
    if not problems:
        return
    sampling = recipe.sampling
    result = evaluate(cluster.engine, tokenizer, problems, samples=recipe.trainer.eval_samples,
                      temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens, seed=1)
    metrics.log(step, {"eval/accuracy": result.accuracy, "eval/pass_at_k": result.pass_at_k,
                       "eval/response_tokens": result.mean_response_tokens})
    logger.info("step %d held-out accuracy %.3f (pass@%d %.3f)", step, result.accuracy,
                result.samples_per_problem, result.pass_at_k)
