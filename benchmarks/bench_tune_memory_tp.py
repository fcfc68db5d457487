"""The AutoTuner's memory and step-time model against 2-rank layouts as `thinkrl train --layout` applies them.

Like ``bench_tune_memory`` (same model m4, sequences, step: two packed micro-batches, token-mean log-prob loss,
AdamW; the same two meters: allocator peak replayed from ``torch.profiler`` and RSS high-water mark, each in a
fresh torchrun with gloo), but the model is split by the trainer's own code: ``data_parallel_from_env`` with the
layout's tp, then ``thinkrl.train.distributed.shard_model`` (tensor parallelism of each decoder layer over the tp
ranks, FSDP2 over the dp ranks), so what is measured is what ``--layout`` runs. A tp group takes the same
micro-batches (the layout's ``micro_batch_tokens`` is per tp group); fsdp ranks take different ones.

Prediction: the tuner for the trainer it targets by default (`thinkrl.tune.TrainerSpec()`: thinkrl train, tp
without sequence parallelism, embeddings and lm_head replicated), and, for comparison, the same layout under the
assumption of sequence- and vocabulary-parallel tp (``--assume-sequence-parallel --assume-vocab-parallel``), which
is what the tuner assumed before it modelled the trainer.

Step time (its own torchrun, glibc's default allocator as in training): median of 3 steps of the slowest rank,
by ``--clock`` (``cpu``: each process's CPU seconds, the time the
work ran on this shared box, whatever the other jobs do); the model's prediction at the matmul rate measured with
the same clock in the same process (mfu 1), and with one effective mfu fitted on the fsdp=2 row. Links: the gloo
all-gather bandwidth measured in the same run (wall clock). With ``--profile machine.json`` (``thinkrl tune
profile``, measured beforehand by micro-benchmarks) each row also gets the profile-based prediction.

Prints a JSON row on stdout as each configuration ends, then a summary line; a progress line goes to stderr as each
configuration ends.

    thinkrl bench tune-memory-tp [--clock cpu] [--out docs/results/raw/autotuner_cpu_layouts.json] [--only NAME,...]
    thinkrl bench tune-memory-tp --repredict docs/results/raw/autotuner_cpu_layouts.json [--out NEW.json]
    thinkrl bench tune-memory-tp --clock cpu --time-only --profile machine.json --out t.json; ... --time-table t.json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import _memory_meters as meters  # siblings: benchmarks/ is on sys.path
import bench_tune_memory as base  # the sibling benchmark (model, batches, step)
from _cli import load_report

if TYPE_CHECKING:
    from thinkrl.tune import WorkloadSpec
    from thinkrl.tune.layout import Recompute
    from thinkrl.tune.profile import MachineProfile

# name: (model, tp, fsdp, micro_batch_tokens, recompute)
CONFIGS: dict[str, tuple[str, int, int, int, Recompute]] = {
    "m4-mb2048-fsdp2": ("m4", 1, 2, 2048, "none"),
    "m4-mb2048-tp2": ("m4", 2, 1, 2048, "none"),
    "m4-mb4096-tp2": ("m4", 2, 1, 4096, "none"),
    "m4-mb4096-tp2-recompute": ("m4", 2, 1, 4096, "full"),
    "v16k2-mb2048-tp2": ("v16k2", 2, 1, 2048, "none"),
    "m4-mb2048-tp2-fsdp2": ("m4", 2, 2, 2048, "none"),
}
SP_VP = {"sequence_parallel": True, "vocab_parallel": True}  # the assumption the tuner made before
def run_child(name: str, meter: str, clock: str) -> dict:
    from thinkrl.train.distributed import close_data_parallel, data_parallel_from_env, shard_model

    model_name, tp, fsdp, mb_tokens, recompute = CONFIGS[name]
    torch.set_num_threads(1)
    dp = data_parallel_from_env(backend="gloo", tensor_parallel=tp)
    assert dp is not None and dp.world_size == tp * fsdp, "launch with torchrun --nproc-per-node tp*fsdp"
    model, batches, _ = base._build(model_name, mb_tokens, recompute, ranks=1)  # unsplit; split below
    shard_model(model, dp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=tp == 1)  # foreach refuses mixed DTensors
    base._step(model, batches, optimizer)  # warm-up: Adam states exist from here on
    live = meters.live_bytes(model, batches, optimizer)
    result = {"name": name, "meter": meter, "live_bytes": live, "rank": dp.rank}
    if meter == "alloc":
        result["peak_bytes"] = live + meters.profiled_peak(lambda: base._step(model, batches, optimizer))
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = meters.rss_kb("VmRSS")
        base._step(model, batches, optimizer)
        result["peak_bytes"] = live + (meters.rss_kb("VmHWM") - before) * 1024
        times, rates = [], []
        for _ in range(3):
            rates.append(base.matmul_gflops(clock=clock))
            start = base.CLOCKS[clock]()
            base._step(model, batches, optimizer)
            times.append(base.CLOCKS[clock]() - start)
        result.update(step_s=statistics.median(times), matmul_gflops=statistics.median(rates),
                      allgather_gbps=meters.allgather_gbps())
    close_data_parallel(synchronize=True)
    return result


def _spawn(name: str, meter: str, clock: str) -> list[dict]:
    _, tp, fsdp, _, _ = CONFIGS[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} | base.spawn_malloc_env(meter)
    result_dir = tempfile.mkdtemp(prefix="tune-memory-tp-")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(tp * fsdp), "--master-port",
           str(29500 + os.getpid() % 1000), str(Path(__file__).resolve()), "--child", name, "--meter", meter,
           "--clock", clock, "--result-dir", result_dir]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    rows = [json.loads(path.read_text()) for path in sorted(Path(result_dir).glob("*.json"))]
    shutil.rmtree(result_dir)
    if len(rows) < tp * fsdp:
        raise RuntimeError(f"{name} ({meter}) failed:\n{proc.stderr[-3000:]}")
    if proc.returncode:  # every rank measured and wrote its row, then a rank aborted at exit (recorded, not hidden:
        # "terminate called without an active exception" after FSDP2 steps with gloo, bench_tune_memory's too)
        for row in rows:
            row["exit_status_after_result"] = proc.returncode
    return rows


def predict(name: str, gflops: float, comm_gbps: float, mfu: float = 1.0,
            assume: dict | None = None, profile: MachineProfile | None = None) -> tuple[dict, dict]:
    """The tuner's memory and time of configuration ``name`` (per rank), for `bench_tune_memory.predict`'s
    workload with the layout's tp and fsdp, on thinkrl train (``assume``: TrainerSpec fields to set instead)."""
    from thinkrl.tune import ClusterSpec, ParallelLayout, TrainerSpec, estimate_memory, estimate_time
    from thinkrl.tune.shapes import ModelShape, read_hf_config

    model_name, tp, fsdp, mb_tokens, recompute = CONFIGS[name]
    shape = ModelShape.from_config(read_hf_config(base._hf_config(model_name)), name=model_name)
    workload = base_workload(name)
    cluster = ClusterSpec(num_gpus=tp * fsdp, gpus_per_node=tp * fsdp, gpu_mem_gb=24, reserved_gb=0,
                          peak_tflops=gflops / 1e3, mfu=mfu, intra_node_gbps=comm_gbps)
    layout = ParallelLayout(tp=tp, fsdp=fsdp, micro_batch_tokens=mb_tokens, recompute=recompute)
    trainer = TrainerSpec(**(assume or {}))
    return estimate_memory(shape, cluster, workload, layout, trainer).to_dict(), estimate_time(
        shape, cluster, workload, layout, trainer, profile).to_dict()


