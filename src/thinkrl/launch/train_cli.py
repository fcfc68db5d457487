"""`thinkrl train RECIPE.yaml [key=value ...] [--ray ...]`: RL training in this process, or placed on Ray.

Without ``--ray`` this is `thinkrl.train.rl_cli` unchanged. With ``--ray`` the run's trainer ranks and rollout
workers become Ray actors on their own placement groups (see docs/ray.md):

    thinkrl train recipes/tiny_dapo.yaml --ray --trainers 2 --rollout-workers 1                 # local Ray
    thinkrl train recipe.yaml --ray --ray-address auto --trainers 8 --gpus-per-trainer 1 \\
        --rollout-workers 8 --gpus-per-rollout-worker 1                                        # a running cluster
"""

from __future__ import annotations

import argparse
import logging
import math
import os

from thinkrl.train import rl_cli

RAY_DEFAULTS: dict[str, float | None] = {
    "ray_address": None, "trainers": 1, "rollout_workers": 1, "gpus_per_trainer": 0.0,
    "gpus_per_rollout_worker": 0.0, "cpus_per_trainer": 1.0, "cpus_per_rollout_worker": 1.0,
}
"""The Ray placement options and their defaults (without ``--ray``, setting one is an error)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    rl_cli.add_arguments(parser)
    group = parser.add_argument_group("Ray placement (pip install 'thinkrl[ray]'; docs/ray.md)")
    group.add_argument("--ray", action="store_true", help="run trainer ranks and rollout workers as Ray actors")
    group.add_argument("--ray-address", default=RAY_DEFAULTS["ray_address"], help="Ray cluster to join ('auto': "
                       "the one `ray start` began on this node; default: start a local one for this run)")
    group.add_argument("--trainers", type=int, default=RAY_DEFAULTS["trainers"],
                       help="data-parallel trainer ranks (FSDP2)")
    group.add_argument("--rollout-workers", type=int, default=RAY_DEFAULTS["rollout_workers"], help="rollout engines")
    group.add_argument("--gpus-per-trainer", type=float, default=RAY_DEFAULTS["gpus_per_trainer"],
                       help="0: CPU and gloo; 1: a GPU and nccl")
    group.add_argument("--gpus-per-rollout-worker", type=float, default=RAY_DEFAULTS["gpus_per_rollout_worker"],
                       help="GPUs of each engine (fractions allowed)")
    group.add_argument("--cpus-per-trainer", type=float, default=RAY_DEFAULTS["cpus_per_trainer"])
    group.add_argument("--cpus-per-rollout-worker", type=float, default=RAY_DEFAULTS["cpus_per_rollout_worker"])


def run(args: argparse.Namespace) -> int:
    if not args.ray:
        given = [name for name, default in RAY_DEFAULTS.items() if getattr(args, name) != default]
        if given:  # a placement this run would silently not use
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ValueError(f"{flags} only apply with --ray (Ray placement; docs/ray.md)")
        return rl_cli.run(args)
    from thinkrl.launch.ray_placement import INSTALL_HINT, RayPlacement

    if args.layout is not None:
        raise ValueError("--ray does not take --layout yet (see docs/ray.md)")
    placement = RayPlacement(args.trainers, args.rollout_workers, args.cpus_per_trainer, args.gpus_per_trainer,
                             args.cpus_per_rollout_worker, args.gpus_per_rollout_worker)
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray: {INSTALL_HINT}") from None
    from thinkrl.launch.ray_loop import run_rl_on_ray
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import RLRecipe, load_recipe

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + (["trainer.resume=true"] if args.resume else [])
    recipe = load_recipe(args.recipe, RLRecipe, overrides, presets=ALGORITHM_PRESETS)
    if args.ray_address:  # join a running cluster, which keeps its own settings
        try:
            ray.init(address=args.ray_address)
        except ConnectionError as error:  # no cluster there: one line, exit 2
            raise ValueError(f"--ray-address {args.ray_address}: {error} (start one with `ray start --head`; "
                             "docs/ray.md)") from None
    else:  # a local cluster for this run only, with at least the logical CPUs the placement asks for
        cpus = max(os.cpu_count() or 1, math.ceil(placement.total()["CPU"]))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False)  # even if `ray start` ran here
    try:
        print(run_rl_on_ray(recipe, placement))
    finally:
        ray.shutdown()
    return 0
