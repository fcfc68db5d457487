"""The RL update (`Actor.update`, DAPO loss) on a fixed global batch: step time, peak memory and the fraction of
the machine's measured matmul peak (MFU), in one process or sharded with FSDP2 under torchrun, with per-layer
activation recomputation (``--recompute``) and FSDP2 CPU offload of parameters, gradients and optimizer state
(``--offload``, torchrun only) as switches.

    thinkrl bench fsdp-update [--model medium] [--seqs 32] [--len 128] [--steps 3] [--recompute] [--clock cpu]
    python -m torch.distributed.run --nproc-per-node 2 --standalone benchmarks/bench_fsdp_update.py [--offload] ...

Every rank builds the same model (seed 0) and the same global batch of ``--seqs`` random sequences of ``--len``
tokens (half prompt, half response, advantages +-1), and times ``--steps`` updates after one warm-up (median).
Memory: each rank's peak resident set (``ru_maxrss``) and its growth over the resident set before the first
update (what the update itself added: activations, gradients, optimizer state, allocator caches). On CUDA also
``torch.cuda.max_memory_allocated``. MFU: 3 x forward FLOPs per token (`_peak.forward_flops_per_token`, causal
mean context (len+1)/2) x tokens/s over the peak; the peak is one rank's measured ``torch.mm`` rate with its
thread count, times the number of ranks (one core per rank on the CPU box). ``--clock cpu`` times each process's
CPU seconds instead of wall seconds (both the peak and the updates; a step is the slowest rank's): on a shared
box with one thread per process that is the time the work actually ran, whatever the other jobs do.
Recomputation runs each layer's forward twice, which MFU does not count (model FLOPs, not hardware FLOPs). Prints
one JSON line from rank 0; a progress line goes to stderr (rank 0, its own time) as each update ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
from dataclasses import replace

import torch

import _peak
import bench_generate  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from _cli import progress
from thinkrl.model import build_model
from thinkrl.records import Trajectory
from thinkrl.train.actor import Actor
from thinkrl.train.batching import PackedBatch, pack_trajectories
from thinkrl.train.distributed import barrier, data_parallel_from_env, gather_objects, shard_model
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import AlgorithmSpec, OptimSpec


def global_batch(vocab_size: int, seqs: int, length: int) -> PackedBatch:
    """``seqs`` random sequences of ``length`` tokens (half response), groups of 4 with mixed rewards."""
    rng = random.Random(0)
    half = length // 2
    trajs = [Trajectory(prompt_ids=[rng.randrange(1, vocab_size) for _ in range(length - half)],
                        response_ids=[rng.randrange(1, vocab_size) for _ in range(half)], logprobs=[-6.0] * half,
                        reward=1.0 if i % 2 else -1.0, group_id=i // 4) for i in range(seqs)]
    batch = pack_trajectories(trajs)
    advantages = torch.where(batch.rewards[:, None] > 0, 1.0, -1.0).expand_as(batch.old_logprobs).clone()
    return replace(batch, advantages=advantages * batch.response_mask)


def _rss_mib() -> float:
    """Current resident set (MiB) from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="medium")
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--recompute", action="store_true", help="per-layer activation recomputation")
    parser.add_argument("--offload", action="store_true", help="FSDP2 CPUOffloadPolicy (torchrun only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: each process's CPU seconds (on a shared box, the time it actually ran); a step "
                             "is then the slowest rank's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dp = data_parallel_from_env()
    if args.offload and dp is None:
        raise SystemExit("--offload needs torchrun (FSDP2)")
    peak_module = _peak
    if args.clock == "cpu" and torch.cuda.is_available():
        raise SystemExit("--clock cpu times CPU devices only")
    clock = peak_module.CLOCKS[args.clock]
    peak = peak_module.measure_peak("cuda" if torch.cuda.is_available() else "cpu", clock=args.clock) \
        if dp is None or dp.is_main else None
    barrier(dp)
    config = bench_generate.MODELS[args.model]
    device = dp.device if dp is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(config, device=device, seed=0)
    model.activation_checkpointing = args.recompute
    if dp is not None:
        shard_model(model, dp, offload=args.offload)
    optim = OptimSpec(lr=1e-5, schedule="constant", grad_clip=1.0)
    optimizer = build_optimizer(model.parameters(), optim)
    actor = Actor(model, optimizer, build_scheduler(optimizer, optim, 100), AlgorithmSpec(num_mini_batches=1),
                  args.micro_batch_tokens, 1.0, temperature=1.0, max_response_len=args.len, data_parallel=dp)
    batch = global_batch(config.vocab_size, args.seqs, args.len)
    rss_before = _rss_mib()
    times = []
    for step in range(args.steps + 1):
        barrier(dp)
        start = clock()
        actor.update(batch, random.Random(step))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(clock() - start)
        if dp is None or dp.is_main:
            progress("fsdp-update", f"update {step + 1}/{args.steps + 1}{' (warm-up)' * (step == 0)}: "
                                    f"{times[-1]:.2f} s, {sum(batch.seq_lengths) / times[-1]:.1f} tokens/s")
        barrier(dp)
    times = [max(per_step) for per_step in zip(*gather_objects(times, dp), strict=True)]  # the slowest rank
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    memory = {"peak_rss_mib": round(peak_rss, 1), "rss_growth_mib": round(peak_rss - rss_before, 1)}
    if torch.cuda.is_available():
        memory["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    per_rank = gather_objects(memory, dp)
    if dp is not None and not dp.is_main:
        return
    assert peak is not None  # measured on the main rank, the only one that gets here
    ranks = dp.world_size if dp is not None else 1
    step_s = statistics.median(times[1:])
    tokens = sum(batch.seq_lengths)
    flops = 3 * peak_module.forward_flops_per_token(config, (args.len + 1) / 2)
    print(json.dumps({
        "benchmark": "fsdp-update", "ranks": ranks, "fsdp": dp is not None, "recompute": args.recompute,
        "offload": args.offload, "clock": args.clock, "model": args.model, "params": config.num_parameters(),
        "global_batch": {"seqs": args.seqs, "len": args.len, "tokens": tokens},
        "step_s_median": round(step_s, 3), "step_s": [round(t, 3) for t in times[1:]],
        "tokens_per_s": round(tokens / step_s, 1), "flops_per_token": round(flops),
        "peak_one_rank": peak.as_json(), "mfu": round(flops * tokens / step_s / (peak.gflops * 1e9 * ranks), 4),
        "memory_per_rank": per_rank, "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "processor": platform.processor(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