def predict_without_sp(name: str) -> float:
    """Train-peak bytes the tuner predicts for the tensor parallelism thinkrl train runs (its default `TrainerSpec`:
    no sequence parallelism, embeddings and lm_head replicated). Kept under this name for
    tests/train/test_layout_memory.py; before the tuner modelled the trainer this was a re-derivation here."""
    return predict(name, 1.0, 1.0)[0]["train_peak"]


def base_workload(name: str) -> WorkloadSpec:
    from thinkrl.tune import WorkloadSpec

    _, _, fsdp, mb_tokens, _ = CONFIGS[name]
    seq_len = base.SEQ["prompt_len"] + base.SEQ["response_len"]
    return WorkloadSpec(**base.SEQ, group_size=1, prompts_per_step=2 * fsdp * (mb_tokens // seq_len),
                        forward_only_passes=0, precision="fp32", attention="padded_sdpa", rollout_colocated=False)


def measure(name: str, clock: str, time_only: bool = False) -> dict:
    timed = _spawn(name, "time", clock)
    rss = timed if time_only else _spawn(name, "rss", clock)
    alloc = timed if time_only else _spawn(name, "alloc", clock)
    measured, measured_rss = max(r["peak_bytes"] for r in alloc), max(r["peak_bytes"] for r in rss)
    comm, gflops = min(r["allgather_gbps"] for r in timed), min(r["matmul_gflops"] for r in timed)
    step_s = max(r["step_s"] for r in timed)
    row = compare(name, measured / 1e6, measured_rss / 1e6, step_s, comm, gflops)
    return row | {"exit_status_after_result": max(r.get("exit_status_after_result", 0) for r in alloc + rss + timed)}


def compare(name: str, measured_mb: float, measured_rss_mb: float, step_s: float, comm: float, gflops: float) -> dict:
    """One table row: the tuner's predictions (thinkrl train; and with sequence + vocab parallelism assumed) next
    to what was measured."""
    memory, timing = predict(name, gflops, comm)
    assumed = predict(name, gflops, comm, assume=SP_VP)[0]["train_peak"]
    measured, measured_rss = measured_mb * 1e6, measured_rss_mb * 1e6
    model_name, tp, fsdp, mb_tokens, recompute = CONFIGS[name]
    return {"name": name, "model": model_name, "tp": tp, "fsdp": fsdp, "micro_batch_tokens": mb_tokens,
            "recompute": recompute, "predicted_peak_mb": memory["train_peak"] / 1e6,
            "measured_alloc_peak_mb": measured / 1e6, "measured_rss_peak_mb": measured_rss / 1e6,
            "alloc_error": memory["train_peak"] / measured - 1, "rss_error": memory["train_peak"] / measured_rss - 1,
            "predicted_sp_vp_mb": assumed / 1e6, "sp_vp_alloc_error": assumed / measured - 1,
            "predicted_step_s": timing["step_s"], "measured_step_s": step_s,
            "time_error": timing["step_s"] / step_s - 1, "allgather_gbps": comm, "matmul_gflops": gflops,
            "predicted": memory, "predicted_time": timing,
            **base.profile_columns(predict(name, gflops, comm, profile=base.PROFILE)[1] if base.PROFILE else None,
                                   step_s)}


def time_table(rows: list[dict]) -> str:
    """Step time: measured, from the profile, and from the peak (mfu 1) — any benchmark's rows."""
    lines = ["| configuration | step s measured | predicted from profile | error | predicted at peak (mfu 1) | error |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['measured_step_s']:.3f} | {r['profile_step_s']:.3f} | "
                     f"{100 * r['profile_time_error']:+.1f}% | {r['predicted_step_s']:.3f} | "
                     f"{100 * r['time_error']:+.0f}% |")
    return "\n".join(lines)


def repredict(report: dict) -> dict:
    """The same measurements with the tuner's current predictions (after a change to the model)."""
    rows = [row | compare(row["name"], row["measured_alloc_peak_mb"], row["measured_rss_peak_mb"],
                          row["measured_step_s"], row["allgather_gbps"], row["matmul_gflops"])
            for row in report["rows"]]
    base.calibrate(rows, "m4-mb2048-fsdp2", predict)
    return report | {"rows": rows, "repredicted": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown_table(report: dict) -> str:
    lines = ["| configuration | tp | fsdp | mb tokens | recompute | predicted MB (tuner, thinkrl train) | "
             "measured MB (allocator) | error | measured MB (RSS) | error | predicted MB if SP + vocab-parallel | "
             "error (allocator) | step s measured | predicted (mfu 1) | predicted (calibrated mfu) |",
             "|---" * 15 + "|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['name']} | {r['tp']} | {r['fsdp']} | {r['micro_batch_tokens']} | {r['recompute']} | "
            f"{r['predicted_peak_mb']:.1f} | {r['measured_alloc_peak_mb']:.1f} | {100 * r['alloc_error']:+.1f}% | "
            f"{r['measured_rss_peak_mb']:.1f} | {100 * r['rss_error']:+.1f}% | {r['predicted_sp_vp_mb']:.1f} | "
            f"{100 * r['sp_vp_alloc_error']:+.1f}% | {r['measured_step_s']:.2f} | "
            f"{r['predicted_step_s']:.2f} ({100 * r['time_error']:+.0f}%) | "
            f"{r['calibrated_step_s']:.2f} ({100 * r['calibrated_time_error']:+.0f}%) |")
    return "\n".join(lines)


def main() -> None:
    parser = base.common_parser(__doc__.splitlines()[0])
    parser.add_argument("--time-table", help="print a saved report's step-time table (profile vs measured)")
    args = parser.parse_args()
    base.PROFILE = base.load_profiles(args.profile) if args.profile else None
    if args.time_table:
        print(time_table(load_report(parser, "--time-table", args.time_table, "tune-memory-tp")["rows"]))
        return
    if args.repredict:  # the saved report is left as it is: --out gets the new predictions
        report = repredict(load_report(parser, "--repredict", args.repredict, "tune-memory-tp"))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(markdown_table(report))
        return
    if args.child:
        result = run_child(args.child, args.meter, args.clock)
        Path(args.result_dir, f"{result['rank']}.json").write_text(json.dumps(result))
        return
    if args.table:
        print(markdown_table(load_report(parser, "--table", args.table, "tune-memory-tp")))
        return
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"--only: unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    rows = []
    for name in names:
        rows.append(measure(name, args.clock, args.time_only))
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.startswith("predicted")} |
                         {"predicted_peak_mb": rows[-1]["predicted_peak_mb"]}), flush=True)
        base.progress_row("tune-memory-tp", rows[-1], args.time_only)
    base.calibrate(rows, "m4-mb2048-fsdp2", predict)
    report = {"benchmark": "tune-memory-tp", "clock": args.clock, "machine": {"nproc": os.cpu_count(),
              "torch": torch.__version__}, "sequence": base.SEQ, "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "time_only": args.time_only,
              "profile": args.profile}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"benchmark": "tune-memory-tp", "max_abs_alloc_error": max(abs(r["alloc_error"]) for r in rows),
                      "max_abs_calibrated_time_error": max(abs(r["calibrated_time_error"]) for r in rows)}))


if __name__ == "__main__":
    main()
