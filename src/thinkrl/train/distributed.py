"""Data-parallel training with FSDP2: what one rank needs.

A run is started by ``torchrun`` (``python -m torch.distributed.run --nproc-per-node N ...``); each rank:

1. `init_data_parallel` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), opens the process group
   (gloo on CPU, nccl on CUDA) and a 1-D `DeviceMesh`;
2. `shard_model` applies ``fully_shard`` (FSDP2) to every decoder layer and then to the root, so each rank holds
   1/N of every parameter (and of the optimizer state built afterwards); fp32 on CPU, bf16 compute with fp32
   gradient reduction on CUDA (``MixedPrecisionPolicy``);
3. every rank holds the same global batch and the same RNG; `thinkrl.train.actor.Actor` with ``data_parallel``
   set splits each mini-batch across ranks with `rank_micro_batches` (Karmarkar-Karp on the attention workload,
   the same number of micro-batches on every rank) while the loss normalisers stay those of the global
   mini-batch, so the gradients FSDP2 reduces add up to the 1-rank gradient;
4. `full_weights` gathers full tensors (``DTensor.full_tensor()``, a collective: every rank calls it) for the
   engine weight push; `all_reduce_sum` sums per-rank statistics; `log_rank0` logs once.

`data_parallel_from_env` is how ``thinkrl train`` / ``thinkrl sft`` join (None outside torchrun),
`broadcast_object` hands rank 0's rollout to every rank, `shard_module` shards any decoder-backed module (the
critic's ``ValueModel``, the frozen reference policy). Sharded checkpoints: `thinkrl.train.dcp`.
Tensor parallelism (``trainer.tensor_parallel``): `thinkrl.train.tensor_parallel` (a 2-D (dp, tp) mesh; the
data-parallel coordinates below are then those of the dp dimension). Out of scope here (see docs/distributed.md):
context/expert parallelism, multi-node launch.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor

from thinkrl.model import CausalLM
from thinkrl.train.balance import attention_workload, karmarkar_karp, split_across_ranks
from thinkrl.train.batching import PackedBatch, split_micro_batches

logger = logging.getLogger(__name__)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_Module = TypeVar("_Module", bound=nn.Module)


@dataclass(frozen=True)
class DataParallel:
    """This rank's place in the data-parallel group.

    Fields:
        rank: this rank, 0 <= rank < world_size.
        world_size: number of ranks.
        mesh: the 1-D device mesh FSDP2 shards over.
        device: this rank's device (``cuda:LOCAL_RANK`` or cpu).
        tp_mesh: the tensor-parallel mesh dimension (None without tensor parallelism); then ``mesh`` is the dp
            dimension and `dp_rank`/`dp_size` (which data a rank takes) differ from rank/world_size.
    """

    rank: int
    world_size: int
    mesh: DeviceMesh
    device: torch.device
    tp_mesh: DeviceMesh | None = None

    @property
    def dp_rank(self) -> int:
        """This rank's index among the ranks that take different data (its tensor-parallel peers share it)."""
        return self.rank if self.tp_mesh is None else self.mesh.get_local_rank()

    @property
    def dp_size(self) -> int:
        """Ranks that take different data: world_size / tensor-parallel size."""
        return self.world_size if self.tp_mesh is None else self.mesh.size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def loss_scale(self) -> float:
        """What each rank's loss is multiplied by: FSDP2 averages gradients over ranks, and the losses (normalised
        by global counts) must add up instead. (``set_gradient_divide_factor(1.0)`` would ask for PREMUL_SUM,
        which gloo does not support.)"""
        return float(self.dp_size)

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over the data-parallel ranks (a collective: every rank calls it; tensor-
        parallel peers hold the same values and are counted once)."""
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=None if self.tp_mesh is None else self.mesh.get_group())
        return buf.tolist()

    def micro_batches(self, lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
        """This rank's micro-batches of a global mini-batch (indices into ``lengths``); see `rank_micro_batches`."""
        return rank_micro_batches(lengths, self.dp_size, max_tokens)[self.dp_rank]


