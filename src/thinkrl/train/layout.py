"""`thinkrl train/sft --layout layout.yaml`: run with the parallel layout `thinkrl tune` chose.

A layout (`thinkrl.tune.ParallelLayout`) becomes recipe overrides, so the resolved recipe saved with the run shows
what was applied:

- ``micro_batch_tokens`` -> ``trainer.micro_batch_tokens``; ``recompute`` -> ``trainer.activation_checkpointing``;
- ``tp`` -> ``trainer.tensor_parallel`` (`thinkrl.train.tensor_parallel`), ``fsdp`` -> the remaining
  ``WORLD_SIZE / tp`` ranks, over which FSDP2 shards (torchrun sets WORLD_SIZE: ``tp * fsdp``, or with tp = 1 a
  multiple of ``fsdp``: replicas of the sharded model, HSDP, ``trainer.fsdp_shard_size = fsdp``);
- ``offload: full`` -> ``trainer.offload_optimizer`` (FSDP2 ``CPUOffloadPolicy``).

What the trainer cannot run is refused with a one-line reason, never silently dropped: context and expert
parallelism (cp, ep > 1; the tuner models them), ``offload: optimizer`` (Adam moments alone on the host),
replicas (HSDP) together with tp > 1, offload together with tp > 1, a WORLD_SIZE that is no multiple of tp * fsdp.
"""

from __future__ import annotations

import os
from pathlib import Path

from thinkrl.tune.layout import ParallelLayout, load_layout

LAUNCH = "python -m torch.distributed.run --nproc-per-node {n} -m thinkrl ..."


def layout_overrides(layout: ParallelLayout, world_size: int | None = None) -> list[str]:
    """The recipe overrides of ``layout`` for a run on ``world_size`` ranks (None: one process, no torchrun).

    Raises:
        ValueError: a part of the layout the trainer does not implement, or a rank count that is not the launch's.
    """
    where = f"layout {layout.describe()}"
    for name, size, what in (("cp", layout.cp, "context"), ("ep", layout.ep, "expert")):
        if size > 1:
            raise ValueError(f"{where}: {what} parallelism ({name}={size}) is not implemented in the trainer "
                             "(the tuner models it); choose a layout with tp and fsdp only")
    if layout.offload == "optimizer":
        raise ValueError(f"{where}: offload 'optimizer' (Adam moments alone on the host) is not implemented in "
                         "the trainer; use offload 'full' (FSDP2 CPUOffloadPolicy) or 'none'")
    ranks = layout.tp * layout.fsdp
    if world_size is None and (ranks > 1 or layout.offload == "full"):
        raise ValueError(f"{where} runs on {ranks} rank(s) with FSDP2: launch with torchrun "
                         f"({LAUNCH.format(n=ranks)})")
    if world_size is not None and world_size % ranks:
        raise ValueError(f"{where} needs tp*fsdp = {ranks} ranks (or a multiple: replicas) but WORLD_SIZE is "
                         f"{world_size}: launch with --nproc-per-node {ranks}")
    if world_size is not None and world_size > ranks and layout.tp > 1:
        raise ValueError(f"{where} on WORLD_SIZE={world_size} needs {world_size // ranks} replicas (HSDP) with "
                         f"tp > 1, which is not implemented in the trainer: launch with --nproc-per-node {ranks}")
    if layout.tp > 1 and layout.offload != "none":
        raise ValueError(f"{where}: offload together with tp > 1 is not implemented in the trainer")
    hsdp = [f"trainer.fsdp_shard_size={layout.fsdp}"] if world_size is not None and world_size > ranks else []
    return hsdp + [f"trainer.micro_batch_tokens={layout.micro_batch_tokens}",
            f"trainer.activation_checkpointing={'true' if layout.recompute == 'full' else 'false'}",
            f"trainer.tensor_parallel={layout.tp}",
            f"trainer.offload_optimizer={'true' if layout.offload == 'full' else 'false'}"]


def overrides_from_layout(path: str | Path | None) -> list[str]:
    """`layout_overrides` of the layout file at ``path`` for this launch (WORLD_SIZE from torchrun; none without
    a file)."""
    if path is None:
        return []
    world = os.environ.get("WORLD_SIZE")
    return layout_overrides(load_layout(path), int(world) if world else None)
