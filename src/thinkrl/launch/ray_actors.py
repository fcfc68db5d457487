"""The two kinds of Ray actor of a distributed RL run, as plain classes (`ray_placement` wraps them with
``ray.remote`` when it places them, so this module imports without Ray).

- `RolloutWorker`: one rollout engine (a frozen copy of the policy in an `EngineLoop`, built by
  `thinkrl.rollout.start_engine` exactly as the single-process run builds its own) answering ``generate`` for a
  share of the step's requests and taking weight pushes between steps. Requests cross as the rollout process's
  wire records (`thinkrl.rollout.process_wire`: a thinking-budget controller travels without its tokenizer and is
  rebuilt over the worker's), and each controller's final counters travel back with its trajectory.
- `TrainerRank`: one data-parallel rank. It joins a torch process group (the same env:// rendezvous torchrun
  would set up: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), shards the policy with FSDP2
  (`thinkrl.train.distributed`) and runs `thinkrl.train.rl_step.prepare_batch` + `update` on the global batch; the
  `Actor` gives each rank its share of every mini-batch (the critic, when enabled, is sharded and updated the same
  way). nccl when Ray gave the actor a GPU, gloo on CPU. Checkpoints are the torchrun path's sharded DCP ones
  (`thinkrl.train.dcp`), so a run saved on Ray resumes under torchrun or in one process, and the other way round.

Each rank builds its policy from the recipe with the run's seed, so every rank and every rollout worker starts from
the same weights (the model is loaded from ``model.path``, which must be readable on every node).
"""

from __future__ import annotations

import copy
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import torch

from thinkrl.model import CausalLM, ModelConfig
from thinkrl.records import Trajectory
from thinkrl.rollout import SamplingSpec, start_engine
from thinkrl.rollout.process_wire import RequestSpec, budget_controller, controller_state, unpack_request
from thinkrl.tasks import Problem
from thinkrl.train.actor import Actor
from thinkrl.train.common import build_policy, build_tokenizer, seed_everything
from thinkrl.train.config import ModelSpec, RLRecipe, TokenizerSpec
from thinkrl.train.critic import Critic, make_critic
from thinkrl.train.dcp import Trained, load_sharded, save_sharded
from thinkrl.train.distributed import DataParallel, close_data_parallel, init_data_parallel, shard_model
from thinkrl.train.rl_step import prepare_batch, update
from thinkrl.train.schedule import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

NamedTensors = list[tuple[str, torch.Tensor]]
"""``(name, tensor)`` pairs of the policy's parameters, as `EngineLoop.update_weights` takes them."""


def placed_device(gpus: float) -> str:
    """The device of an actor Ray gave ``gpus`` GPUs: Ray sets CUDA_VISIBLE_DEVICES to its GPUs, so it is cuda:0
    of the actor's own view (and the CPU without a GPU, even on a GPU node: Ray hides the GPUs then)."""
    return "cuda" if gpus > 0 else "cpu"


class RolloutWorker:
    """A rollout engine in its own process: ``generate`` requests, take weight pushes, report its version."""

    def __init__(self, model: ModelSpec, tokenizer: TokenizerSpec, sampling: SamplingSpec, sized: list[Problem],
                 seed: int) -> None:
        """``model`` with its device set for this worker (`placed_device`); ``sized``: the problems whose
        longest prompt sizes the engine's slots (as `thinkrl.train.rl_setup.build_run` picks them)."""
        seed_everything(seed)
        self.tokenizer = build_tokenizer(tokenizer)
        policy = build_policy(model, self.tokenizer, seed=seed)
        self.engine = start_engine(policy, self.tokenizer, sampling, sized, seed)

    def generate(self, requests: Sequence[RequestSpec]) -> list[tuple[Trajectory, dict[str, Any] | None]]:
        """Complete every request (`EngineLoop.generate`; controllers rebuilt over this worker's tokenizer); per
        request in order, its trajectory and its thinking-budget controller's final state (None without one; a
        continuation's `ContinuedController` sends the state of the budget controller it wraps)."""
        unpacked = [unpack_request(spec, self.tokenizer) for spec in requests]
        trajectories = self.engine.generate(unpacked)
        budgets = [budget_controller(request.controller) for request in unpacked]
        return [(traj, None if budget is None else controller_state(budget))
                for traj, budget in zip(trajectories, budgets, strict=True)]

    def update_weights(self, weights: NamedTensors, version: int) -> int:
        """Copy the pushed tensors into the engine between two steps; returns how many were copied."""
        return self.engine.update_weights(weights, version)

    def version(self) -> int:
        """The version of the engine's weights (0 until the first push)."""
        return self.engine.version

    def stop(self) -> None:
        self.engine.stop()


