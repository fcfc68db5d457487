"""Learning quality of the streaming rollout: DAPO sync vs streaming (eta = 1) from one cold start, several seeds.

The demo's setup (`thinkrl demo`): the cold-start SFT of ``recipes/tiny_sft.yaml`` (trained once, seed 0, or given
with ``--sft-model``), then DAPO with ``recipes/tiny_dapo.yaml`` for each seed in two arms that differ only in the
rollout section: ``sync`` (the recipe as it is) and ``stream_eta1`` (``rollout.mode: streaming``,
``rollout.max_staleness: 1``, ``wait_for_due`` default, decoupled PPO by the streaming default). Both arms take the
same number of optimizer steps (``--steps``). Each final model is evaluated on the same held-out problems as the
demo (`thinkrl.experiments.demo.evaluate_model`): avg@k at the RL temperature (k = ``--eval-samples``, fixed eval
seed), pass@k and greedy accuracy.

Every (seed, arm) run writes ``<out-dir>/seed-<s>/<arm>/result.json`` and is skipped when that file exists, so the
command is resumable and can be split over processes (``--seeds 0 --arms sync`` in one, ...). Once every requested
(seed, arm) result exists it prints one JSON line: per arm the mean and a 95% Student-t interval over seeds of greedy
and avg@k accuracy, per seed the difference streaming - sync (points), wall time and trained samples. A progress
line goes to stderr as each (seed, arm) run ends.

    thinkrl bench streaming-quality [--seeds 0,1,2] [--arms sync,stream_eta1] [--steps 120] [--eval-samples 4]
                                    [--sft-model DIR] [--out-dir runs/streaming_quality] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _cli import progress  # siblings: benchmarks/ is on sys.path

ARMS: dict[str, list[str]] = {  # arm -> RL recipe overrides on top of the demo's recipe
    "sync": [],
    "stream_eta1": ["rollout.mode=streaming", "rollout.max_staleness=1"],
}
# Two-sided 95% Student-t critical values t_{0.975, df}, df = 1..30 (standard tables).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Interval:
    """Mean of a sample and its 95% Student-t confidence interval ``mean +- half_width``."""

    mean: float
    half_width: float
    n: int


def t_interval(values: list[float]) -> Interval:
    """Mean and 95% t-interval half width ``t_{0.975, n-1} * s / sqrt(n)`` (s: sample standard deviation)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    if n - 1 > len(T975):
        raise ValueError(f"t table covers up to {len(T975) + 1} values, got {n}")
    return Interval(statistics.mean(values), T975[n - 2] * statistics.stdev(values) / math.sqrt(n), n)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated RL seeds")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms, of: {', '.join(ARMS)}")
    parser.add_argument("--steps", type=int, default=120, help="RL optimizer steps per run (both arms)")
    parser.add_argument("--eval-samples", type=int, default=4, help="k of avg@k on the held-out problems")
    parser.add_argument("--sft", default="recipes/tiny_sft.yaml", help="cold-start SFT recipe")
    parser.add_argument("--rl", default="recipes/tiny_dapo.yaml", help="RL recipe (the sync arm as it is)")
    parser.add_argument("--sft-model", default=None, help="existing cold-start model folder (skips the SFT)")
    parser.add_argument("--out-dir", default="runs/streaming_quality")
    parser.add_argument("--summary-only", action="store_true", help="train nothing; summarise what exists")
    parser.add_argument("--json", default=None, help="also write the summary JSON here")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    args.arms = args.arms.split(",")
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    if args.steps < 1 or args.eval_samples < 1:
        parser.error("--steps and --eval-samples must be >= 1")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        parser.error(f"--out-dir {args.out_dir}: exists and is not a folder")
    if args.sft_model is not None and not (Path(args.sft_model) / "config.json").exists():
        parser.error(f"--sft-model {args.sft_model}: no config.json there (not a model folder)")
    return args


def cold_start(args: argparse.Namespace) -> Path:
    """The cold-start model: ``--sft-model``, else the SFT recipe trained once (seed 0) into the out-dir."""
    if args.sft_model is not None:
        return Path(args.sft_model)
    final = Path(args.out_dir) / "sft" / "final"
    if not (final / "config.json").exists():
        from thinkrl.train.config import SFTRecipe, load_recipe
        from thinkrl.train.sft import run_sft

        run_sft(load_recipe(args.sft, SFTRecipe, [f"trainer.output_dir={final.parent}", "trainer.seed=0"]))
    return final


