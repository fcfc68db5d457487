"""``thinkrl tune profile``: measure on this machine the ops the time model is made of (`thinkrl.tune.profile`).

Micro-benchmarks, each on synthetic tensors of one op's shape (nothing here runs the model, an optimizer over the
model or a training step): the forward, and forward + backward, of every (op, dims) `layout_ops` lists for the
layouts asked for, at a grid of sizes (tokens: powers of two up to the largest micro-batch; attention: the workload's
sequence length and half of it), the AdamW step over a few parameter counts, and the collectives (gloo on CPU,
NCCL on CUDA) in separate processes for every world size the layouts use, and so are the tensor-parallel
linears (``tp_colwise`` / ``tp_rowwise``: torch's DTensor colwise / rowwise split as the trainer applies it, in a
group of tp processes, so that DTensor's dispatch, redistribution and the all-reduces are in the time). The ops
call thinkrl's own kernels (`thinkrl.model.layers` rms_norm, apply_rope, silu_mul;
`thinkrl.model.decoder.packed_attention`); the head is the lm_head matmul, fp32 log-softmax gather and entropy
as `thinkrl.train.common.forward_responses` runs them.

Timing: one warm-up call, then three measurements of enough calls to last >= 20 ms each, the median per call; by
the wall clock (CUDA synchronised) or by this process's CPU time (``--clock cpu``: on a shared CPU box the time the
work ran, whatever the other jobs do; collectives: the busiest rank's CPU time).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from thinkrl.tune.layout import ParallelLayout
from thinkrl.tune.profile import COLLECTIVES, TP_OPS, Clock, MachineProfile, OpCurve, OpName, layout_ops
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.specs import WorkloadSpec
from thinkrl.tune.trainer import TrainerSpec

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MIN_SECONDS = 0.02


def _timed(fn: Callable[[], object], clock: str, device: str, reps: int | None = None) -> float:
    """Median seconds of one call of ``fn`` (warm-up, then 3 measurements of ``reps`` calls; None: enough calls
    for >= MIN_SECONDS by the wall clock, at most 1000). Collectives pass ``reps``: every rank must make the same
    number of calls, and a waiting rank's CPU time says nothing about how many are needed."""
    now = CLOCKS[clock]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    if reps is None:
        start = time.perf_counter()
        fn()
        sync()
        reps = min(1000, max(1, int(MIN_SECONDS / max(time.perf_counter() - start, 1e-6))))
    samples = []
    for _ in range(3):
        start = now()
        for _ in range(reps):
            fn()
        sync()
        samples.append((now() - start) / reps)
    return statistics.median(samples)


