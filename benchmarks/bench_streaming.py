"""Synchronous vs streaming rollout on a long-tail workload, side by side in one run.

The RL step is the real one (`thinkrl.train.rl_loop.rl_step`: rollout → advantages → decoupled-PPO update → weight
push) on a micro policy. By default six modes run the same workload, interleaved over ``--rounds`` so load from
other jobs on the machine falls on all of them alike: ``sync`` and ``streaming`` at eta = 1 and eta = 2, each with the
eager engine and with the compiled decode step (``_compiled``; sync's best setup on a CPU), all with the default
``rollout.wait_for_due: true`` (the trainer waits for a group that only this batch may still train); ``_drop``
modes set it false (such groups are dropped and their prompts sampled again).

Workload (long tail, EOS honoured): a micro policy does not produce long-tail lengths by itself, so each response's
length limit (``max_new_tokens``) is drawn from a documented distribution: 90% uniform in [L/2, L], 10% uniform in
(L, 8L] (``--short-len`` L). A sampled stop token still ends a response early (EOS honoured). The limit is drawn
per sample from its seed, and a partial response's continuation keeps its sample's limit (`LengthDrivenClient`).

Figures per mode: trained samples/s (kept samples over the measured steps' wall time), trainer idle fraction (time
the step waited for its batch / step time; in sync the whole rollout is idle time for the trainer), decode batch
occupancy (tokens generated / (engine steps x slots)), stale groups dropped, mean trained response length. Prints
one JSON line; ratios are streaming / sync. A progress line goes to stderr as each mode of each round ends.

    thinkrl bench streaming [--steps 6] [--rounds 2] [--warmup N] [--short-len 16] [--modes sync,...]
        [--placements thread,process] [--device cpu] [--no-bound] [--out FILE]

``bound`` (after the runs; ``--no-bound`` skips it): for each streaming mode, the samples/s its engine would allow
if every step cost what the same engine's step costs alone with as many rows in flight (no trainer, driver or pipe
beside it), over the best sync: what no change outside the engine step can exceed (benchmarks/_streaming_bound.py).
``--device cuda`` runs the policy and engines on a GPU (the engine replays CUDA graphs;
benchmarks/device/gpu_streaming.sh).

Each mode and round starts a fresh run; by default its first eta + 1 steps (sync: 1) are not measured, so the
figures are those of a full pipeline, as in a long RL run (``--warmup 1``: the previous, fill-included measure).

``--placements``: where the engine runs (``rollout.placement``); with ``process`` the engine has its own process
(and core) and the trainer's process keeps the streaming driver. Each mode runs in each placement; ratios are over
the sync of the same placement and engine (``sync_compiled`` for a ``_compiled`` mode when the run has it), over the
best sync of the run (any sync mode, ``sync_admit8`` too), and the median over rounds of each round's ratio to that
round's best sync (``ratio_median_of_rounds_vs_best_sync``: robust to the load drifting between rounds).
``--modes`` also offers the driver's admission rule ``slots`` (``_slots``) beside the default ``batch``, the
engine's admission batching ``sampling.admit_batch: 8`` (``_admit8``) beside the default 1 (docs/streaming.md), and
twice ``--slots`` engine slots (``_2xslots``; ``sync_2xslots`` shows that sync gains nothing from them), and the
engine's decode step compiled (``_compiled``: ``sampling.compile_decode``, docs/engine.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple, TypedDict

import torch

from _cli import check_at_least, progress  # siblings: benchmarks/ is on sys.path
from _model_shapes import TiedModelShape
from _streaming_bound import Bound, Isolated, build_engine, engine_bound, interpolate, isolated_step
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.records import Trajectory
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout import build_driver
from thinkrl.rollout.partial import ContinuedController
from thinkrl.train.config import RLRecipe, validate_recipe
from thinkrl.train.rl_loop import rl_step
from thinkrl.train.rl_setup import build_run

MICRO: TiedModelShape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}


class Mode(NamedTuple):
    """One benchmarked setting: ``rollout.mode``, ``max_staleness``, ``wait_for_due``, ``admission``, the
    engine's ``sampling.admit_batch``, its slots as a multiple of ``--slots`` and ``sampling.compile_decode``."""

    mode: str
    eta: int
    wait_for_due: bool = True
    admission: str = "batch"
    admit_batch: int = 1
    slot_factor: int = 1
    compile_decode: bool = False