def run_arm(args: argparse.Namespace, sft_model: Path, seed: int, arm: str, folder: Path) -> dict:
    """One DAPO run from the cold start, then the held-out evaluation of its final model; the result row."""
    from thinkrl.experiments.demo import evaluate_model
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import RLRecipe, load_recipe
    from thinkrl.train.rl_loop import run_rl

    recipe = load_recipe(args.rl, RLRecipe, [
        f"trainer.output_dir={folder / 'rl'}", f"trainer.seed={seed}", f"model.path={sft_model}",
        f"trainer.steps={args.steps}", "trainer.eval_every=0", "trainer.save_every=0", *ARMS[arm]],
        presets=ALGORITHM_PRESETS)
    start = time.perf_counter()
    final = run_rl(recipe)
    rl_seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (folder / "rl" / "metrics.jsonl").read_text().splitlines() if line]
    rows = [r for r in rows if "groups_kept_trained" in r]
    return {"seed": seed, "arm": arm, "steps": len(rows), "rl_seconds": round(rl_seconds, 1),
            "trained_samples": int(sum(r["groups_kept_trained"] for r in rows) * recipe.rollout.group_size),
            "dropped_stale_groups": int(sum(r.get("stream/dropped_stale", 0) for r in rows)),
            "version_lag_mean": statistics.mean(r.get("stream/version_lag_mean", 0.0) for r in rows),
            "eval": evaluate_model(final, recipe, args.eval_samples), "load_average_end": os.getloadavg()}


def cold_start_eval(args: argparse.Namespace, sft_model: Path) -> dict:
    """The cold start's held-out figures (same evaluation as the arms), cached in ``<out-dir>/cold_start.json``."""
    path = Path(args.out_dir) / "cold_start.json"
    if not path.exists():
        from thinkrl.experiments.demo import evaluate_model
        from thinkrl.rl import ALGORITHM_PRESETS
        from thinkrl.train.config import RLRecipe, load_recipe

        recipe = load_recipe(args.rl, RLRecipe, [f"model.path={sft_model}"], presets=ALGORITHM_PRESETS)
        path.write_text(json.dumps(evaluate_model(sft_model, recipe, args.eval_samples)) + "\n")
    return json.loads(path.read_text())


def summarize(results: dict[tuple[int, str], dict], seeds: list[int], arms: list[str]) -> dict:
    """Per arm: mean and 95% t-interval of greedy / avg@k accuracy (points); per seed: streaming - sync."""
    def points(seed: int, arm: str, key: str) -> float:
        return 100 * results[(seed, arm)]["eval"][key]

    summary: dict = {"arms": {}, "diff_points": {}}
    for arm in arms:
        summary["arms"][arm] = {
            metric: asdict(t_interval([points(s, arm, key) for s in seeds]))
            for metric, key in (("greedy", "greedy_accuracy"), ("avg_at_k", "accuracy"), ("pass_at_k", "pass_at_k"))}
        summary["arms"][arm]["rl_seconds_mean"] = statistics.mean(results[(s, arm)]["rl_seconds"] for s in seeds)
        summary["arms"][arm]["trained_samples_mean"] = statistics.mean(
            results[(s, arm)]["trained_samples"] for s in seeds)
    if "sync" in arms:
        for arm in (a for a in arms if a != "sync"):
            diffs = {}
            for metric, key in (("greedy", "greedy_accuracy"), ("avg_at_k", "accuracy")):
                per_seed = [points(s, arm, key) - points(s, "sync", key) for s in seeds]
                diffs[metric] = {"per_seed": [round(d, 2) for d in per_seed], **asdict(t_interval(per_seed)),
                                 "within_2_points": statistics.mean(per_seed) >= -2.0}
            summary["diff_points"][arm] = diffs
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out_dir)
    sft_model = None if args.summary_only else cold_start(args)
    results: dict[tuple[int, str], dict] = {}
    for seed in args.seeds:
        for arm in args.arms:
            path = out / f"seed-{seed}" / arm / "result.json"
            if not path.exists() and sft_model is not None:
                row = run_arm(args, sft_model, seed, arm, path.parent)
                path.write_text(json.dumps(row) + "\n")
                progress("streaming-quality", f"seed {seed} {arm}: greedy {100 * row['eval']['greedy_accuracy']:.1f}%, "
                                              f"avg@{args.eval_samples} {100 * row['eval']['accuracy']:.1f}% "
                                              f"({row['rl_seconds']} s of RL)")
            if path.exists():
                results[(seed, arm)] = json.loads(path.read_text())
    missing = [f"seed {s} {a}" for s in args.seeds for a in args.arms if (s, a) not in results]
    if missing or len(args.seeds) < 2:
        print(json.dumps({"bench": "streaming-quality", "done": sorted(f"{s}/{a}" for s, a in results),
                          "missing": missing}))
        return 0
    line = json.dumps({
        "bench": "streaming-quality", "seeds": args.seeds, "steps": args.steps, "eval_samples": args.eval_samples,
        "sft_recipe": args.sft, "rl_recipe": args.rl, "arm_overrides": {a: ARMS[a] for a in args.arms},
        "summary": summarize(results, args.seeds, args.arms),
        "cold_start": None if sft_model is None else cold_start_eval(args, sft_model),
        "runs": [results[(s, a)] for s in args.seeds for a in args.arms],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
        "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
