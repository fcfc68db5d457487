"""Validate the AutoTuner's memory (and step-time) model against measured training steps on this CPU.

Each configuration runs in a fresh process (torchrun with gloo for 2 ranks): a small thinkrl model (fp32,
Seed-OSS architecture, built by ``thinkrl.model.build_model``) takes optimizer steps of two packed
micro-batches each (gradient accumulation), through ``thinkrl.train.common.forward_responses`` and a
token-mean log-prob loss, with AdamW (foreach). 2-rank runs wrap every decoder layer and the root in FSDP2
``fully_shard`` over a gloo mesh. One warm-up step creates the Adam state; then:

- allocator peak: the second step runs under ``torch.profiler`` with ``profile_memory=True``; every CPU
  allocation and free of torch's allocator in it is replayed in time order and the highest running sum is
  the peak above the start; the live bytes at the start (parameters, Adam states and batch tensors, summed
  from the tensors themselves, local shards for FSDP) are added.
- RSS peak (second opinion, separate process without the profiler): ``VmHWM`` after the step minus ``VmRSS``
  before it (``/proc/self/clear_refs`` resets the high-water mark), plus the same live bytes. glibc's
  ``MALLOC_MMAP_THRESHOLD_`` is pinned to 64 KiB so freed tensors return to the OS and RSS follows them.
- step time (a third process, glibc's default allocator as in training; ``--clock cpu``: process CPU seconds):
  median of 3 timed steps (no profiler), against the model's compute time at the fp32 matmul rate measured in
  the same process just before each step (mfu = 1) plus, for 2 ranks, gloo all-gather bandwidth measured in
  the same run; with one effective mfu fitted on one row (``calibrate``); and, with ``--profile``, the time
  the tuner predicts from a machine profile measured beforehand by ``thinkrl tune profile`` (micro-benchmarks,
  no fitting to these rows).

Offload cannot be measured here: on a CPU-only machine host memory is the device memory.

Prints a JSON row on stdout as each configuration ends, then a summary line; a progress line goes to stderr as each
configuration ends.

    thinkrl bench tune-memory [--out docs/results/raw/autotuner_cpu.json] [--only NAME,...]
    thinkrl bench tune-memory --clock cpu --time-only --profile machine.json [--out ...]  # step time only
    thinkrl bench tune-memory --repredict docs/results/raw/autotuner_cpu.json --out NEW.json  # same measurements
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import _memory_meters as meters  # siblings: benchmarks/ is on sys.path
from _cli import load_report, progress

if TYPE_CHECKING:
    from thinkrl.model import CausalLM
    from thinkrl.train.batching import PackedBatch
    from thinkrl.tune.layout import Recompute
    from thinkrl.tune.profile import MachineProfile

SEQ = {"prompt_len": 128, "response_len": 384}
MODELS = {
    "m4": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
               num_key_value_heads=2, head_dim=64, vocab_size=2048),
    "moe8": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=64, vocab_size=2048, num_experts=8, num_experts_per_tok=2,
                 moe_intermediate_size=256),
    "v16k": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=64, vocab_size=16384),
    # v16k with 2 KV heads, so that tp = 2 splits it (bench_tune_memory_tp): logits and embeddings dominate
    "v16k2": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=64, vocab_size=16384),
}
# name: (model, ranks, micro_batch_tokens, recompute)
CONFIGS: dict[str, tuple[str, int, int, Recompute]] = {
    "m4-mb512": ("m4", 1, 512, "none"),
    "m4-mb2048": ("m4", 1, 2048, "none"),
    "m4-mb4096": ("m4", 1, 4096, "none"),
    "m4-mb1024-recompute": ("m4", 1, 1024, "full"),
    "m4-mb2048-recompute": ("m4", 1, 2048, "full"),
    "m4-mb4096-recompute": ("m4", 1, 4096, "full"),
    "v16k-mb2048": ("v16k", 1, 2048, "none"),
    "moe8-mb2048": ("moe8", 1, 2048, "none"),
    "m4-mb1024-fsdp2": ("m4", 2, 1024, "none"),
    "m4-mb2048-fsdp2": ("m4", 2, 2048, "none"),
    "m4-mb4096-fsdp2": ("m4", 2, 4096, "none"),
    "m4-mb4096-fsdp2-recompute": ("m4", 2, 4096, "full"),
}


def _hf_config(model: str) -> dict:
    return {"architectures": ["SeedOssForCausalLM"], **MODELS[model]}


# ---------------------------------------------------------------- child: one configuration, one process
def _build(model_name: str, mb_tokens: int, recompute: str,
           ranks: int) -> tuple[CausalLM, list[PackedBatch], torch.optim.Optimizer]:
    from thinkrl.model import ModelConfig, build_model
    from thinkrl.records import Trajectory
    from thinkrl.train.batching import pack_trajectories

    model = build_model(ModelConfig.from_hf_dict(_hf_config(model_name)), seed=0).train()
    model.activation_checkpointing = recompute == "full"
    if ranks > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (ranks,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    gen = torch.Generator().manual_seed(1)
    seq_len = SEQ["prompt_len"] + SEQ["response_len"]
    vocab = MODELS[model_name]["vocab_size"]

    def trajectory() -> Trajectory:
        ids = torch.randint(0, vocab, (seq_len,), generator=gen).tolist()
        cut = SEQ["prompt_len"]
        return Trajectory(prompt_ids=ids[:cut], response_ids=ids[cut:], logprobs=[0.0] * (seq_len - cut), reward=1.0)

    batches = [pack_trajectories([trajectory() for _ in range(mb_tokens // seq_len)]) for _ in range(2)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    return model, batches, optimizer


def _step(model: CausalLM, batches: list[PackedBatch], optimizer: torch.optim.Optimizer) -> None:
    from thinkrl.train.common import forward_responses

    for batch in batches:
        out = forward_responses(model, batch)
        loss = -(out.logprobs * batch.response_mask).sum() / batch.response_mask.sum()
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
PROFILE: MachineProfile | None = None  # given by --profile: rows also get the profile-based time


def load_profiles(paths: str) -> MachineProfile:
    """One MachineProfile from comma-separated profile files (curves of the later files added where new)."""
    from thinkrl.tune.profile import load_profile

    profiles = [load_profile(p) for p in paths.split(",") if p]
    merged, seen = profiles[0], {(c.op, c.dims) for c in profiles[0].curves}
    for other in profiles[1:]:
        new = [c for c in other.curves if (c.op, c.dims) not in seen]
        seen |= {(c.op, c.dims) for c in new}
        merged = merged.model_copy(update={"curves": merged.curves + new})
    return merged


def run_child(name: str, meter: str, clock: str = "wall") -> dict:
    model_name, ranks, mb_tokens, recompute = CONFIGS[name]
    torch.set_num_threads(1)
    if ranks > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    model, batches, optimizer = _build(model_name, mb_tokens, recompute, ranks)
    _step(model, batches, optimizer)  # warm-up: Adam states exist from here on
    live = meters.live_bytes(model, batches, optimizer)
    result = {"name": name, "meter": meter, "live_bytes": live}
    if meter == "alloc":
        result["peak_bytes"] = live + meters.profiled_peak(lambda: _step(model, batches, optimizer))
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = meters.rss_kb("VmRSS")
        _step(model, batches, optimizer)
        result["peak_bytes"] = live + (meters.rss_kb("VmHWM") - before) * 1024
        times, rates = [], []
        for _ in range(3):  # the matmul rate right before each timed step: same load as the step
            rates.append(matmul_gflops(clock=clock))
            start = CLOCKS[clock]()
            _step(model, batches, optimizer)
            times.append(CLOCKS[clock]() - start)
        result["step_s"], result["matmul_gflops"] = statistics.median(times), statistics.median(rates)
        if ranks > 1:
            result["allgather_gbps"] = meters.allgather_gbps()
    if ranks > 1:
        import torch.distributed as dist

        from thinkrl.train.distributed import close_data_parallel

        result["rank"] = dist.get_rank()
        close_data_parallel(synchronize=True)
    return result


# ---------------------------------------------------------------- parent: spawn, predict, compare
def spawn_malloc_env(meter: str) -> dict[str, str]:
    """The RSS meters pin glibc's mmap threshold so freed tensors leave RSS; the "time" meter keeps the default
    allocator: with the pin every large tensor is a fresh mmap and its page faults (kernel CPU time) would be
    counted in the step, which real training does not pay."""
    return {} if meter == "time" else {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _spawn(name: str, meter: str, clock: str = "wall") -> list[dict]:
    ranks = CONFIGS[name][1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} | spawn_malloc_env(meter)
    result_dir = tempfile.mkdtemp(prefix="tune-memory-")
    script = [str(Path(__file__).resolve()), "--child", name, "--meter", meter, "--clock", clock,
              "--result-dir", result_dir]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
               "--master-port", str(29500 + os.getpid() % 1000), *script]
    else:
        cmd = [sys.executable, *script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"{name} ({meter}) failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(path.read_text()) for path in sorted(Path(result_dir).glob("*.json"))]
    shutil.rmtree(result_dir)
    return rows


def matmul_gflops(n: int = 1024, repeats: int = 5, clock: str = "wall") -> float:
    """fp32 matmul rate of one thread here (GFLOP/s): the 'peak' the time model is given."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = CLOCKS[clock]()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (CLOCKS[clock]() - start) / 1e9


