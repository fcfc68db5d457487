"""Synchronous vs streaming rollout on a long-tail workload, side by side in one run.

The RL step is the real one (`thinkrl.train.rl_loop.rl_step`: rollout → advantages → decoupled-PPO update → weight
push) on a micro policy. Five modes run the same workload, interleaved over ``--rounds`` so load from other jobs on
the machine falls on all of them alike: ``sync``; ``streaming`` with eta = 1 and eta = 2, each with the default
``rollout.wait_for_due: true`` (the trainer waits for a group that only this batch may still train) and with
``false`` (``_drop``: such groups are dropped and their prompts sampled again).

Workload (long tail, EOS honoured): a micro policy does not produce long-tail lengths by itself, so each response's
length limit (``max_new_tokens``) is drawn from a documented distribution: 90% uniform in [L/2, L], 10% uniform in
(L, 8L] (``--short-len`` L). A sampled stop token still ends a response early (EOS honoured). The limit is drawn
per sample from its seed, and a partial response's continuation keeps its sample's limit (`LengthDrivenClient`).

Figures per mode: trained samples/s (kept samples over the measured steps' wall time), trainer idle fraction (time
the step waited for its batch / step time; in sync the whole rollout is idle time for the trainer), decode batch
occupancy (tokens generated / (engine steps x slots)), stale groups dropped, mean trained response length. Prints
one JSON line; ratios are streaming / sync.

    thinkrl bench streaming [--steps 6] [--rounds 2] [--short-len 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout import build_driver
from thinkrl.rollout.partial import ContinuedController
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.config import RLRecipe, validate_recipe
from thinkrl.train.rl_loop import rl_step
from thinkrl.train.rl_setup import build_run

MICRO = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
MODES = {  # name: (rollout.mode, max_staleness, wait_for_due)
    "sync": ("sync", 0, True),
    "stream_eta1": ("streaming", 1, True), "stream_eta2": ("streaming", 2, True),
    "stream_eta1_drop": ("streaming", 1, False), "stream_eta2_drop": ("streaming", 2, False),
}


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


def _recipe(out: str, mode: str, eta: int, wait_for_due: bool, short: int, slots: int, prompts: int,
            group: int) -> RLRecipe:
    return validate_recipe({
        "name": f"bench-{mode}-{eta}", "model": {"init": MICRO, "device": "cpu"},
        "data": {"task": "arithmetic", "num_train": 400, "num_test": 0, "seed": 0},
        "sampling": {"max_new_tokens": 8 * short, "num_slots": slots},
        "rollout": {"group_size": group, "prompts_per_step": prompts, "dynamic_sampling": False, "mode": mode,
                    "max_staleness": eta, "wait_for_due": wait_for_due},
        "reward": {"max_response_len": 8 * short, "overlong_cache_len": short},
        "algorithm": {"preset": "dapo", "off_policy": "decoupled"},  # the same trainer work in every mode
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "trainer": {"steps": 10_000, "micro_batch_tokens": 4096, "save_every": 0, "log_every": 1,
                    "output_dir": out, "eval_every": 0, "seed": 0},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def run_mode(recipe: RLRecipe, steps: int, short: int) -> dict[str, float]:
    """``steps`` measured RL steps after one warm-up step; the mode's totals."""
    run = build_run(recipe)
    run.engine = LengthDrivenClient(run.engine, short)
    loop = run.engine.inner
    driver = build_driver(run.engine, run.tokenizer, run.source, recipe.rollout, recipe.sampling, recipe.reward,
                          seed=recipe.trainer.seed)
    totals = {"wall_s": 0.0, "idle_s": 0.0, "samples": 0, "generated_tokens": 0, "engine_steps": 0,
              "dropped_stale": 0, "steps": steps, "sampled": 0, "train_s": 0.0, "finished_tokens": 0.0}
    try:
        rl_step(run, recipe, 1, driver)  # warm-up (first-call costs); not measured
        steps0, start = loop.num_steps, time.perf_counter()
        for step in range(2, steps + 2):
            row = rl_step(run, recipe, step, driver)
            totals["idle_s"] += row["time/rollout"]
            totals["samples"] += int(row["groups_kept_trained"]) * recipe.rollout.group_size
            totals["generated_tokens"] += int(row.get("stream/tokens_generated",
                                                      row["response_length_mean"] * row["groups_sampled"]
                                                      * recipe.rollout.group_size))
            totals["dropped_stale"] += int(row.get("stream/dropped_stale", 0))
            totals["train_s"] += row.get("time/update", 0.0) + row.get("time/push", 0.0)
            totals["finished_tokens"] += row["response_length_mean"] * row["groups_sampled"] * recipe.rollout.group_size
            totals["sampled"] += row["groups_sampled"] * recipe.rollout.group_size
        totals["wall_s"] = time.perf_counter() - start
        totals["engine_steps"] = loop.num_steps - steps0
    finally:
        driver.close()
        loop.stop()
    return totals