def init_data_parallel(backend: str | None = None) -> DataParallel:
    """Join the process group torchrun set up (env:// rendezvous) and build the mesh.

    ``backend`` defaults to nccl when CUDA is available, else gloo. Raises ValueError outside torchrun.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"not started by torchrun: environment variables {', '.join(missing)} are missing "
                         "(launch with python -m torch.distributed.run --nproc-per-node N ...)")
    cuda = torch.cuda.is_available() and backend != "gloo"
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    mesh = init_device_mesh(device.type, (dist.get_world_size(),), mesh_dim_names=("dp",))
    return DataParallel(dist.get_rank(), dist.get_world_size(), mesh, device)


def data_parallel_from_env(backend: str | None = None, tensor_parallel: int = 1,
                           shard_size: int = 0) -> DataParallel | None:
    """`init_data_parallel` when this process was started by torchrun (``WORLD_SIZE`` set), else None (a plain
    single-process run, which takes the unsharded code paths). ``tensor_parallel`` > 1: a (dp, tp) mesh
    (`thinkrl.train.tensor_parallel.init_tensor_parallel`); ValueError outside torchrun. ``shard_size`` (0: all
    ranks): FSDP2 shards over this many ranks, HSDP when fewer than WORLD_SIZE (`init_hybrid_shard`)."""
    if tensor_parallel > 1:
        if shard_size and shard_size != int(os.environ.get("WORLD_SIZE", "1")) // tensor_parallel:
            raise ValueError("trainer.fsdp_shard_size (HSDP) with trainer.tensor_parallel > 1 is not implemented")
        from thinkrl.train.tensor_parallel import init_tensor_parallel

        return init_tensor_parallel(tensor_parallel, backend)
    if "WORLD_SIZE" not in os.environ:
        return None
    return init_hybrid_shard(shard_size, backend) if shard_size else init_data_parallel(backend)


def init_hybrid_shard(shard_size: int, backend: str | None = None) -> DataParallel:
    """`init_data_parallel` with FSDP2's mesh 2-D, (replicate, shard) = (WORLD_SIZE / shard_size, shard_size): each
    parameter sharded over ``shard_size`` ranks, the shards' gradients all-reduced over the replicas (HSDP). Every
    rank still takes its own data. ValueError when ``shard_size`` does not divide WORLD_SIZE."""
    flat = init_data_parallel(backend)
    if flat.world_size % shard_size:
        raise ValueError(f"trainer.fsdp_shard_size={shard_size} does not divide WORLD_SIZE={flat.world_size}")
    if shard_size == flat.world_size:
        return flat
    mesh = init_device_mesh(flat.device.type, (flat.world_size // shard_size, shard_size),
                            mesh_dim_names=("replicate", "shard"))
    return DataParallel(flat.rank, flat.world_size, mesh, flat.device)


def shard_model(model: CausalLM, data_parallel: DataParallel, *, offload: bool = False) -> CausalLM:
    """Apply FSDP2 in place: ``fully_shard`` on each decoder layer, then on the root (embeddings, final norm,
    lm_head; a tied lm_head shares the embedding's shard). Build the optimizer after this, over the sharded
    parameters. On CUDA, bf16 compute with fp32 gradient reduction; on CPU, fp32 throughout. ``offload``: keep
    the sharded parameters, gradients and optimizer state in host memory (FSDP2 ``CPUOffloadPolicy``; the
    optimizer step then runs on the CPU)."""
    return shard_module(model, model.model.layers, data_parallel, offload=offload)


def shard_module(module: _Module, layers: Iterable[nn.Module], data_parallel: DataParallel, *,
                 offload: bool = False) -> _Module:
    """`shard_model` for any module built around decoder ``layers`` (e.g. the critic's ``ValueModel``:
    ``layers = critic.backbone.model.layers``): each layer is one FSDP2 unit, the rest of ``module`` the root's.
    With tensor parallelism the layers are first split over the tp ranks (`parallelize_layers`), and FSDP2 shards
    over the dp dimension only when it has several ranks."""
    if data_parallel.tp_mesh is not None:
        from thinkrl.train.tensor_parallel import parallelize_layers

        parallelize_layers(layers, data_parallel.tp_mesh)
        if data_parallel.dp_size == 1:
            return module
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if data_parallel.device.type == "cuda" else MixedPrecisionPolicy())
    offload_policy = CPUOffloadPolicy(pin_memory=data_parallel.device.type == "cuda") if offload else OffloadPolicy()
    for layer in layers:
        fully_shard(layer, mesh=data_parallel.mesh, mp_policy=policy, offload_policy=offload_policy)
    fully_shard(module, mesh=data_parallel.mesh, mp_policy=policy, offload_policy=offload_policy)
    return module


def broadcast_object(obj: Any, data_parallel: DataParallel | None) -> Any:
    """Rank 0's ``obj`` on every rank (a collective; identity outside a process group).

    It pickles: use it only for the run's own records (trajectories, metrics, kept problem ids) that rank 0 made
    in this run, never for bytes that came from outside (model text is inside the records, but as plain strings
    and ids that our own code produced; nothing received from a peer outside the group is unpickled)."""
    if data_parallel is None or data_parallel.world_size == 1:
        return obj
    box = [obj if data_parallel.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, data_parallel: DataParallel | None) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (a collective; ``[obj]`` outside a process group)."""
    if data_parallel is None or data_parallel.world_size == 1:
        return [obj]
    out: list[Any] = [None] * data_parallel.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(data_parallel: DataParallel | None) -> None:
    """Wait for every rank (nothing outside a process group)."""
    if data_parallel is not None and data_parallel.world_size > 1:
        dist.barrier()


def full_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` of every parameter, gathered from the shards (a collective: every rank calls it
    and gets the full tensors). What the engine weight push sends."""
    return [(name, _full_detached(param)) for name, param in model.named_parameters()]


def _full_detached(param: torch.Tensor) -> torch.Tensor:
    detached = param.detach()  # a DTensor's detach is a DTensor
    return detached.full_tensor() if isinstance(detached, DTensor) else detached


def rank_micro_batches(lengths: Sequence[int], num_ranks: int, max_tokens: int, *,
                       a: float = 24576.0) -> list[list[list[int]]]:
    """Per rank, its micro-batches of a global (mini-)batch: lists of indices into ``lengths``.

    The sequences are split across ranks by `split_across_ranks` (Karmarkar-Karp on the attention workload), then
    each rank's share into micro-batches by `split_micro_batches` (token budget ``max_tokens``). Every rank gets the
    same number of micro-batches, because every forward and backward is a collective under FSDP2: a rank that needs
    fewer re-splits its share into that many (when it has enough sequences and they fit the budget), and is padded
    with empty micro-batches otherwise (run them as a zero-weight step, e.g. `Actor.update` does).
    """
    shares = split_across_ranks(lengths, num_ranks, a=a)
    plans = [[[share[j] for j in part] for part in split_micro_batches([lengths[i] for i in share], max_tokens, a=a)]
             for share in shares]
    count = max(len(plan) for plan in plans)
    for rank, (share, plan) in enumerate(zip(shares, plans, strict=True)):
        if len(plan) < count <= len(share):
            parts = karmarkar_karp([attention_workload(lengths[i], a) for i in share], count)
            resplit = [[share[j] for j in part] for part in parts]
            if all(sum(lengths[i] for i in part) <= max_tokens for part in resplit):
                plan = resplit
        plans[rank] = plan + [[] for _ in range(count - len(plan))]
    return plans


def score_across_ranks(batch: PackedBatch, data_parallel: DataParallel, max_tokens: int,
                       score: Callable[[PackedBatch], torch.Tensor]) -> torch.Tensor:
    """(S, R) float32 per-token scores (log-probs, values) of the whole global ``batch`` on every rank, each rank
    computing only its share: its `rank_micro_batches` (the same number on every rank, since each FSDP2 forward
    is a collective; an empty one scores sequence 0 and drops it), then the rows are all-gathered (pickled CPU
    tensors of this run's own ranks). ``score(sub)``: the (s, r) CPU scores of micro-batch ``sub``, one forward."""
    out = torch.zeros(batch.response_ids.shape, dtype=torch.float32)
    mine = []
    for part in data_parallel.micro_batches(batch.seq_lengths, max_tokens):
        values = score(batch.select(part or [0]))
        if part:
            mine.append((part, values.float().cpu()))
    for parts in gather_objects(mine, data_parallel):
        for part, values in parts:
            out[part, : values.shape[1]] = values
    return out


def shard_batch(batch: PackedBatch, data_parallel: DataParallel) -> PackedBatch:
    """This rank's share of a global batch (`split_across_ranks`; e.g. to score only its own sequences).
    Raises ValueError when the batch has fewer sequences than there are ranks."""
    share = split_across_ranks(batch.seq_lengths, data_parallel.world_size)[data_parallel.rank]
    if not share:
        raise ValueError(f"rank {data_parallel.rank} got no sequence of a batch of {batch.num_sequences} "
                         f"over {data_parallel.world_size} ranks")
    return batch.select(share)


def log_rank0(message: str, *args: object, level: int = logging.INFO, log: logging.Logger | None = None) -> None:
    """Log on rank 0 only (or always, outside a process group)."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        (log or logger).log(level, message, *args)


def close_data_parallel(synchronize: bool = False, timeout_s: float = 60.0) -> None:
    """Destroy the process group (call once at the end of the run, on every rank).

    ``synchronize``: the run ended normally, so every rank comes here: wait (at most ``timeout_s``) until all
    have, so no rank tears its connections down while a peer still finishes its last collective or writes the
    final files (PyTorch's shutdown guidance: all ranks destroy the group together). Now and then a gloo rank
    aborted at exit after a finished run ("terminate called without an active exception"). A run that failed
    passes False: a peer may never come. Garbage cycles (sharded modules, optimizer state) that may hold the
    group are collected first, so its native threads are not left to interpreter finalization.
    """
    if not dist.is_initialized():
        return
    gc.collect()
    if synchronize:
        try:
            if dist.get_backend() == "gloo":  # a barrier with a timeout that names the missing ranks
                dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
            else:
                dist.barrier()
        except RuntimeError as error:
            logger.warning("not every rank reached the end of the run: %s", str(error).splitlines()[0])
    dist.destroy_process_group()


@contextlib.contextmanager
def closing_data_parallel() -> Iterator[None]:
    """Close the process group when the block ends: on every rank together when the block finished normally
    (``synchronize=True``), without waiting when it raised (a peer may never come)."""
    try:
        yield
    except BaseException:
        close_data_parallel()
        raise
    close_data_parallel(synchronize=True)