def predict(name: str, gflops: float, comm_gbps: float | None, mfu: float = 1.0,
            profile: MachineProfile | None = None) -> tuple[dict, dict]:
    from thinkrl.tune import ClusterSpec, ParallelLayout, WorkloadSpec, estimate_memory, estimate_time
    from thinkrl.tune.shapes import ModelShape, read_hf_config

    model_name, ranks, mb_tokens, recompute = CONFIGS[name]
    shape = ModelShape.from_config(read_hf_config(_hf_config(model_name)), name=model_name)
    seq_len = SEQ["prompt_len"] + SEQ["response_len"]
    workload = WorkloadSpec(**SEQ, group_size=1, prompts_per_step=2 * ranks * (mb_tokens // seq_len),
                            forward_only_passes=0, precision="fp32", attention="padded_sdpa",
                            rollout_colocated=False)
    cluster = ClusterSpec(num_gpus=ranks, gpus_per_node=ranks, gpu_mem_gb=24, reserved_gb=0,
                          peak_tflops=gflops / 1e3, mfu=mfu, intra_node_gbps=comm_gbps or 1.0)
    layout = ParallelLayout(fsdp=ranks, micro_batch_tokens=mb_tokens, recompute=recompute)
    return estimate_memory(shape, cluster, workload, layout).to_dict(), estimate_time(
        shape, cluster, workload, layout, profile=profile).to_dict()


def _compare(name: str, measured: float, measured_rss: float, step_s: float, comm: float | None,
             gflops: float) -> dict:
    """One table row: the model's prediction next to what was measured (bytes, seconds)."""
    memory, timing = predict(name, gflops, comm)
    return {
        "name": name, "model": CONFIGS[name][0], "ranks": CONFIGS[name][1],
        "micro_batch_tokens": CONFIGS[name][2], "recompute": CONFIGS[name][3],
        "predicted_peak_mb": memory["train_peak"] / 1e6, "measured_alloc_peak_mb": measured / 1e6,
        "measured_rss_peak_mb": measured_rss / 1e6, "alloc_error": memory["train_peak"] / measured - 1,
        "rss_error": memory["train_peak"] / measured_rss - 1,
        "predicted_step_s": timing["step_s"], "measured_step_s": step_s,
        "time_error": timing["step_s"] / step_s - 1, "allgather_gbps": comm, "matmul_gflops": gflops,
        "predicted": memory, **profile_columns(predict(name, gflops, comm, profile=PROFILE)[1], step_s),
    }


def profile_columns(timing: dict | None, step_s: float) -> dict:
    """The profile-based prediction of a row (--profile), beside the peak-based one."""
    if PROFILE is None or timing is None:
        return {}
    return {"profile_step_s": timing["step_s"], "profile_time_error": timing["step_s"] / step_s - 1,
            "profile_time": timing}


def calibrate(rows: list[dict], reference: str = "m4-mb2048",
              predict_row: Callable[..., tuple[dict, dict]] | None = None) -> None:
    """Fit one effective mfu on the reference row (its measured time minus the model's non-compute part), then
    predict every row's time with it: this tests how step time scales across configurations, which is what
    ranking needs, separately from the absolute CPU efficiency. ``predict_row``: the benchmark's ``predict``
    (name, matmul GFLOP/s, all-gather GB/s, mfu=) -> (memory, timing dict); this module's by default."""
    predict = predict_row or globals()["predict"]
    ref = next((r for r in rows if r["name"] == reference), rows[0])
    _, timing = predict(ref["name"], ref["matmul_gflops"], ref["allgather_gbps"])
    other = timing["step_s"] - timing["compute_s"]
    mfu = timing["compute_s"] / max(ref["measured_step_s"] - other, 1e-9)
    for row in rows:
        _, timing = predict(row["name"], row["matmul_gflops"], row["allgather_gbps"], mfu=min(mfu, 1.0))
        row.update(calibrated_mfu=mfu, calibrated_step_s=timing["step_s"],
                   calibrated_time_error=timing["step_s"] / row["measured_step_s"] - 1, calibration_row=ref["name"])


def progress_row(bench: str, row: dict, time_only: bool) -> None:
    """The stderr progress line of a measured configuration (``bench_tune_memory_tp``'s too)."""
    alloc, rss, error = row["measured_alloc_peak_mb"], row["measured_rss_peak_mb"], 100 * row["alloc_error"]
    memory = "" if time_only else f"peak {alloc:.1f} MB allocator, {rss:.1f} MB RSS (tuner {error:+.1f}%), "
    progress(bench, f"{row['name']}: {memory}step {row['measured_step_s']:.3f} s "
                    f"(tuner at mfu 1 {100 * row['time_error']:+.0f}%)")


def markdown_table(report: dict) -> str:
    """Predicted vs measured peak memory and step time, one row per configuration."""
    lines = ["| configuration | ranks | mb tokens | recompute | predicted MB | measured MB (allocator) | error | "
             "measured MB (RSS) | error | step s measured | predicted (mfu 1) | predicted (calibrated mfu) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['name']} | {r['ranks']} | {r['micro_batch_tokens']} | {r['recompute']} | "
            f"{r['predicted_peak_mb']:.1f} | {r['measured_alloc_peak_mb']:.1f} | {100 * r['alloc_error']:+.1f}% | "
            f"{r['measured_rss_peak_mb']:.1f} | {100 * r['rss_error']:+.1f}% | {r['measured_step_s']:.2f} | "
            f"{r['predicted_step_s']:.2f} ({100 * r['time_error']:+.0f}%) | "
            f"{r['calibrated_step_s']:.2f} ({100 * r['calibrated_time_error']:+.0f}%) |")
    return "\n".join(lines)


def _report(rows: list[dict]) -> dict:
    return {"benchmark": "tune-memory", "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or
            platform.machine(), "torch": torch.__version__},
            "sequence": SEQ, "models": MODELS, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def common_parser(description: str) -> argparse.ArgumentParser:
    """The options this benchmark and `bench_tune_memory_tp` share (children, meters, clock, profile, reports)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--meter", default="alloc", choices=["alloc", "rss", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--result-dir", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="how steps and the matmul peak are "
                        "timed (cpu: each process's CPU seconds, for a box shared with other jobs)")
    parser.add_argument("--profile", help="machine profile(s) (thinkrl tune profile), comma-separated: rows also "
                        "get the step time predicted from the profile")
    parser.add_argument("--time-only", action="store_true", help="only the step-time process (no memory meters: "
                        "the memory columns are then the timing process's RSS, not a measurement)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--repredict", help="recompute the predictions of a saved report (measurements kept); "
                        "printed, and written to --out if given (the saved report is not changed)")
    parser.add_argument("--table", help="print a saved report as the markdown table of docs/results/autotuner.md")
    return parser


def main() -> None:
    parser = common_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    global PROFILE
    PROFILE = load_profiles(args.profile) if args.profile else None
    if args.child:  # one file per rank: ranks share torchrun's stdout and their lines would interleave
        result = run_child(args.child, args.meter, args.clock)
        Path(args.result_dir, f"{result.get('rank', 0)}.json").write_text(json.dumps(result))
        return
    if args.table:
        print(markdown_table(load_report(parser, "--table", args.table, "tune-memory")))
        return
    if args.repredict:
        report = load_report(parser, "--repredict", args.repredict, "tune-memory")
        rows = [_compare(r["name"], r["measured_alloc_peak_mb"] * 1e6, r["measured_rss_peak_mb"] * 1e6,
                         r["measured_step_s"], r["allgather_gbps"], r["matmul_gflops"])
                for r in report["rows"]]
        calibrate(rows)
        report["rows"] = rows
        if args.out:  # the saved report is left as it is
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({"benchmark": "tune-memory", "max_abs_alloc_error": max(abs(r["alloc_error"]) for r in rows)}))
        return
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"--only: unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    rows = []
    for name in names:
        timed = _spawn(name, "time", args.clock)
        rss = timed if args.time_only else _spawn(name, "rss", args.clock)
        alloc = timed if args.time_only else _spawn(name, "alloc", args.clock)
        gbps: list[float] = [r["allgather_gbps"] for r in timed if "allgather_gbps" in r]
        comm = min(gbps, default=None)
        rows.append(_compare(name, max(r["peak_bytes"] for r in alloc), max(r["peak_bytes"] for r in rss),
                             max(r["step_s"] for r in timed), comm, min(r["matmul_gflops"] for r in timed)))
        if args.out:  # after every row, so a long run that stops keeps what it measured
            Path(args.out).write_text(json.dumps(_report(rows), indent=1) + "\n")
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "predicted"}), flush=True)
        progress_row("tune-memory", rows[-1], args.time_only)
    calibrate(rows)
    report = _report(rows) | {"clock": args.clock, "time_only": args.time_only, "profile": args.profile}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"benchmark": "tune-memory", "max_abs_alloc_error": max(abs(r["alloc_error"]) for r in rows),
                      "max_abs_calibrated_time_error": max(abs(r["calibrated_time_error"]) for r in rows)}))


if __name__ == "__main__":
    main()
