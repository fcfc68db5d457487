"""Build an RL run from its recipe: the actor, the critic, the reference policy, the rollout engine and its
client, the prompt source, and (when resuming) the restored state. `thinkrl.train.rl_loop` runs it.

The engine gets its own copy of the policy's weights; the loop pushes new ones through the engine client after
every update (`EngineLoop.update_weights`), and a resumed run pushes the restored weights before its first step.

Under torchrun (``data_parallel`` set) the actor, the critic and the reference policy are sharded with FSDP2 after
the engine took its copy; rank 0 alone owns the engine (rollout, prefilter, evaluation) and hands what it samples
to every rank (`thinkrl.train.distributed.broadcast_object`), so N ranks train on exactly the global batch one
process would (docs/distributed.md).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

from thinkrl.model import CausalLM
from thinkrl.rollout import (
    Curriculum,
    EngineClient,
    PromptSource,
    build_prompt_source,
    load_problems,
    prefilter_problems,
    start_engine,
    training_problems,
)
from thinkrl.rollout.agent_rollout import start_agent_engine
from thinkrl.rollout.stream_state import StreamState, split_state
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.actor import Actor
from thinkrl.train.common import drop_metrics_after, prepare_run, write_run_recipe
from thinkrl.train.config import RLRecipe
from thinkrl.train.critic import Critic, make_critic
from thinkrl.train.dcp import Trained, broadcast_resume_step, load_sharded
from thinkrl.train.distributed import DataParallel, broadcast_object, shard_model
from thinkrl.train.metrics import Timer
from thinkrl.train.schedule import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


@dataclass
class RLRun:
    """The parts of one RL run.

    Fields:
        out: the run folder.
        tokenizer: the policy's tokenizer.
        actor: the trained policy with its optimizer and schedule.
        critic: the value model (PPO/VAPO), or None.
        ref_model: the frozen reference policy of the KL term, or None.
        engine: the rollout engine client; its engine holds its own copy of the policy's weights. None on the
            ranks other than 0 of a sharded run (rank 0 rolls out for all).
        source: where training prompts come from.
        train_problems / test_problems: the (possibly prefiltered) training set and the held-out set.
        start_step: the last finished step (0 for a fresh run).
        data_log: step-0 metrics of the prefilter (empty without one).
        data_parallel: this rank's data-parallel group (None: a single process).
        stream_state: a resumed streaming run's saved rollout state (buffered and in-flight groups), else None.
    """

    out: Path
    tokenizer: TextTokenizer
    actor: Actor
    critic: Critic | None
    ref_model: CausalLM | None
    engine: EngineClient | None
    source: PromptSource
    train_problems: list[Problem]
    test_problems: list[Problem]
    start_step: int = 0
    data_log: dict[str, float] = field(default_factory=dict)
    data_parallel: DataParallel | None = None
    stream_state: StreamState | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0, or a single process)."""
        return self.data_parallel is None or self.data_parallel.is_main

    def checkpoint_parts(self) -> dict[str, Trained]:
        """What a checkpoint saves by name: the policy (``model``) and the critic, each with optimizer and schedule."""
        actor = self.actor
        parts = {"model": Trained(actor.model, actor.optimizer, actor.scheduler)}
        if self.critic is not None:
            parts["critic"] = Trained(self.critic.model, self.critic.optimizer, self.critic.scheduler)
        return parts