MODES = {
    "sync": Mode("sync", 0), "sync_admit8": Mode("sync", 0, admit_batch=8),
    "stream_eta1": Mode("streaming", 1), "stream_eta2": Mode("streaming", 2),
    "stream_eta1_drop": Mode("streaming", 1, False), "stream_eta2_drop": Mode("streaming", 2, False),
    "stream_eta1_slots": Mode("streaming", 1, admission="slots"),
    "stream_eta2_slots": Mode("streaming", 2, admission="slots"),
    "stream_eta2_slots_drop": Mode("streaming", 2, False, "slots"),
    # admission batching in the engine: one prefill forward for 8 freed slots instead of one per freed slot
    "stream_eta1_admit8": Mode("streaming", 1, admit_batch=8),
    "stream_eta2_admit8": Mode("streaming", 2, admit_batch=8),
    # eta 4: where the cluster model first reaches 2x (docs/results/streaming.md); a recipe choice, not the target's
    "stream_eta4": Mode("streaming", 4), "stream_eta4_slots": Mode("streaming", 4, admission="slots"),
    "stream_eta4_admit8": Mode("streaming", 4, admit_batch=8),
    # twice the engine's slots: room for a push's continuations and the next groups at once (sync cannot use them:
    # its step samples --prompts x --group requests)
    "sync_2xslots": Mode("sync", 0, slot_factor=2), "stream_eta1_2xslots": Mode("streaming", 1, slot_factor=2),
    "stream_eta2_2xslots": Mode("streaming", 2, slot_factor=2),
    "stream_eta2_admit8_2xslots": Mode("streaming", 2, admit_batch=8, slot_factor=2),
    # the engine's decode step compiled (sampling.compile_decode; compiled when each mode's engine starts)
    "sync_compiled": Mode("sync", 0, compile_decode=True),
    "stream_eta1_compiled": Mode("streaming", 1, compile_decode=True),
    "stream_eta2_compiled": Mode("streaming", 2, compile_decode=True),
    "stream_eta2_2xslots_compiled": Mode("streaming", 2, slot_factor=2, compile_decode=True),
}
DEFAULT_MODES = "sync,sync_compiled,stream_eta1,stream_eta2,stream_eta1_compiled,stream_eta2_compiled"


def draw_length(seed: int | None, short: int) -> int:
    """The long-tail length limit of one sample: 90% in [short/2, short], 10% in (short, 8 x short]."""
    rng = random.Random(seed)
    return rng.randint(short // 2, short) if rng.random() < 0.9 else rng.randint(short + 1, 8 * short)


class LengthDrivenClient:
    """The engine client with each sample's ``max_new_tokens`` replaced by `draw_length` of its seed; a
    continuation (its controller a `ContinuedController`) keeps its sample's limit, less the tokens it has."""

    def __init__(self, inner: Any, short: int) -> None:
        self.inner, self.short = inner, short
        self._limits: dict[int, tuple[Any, int]] = {}  # id(budget controller) -> (controller, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _driven(self, request: Request) -> Request:
        controller = request.controller
        if isinstance(controller, ContinuedController):
            limit = self._limits[id(controller.inner)][1] - len(controller.prefix)
        else:
            limit = draw_length(request.params.seed, self.short)
            self._limits[id(controller)] = (controller, limit)
        params = request.params.__class__(**{**request.params.__dict__, "max_new_tokens": max(1, limit)})
        return Request(request.prompt_ids, params, request.request_id, request.metadata, controller)

    def submit(self, requests: Request | Sequence[Request], sink: Any, *, finished_only: bool = False) -> None:
        batch = [requests] if isinstance(requests, Request) else list(requests)
        self.inner.submit([self._driven(r) for r in batch], sink, finished_only=finished_only)

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]:
        return self.inner.generate([self._driven(r) for r in requests])