def _op_callables(op: str, dims: tuple[int, ...], x: int, dtype: torch.dtype,
                  device: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """(forward, forward + backward) of one call of ``op`` at ``dims`` and size ``x``."""
    from thinkrl.model.layers import apply_rope, rms_norm, silu_mul
    from thinkrl.model.packed_attention import PackedLayout, packed_attention

    def leaf(*shape: int, kind: torch.dtype = dtype) -> torch.Tensor:
        return torch.randn(*shape, dtype=kind, device=device).requires_grad_()

    if op == "linear":
        inp, weight = leaf(x, dims[0]), leaf(dims[1], dims[0])
        fwd: Callable[[], torch.Tensor] = lambda: F.linear(inp, weight)  # noqa: E731
    elif op == "attention":
        heads, kv, d = dims
        seqs = max(1, 2048 // x)
        q, k, v = leaf(seqs * x, heads, d), leaf(seqs * x, kv, d), leaf(seqs * x, kv, d)
        layout = PackedLayout.build(torch.arange(0, seqs * x + 1, x, device=device))
        fwd = lambda: packed_attention(q, k, v, layout)  # noqa: E731  (per sequence: measure_profile divides)
    elif op == "rope":
        inp, angle = leaf(x, *dims), torch.randn(x, dims[1], device=device)
        cos, sin = angle.cos().to(dtype), angle.sin().to(dtype)
        fwd = lambda: apply_rope(inp, cos, sin)  # noqa: E731
    elif op == "rms_norm":
        inp, weight = leaf(x, dims[0]), leaf(dims[0])
        fwd = lambda: rms_norm(inp, weight, 1e-6)  # noqa: E731
    elif op == "add":
        a, b = leaf(x, dims[0]), leaf(x, dims[0])
        fwd = lambda: a + b  # noqa: E731
    elif op == "silu_mul":
        gate, up = leaf(x, dims[0]), leaf(x, dims[0])
        fwd = lambda: silu_mul(gate, up)  # noqa: E731
    elif op == "moe":
        from thinkrl.model.layers import MoE

        moe = MoE(dims[0], dims[3], dims[1], dims[2], dims[4]).to(device=device, dtype=dtype)
        inp = leaf(x, dims[0])
        fwd = lambda: moe(inp)[0]  # noqa: E731
    elif op == "head":
        return _head_callables(dims, x, leaf, device)
    elif op == "embedding":
        ids, weight = torch.randint(0, dims[0], (x,), device=device), leaf(*dims)
        fwd = lambda: F.embedding(ids, weight)  # noqa: E731
    else:
        raise ValueError(f"no micro-benchmark for op {op!r}")

    def train() -> None:
        out = fwd()
        out.backward(torch.ones_like(out))

    return (lambda: fwd().detach()), train


def _head_callables(dims: tuple[int, ...], x: int, leaf: Callable[..., torch.Tensor],
                    device: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """lm_head on x response positions as forward_responses runs it: logits in fp32, entropy without grad,
    log-prob of the target = logit - logsumexp."""
    hidden, weight = leaf(x, dims[0]), leaf(dims[1], dims[0])
    target = torch.randint(0, dims[1], (x, 1), device=device)

    def fwd() -> torch.Tensor:
        logits = F.linear(hidden, weight).float()
        with torch.no_grad():
            probs = logits.softmax(-1)
            (torch.logsumexp(logits, -1) - (probs * logits).sum(-1)).sum()
        return logits.gather(-1, target).squeeze(-1) - torch.logsumexp(logits, -1)

    def train() -> None:
        fwd().sum().backward()

    return (lambda: fwd().detach()), train


def _adamw_seconds(params: int, dtype: torch.dtype, clock: str, device: str) -> float:
    """One foreach AdamW step over ``params`` fp32 parameters in 1M-element tensors (the master weights)."""
    del dtype  # master weights, gradients and moments are fp32 in every precision the tuner models
    sizes = [1 << 20] * (params >> 20) + ([params % (1 << 20)] if params % (1 << 20) else [])
    tensors = [torch.zeros(n, device=device, requires_grad=True) for n in sizes]
    for t in tensors:
        t.grad = torch.randn_like(t)
    optimizer = torch.optim.AdamW(tensors, lr=1e-4, foreach=True)
    return _timed(optimizer.step, clock, device)


def _join_group(rank: int, world: int, init_file: str, device: str) -> str:
    """Join the benchmark's process group (nccl on CUDA, one GPU per rank; gloo on CPU); returns this rank's device."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    return device


def _collective_worker(rank: int, world: int, init_file: str, op: str, sizes: list[int], clock: str,
                       device: str, out_dir: str) -> None:
    """One rank of a collective benchmark: seconds of ``op`` on a full tensor of each byte size."""
    import torch.distributed as dist

    device = _join_group(rank, world, init_file, device)
    results = []
    for nbytes in sizes:
        numel = max(world, nbytes // 4 // world * world)
        full = torch.ones(numel, device=device)
        shard = torch.ones(numel // world, device=device)
        calls = {"all_reduce": lambda: dist.all_reduce(full),  # noqa: B023
                 "all_gather": lambda: dist.all_gather_into_tensor(full, shard),  # noqa: B023
                 "reduce_scatter": lambda: dist.reduce_scatter_tensor(shard, full)}  # noqa: B023
        dist.barrier()
        results.append(_timed(calls[op], clock, device, reps=5))
    Path(out_dir, f"{rank}.txt").write_text(" ".join(map(repr, results)))
    dist.barrier()
    dist.destroy_process_group()


def _collective_curve(op: OpName, world: int, sizes: list[int], clock: str, device: str) -> OpCurve:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="thinkrl-profile-") as tmp:
        init_file = os.path.join(tmp, "init")
        # daemon: an interrupt of this process (which ends the join) ends the ranks at exit instead of waiting for them
        mp.spawn(_collective_worker, args=(world, init_file, op, sizes, clock, device, tmp), nprocs=world,
                 daemon=True)
        per_rank = [list(map(float, Path(tmp, f"{r}.txt").read_text().split())) for r in range(world)]
    seconds = [max(column) for column in zip(*per_rank, strict=True)]  # the busiest rank
    return OpCurve(op=op, dims=(world,), x=[float(s) for s in sizes], forward_s=seconds)


def _tp_linear_worker(rank: int, world: int, init_file: str, specs: list[tuple[OpName, tuple[int, ...], list[int]]],
                      dtype: torch.dtype, clock: str, device: str, out_dir: str) -> None:
    """One rank of the tp linear benchmarks: for each (op, (in local, out local, tp), sizes), a bias-free linear
    split over the ``world`` ranks as thinkrl's trainer splits a layer's projections (``parallelize_module`` with
    ``ColwiseParallel()`` / ``RowwiseParallel()``, `thinkrl.train.tensor_parallel.LAYER_PLAN`), and the seconds of
    its forward and forward + backward on an (x, in) replicated input (rowwise: the (x, in local) shard)."""
    import torch.distributed as dist
    from torch.distributed._functional_collectives import AsyncCollectiveTensor
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    device = _join_group(rank, world, init_file, device)
    mesh = init_device_mesh(device.split(":")[0], (world,))
    lines = []
    for op, (inp_local, out_local, _), sizes in specs:
        colwise = op == "tp_colwise"
        full_in, full_out = (inp_local, out_local * world) if colwise else (inp_local * world, out_local)
        module = torch.nn.Module()
        module.proj = torch.nn.Linear(full_in, full_out, bias=False, device=device, dtype=dtype)
        parallelize_module(module, mesh, {"proj": ColwiseParallel() if colwise else RowwiseParallel()})
        proj = module.get_submodule("proj")
        row = []
        for x in sizes:
            inp = torch.randn(x, inp_local, device=device, dtype=dtype, requires_grad=True)

            def train() -> None:
                out = proj(inp)  # noqa: B023
                out.backward(torch.ones_like(out))

            def forward() -> torch.Tensor:
                out = proj(inp)  # noqa: B023
                # rowwise: an AsyncCollectiveTensor; the layer's next op waits for its all-reduce, so wait here
                return out.wait() if isinstance(out, AsyncCollectiveTensor) else out

            calls = (forward, train)
            for fn in calls:
                row.append(_timed(fn, clock, device, reps=_agreed_reps(fn, device)))
        lines.append(" ".join(map(repr, row)))
    Path(out_dir, f"{rank}.txt").write_text("\n".join(lines))
    dist.barrier()
    dist.destroy_process_group()


def _agreed_reps(fn: Callable[[], object], device: str) -> int:
    """Calls per measurement for >= MIN_SECONDS, the same on every rank (the largest any rank asks for): a
    collective in ``fn`` needs every rank to make as many calls."""
    import torch.distributed as dist

    fn()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    reps = torch.tensor([min(1000, max(1, int(MIN_SECONDS / max(time.perf_counter() - start, 1e-6))))])
    dist.all_reduce(reps, op=dist.ReduceOp.MAX)
    return int(reps.item())


def _tp_linear_curves(specs: list[tuple[OpName, tuple[int, ...], list[int]]], world: int, dtype: torch.dtype,
                      clock: str, device: str) -> list[OpCurve]:
    """The tp linear ops of ``specs`` measured in ``world`` spawned processes; seconds of the busiest rank."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="thinkrl-profile-") as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(_tp_linear_worker, args=(world, init_file, specs, dtype, clock, device, tmp), nprocs=world,
                 daemon=True)  # (as `_collective_curve`'s ranks)
        per_rank = [[list(map(float, line.split())) for line in Path(tmp, f"{r}.txt").read_text().splitlines()]
                    for r in range(world)]
    curves = []
    for i, (op, dims, sizes) in enumerate(specs):
        seconds = [max(rank[i][j] for rank in per_rank) for j in range(2 * len(sizes))]
        curves.append(OpCurve(op=op, dims=dims, x=[float(s) for s in sizes], forward_s=seconds[0::2],
                              train_s=seconds[1::2]))
    return curves


def _powers_of_two(low: float, high: float) -> list[int]:
    out, value = [], 1
    while value < high:
        if value >= low:
            out.append(value)
        value *= 2
    return out + [int(high)]


def plan(shape: ModelShape, workload: WorkloadSpec, layouts: Sequence[ParallelLayout], trainer: TrainerSpec,
         num_gpus: int) -> dict[tuple[OpName, tuple[int, ...]], list[int]]:
    """Every (op, dims) the layouts use, with the sizes to measure it at (covering every size they use)."""
    from thinkrl.tune.memory import resident_params

    needed: dict[tuple[OpName, tuple[int, ...]], set[float]] = {}
    for layout in layouts:
        uses = layout_ops(shape, workload, layout, trainer, num_gpus, resident_params(shape, layout, trainer))
        for use in uses:
            needed.setdefault((use.op, use.dims), set()).add(use.x)
    grid: dict[tuple[OpName, tuple[int, ...]], list[int]] = {}
    for (op, dims), xs in needed.items():
        top = max(xs)
        if op == "attention":
            grid[(op, dims)] = sorted({max(1, int(top) // 2), int(top)})
        elif op in COLLECTIVES:
            grid[(op, dims)] = [4 ** i for i in range(8, 20) if 4 ** i < top] + [int(top)]
        elif op == "adamw":
            grid[(op, dims)] = sorted({int(x) for x in xs} | {int(top) // 4 or 1})
        else:
            grid[(op, dims)] = _powers_of_two(min(64, min(xs)), top)
    return grid


def measure_profile(shape: ModelShape, workload: WorkloadSpec, layouts: Sequence[ParallelLayout], trainer: TrainerSpec,
                    num_gpus: int, clock: Clock = "wall", device: str = "cpu",
                    log: Callable[[str], None] | None = None) -> MachineProfile:
    """Measure every op of ``layouts`` on this machine (see the module docstring)."""
    if clock == "cpu" and device != "cpu":
        raise ValueError("--clock cpu times CPU work only; use --clock wall on a GPU")
    dtype = DTYPES[workload.precision]
    curves: list[OpCurve] = []
    tp_specs: dict[int, list[tuple[OpName, tuple[int, ...], list[int]]]] = {}
    for (op, dims), sizes in sorted(plan(shape, workload, layouts, trainer, num_gpus).items()):
        if log:
            log(f"{op} {list(dims)} at {sizes}")
        if op in TP_OPS:  # measured together below, one process group per tp size
            tp_specs.setdefault(dims[2], []).append((op, dims, sizes))
        elif op in COLLECTIVES:
            curves.append(_collective_curve(op, dims[0], sizes, clock, device))
        elif op == "adamw":
            seconds = [_adamw_seconds(n, dtype, clock, device) for n in sizes]
            curves.append(OpCurve(op=op, dims=dims, x=[float(s) for s in sizes], forward_s=seconds))
        else:
            forward, train = [], []
            for size in sizes:
                fwd, full = _op_callables(op, dims, size, dtype, device)
                forward.append(_timed(fwd, clock, device))
                train.append(_timed(full, clock, device))
            if op == "attention":  # the callables ran max(1, 2048 // T) sequences: per sequence
                forward = [s / max(1, 2048 // x) for s, x in zip(forward, sizes, strict=True)]
                train = [s / max(1, 2048 // x) for s, x in zip(train, sizes, strict=True)]
            curves.append(OpCurve(op=op, dims=dims, x=[float(s) for s in sizes], forward_s=forward, train_s=train))
    for world, specs in sorted(tp_specs.items()):
        curves += _tp_linear_curves(specs, world, dtype, clock, device)
    return MachineProfile(device=device, dtype=workload.precision, clock=clock, threads=torch.get_num_threads(),
                          comm_overlaps_compute=device != "cpu", curves=curves,
                          created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
