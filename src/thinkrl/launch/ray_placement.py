"""Placing an RL run on a Ray cluster: trainer ranks and rollout workers as Ray actors on two placement groups.

    trainer group  (strategy PACK): N bundles {CPU: c_t, GPU: g_t}   -> N `TrainerRank` actors, one process group
    rollout group  (strategy PACK): M bundles {CPU: c_r, GPU: g_r}   -> M `RolloutWorker` actors, one engine each

The groups are reserved before any actor starts, so a run either gets all its resources or fails at once with a
message naming what it asked for and what the cluster has. PACK keeps the trainer ranks on as few nodes as fit
(their collectives are the traffic that matters); the rollout group may land on other nodes. On a GPU cluster
``gpus_per_trainer: 1`` gives each rank its own GPU (nccl); with 0 everything runs on CPUs (gloo).

`RayEngineClient` is the driver's engine client over the rollout workers: ``generate`` splits a call's requests
into contiguous shares, one per worker, and returns the trajectories in request order, so the rollout code
(`thinkrl.rollout.collect_rollout_batch`, `prefilter_problems`, `thinkrl.eval.evaluate.evaluate`) runs unchanged
on the driver; ``update_weights`` pushes one object-store copy of the weights to every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thinkrl.engine import Request
from thinkrl.launch.ray_actors import RolloutWorker, TrainerRank, placed_device
from thinkrl.model import ModelConfig
from thinkrl.records import Trajectory
from thinkrl.rollout.process_wire import budget_controller, pack_request
from thinkrl.tasks import Problem
from thinkrl.train.config import RLRecipe

logger = logging.getLogger(__name__)

INSTALL_HINT = "Ray is not installed: pip install 'thinkrl[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or ImportError with the install hint."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return ray


@dataclass(frozen=True)
class RayPlacement:
    """How many actors of each kind, and the resources of each (one placement-group bundle per actor).

    Fields:
        num_trainers: data-parallel trainer ranks (N).
        num_rollout_workers: rollout engines (M).
        cpus_per_trainer / gpus_per_trainer: each rank's bundle (GPUs > 0: nccl on cuda; 0: gloo on CPU).
        cpus_per_rollout_worker / gpus_per_rollout_worker: each rollout worker's bundle (fractions allowed).
        timeout_s: how long to wait for the cluster to grant the bundles.
    """

    num_trainers: int = 1
    num_rollout_workers: int = 1
    cpus_per_trainer: float = 1.0
    gpus_per_trainer: float = 0.0
    cpus_per_rollout_worker: float = 1.0
    gpus_per_rollout_worker: float = 0.0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("num_trainers", "num_rollout_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cpus_per_trainer", "gpus_per_trainer", "cpus_per_rollout_worker", "gpus_per_rollout_worker"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if 0 < self.gpus_per_trainer < 1:
            raise ValueError(f"gpus_per_trainer must be 0 or a whole number, got {self.gpus_per_trainer} "
                             "(nccl needs one GPU per rank)")

    def total(self) -> dict[str, float]:
        """CPUs and GPUs of all bundles together."""
        return {"CPU": self.num_trainers * self.cpus_per_trainer
                + self.num_rollout_workers * self.cpus_per_rollout_worker,
                "GPU": self.num_trainers * self.gpus_per_trainer
                + self.num_rollout_workers * self.gpus_per_rollout_worker}

    def trainer_bundle(self) -> dict[str, float]:
        return _bundle(self.cpus_per_trainer, self.gpus_per_trainer)

    def rollout_bundle(self) -> dict[str, float]:
        return _bundle(self.cpus_per_rollout_worker, self.gpus_per_rollout_worker)


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    """A placement-group bundle (Ray refuses zero-valued resources, so those are left out)."""
    return {key: value for key, value in (("CPU", cpus), ("GPU", gpus)) if value > 0}


class RayEngineClient:
    """The engine client of the driver over M rollout workers (``generate`` / ``update_weights`` / ``version``)."""

    def __init__(self, workers: list[Any]) -> None:
        self.workers = workers

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]:
        """Complete every request on the workers (contiguous shares); trajectories in the order of ``requests``.
        Each request's thinking-budget controller ends with the worker's final counters (the caller reads them)."""
        ray = import_ray()
        shares = split_evenly([pack_request(request) for request in requests], len(self.workers))
        calls = [worker.generate.remote(share) for worker, share in zip(self.workers, shares, strict=True) if share]
        results = [item for part in ray.get(calls) for item in part]
        for request, (_, state) in zip(requests, results, strict=True):
            controller = budget_controller(request.controller)  # a continuation's: the one it wraps
            if controller is not None and state is not None:
                vars(controller).update(state)
        return [traj for traj, _ in results]

    def update_weights(self, weights: Any, version: int) -> None:
        """Push ``weights`` (named CPU tensors, or an ObjectRef of them) to every worker and wait until applied.
        One object-store copy serves all workers; a ref produced on a trainer node moves node to node."""
        ray = import_ray()
        ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(weights)
        ray.get([worker.update_weights.remote(ref, version) for worker in self.workers])

    def versions(self) -> list[int]:
        """Each worker's weight version."""
        return import_ray().get([worker.version.remote() for worker in self.workers])


