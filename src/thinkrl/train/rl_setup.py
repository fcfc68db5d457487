"""Build an RL run from its recipe: the actor, the critic, the reference policy, the rollout engine and its
client, the prompt source, and (when resuming) the restored state. `thinkrl.train.rl_loop` runs it.

The engine gets its own copy of the policy's weights; the loop pushes new ones through the engine client after
every update (`EngineLoop.update_weights`), and a resumed run pushes the restored weights before its first step.
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
)
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.actor import Actor
from thinkrl.train.checkpoint import latest_checkpoint, load_checkpoint, restore_checkpoint
from thinkrl.train.common import prepare_run
from thinkrl.train.config import RLRecipe
from thinkrl.train.critic import Critic, make_critic
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
        engine: the rollout engine client; its engine holds its own copy of the policy's weights.
        source: where training prompts come from.
        train_problems / test_problems: the (possibly prefiltered) training set and the held-out set.
        start_step: the last finished step (0 for a fresh run).
        data_log: step-0 metrics of the prefilter (empty without one).
    """

    out: Path
    tokenizer: TextTokenizer
    actor: Actor
    critic: Critic | None
    ref_model: CausalLM | None
    engine: EngineClient
    source: PromptSource
    train_problems: list[Problem]
    test_problems: list[Problem]
    start_step: int = 0
    data_log: dict[str, float] = field(default_factory=dict)

    def checkpoint_state(self) -> dict[str, object] | None:
        """The extra objects a checkpoint saves beside the policy (the critic's)."""
        return self.critic.state() if self.critic is not None else None


def build_run(recipe: RLRecipe) -> RLRun:
    """Everything ``recipe`` asks for, ready for step ``start_step + 1``. The engine client is started; stop it
    with ``run.engine.stop()``."""
    out, tokenizer, model = prepare_run(recipe)
    trainer = recipe.trainer
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if recipe.algorithm.kl_coef > 0 else None
    critic = (make_critic(recipe.critic, model, recipe.optim, trainer.steps, trainer.micro_batch_tokens)
              if recipe.critic.enabled else None)
    optimizer = build_optimizer(model.parameters(), recipe.optim)
    actor = Actor(model, optimizer, build_scheduler(optimizer, recipe.optim, trainer.steps), recipe.algorithm,
                  trainer.micro_batch_tokens, recipe.optim.grad_clip, recipe.sampling.temperature,
                  recipe.reward.max_response_len)
    train_problems, test_problems = load_problems(recipe.data, "train"), load_problems(recipe.data, "test")
    exclude = {p.id for p in test_problems}
    source = build_prompt_source(recipe.data, train_problems, exclude_ids=exclude)
    sized = train_problems[:200] + test_problems[:200]
    if isinstance(source, Curriculum):  # the longest prompts come at the hardest difficulty it may reach
        sized += source.hardest_problems(20, seed=recipe.data.seed)
    engine = start_engine(model, tokenizer, recipe.sampling, sized, trainer.seed, recipe.rollout.placement)
    run = RLRun(out, tokenizer, actor, critic, ref_model, engine, source, train_problems, test_problems)
    try:
        if recipe.data.prefilter is not None:
            # Before any checkpoint is restored: the initial policy and the seed fix the kept set, so a resumed
            # run filters exactly as the original did.
            timer = Timer()
            with timer.phase("prefilter"):
                kept = prefilter_problems(engine, tokenizer, train_problems, recipe.data.prefilter,
                                          recipe.sampling, seed=trainer.seed)
            run.train_problems, run.data_log = kept.kept, {**kept.metrics(), **timer.metrics()}
            run.source = build_prompt_source(recipe.data, kept.kept, exclude_ids=exclude)
        if trainer.resume and latest_checkpoint(out / "checkpoints") is not None:
            _resume(run, recipe, exclude)
    except BaseException:
        engine.stop()
        raise
    return run


def _resume(run: RLRun, recipe: RLRecipe, exclude: set[str]) -> None:
    """Restore the latest checkpoint into ``run`` and push the restored policy to the engine."""
    actor = run.actor
    state = restore_checkpoint(load_checkpoint(run.out / "checkpoints"), model=actor.model,
                               optimizer=actor.optimizer, scheduler=actor.scheduler, extra=run.checkpoint_state())
    run.start_step = state["step"]
    run.source = build_prompt_source(recipe.data, run.train_problems, exclude_ids=exclude, state=state["cursor"])
    run.engine.update_weights(actor.weights(), version=run.start_step)
    logger.info("resumed RL at step %d", run.start_step)
