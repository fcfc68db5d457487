"""`thinkrl demo`: the tiny end-to-end recipe — data, cold-start SFT, DAPO, held-out evaluation, report.

Runs on a 2-core CPU in minutes. For each seed it trains a fresh model (SFT recipe),
evaluates it on the held-out split, runs DAPO from it (RL recipe), evaluates again
and writes ``runs/<name>/seed-<s>/report.md`` with the before/after table and
``curves.png``. With several seeds it also writes ``runs/<name>/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkrl.spec import run_name

if TYPE_CHECKING:
    from thinkrl.train.config import RLRecipe, SFTRecipe

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sft", default="recipes/tiny_sft.yaml", help="SFT recipe YAML")
    parser.add_argument("--rl", default="recipes/tiny_dapo.yaml", help="RL recipe YAML")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--name", default="demo", help="run folder: runs/<name>")
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per held-out problem")
    parser.add_argument("--sft-override", action="append", default=[], help="dotted override for the SFT recipe")
    parser.add_argument("--rl-override", action="append", default=[], help="dotted override for the RL recipe")


def run(args: argparse.Namespace) -> int:
    from thinkrl.experiments.learning import parse_seeds

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path("runs") / run_name(args.name)
    # every recipe and override is checked before the first SFT run starts
    recipes = {seed: load_recipes(args, seed, root / f"seed-{seed}") for seed in parse_seeds(args.seeds)}
    rows = []
    for seed, (sft, rl) in recipes.items():
        folder = root / f"seed-{seed}"
        if folder.exists():  # the demo's own folder: a re-run replaces it (training refuses old checkpoints)
            logger.info("replacing the earlier demo run in %s", folder)
            shutil.rmtree(folder)
        rows.append(run_seed(seed, folder, sft, rl, args.eval_samples))
        print(json.dumps(rows[-1]))
    if len(rows) > 1:
        write_summary(rows, root / "summary.md", args)
    return 0


def load_recipes(args: argparse.Namespace, seed: int, folder: Path) -> tuple[Any, Any]:
    """The SFT and RL recipes of one seed (the RL run starts from the SFT run's ``final`` folder)."""
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import RLRecipe, SFTRecipe, load_recipe

    sft = load_recipe(args.sft, SFTRecipe, [f"trainer.output_dir={folder / 'sft'}", f"trainer.seed={seed}",
                                            *args.sft_override])
    rl = load_recipe(args.rl, RLRecipe, [f"trainer.output_dir={folder / 'rl'}", f"trainer.seed={seed}",
                                         f"model.path={folder / 'sft' / 'final'}",
                                         f"trainer.eval_samples={args.eval_samples}", *args.rl_override],
                     presets=ALGORITHM_PRESETS)
    return sft, rl


def run_seed(seed: int, folder: Path, sft: SFTRecipe, rl: RLRecipe, eval_samples: int) -> dict:
    """SFT → eval → DAPO → eval for one seed (its recipes from `load_recipes`); returns the before/after figures."""
    from thinkrl.train.rl_loop import run_rl
    from thinkrl.train.sft import run_sft

    start = time.perf_counter()
    sft_model = run_sft(sft)
    sft_seconds = time.perf_counter() - start
    before = evaluate_model(sft_model, rl, eval_samples)
    rl_start = time.perf_counter()
    rl_model = run_rl(rl)
    rl_seconds = time.perf_counter() - rl_start
    after = evaluate_model(rl_model, rl, eval_samples)
    row = {"seed": seed, "before": before, "after": after,
           "gain_points": 100 * (after["accuracy"] - before["accuracy"]),
           "sft_seconds": round(sft_seconds, 1), "rl_seconds": round(rl_seconds, 1),
           "total_seconds": round(time.perf_counter() - start, 1)}
    write_report(row, folder, sft, rl)
    return row


def evaluate_model(model_dir: Path, rl_recipe: RLRecipe, samples: int) -> dict:
    """Held-out accuracy (avg@k at the RL sampling temperature) and greedy accuracy of one model folder."""
    from thinkrl.engine import LLMEngine
    from thinkrl.eval.evaluate import evaluate
    from thinkrl.model import load_pretrained
    from thinkrl.rollout import load_problems
    from thinkrl.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_pretrained(model_dir, device=rl_recipe.model.device)
    problems = load_problems(rl_recipe.data, "test")
    max_new = rl_recipe.sampling.max_new_tokens
    engine = LLMEngine(model, tokenizer, num_slots=rl_recipe.sampling.num_slots, max_seq_len=128 + max_new)
    sampled = evaluate(engine, tokenizer, problems, samples=samples, temperature=rl_recipe.sampling.temperature,
                       max_new_tokens=max_new, seed=12345)
    greedy = evaluate(engine, tokenizer, problems, samples=1, temperature=0.0, max_new_tokens=max_new)
    return {"accuracy": sampled.accuracy, "pass_at_k": sampled.pass_at_k, "greedy_accuracy": greedy.accuracy,
            "mean_response_tokens": sampled.mean_response_tokens, "num_problems": sampled.num_problems}


def write_report(row: dict, folder: Path, sft: SFTRecipe, rl: RLRecipe) -> None:
    from thinkrl.train.metrics import plot_metrics

    png = plot_metrics(folder / "rl" / "metrics.jsonl",
                       ["reward", "accuracy", "response_length_mean", "eval/accuracy"], folder / "curves.png")
    b, a = row["before"], row["after"]
    lines = [
        f"# thinkrl demo — seed {row['seed']}",
        "",
        f"Task `{rl.data.task}` {rl.data.difficulty}, {b['num_problems']} held-out problems "
        "(disjoint from training by content hash).",
        f"Model: {sft.model.init}; SFT trace noise {sft.trace_noise}; DAPO {rl.trainer.steps} steps, "
        f"{rl.rollout.prompts_per_step} prompts x {rl.rollout.group_size} samples.",
        "",
        f"| model | accuracy (avg@k, T={rl.sampling.temperature:.1f}) | pass@k | greedy accuracy | "
        "mean response tokens |",
        "|---|---|---|---|---|",
        f"| cold-start SFT | {b['accuracy']:.3f} | {b['pass_at_k']:.3f} | {b['greedy_accuracy']:.3f} | "
        f"{b['mean_response_tokens']:.1f} |",
        f"| after DAPO | {a['accuracy']:.3f} | {a['pass_at_k']:.3f} | {a['greedy_accuracy']:.3f} | "
        f"{a['mean_response_tokens']:.1f} |",
        "",
        f"Gain: **{row['gain_points']:+.1f} points** of held-out accuracy. Time: SFT {row['sft_seconds']} s, "
        f"DAPO {row['rl_seconds']} s, total {row['total_seconds']} s.",
        "",
        f"![reward, accuracy, response length per step]({png.name})",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))


def write_summary(rows: list[dict], path: Path, args: argparse.Namespace) -> None:
    before = [r["before"]["accuracy"] for r in rows]
    after = [r["after"]["accuracy"] for r in rows]
    gains = [r["gain_points"] for r in rows]
    lines = ["| seed | SFT accuracy | DAPO accuracy | gain (points) | SFT greedy | DAPO greedy | total s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['before']['accuracy']:.3f} | {r['after']['accuracy']:.3f} | "
                     f"{r['gain_points']:+.1f} | {r['before']['greedy_accuracy']:.3f} | "
                     f"{r['after']['greedy_accuracy']:.3f} | {r['total_seconds']} |")
    lines.append(f"| mean | {statistics.mean(before):.3f} | {statistics.mean(after):.3f} | "
                 f"{statistics.mean(gains):+.1f} | | | |")
    header = f"# thinkrl demo, seeds {args.seeds}\n\nCommand: `thinkrl demo --seeds {args.seeds}`\n\n"
    path.write_text(header + "\n".join(lines) + "\n")