def split_evenly(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` cut into ``parts`` contiguous runs whose sizes differ by at most one (the first ones longer)."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


@dataclass
class RayCluster:
    """The placed actors of one run. ``stop`` ends them and frees the placement groups.

    Fields:
        trainers: N `TrainerRank` actor handles, rank order.
        engine: the driver's client over the rollout workers.
        groups: the trainer and rollout placement groups.
        model_config: the policy's config (set once the ranks are set up).
    """

    trainers: list[Any]
    engine: RayEngineClient
    groups: list[Any]
    model_config: ModelConfig | None = None

    def stop(self) -> None:
        """Leave the process group, stop the engines, kill the actors, remove the placement groups."""
        ray = import_ray()
        for calls in ([t.close.remote() for t in self.trainers], [w.stop.remote() for w in self.engine.workers]):
            try:
                ray.get(calls, timeout=30)
            except Exception as error:  # a dead actor must not keep the rest alive
                logger.warning("Ray actor shutdown: %s", error)
        for handle in [*self.trainers, *self.engine.workers]:
            ray.kill(handle)
        for group in self.groups:
            ray.util.remove_placement_group(group)


def _reserve(ray: Any, bundles: list[dict[str, float]], what: str, timeout_s: float) -> Any:
    """A ready placement group of ``bundles``; ValueError naming the request and the cluster's resources if it
    is not granted within ``timeout_s``."""
    group = ray.util.placement_group(bundles, strategy="PACK", name=what)
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        ray.util.remove_placement_group(group)
        total, free = ray.cluster_resources(), ray.available_resources()
        have = {key: f"{free.get(key, 0):g} free of {total[key]:g}" for key in ("CPU", "GPU") if key in total}
        raise ValueError(f"the Ray cluster did not grant the {what} placement group ({len(bundles)} x "
                         f"{bundles[0]}) within {timeout_s:.0f} s; the cluster has {have or 'no CPU or GPU'}")
    return group


def place_run(recipe: RLRecipe, placement: RayPlacement, sized: list[Problem]) -> RayCluster:
    """Reserve both placement groups, start the actors on them, form the trainers' process group.

    ``sized``: the problems whose longest prompt sizes the engines. Ray must be initialised (``ray.init``).
    """
    ray = import_ray()
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    trainer_group = _reserve(ray, [placement.trainer_bundle()] * placement.num_trainers, "trainer",
                             placement.timeout_s)
    groups = [trainer_group]
    try:
        groups.append(_reserve(ray, [placement.rollout_bundle()] * placement.num_rollout_workers, "rollout",
                               placement.timeout_s))

        def options(group: Any, index: int, cpus: float, gpus: float) -> dict[str, Any]:
            strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)
            return {"num_cpus": cpus, "num_gpus": gpus, "scheduling_strategy": strategy}

        trainer_cls, worker_cls = ray.remote(TrainerRank), ray.remote(RolloutWorker)
        trainers = [trainer_cls.options(**options(trainer_group, rank, placement.cpus_per_trainer,
                                                  placement.gpus_per_trainer))
                    .remote(recipe, rank, placement.num_trainers, placement.gpus_per_trainer)
                    for rank in range(placement.num_trainers)]
        model = recipe.model.model_copy(update={"device": placed_device(placement.gpus_per_rollout_worker)})
        workers = [worker_cls.options(**options(groups[1], index, placement.cpus_per_rollout_worker,
                                                placement.gpus_per_rollout_worker))
                   .remote(model, recipe.tokenizer, recipe.sampling, sized, recipe.trainer.seed)
                   for index in range(placement.num_rollout_workers)]
        cluster = RayCluster(trainers, RayEngineClient(workers), groups)
    except BaseException:
        for group in groups:
            ray.util.remove_placement_group(group)
        raise
    try:
        address, port = ray.get(trainers[0].rendezvous_address.remote())
        cluster.model_config = ray.get([trainer.setup.remote(address, port) for trainer in trainers])[0]
        ray.get([worker.version.remote() for worker in workers])  # the engines are up (or raise their error)
    except BaseException:
        cluster.stop()
        raise
    logger.info("placed %d trainer ranks (%s each) and %d rollout workers (%s each)", placement.num_trainers,
                placement.trainer_bundle(), placement.num_rollout_workers, placement.rollout_bundle())
    return cluster