def _recipe(out: str, mode: Mode, short: int, slots: int, prompts: int, group: int,
            placement: str = "thread", device: str = "cpu") -> RLRecipe:
    return validate_recipe({
        "name": f"bench-{mode.mode}-{mode.eta}", "model": {"init": MICRO, "device": device},
        "data": {"task": "arithmetic", "num_train": 400, "num_test": 0, "seed": 0},
        "sampling": {"max_new_tokens": 8 * short, "num_slots": slots * mode.slot_factor,
                     "admit_batch": mode.admit_batch, "compile_decode": mode.compile_decode},
        "rollout": {"group_size": group, "prompts_per_step": prompts, "dynamic_sampling": False, "mode": mode.mode,
                    "max_staleness": mode.eta, "wait_for_due": mode.wait_for_due, "admission": mode.admission,
                    "placement": placement},
        "reward": {"max_response_len": 8 * short, "overlong_cache_len": short},
        "algorithm": {"preset": "dapo", "off_policy": "decoupled"},  # the same trainer work in every mode
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "trainer": {"steps": 10_000, "micro_batch_tokens": 4096, "save_every": 0, "log_every": 1,
                    "output_dir": out, "eval_every": 0, "seed": 0},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def warmup_steps(eta: int, requested: int | None) -> int:
    """Unmeasured steps before the measured ones: ``requested``, or by default eta + 1 (1 for sync). A streaming
    run starts empty and holds up to eta + 1 steps of groups once its pipeline is full; an RL run is hundreds of
    steps, so its throughput is the full pipeline's, and the fill is a one-time cost like sync's first call."""
    return requested if requested is not None else eta + 1


def run_mode(recipe: RLRecipe, steps: int, short: int, warmup: int = 1) -> dict[str, float]:
    """``steps`` measured RL steps after ``warmup`` unmeasured ones; the mode's totals."""
    run = build_run(recipe)
    run.engine = LengthDrivenClient(run.engine, short)
    loop = run.engine.inner  # EngineLoop (counts its steps) or RolloutProcess (has the count of the last push)
    driver = build_driver(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling, recipe.reward,
                          seed=recipe.trainer.seed)
    totals = {"wall_s": 0.0, "idle_s": 0.0, "samples": 0, "generated_tokens": 0, "engine_steps": 0,
              "dropped_stale": 0, "steps": steps, "sampled": 0, "train_s": 0.0, "finished_tokens": 0.0}
    try:
        for step in range(1, warmup + 1):  # first-call costs and the pipeline's fill; not measured
            rl_step(run, recipe, step, driver)
        steps0, start = getattr(loop, "num_steps", 0), time.perf_counter()
        for step in range(warmup + 1, warmup + steps + 1):
            row = rl_step(run, recipe, step, driver)
            totals["idle_s"] += row["time/rollout"]
            totals["samples"] += int(row["groups_kept_trained"]) * recipe.rollout.group_size
            totals["generated_tokens"] += int(row.get("stream/tokens_generated",
                                                      row.get("response_length_mean", 0.0) * row["groups_sampled"]
                                                      * recipe.rollout.group_size))
            totals["dropped_stale"] += int(row.get("stream/dropped_stale", 0))
            totals["train_s"] += row.get("time/update", 0.0) + row.get("time/push", 0.0)
            finished = row["groups_sampled"] * recipe.rollout.group_size  # (no length logged when 0 finished)
            totals["finished_tokens"] += row.get("response_length_mean", 0.0) * finished
            totals["sampled"] += row["groups_sampled"] * recipe.rollout.group_size
        totals["wall_s"] = time.perf_counter() - start
        totals["engine_steps"] = getattr(loop, "num_steps", 0) - steps0
    finally:
        driver.close()
        loop.stop()
    return totals


def calibrate_engine(slots: int, short: int, repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """Per decode step cost of the engine alone (no trainer beside it), fitted as ``fixed + per_seq x running``
    from steps with 4 and ``slots`` sequences, best of ``repeats`` (for `bench_streaming_sim`'s CPU validation)."""
    engine = build_engine(MICRO, slots, 16 * short, compile_decode=False, device=device)
    costs = {}
    for n in (4, slots):
        best = float("inf")
        for r in range(repeats):
            requests = [Request(list(range(5, 35)), SamplingParams(max_new_tokens=2 * short, seed=i,
                                                                   stop_token_ids=()), request_id=(n, r, i))
                        for i in range(n)]
            for request in requests:
                engine.add_request(request)
            engine.step()  # prefill
            start = time.perf_counter()
            steps = 0
            while engine.has_unfinished():
                engine.step()
                steps += 1
            best = min(best, (time.perf_counter() - start) / steps)
        costs[n] = best
    per_seq = (costs[slots] - costs[4]) / (slots - 4)
    return {"step_fixed_s": costs[4] - 4 * per_seq, "step_per_seq_s": per_seq}


class ModeSummary(TypedDict):
    samples_per_s: float
    trainer_idle_frac: float
    decode_occupancy: float | None
    dropped_stale_groups: float
    sampled_len_mean: float
    wall_s: float
    samples: float
    engine_steps: float
    train_per_token_s: float
    train_s_per_batch: float


def summarize(totals: dict[str, float], slots: int) -> ModeSummary:
    return {
        "samples_per_s": totals["samples"] / totals["wall_s"],
        "trainer_idle_frac": totals["idle_s"] / totals["wall_s"],
        "decode_occupancy": (totals["generated_tokens"] / (totals["engine_steps"] * slots)
                             if totals["engine_steps"] else None),
        "dropped_stale_groups": totals["dropped_stale"],
        "sampled_len_mean": totals["finished_tokens"] / max(1, totals["sampled"]),  # finished responses
        "wall_s": totals["wall_s"], "samples": totals["samples"], "engine_steps": totals["engine_steps"],
        "train_per_token_s": totals["train_s"] / max(1.0, totals["finished_tokens"]),
        "train_s_per_batch": totals["train_s"] / totals["steps"],
    }


def engine_bounds(names: dict[str, tuple[str, str]], results: dict[str, ModeSummary], best_sync: str,
                  args: argparse.Namespace) -> dict[str, Any]:
    """Each streaming mode's `engine_bound` (benchmarks/_streaming_bound.py) and sync's load on the same engine
    alone: the engine's step measured by itself (no trainer, driver or pipe) at the mode's mean rows in flight."""
    batch = args.prompts * args.group
    engines: dict[tuple[bool, int], LLMEngine] = {}
    measured: dict[tuple[bool, int, int], Isolated] = {}

    def alone(compiled: bool, slots: int, rows: int) -> Isolated:
        if (compiled, slots) not in engines:
            engines[compiled, slots] = build_engine(MICRO, slots, 16 * args.short_len, compiled, args.device)
        if (compiled, slots, rows) not in measured:
            measured[compiled, slots, rows] = isolated_step(engines[compiled, slots], rows, batch, args.group,
                                                            partial(draw_length, short=args.short_len))
        return measured[compiled, slots, rows]

    bounds: dict[str, Bound] = {}
    sync_alone: dict[str, Isolated] = {}
    ideal_sync = 0.0  # samples/s of the best sync if its steps cost what they cost alone (+ its training)
    for name, (m, _) in names.items():
        mode, row = MODES[m], results[name]
        if mode.mode == "sync":
            sync_alone[name] = alone(mode.compile_decode, args.slots * mode.slot_factor, 0)
            sync_s = steps_per_batch(row, batch) * sync_alone[name]["ms_per_step"] / 1e3 + row["train_s_per_batch"]
            ideal_sync = max(ideal_sync, batch / sync_s)
    for name, (m, _) in names.items():
        mode, row = MODES[m], results[name]
        slots = args.slots * mode.slot_factor
        rows = row["decode_occupancy"] * slots if row["decode_occupancy"] else 0.0
        if mode.mode == "sync" or not rows:  # (no engine steps counted)
            continue
        loads = [alone(mode.compile_decode, slots, max(1, round(rows) - 2)),
                 alone(mode.compile_decode, slots, round(rows) + 1)]
        bounds[name] = engine_bound(steps_per_batch(row, batch), rows, interpolate(loads, rows), batch,
                                    results[best_sync]["samples_per_s"], ideal_sync)
        progress("streaming", f"bound {name}: {bounds[name]['ratio_bound_vs_best_sync']:.2f}x the best sync, "
                              f"{bounds[name]['ratio_ideal']:.2f}x the ideal sync")
    return {"modes": bounds, "sync_load_alone": sync_alone, "ideal_sync_samples_per_s": ideal_sync,
            "loads_alone": [{"compiled": c, "slots": s, "target_rows": r, **v} for (c, s, r), v in measured.items()]}


def same_engine_sync(name: str, names: dict[str, tuple[str, str]]) -> str:
    """The sync mode a mode's ratio is over: the same placement, compiled when the mode is and the run has one."""
    placement = names[name][1]
    suffix = "" if placement == "thread" else f"@{placement}"
    compiled = f"sync_compiled{suffix}"
    return compiled if MODES[names[name][0]].compile_decode and compiled in names else f"sync{suffix}"


def steps_per_batch(row: ModeSummary, batch: int) -> float:
    return row["engine_steps"] / (row["samples"] / batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="measured RL steps per mode and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all modes")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured steps per mode and round (default: eta + 1, the pipeline's fill; sync 1)")
    parser.add_argument("--short-len", type=int, default=16, help="L: 90%% of limits in [L/2, L], 10%% up to 8L")
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=8, help="prompts (groups) per step")
    parser.add_argument("--group", type=int, default=4, help="samples per prompt")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--placements", default="thread", help="comma list of thread, process (engine placement)")
    parser.add_argument("--device", default="cpu", help="the policy's and engines' device, cpu or cuda[:N] "
                                                         "(on cuda engines replay CUDA graphs: _compiled adds nothing)")
    parser.add_argument("--no-bound", action="store_true", help="skip the engine-alone bound (a few s per mode)")
    args = parser.parse_args()
    modes, placements = args.modes.split(","), args.placements.split(",")
    unknown = [m for m in modes if m not in MODES] + [p for p in placements if p not in ("thread", "process")]
    # (--short-len: half of it is the shortest limit, and the calibration's 30-token prompts must fit)
    check_at_least(parser, args, steps=1, rounds=1, short_len=4, warmup=0)
    if args.slots < 5:
        parser.error(f"--slots must be at least 5 (the engine calibration fits steps of 4 and --slots sequences), "
                     f"got {args.slots}")
    if unknown or "sync" not in modes:
        parser.error(f"unknown modes or placements {unknown} (sync is always needed)" if unknown else
                     "--modes must include sync (the baseline)")
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--device must be cpu, or cuda[:N] on a machine with CUDA, got {args.device!r}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    names = {(m if p == "thread" else f"{m}@{p}"): (m, p) for p in placements for m in modes}
    sums: dict[str, dict[str, float]] = {n: {} for n in names}
    per_round: dict[str, list[float]] = {n: [] for n in names}  # samples/s of each round
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        calibrations = []
        for r in range(args.rounds):
            # each round: the load changes
            calibrations.append(calibrate_engine(args.slots, args.short_len, device=args.device))
            for name, (m, placement) in names.items():
                recipe = _recipe(os.path.join(tmp, f"{m}-{placement}-{r}"), MODES[m], args.short_len, args.slots,
                                 args.prompts, args.group, placement, args.device)
                totals = run_mode(recipe, args.steps, args.short_len, warmup_steps(MODES[m].eta, args.warmup))
                for key, value in totals.items():
                    sums[name][key] = sums[name].get(key, 0) + value
                per_round[name].append(totals["samples"] / totals["wall_s"])
                loads.append(os.getloadavg()[0])
                progress("streaming", f"round {r + 1}/{args.rounds} {name}: {per_round[name][-1]:.1f} samples/s, "
                                      f"trainer idle {totals['idle_s'] / totals['wall_s']:.2f}")
    results = {name: summarize(t, args.slots * MODES[names[name][0]].slot_factor) for name, t in sums.items()}
    syncs = {n: r["samples_per_s"] for n, r in results.items() if MODES[names[n][0]].mode == "sync"}
    best_sync = max(syncs, key=syncs.__getitem__)
    calibration = {**min(calibrations, key=lambda c: c["step_fixed_s"] + c["step_per_seq_s"] * args.slots),
                   "train_per_token_s": results[best_sync]["train_per_token_s"], "rounds": calibrations}
    bound = None if args.no_bound else engine_bounds(names, results, best_sync, args)
    sync_of = {n: same_engine_sync(n, names) for n in names}
    same = {n: syncs[sync_of[n]] for n in names}
    best_of_round = [max(per_round[n][r] for n in syncs) for r in range(args.rounds)]
    line = json.dumps({
        "bench": "streaming", "workload": {"short_len": args.short_len, "long_max": 8 * args.short_len,
                                           "long_share": 0.1, "slots": args.slots, "prompts_per_step": args.prompts,
                                           "group_size": args.group, "model": MICRO},
        "steps_per_mode": args.steps * args.rounds, "rounds": args.rounds, "results": results,
        "warmup_steps": {n: warmup_steps(MODES[m].eta, args.warmup) for n, (m, _) in names.items()},
        "calibration": calibration, "best_sync": best_sync,
        # each streaming mode over the sync of its own placement and engine (compiled or not; the eager sync when the
        # run has no compiled one), and over the best sync of the run
        "ratio_samples_per_s": {n: r["samples_per_s"] / same[n] for n, r in results.items() if n not in syncs},
        "ratio_vs_best_sync": {n: r["samples_per_s"] / syncs[best_sync] for n, r in results.items()
                               if n not in syncs},
        # robust to the load drifting between rounds: each round's ratio to its own sync, median over rounds
        "ratio_median_of_rounds": {n: statistics.median(a / b for a, b in zip(per_round[n], per_round[sync_of[n]],
                                                                              strict=True))
                                   for n in names if n not in syncs},
        "ratio_median_of_rounds_vs_best_sync": {n: statistics.median(a / b for a, b in zip(per_round[n], best_of_round,
                                                                                           strict=True))
                                                for n in names if n not in syncs},
        "samples_per_s_per_round": per_round,
        # what the engine alone allows each streaming mode (benchmarks/_streaming_bound.py)
        "bound": bound, "device": args.device,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
        "load_average": os.getloadavg(), "load_1min_after_each_mode": loads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    })
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
