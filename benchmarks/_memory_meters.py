"""Memory and bandwidth meters shared by ``bench_tune_memory`` and ``bench_tune_memory_tp`` (one training step's
live bytes, the profiler's peak, the process's RSS, a gloo all-gather's bandwidth)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch


def live_bytes(model: torch.nn.Module, batches: Iterable[object], optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors alive between steps: parameters, Adam states, batch tensors (storages once)."""
    seen: dict[int, int] = {}
    tensors = list(model.parameters()) + [t for s in optimizer.state.values() for t in s.values()
                                          if torch.is_tensor(t)]
    for batch in batches:
        tensors += [v for v in vars(batch).values() if torch.is_tensor(v)]
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        seen[local.untyped_storage().data_ptr()] = local.untyped_storage().nbytes()
    return sum(seen.values())


def profiled_peak(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def allgather_gbps() -> float:
    import torch.distributed as dist

    shard = torch.ones(4 * 1024 * 1024)  # 16 MB per rank
    out = [torch.empty_like(shard) for _ in range(dist.get_world_size())]
    dist.all_gather(out, shard)
    start = time.perf_counter()
    for _ in range(3):
        dist.all_gather(out, shard)
    seconds = (time.perf_counter() - start) / 3
    world = dist.get_world_size()
    return shard.nbytes * (world - 1) / seconds / 1e9  # bytes each rank receives per second
