"""Step time from a machine profile: measured seconds of the operations a layout runs, interpolated.

A `MachineProfile` (written by ``thinkrl tune profile``, `thinkrl.tune.profile_measure`) holds one `OpCurve` per
operation and shape: the forward seconds and forward + backward seconds of one call at a few sizes ``x`` (tokens,
sequence length, bytes or parameters, by op). `layout_ops` lists what one rank runs per micro-batch and per step
for a layout (each op, its shape, its size, how many times, forward or training); `profiled_time` sums the
interpolated seconds. The list is the same one the profiler measures, so a profile taken for a model and its tp
values has every shape the tuner asks for; a shape it lacks is scaled from the nearest profiled one of the same op
by the ratio of work (`_work`), which is cruder and is counted in `ProfiledTime.scaled_ops`.

Ops (dims; x): linear (in, out; tokens), attention (heads, kv heads, head dim; sequence length, seconds per
sequence, causal), rope (heads, head dim; tokens), rms_norm / add (hidden; tokens), silu_mul (width; tokens), moe
(hidden, experts, top-k, expert width, shared width; tokens: thinkrl's MoE FFN whole, router and per-expert loop
included, when neither tp nor ep splits it; otherwise router + expert linears at the mean tokens per expert), head
(hidden, vocab: lm_head matmul + fp32 log-softmax gather + entropy; response tokens), embedding (vocab, hidden;
tokens), adamw (; parameters), all_reduce / all_gather / reduce_scatter (world; bytes of the full tensor),
tp_colwise / tp_rowwise (local in, local out, tp; tokens): one tensor-parallel linear as thinkrl's trainer runs it
(torch ``ColwiseParallel`` / ``RowwiseParallel`` on a tp-rank gloo/NCCL group: DTensor dispatch, redistribution and
the linear's own all-reduce included), used for tp > 1 without sequence parallelism; a profile without them (taken
before they existed) prices each as the plain local ``linear`` plus the all-reduces of the (N, C) activation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from thinkrl.tune.layout import ParallelLayout
from thinkrl.tune.memory import layer_local_params, vocab_local_params
from thinkrl.tune.shapes import ModelShape
from thinkrl.tune.specs import WorkloadSpec
from thinkrl.tune.trainer import TrainerSpec

OpName = Literal["linear", "attention", "rope", "rms_norm", "add", "silu_mul", "moe", "head", "embedding", "adamw",
                 "all_reduce", "all_gather", "reduce_scatter", "tp_colwise", "tp_rowwise"]
Clock = Literal["wall", "cpu"]
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter")
TP_OPS = ("tp_colwise", "tp_rowwise")
GROWTH = {"attention": 2.0}  # beyond the largest profiled x, seconds grow as x ** this (causal attention: T^2)


class OpCurve(BaseModel):
    """Measured seconds of one op at one shape: ``forward_s[i]`` (and ``train_s[i]``, forward + backward) at size
    ``x[i]`` (strictly increasing). Collectives and adamw have no backward: ``train_s`` is None."""

    model_config = ConfigDict(extra="forbid")
    op: OpName
    dims: tuple[int, ...]
    x: list[float] = Field(min_length=1)
    forward_s: list[float]
    train_s: list[float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OpCurve:
        if any(b <= a for a, b in zip(self.x, self.x[1:], strict=False)) or self.x[0] <= 0:
            raise ValueError(f"{self.op} {list(self.dims)}: x must be positive and strictly increasing")
        for name in ("forward_s", "train_s"):
            values = getattr(self, name)
            if values is not None and (len(values) != len(self.x) or min(values) < 0):
                raise ValueError(f"{self.op} {list(self.dims)}: {name} needs {len(self.x)} non-negative values")
        return self

    def seconds(self, x: float, kind: str) -> float:
        """Interpolated seconds at size x: piecewise linear inside the grid; below it proportional to x; above it
        growing as x ** GROWTH (1 but for attention) from the last point. ``kind``: forward or train."""
        ys = self.train_s if kind == "train" and self.train_s is not None else self.forward_s
        xs = self.x
        if x <= xs[0]:
            return ys[0] * x / xs[0]
        if x >= xs[-1]:
            return ys[-1] * (x / xs[-1]) ** GROWTH.get(self.op, 1.0)
        i = next(i for i in range(1, len(xs)) if xs[i] >= x)
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])


class MachineProfile(BaseModel):
    """What ``thinkrl tune profile`` measured on one machine (one GPU, or one CPU process).

    clock: wall (elapsed) or cpu (process CPU seconds, for a shared CPU box). comm_overlaps_compute: whether the
    FSDP / CP collectives run beside compute (GPU streams) or add to it (one CPU process: its CPU time sums)."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    device: str
    dtype: str
    clock: Clock
    threads: int = Field(ge=1)
    comm_overlaps_compute: bool
    created: str = ""
    curves: list[OpCurve]

    def curve(self, op: str, dims: tuple[int, ...]) -> tuple[OpCurve, float]:
        """The curve of ``op`` at ``dims`` and a factor (1 if measured at those dims; else the nearest profiled
        dims of that op and the ratio of work). ValueError when the op was not profiled at all."""
        same = [c for c in self.curves if c.op == op]
        exact = next((c for c in same if c.dims == tuple(dims)), None)
        if exact is not None:
            return exact, 1.0
        if not same:
            raise ValueError(f"the profile has no {op!r} measurement; re-run thinkrl tune profile for this model")
        target = _work(op, tuple(dims))
        near = min(same, key=lambda c: abs(math.log(_work(op, c.dims) / target)))
        return near, target / _work(op, near.dims)