def free_port() -> int:
    """A TCP port free on this node right now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class TrainerRank:
    """One data-parallel rank of the actor update, sharded with FSDP2 over all ranks.

    Call `setup` on every rank at once (the process group forms when all have joined), then per step `train` on
    every rank with the same trajectories and step, then `weights` on every rank (a collective; rank 0 returns
    them). `close` leaves the process group.
    """

    def __init__(self, recipe: RLRecipe, rank: int, world_size: int, gpus: float) -> None:
        """``recipe`` without a critic (`thinkrl.launch.ray_loop.check_ray_recipe`); ``gpus``: Ray's grant."""
        self.recipe, self.rank, self.world_size, self.gpus = recipe, rank, world_size, gpus
        self.actor: Actor | None = None
        self.critic: Critic | None = None
        self.ref_model: CausalLM | None = None
        self.data_parallel: DataParallel | None = None

    def rendezvous_address(self) -> tuple[str, int]:
        """(this node's IP, a free port): where the process group meets (asked of rank 0)."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, master_addr: str, master_port: int) -> ModelConfig:
        """Join the process group, build and shard the policy, its optimizer and schedule; returns its config."""
        recipe, trainer = self.recipe, self.recipe.trainer
        # LOCAL_RANK 0: Ray shows each actor only its own GPU (CUDA_VISIBLE_DEVICES), which is then cuda:0.
        os.environ.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        dp = self.data_parallel = init_data_parallel("nccl" if self.gpus > 0 else "gloo")
        seed_everything(trainer.seed)
        tokenizer = build_tokenizer(recipe.tokenizer)
        spec = recipe.model.model_copy(update={"device": str(dp.device)})
        model = build_policy(spec, tokenizer, seed=trainer.seed)
        model.activation_checkpointing = trainer.activation_checkpointing
        if recipe.algorithm.kl_coef > 0:  # the frozen reference policy, sharded like the actor
            self.ref_model = shard_model(copy.deepcopy(model).eval().requires_grad_(False), dp)
        if recipe.critic.enabled:  # built from the unsharded policy, then sharded itself
            self.critic = make_critic(recipe.critic, model, recipe.optim, trainer.steps, trainer.micro_batch_tokens,
                                      dp, trainer.offload_optimizer)
        shard_model(model, dp, offload=trainer.offload_optimizer)
        optimizer = build_optimizer(model.parameters(), recipe.optim)  # after sharding: sharded optimizer state
        self.actor = Actor(model, optimizer, build_scheduler(optimizer, recipe.optim, trainer.steps),
                           recipe.algorithm, trainer.micro_batch_tokens, recipe.optim.grad_clip,
                           recipe.sampling.temperature, recipe.reward.max_response_len, data_parallel=dp)
        logger.info("trainer rank %d/%d on %s", dp.rank, dp.world_size, dp.device)
        return model.config

    def train(self, trajectories: list[Trajectory], step: int) -> dict[str, float]:
        """One update on the step's kept trajectories (the same on every rank); returns the step's training
        metrics (global: all-reduced over ranks) and the learning rate after it."""
        actor = self._actor()
        batch = prepare_batch(trajectories, actor, self.critic, self.ref_model)
        row = update(batch, actor, self.critic, seed=self.recipe.trainer.seed, step=step)
        row["lr"] = float(actor.scheduler.get_last_lr()[0])
        return row

    def learning_rate(self) -> float:
        return float(self._actor().scheduler.get_last_lr()[0])

    def weights(self) -> NamedTensors | None:
        """The full policy weights as CPU tensors on rank 0 (None on the others); every rank must call it."""
        full = self._actor().weights()
        if self.rank != 0:
            return None
        return [(name, tensor.detach().to("cpu", copy=True)) for name, tensor in full]

    def checkpoint_parts(self) -> dict[str, Trained]:
        """What a checkpoint holds, named as the torchrun path names it (so either loads the other's)."""
        actor = self._actor()
        parts = {"model": Trained(actor.model, actor.optimizer, actor.scheduler)}
        if self.critic is not None:
            parts["critic"] = Trained(self.critic.model, self.critic.optimizer, self.critic.scheduler)
        return parts

    def save_checkpoint(self, root: str, step: int, trainer_state: dict[str, Any]) -> str:
        """A sharded DCP checkpoint of step ``step`` under ``root`` (every rank writes its shards: on several
        nodes ``root`` must be shared storage); ``trainer_state``: the driver's (step, prompt cursor)."""
        trainer = self.recipe.trainer
        return str(save_sharded(root, step, parts=self.checkpoint_parts(), trainer_state=trainer_state,
                                recipe=self.recipe, config=self._actor().model.config, keep_last=trainer.keep_last,
                                data_parallel=self.data_parallel))

    def resume(self, root: str) -> dict[str, Any]:
        """Load the latest checkpoint under ``root`` (saved on any number of ranks, by Ray or torchrun); returns
        its trainer state."""
        return load_sharded(root, parts=self.checkpoint_parts(), data_parallel=self.data_parallel)

    def close(self) -> None:
        close_data_parallel()

    def _actor(self) -> Actor:
        if self.actor is None:
            raise RuntimeError("TrainerRank.setup was not called")
        return self.actor