def build_run(recipe: RLRecipe, data_parallel: DataParallel | None = None) -> RLRun:
    """Everything ``recipe`` asks for, ready for step ``start_step + 1``. The engine client is started (on rank 0);
    stop it with ``run.engine.stop()``. ``data_parallel``: this rank's group under torchrun (None: one process)."""
    dp = data_parallel
    if dp is not None and dp.world_size > 1 and recipe.critic.enabled and recipe.critic.pretrain_steps:
        raise ValueError("critic.pretrain_steps > 0 (VAPO value pretraining) runs in a single process only so far; "
                         "pretrain in one process, or set critic.pretrain_steps=0 under torchrun")
    out, tokenizer, model = prepare_run(recipe, dp)
    trainer = recipe.trainer
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if recipe.algorithm.kl_coef > 0 else None
    critic = (make_critic(recipe.critic, model, recipe.optim, trainer.steps, trainer.micro_batch_tokens, dp,
                          trainer.offload_optimizer) if recipe.critic.enabled else None)
    test_problems = load_problems(recipe.data, "test")
    train_problems = training_problems(recipe.data, exclude_ids={p.id for p in test_problems})
    exclude = {p.id for p in test_problems}
    source = build_prompt_source(recipe.data, train_problems, exclude_ids=exclude)
    sized = train_problems[:200] + test_problems[:200]
    if isinstance(source, Curriculum):  # the longest prompts come at the hardest difficulty it may reach
        sized += source.hardest_problems(20, seed=recipe.data.seed)
    engine = None
    if dp is None or dp.is_main:  # before sharding: the engine copies the full weights
        engine = (start_agent_engine(model, tokenizer, recipe.agent, recipe.sampling, sized, trainer.seed,
                                     recipe.rollout.placement)
                  if recipe.agent is not None else  # multi-turn episodes: slots sized for tools and turns
                  start_engine(model, tokenizer, recipe.sampling, sized, trainer.seed, recipe.rollout.placement))
    try:
        actor = _make_actor(recipe, model, ref_model, dp)
        run = RLRun(out, tokenizer, actor, critic, ref_model, engine, source, train_problems, test_problems,
                    data_parallel=dp)
        if recipe.data.prefilter is not None:
            # Before any checkpoint is restored: the initial policy and the seed fix the kept set, so a resumed
            # run filters exactly as the original did.
            timer = Timer()
            kept_log = None
            if engine is not None:
                with timer.phase("prefilter"):
                    kept = prefilter_problems(engine, tokenizer, train_problems, recipe.data.prefilter,
                                              recipe.sampling, seed=trainer.seed)
                kept_log = ([p.id for p in kept.kept], {**kept.metrics(), **timer.metrics()})
            kept_ids, run.data_log = broadcast_object(kept_log, dp)
            by_id = {p.id: p for p in train_problems}
            run.train_problems = [by_id[i] for i in kept_ids]
            run.source = build_prompt_source(recipe.data, run.train_problems, exclude_ids=exclude)
        if trainer.resume and broadcast_resume_step(out / "checkpoints", dp):
            _resume(run, recipe, exclude)
        write_run_recipe(recipe, out, dp)
    except BaseException:
        if engine is not None:
            engine.stop()
        raise
    return run


def _make_actor(recipe: RLRecipe, model: CausalLM, ref_model: CausalLM | None, dp: DataParallel | None) -> Actor:
    """The actor over ``model``, sharded with FSDP2 first (and the reference policy with it) under torchrun."""
    trainer = recipe.trainer
    if dp is not None:
        shard_model(model, dp, offload=trainer.offload_optimizer)
        if ref_model is not None:
            shard_model(ref_model, dp)
    optimizer = build_optimizer(model.parameters(), recipe.optim)  # over the shards
    return Actor(model, optimizer, build_scheduler(optimizer, recipe.optim, trainer.steps), recipe.algorithm,
                 trainer.micro_batch_tokens, recipe.optim.grad_clip, recipe.sampling.temperature,
                 recipe.reward.max_response_len, data_parallel=dp)


def rl_cursor(state: dict, root: Path) -> dict:
    """The prompt cursor an RL checkpoint's state holds; ValueError when the checkpoint under ``root`` is not an
    RL run's (an SFT run's has no cursor)."""
    if "cursor" not in state:
        raise ValueError(f"the checkpoint in {root} was not saved by thinkrl train (by thinkrl sft?); resume it with "
                         "the command that saved it, or set another trainer.output_dir")
    return state["cursor"]


def _resume(run: RLRun, recipe: RLRecipe, exclude: set[str]) -> None:
    """Restore the latest checkpoint into ``run`` and push the restored policy to the engine."""
    state = load_sharded(run.out / "checkpoints", parts=run.checkpoint_parts(), data_parallel=run.data_parallel)
    run.start_step = state["step"]
    cursor, run.stream_state = split_state(rl_cursor(state, run.out / "checkpoints"))  # (no rollout state: older)
    run.source = build_prompt_source(recipe.data, run.train_problems, exclude_ids=exclude, state=cursor)
    weights = run.actor.weights()  # gathered on every rank
    if run.engine is not None:
        run.engine.update_weights(weights, version=run.start_step)
    if run.is_main:
        drop_metrics_after(run.out, run.start_step)
    logger.info("resumed RL at step %d", run.start_step)
