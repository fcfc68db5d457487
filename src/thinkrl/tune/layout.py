"""`ParallelLayout`: the parallel configuration of a training run, as the tuner chooses it and train reads it.

World layout (the torchtitan convention): ``num_gpus = replicate * fsdp * cp * tp``, ranks ordered with tp
innermost, then cp, then fsdp, then replicate. FSDP shards over ``fsdp * cp`` ranks (CP ranks hold different
tokens of the same sequences, so they share parameters); experts are split over ``ep`` ranks taken from those
``fsdp * cp`` ranks and FSDP-sharded over the remaining ``fsdp * cp / ep``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thinkrl.spec import read_text_file, read_yaml

Recompute = Literal["none", "full"]
Offload = Literal["none", "optimizer", "full"]


class ParallelLayout(BaseModel):
    """One parallel configuration.

    Fields:
        tp: tensor-parallel size (with sequence parallelism on the norms and residual stream).
        cp: context-parallel size (each sequence's tokens split over cp ranks; ring attention).
        ep: expert-parallel size (MoE only; 1 for dense models).
        fsdp: FSDP2 shard size per CP rank (``fully_shard`` over a ``fsdp * cp`` mesh dimension).
        micro_batch_tokens: packed tokens per micro-batch of one TP x CP group (whole sequences).
        recompute: "none", or "full" (each decoder layer re-runs its forward in backward).
        offload: "none"; "optimizer" (Adam moments in host memory, the step on CPU); "full" (FSDP2
            CPUOffloadPolicy: sharded parameters, gradients and optimizer states in host memory).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: int = Field(1, ge=1)
    cp: int = Field(1, ge=1)
    ep: int = Field(1, ge=1)
    fsdp: int = Field(1, ge=1)
    micro_batch_tokens: int = Field(..., ge=1)
    recompute: Recompute = "none"
    offload: Offload = "none"

    @property
    def shard_group(self) -> int:
        """Ranks one dense parameter is FSDP-sharded over."""
        return self.fsdp * self.cp

    def replicate(self, num_gpus: int) -> int:
        """Replicas of the sharded model (HSDP); ValueError if the layout does not tile ``num_gpus``."""
        per_replica = self.tp * self.cp * self.fsdp
        if num_gpus % per_replica:
            raise ValueError(f"tp*cp*fsdp = {per_replica} does not divide num_gpus ({num_gpus})")
        return num_gpus // per_replica

    def mesh_shape(self, num_gpus: int) -> dict[str, int]:
        """Device-mesh dimensions, outermost first, for ``init_device_mesh(device, tuple(values),
        mesh_dim_names=tuple(keys))``: replicate, fsdp, cp, tp."""
        return {"replicate": self.replicate(num_gpus), "fsdp": self.fsdp, "cp": self.cp, "tp": self.tp}

    def describe(self) -> str:
        return (f"tp={self.tp} cp={self.cp} ep={self.ep} fsdp={self.fsdp} mb={self.micro_batch_tokens} "
                f"recompute={self.recompute} offload={self.offload}")


def save_layout(layout: ParallelLayout, path: str | Path, header: str = "") -> Path:
    """Write the layout as YAML (``header`` lines become comments above it)."""
    path = Path(path)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comments + yaml.safe_dump(layout.model_dump(), sort_keys=False))
    return path


def load_layout(path: str | Path) -> ParallelLayout:
    """Read a layout YAML written by `save_layout` (or by hand); ValueError names the file and the bad keys."""
    path = Path(path)
    raw = read_yaml(read_text_file(path, "layout file"), str(path))  # (a folder or non-UTF-8 bytes: one line too)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping of layout keys ({', '.join(ParallelLayout.model_fields)})")
    try:
        return ParallelLayout.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'layout'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{path}: {problems}") from None