def calibrate_engine(slots: int, short: int, repeats: int = 3) -> dict[str, float]:
    """Per decode step cost of the engine alone (no trainer beside it), fitted as ``fixed + per_seq x running``
    from steps with 4 and ``slots`` sequences, best of ``repeats`` (for `bench_streaming_sim`'s CPU validation)."""
    tokenizer = load_tokenizer("builtin")
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, **MICRO), seed=0).eval()
    engine = LLMEngine(model, tokenizer, num_slots=slots, max_seq_len=16 * short)
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


def summarize(totals: dict[str, float], slots: int) -> dict[str, float]:
    return {
        "samples_per_s": totals["samples"] / totals["wall_s"],
        "trainer_idle_frac": totals["idle_s"] / totals["wall_s"],
        "decode_occupancy": totals["generated_tokens"] / max(1, totals["engine_steps"] * slots),
        "dropped_stale_groups": totals["dropped_stale"],
        "sampled_len_mean": totals["finished_tokens"] / max(1, totals["sampled"]),  # finished responses
        "wall_s": totals["wall_s"], "samples": totals["samples"], "engine_steps": totals["engine_steps"],
        "train_per_token_s": totals["train_s"] / max(1.0, totals["finished_tokens"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="measured RL steps per mode and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all modes")
    parser.add_argument("--short-len", type=int, default=16, help="L: 90%% of limits in [L/2, L], 10%% up to 8L")
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=8, help="prompts (groups) per step")
    parser.add_argument("--group", type=int, default=4, help="samples per prompt")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sums: dict[str, dict[str, float]] = {m: {} for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        calibrations = []
        for r in range(args.rounds):
            calibrations.append(calibrate_engine(args.slots, args.short_len))  # each round: the load changes
            for name, (mode, eta, wait) in MODES.items():
                recipe = _recipe(os.path.join(tmp, f"{name}-{r}"), mode, eta, wait, args.short_len, args.slots,
                                 args.prompts, args.group)
                for key, value in run_mode(recipe, args.steps, args.short_len).items():
                    sums[name][key] = sums[name].get(key, 0) + value
    results = {name: summarize(t, args.slots) for name, t in sums.items()}
    calibration = {**min(calibrations, key=lambda c: c["step_fixed_s"] + c["step_per_seq_s"] * args.slots),
                   "train_per_token_s": results["sync"]["train_per_token_s"], "rounds": calibrations}
    base = results["sync"]["samples_per_s"]
    line = json.dumps({
        "bench": "streaming", "workload": {"short_len": args.short_len, "long_max": 8 * args.short_len,
                                           "long_share": 0.1, "slots": args.slots, "prompts_per_step": args.prompts,
                                           "group_size": args.group, "model": MICRO},
        "steps_per_mode": args.steps * args.rounds, "rounds": args.rounds, "results": results,
        "calibration": calibration,
        "ratio_samples_per_s": {n: r["samples_per_s"] / base for n, r in results.items() if n != "sync"},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
        "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    })
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