def _work(op: str, dims: tuple[int, ...]) -> float:
    """Relative work of one call of ``op`` at ``dims`` for the same x (to scale a shape that was not profiled)."""
    if op in COLLECTIVES:
        return max(dims[0] - 1, 1) / dims[0]
    if op == "attention":
        return dims[0] * dims[2]
    if op == "moe":
        return dims[0] * (dims[2] * dims[3] + dims[4] + dims[1])
    if op in TP_OPS:
        return float(dims[0] * dims[1])
    return float(math.prod(dims)) or 1.0


def load_profile(path: str | Path) -> MachineProfile:
    """Read a profile JSON; ValueError with one line naming the file and what is wrong."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"profile {path}: no such file (make one with thinkrl tune profile)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"profile {path}: not JSON ({err})") from None
    try:
        return MachineProfile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "top level"
        raise ValueError(f"profile {path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


@dataclass(frozen=True)
class OpUse:
    """``count`` calls of ``op`` at ``dims`` and size ``x``, each ``kind`` (forward, or train = forward +
    backward); ``group``: compute, tp (exposed TP collectives), fsdp (FSDP collectives, per micro-batch) or
    step (once per step: optimizer, HSDP all-reduce). ``fallback``: what to price instead (per call of this one)
    when the profile has no ``op`` at all (a tp op in a profile taken before tp ops were measured)."""

    op: OpName
    dims: tuple[int, ...]
    x: float
    count: float
    kind: str = "train"
    group: str = "compute"
    fallback: tuple[OpUse, ...] = ()


def uses_tp_ops(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec) -> bool:
    """Whether a layer's projections are priced as tp_colwise / tp_rowwise: tp > 1 as thinkrl's trainer splits
    it (no sequence parallelism; dense layers: the trainer does not split MoE)."""
    return layout.tp > 1 and not trainer.sequence_parallel and not shape.is_moe


def _use(op: OpName, dims: tuple[int, ...], x: float, count: float, kind: str, act_bytes: float) -> OpUse:
    """One compute use; a tp op gets its fallback for older profiles: the plain local linear, and for a rowwise
    one the all-reduce of its (N, C) output (``act_bytes``) per forward plus one in backward (the old count of
    2 per layer per forward and 2 in backward)."""
    if op not in TP_OPS:
        return OpUse(op, dims, x, count, kind)
    fallback = [OpUse("linear", dims[:2], x, 1, kind)]
    if op == "tp_rowwise":
        fallback.append(OpUse("all_reduce", (dims[2],), act_bytes, 2 if kind == "train" else 1, "forward", "tp"))
    return OpUse(op, dims, x, count, kind, fallback=tuple(fallback))


def _layer_compute(shape: ModelShape, layout: ParallelLayout, trainer: TrainerSpec, tokens: float,
                   seq_len: int) -> list[tuple[OpName, tuple[int, ...], float, float]]:
    """(op, dims, x, count) of one decoder layer's forward on one rank over ``tokens`` tokens."""
    t, c, d = layout.tp, shape.hidden_size, shape.head_dim
    ts = t if trainer.sequence_parallel else 1
    heads, kv = shape.num_heads // t, max(shape.num_kv_heads // t, 1)
    col: OpName = "linear"
    row: OpName = "linear"
    tail: tuple[int, ...] = ()
    if uses_tp_ops(shape, layout, trainer):  # thinkrl's trainer: DTensor colwise / rowwise linears
        col, row, tail = "tp_colwise", "tp_rowwise", (t,)
    ops: list[tuple[OpName, tuple[int, ...], float, float]] = [
        ("rms_norm", (c,), tokens / ts, 2), ("add", (c,), tokens / ts, 2),
        (col, (c, heads * d, *tail), tokens, 1), (col, (c, kv * d, *tail), tokens, 2),
        (row, (heads * d, c, *tail), tokens, 1), ("rope", (heads, d), tokens, 1), ("rope", (kv, d), tokens, 1),
        ("attention", (heads, kv, d), seq_len, tokens / seq_len)]

    def swiglu(width: int, n: float, count: float) -> None:
        ops.extend([(col, (c, width, *tail), n, 2 * count), ("silu_mul", (width,), n, count),
                    (row, (width, c, *tail), n, count)])

    if shape.is_moe and t == 1 and layout.ep == 1:  # the whole MoE FFN as one op: its routing is not matmuls
        ops.append(("moe", (c, shape.num_experts, shape.experts_per_token, shape.moe_intermediate_size,
                            shape.shared_expert_size), tokens, 1))
    elif shape.is_moe:
        local = shape.num_experts // layout.ep
        ops.append(("linear", (c, shape.num_experts), tokens, 1))  # the router
        swiglu(max(shape.moe_intermediate_size // t, 1), tokens * shape.experts_per_token * layout.ep
               / shape.num_experts, local)
        if shape.shared_expert_size:
            swiglu(max(shape.shared_expert_size // t, 1), tokens, 1)
    else:
        swiglu(max(shape.intermediate_size // t, 1), tokens, 1)
    return ops


def layout_ops(shape: ModelShape, workload: WorkloadSpec, layout: ParallelLayout, trainer: TrainerSpec,
               num_gpus: int, resident: float) -> list[OpUse]:
    """Everything one rank runs for ``layout``: per micro-batch (N = micro_batch_tokens / cp tokens) the layers,
    embedding, head and collectives; per step the optimizer and the HSDP gradient all-reduce. ``resident``:
    parameters whose Adam state the rank holds (`memory.resident_params`)."""
    n = layout.micro_batch_tokens / layout.cp
    seq, b, c, L = workload.seq_len, workload.compute_bytes, shape.hidden_size, shape.num_layers
    ts = layout.tp if trainer.sequence_parallel else 1
    vocab = shape.vocab_size // (layout.tp if trainer.vocab_parallel else 1)
    fo, recompute = workload.forward_only_passes, layout.recompute == "full"
    uses: list[OpUse] = []
    act = n * c * b  # one (N, C) activation
    for op, dims, x, count in _layer_compute(shape, layout, trainer, n, seq):
        uses.append(_use(op, dims, x, L * count, "train", act))
        if recompute or fo:
            uses.append(_use(op, dims, x, L * count * (int(recompute) + fo), "forward", act))
    response = n * workload.response_len / seq
    for op, dims, x in (("embedding", (vocab, c), n), ("rms_norm", (c,), n / ts), ("head", (c, vocab), response)):
        uses.append(OpUse(op, dims, x, 1, "train"))
        if fo:
            uses.append(OpUse(op, dims, x, fo, "forward"))
    forwards = 1 + int(recompute) + fo
    if layout.tp > 1 and not uses_tp_ops(shape, layout, trainer):  # (tp ops include their all-reduces)
        if trainer.sequence_parallel:
            uses += [OpUse("all_gather", (layout.tp,), act, L * (2 * forwards + 4), "forward", "tp"),
                     OpUse("reduce_scatter", (layout.tp,), act, L * (2 * forwards + 2), "forward", "tp")]
        else:
            uses.append(OpUse("all_reduce", (layout.tp,), act, L * (2 * forwards + 2), "forward", "tp"))
    g = layout.shard_group
    if g > 1:
        layer = layer_local_params(shape, layout)
        root = vocab_local_params(shape, layout, trainer) + c  # FSDP2's root unit: embeddings, lm_head, final norm
        uses += [OpUse("all_gather", (g,), layer * b, L * (2 + fo), "forward", "fsdp"),
                 OpUse("reduce_scatter", (g,), layer * 4, L, "forward", "fsdp"),
                 OpUse("all_gather", (g,), root * b, 1 + fo, "forward", "fsdp"),
                 OpUse("reduce_scatter", (g,), root * 4, 1, "forward", "fsdp")]
    replicas = layout.replicate(num_gpus)
    if replicas > 1:
        uses.append(OpUse("all_reduce", (replicas,), resident * 4, 1, "forward", "step"))
    if layout.offload == "none":
        uses.append(OpUse("adamw", (), resident, 1, "forward", "step"))
    return uses


@dataclass(frozen=True)
class ProfiledTime:
    """Seconds of one micro-batch / step from a profile: compute (layers, embedding, head), tp (TP collectives,
    exposed), fsdp (FSDP all-gathers / reduce-scatters: overlapped with compute if the profile says so),
    step_extra_s (optimizer + HSDP all-reduce, once per step); scaled_ops: uses priced from another shape."""

    compute_s: float
    tp_s: float
    fsdp_s: float
    step_extra_s: float
    scaled_ops: int


def profiled_time(profile: MachineProfile, uses: list[OpUse]) -> ProfiledTime:
    """Sum the interpolated seconds of ``uses`` (see `layout_ops`) by group."""
    totals = {"compute": 0.0, "tp": 0.0, "fsdp": 0.0, "step": 0.0}
    scaled = 0
    for use in uses:
        if use.fallback and not any(c.op == use.op for c in profile.curves):
            part = profiled_time(profile, list(use.fallback))
            scaled += part.scaled_ops
            for group, seconds in zip(("compute", "tp"), (part.compute_s, part.tp_s), strict=True):
                totals[group] += use.count * seconds
            continue
        curve, factor = profile.curve(use.op, use.dims)
        scaled += factor != 1.0
        totals[use.group] += use.count * factor * curve.seconds(use.x, use.kind)
    return ProfiledTime(totals["compute"], totals["tp"], totals["fsdp"], totals["step"], scaled)
