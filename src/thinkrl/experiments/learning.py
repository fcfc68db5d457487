"""`thinkrl learn`: does RL make a cold-start model reason better than more SFT or RFT at equal compute?

Protocol (`learning_config.LearningConfig`; its defaults are the recorded one), per seed ``s`` (also the data
seed):

1. **Data**: disjoint train / validation / test problem sets generated and split from data seed ``s``
   (`learning_data.make_splits`).
2. **Cold start**: a fresh model, SFT on *correct* traces (no planted slips) of the first ``cold.num_problems``
   train problems; greedy validation accuracy every ``cold.curve_every`` steps (the plateau curve).
3. **Arms** from the same cold start, at equal FLOPs (`learning_compute`): (a) RL (DAPO, ``rl_recipe``),
   whose FLOPs set the budget; (b) continued SFT on fresh traces of the whole train split; (c) RFT: sample
   from the current policy, keep the correct responses, fine-tune, repeat.
4. **Choice on validation**: ``--stage sweep`` runs each arm at each learning rate of ``sweep`` on the sweep seeds
   and picks, per arm, the rate with the best greedy validation accuracy (``sweep.json``).
5. **Test once**: ``--stage final`` runs the chosen settings on every seed and evaluates the cold start and the
   three arms on the test split: greedy accuracy, avg@k and unbiased pass@k at temperature 1, response length.
6. ``--stage report`` writes the markdown, raw JSON and plots (`learning_report`).

Stages cache their outputs (``runs/<name>/seed-<s>/...``), so an interrupted run resumes, and seeds can run in
separate processes (``--stage cold --seeds 1`` in one, ``--seeds 2`` in another). ``runs/<name>/settings.json``
records the settings; a run with other settings under the same name is refused (`check_run_settings`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrl.experiments.learning_arms import (
    ArmResult,
    RFTSettings,
    SampleSettings,
    SFTRunner,
    evaluate_final,
    greedy_accuracy,
    prompt_length,
    run_rft_arm,
    run_rl_arm,
    run_sft_more_arm,
    token_batches,
    write_json,
)
from thinkrl.experiments.learning_compute import ComputeLedger, FlopModel
from thinkrl.experiments.learning_config import LearningConfig, check_run_settings, load_learning_config
from thinkrl.experiments.learning_data import Splits, make_splits, trace_examples
from thinkrl.model import CausalLM, load_pretrained
from thinkrl.spec import run_name
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.common import build_policy, save_policy, seed_everything
from thinkrl.train.specs import ModelSpec

logger = logging.getLogger(__name__)

ARMS = ("rl", "sft_more", "rft")
STAGES = ("cold", "arm", "sweep", "final", "report", "all")
TEST_EVAL_SEED = 12345


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML of protocol settings (default: the recorded protocol)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each is also the data seed)")
    parser.add_argument("--stage", default="all", choices=STAGES, help="which stage to run (cached, resumable)")
    parser.add_argument("--name", default="learning", help="run folder: runs/<name>")
    parser.add_argument("--docs", default="docs/results", help="report stage: where <report>.md, raw/ and img/ go")
    parser.add_argument("--report", default="learning",
                        help="report stage: file name stem of the markdown, raw JSON and plots (default learning)")
    parser.add_argument("--arm", choices=ARMS, help="stage arm: train this arm (to run cells in parallel processes)")
    parser.add_argument("--lr", type=float, help="stage arm: at this learning rate")
    parser.add_argument("--rl-lr", type=float, help="stage arm, controls: the RL run whose FLOPs are the budget")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="override a config key, e.g. --set cold.steps=20")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; ValueError naming the bad item."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds must list distinct integers >= 0, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    seeds = parse_seeds(args.seeds)  # before anything touches the run folder
    root = Path("runs") / run_name(args.name)
    for flag, lr in (("--lr", args.lr), ("--rl-lr", args.rl_lr)):
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"{flag} must be a positive learning rate, got {lr}")
    config, recipe = load_learning_config(args.config, args.overrides)
    check_run_settings(root, config, recipe)
    protocol = Protocol(config, recipe, root)
    if args.stage in ("cold", "all"):
        for seed in seeds:
            protocol.cold_start(seed)
    if args.stage == "arm":
        if args.arm is None or args.lr is None or (args.arm != "rl" and args.rl_lr is None):
            raise ValueError("--stage arm needs --arm and --lr (and --rl-lr for the controls)")
        for seed in seeds:
            budget = None if args.arm == "rl" else protocol.budget(seed, args.rl_lr)
            print(json.dumps({k: v for k, v in protocol.arm(seed, args.arm, args.lr, budget).items() if k != "log"}))
    if args.stage in ("sweep", "all"):
        protocol.sweep()
    if args.stage in ("final", "all"):
        for seed in seeds:
            protocol.final(seed)
    if args.stage in ("report", "all"):
        from thinkrl.experiments.learning_report import write_report

        command = " ".join(["thinkrl learn", *([f"--config {args.config}"] if args.config else []),
                            *(f"--set {o}" for o in args.overrides), f"--name {args.name}",
                            *([f"--report {args.report}"] if args.report != "learning" else [])])
        print(write_report(protocol.root, Path(args.docs), seeds, config, command, args.report))
    return 0


@dataclass(frozen=True)
class ColdStart:
    """One seed's data and cold-start model."""

    splits: Splits
    paths: dict[str, Path]
    model_dir: Path


class Protocol:
    """The stages of one protocol run; every output lives under ``root``."""

    def __init__(self, config: LearningConfig, rl_recipe: Path, root: Path) -> None:
        self.config, self.rl_recipe, self.root = config, rl_recipe, root
        self.tokenizer = load_tokenizer("builtin")
        self.sampling = SampleSettings(max_new_tokens=config.max_new_tokens)

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed-{seed}"

    # --- stage 1-2 -------------------------------------------------------------------------------------------

    def splits(self, seed: int) -> Splits:
        """The train / validation / test problems of ``seed`` (generated, nothing trained)."""
        c = self.config
        return make_splits(c.task, c.difficulty, seed, num_train=c.num_train, num_val=c.num_val, num_test=c.num_test)

    def cold_start(self, seed: int) -> ColdStart:
        """Splits and the cold-start model of ``seed`` (cached in ``seed-<s>/cold``)."""
        c = self.config
        splits = self.splits(seed)
        folder = self.seed_dir(seed)
        paths = splits.write(folder / "splits")
        done = folder / "cold" / "result.json"
        if not done.exists():
            start = time.perf_counter()
            seed_everything(seed)
            model = build_policy(ModelSpec(init=c.model, device="cpu"), self.tokenizer, seed)
            ledger = ComputeLedger(FlopModel.of(model.config))
            curve = self._train_cold(model, splits, seed, ledger)
            save_policy(model, self.tokenizer, folder / "cold" / "final")
            write_json(done, {"curve": curve, "compute": ledger.to_dict(),
                              "seconds": round(time.perf_counter() - start, 1)})
        return ColdStart(splits, paths, folder / "cold" / "final")

    def _train_cold(self, model: CausalLM, splits: Splits, seed: int, ledger: ComputeLedger) -> list[dict[str, float]]:
        cold = self.config.cold
        examples = trace_examples(self.tokenizer, splits.train[:cold.num_problems], random.Random(seed),
                                  self.config.search_attempts, self.config.terse_share)
        runner = SFTRunner(model, cold.optim, cold.steps, self.config.batch_tokens, ledger)
        rng, curve = random.Random(seed), [self._curve_point(model, splits, 0, float("nan"), ledger)]
        while runner.steps < cold.steps:
            for batch in token_batches(examples, self.config.batch_tokens, rng):
                loss = runner.step([examples[i] for i in batch])
                if runner.steps % cold.curve_every == 0 or runner.steps == cold.steps:
                    curve.append(self._curve_point(model, splits, runner.steps, loss, ledger))
                    logger.info("cold start seed %d: %s", seed, curve[-1])
                if runner.steps >= cold.steps:
                    break
        return curve

    def _curve_point(self, model: CausalLM, splits: Splits, step: int, loss: float, ledger: ComputeLedger) -> dict:
        val = greedy_accuracy(model, self.tokenizer, splits.val, self.sampling)
        return {"step": step, "train_loss": loss, "val_greedy": val.accuracy, "flops": float(ledger.total),
                "val_response_tokens": val.mean_response_tokens}

    # --- stage 3-4 -------------------------------------------------------------------------------------------

    def arm(self, seed: int, arm: str, lr: float, budget: float | None = None) -> dict:
        """Train one arm at one learning rate from the seed's cold start; cached ``result.json`` with its
        greedy validation accuracy, compute and log."""
        out = self.seed_dir(seed) / "arms" / arm / f"lr={lr:g}"
        done = out / "result.json"
        if done.exists():
            row = json.loads(done.read_text())
            if row["budget_flops"] != budget:
                raise ValueError(f"{out} was trained with a budget of {row['budget_flops']} FLOPs, not {budget}; "
                                 "delete it to retrain")
            return row
        cold = self.cold_start(seed)
        model = load_pretrained(cold.model_dir, device="cpu")
        ledger = ComputeLedger(FlopModel.of(model.config))
        start = time.perf_counter()
        result = self._train_arm(arm, lr, seed, cold, out, ledger, budget)
        trained = load_pretrained(result.model_dir, device="cpu")
        val = greedy_accuracy(trained, self.tokenizer, cold.splits.val, self.sampling)
        row = {"arm": arm, "lr": lr, "seed": seed, "budget_flops": budget, "compute": result.compute,
               "val_greedy": val.accuracy, "seconds": round(time.perf_counter() - start, 1), "log": result.log,
               "model_dir": str(result.model_dir)}
        write_json(done, row)
        return row

    def _train_arm(self, arm: str, lr: float, seed: int, cold: ColdStart, out: Path, ledger: ComputeLedger,
                   budget: float | None) -> ArmResult:
        c = self.config
        if arm == "rl":
            return run_rl_arm(self.rl_recipe, cold.model_dir, cold.paths, out, seed,
                              [*c.rl_overrides, f"optim.lr={lr}"], ledger,
                              prompt_length(self.tokenizer, cold.splits.train))
        if budget is None:
            raise ValueError(f"arm {arm!r} needs the RL arm's FLOP budget")
        optim = c.cold.optim.model_copy(update={"lr": lr, "warmup_steps": 0, "schedule": "constant"})
        if arm == "sft_more":
            return run_sft_more_arm(cold.model_dir, self.tokenizer, cold.splits, out, seed, optim, c.batch_tokens,
                                    ledger, budget, c.search_attempts, c.terse_share)
        if arm == "rft":
            rft = RFTSettings(c.rft.prompts, c.rft.samples, c.rft.epochs)
            return run_rft_arm(cold.model_dir, self.tokenizer, cold.splits, out, seed, optim, c.batch_tokens, rft,
                               self.sampling, ledger, budget)
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")

    def sweep(self) -> dict:
        """Each arm at each swept learning rate on the sweep seeds; the best greedy validation accuracy (mean over
        sweep seeds) wins. RL is chosen first; the controls get the chosen RL run's FLOPs. Writes ``sweep.json``."""
        s = self.config.sweep
        rows: list[dict[str, Any]] = []
        chosen: dict[str, float] = {}
        for arm, lrs in (("rl", s.rl_lr), ("sft_more", s.sft_lr), ("rft", s.rft_lr)):
            scores = {}
            for lr in lrs:
                results = [self.arm(seed, arm, lr, None if arm == "rl" else self.budget(seed, chosen["rl"]))
                           for seed in s.seeds]
                rows += [{k: r[k] for k in ("arm", "lr", "seed", "val_greedy", "compute", "seconds")}
                         for r in results]
                scores[lr] = sum(r["val_greedy"] for r in results) / len(results)
            chosen[arm] = max(lrs, key=lambda lr: (scores[lr], -lrs.index(lr)))  # ties: the first listed
        summary = {"chosen_lr": chosen, "rows": rows, "rule": "best mean greedy validation accuracy"}
        write_json(self.root / "sweep.json", summary)
        return summary

    def budget(self, seed: int, rl_lr: float) -> float:
        """FLOPs of the seed's RL arm at ``rl_lr`` (runs it if needed): the controls' budget."""
        return float(self.arm(seed, "rl", rl_lr)["compute"]["total_flops"])

    # --- stage 5 ---------------------------------------------------------------------------------------------

    def final(self, seed: int) -> dict:
        """Chosen settings on ``seed``; the cold start and each arm evaluated once on the test split."""
        sweep_file = self.root / "sweep.json"
        if not sweep_file.exists():
            raise FileNotFoundError(f"{sweep_file} is missing: run --stage sweep first (settings are chosen there)")
        chosen = json.loads(sweep_file.read_text())["chosen_lr"]
        cold = self.cold_start(seed)
        budget = self.budget(seed, chosen["rl"])
        models: dict[str, tuple[Path, dict[str, Any] | None]] = {"cold": (cold.model_dir, None)}
        for arm in ARMS:
            arm_row = self.arm(seed, arm, chosen[arm], None if arm == "rl" else budget)
            models[arm] = (Path(arm_row["model_dir"]), arm_row)
        results = {}
        for name, (model_dir, row) in models.items():
            done = self.seed_dir(seed) / "test" / f"{name}.json"
            if not done.exists():
                model = load_pretrained(model_dir, device="cpu")
                test = evaluate_final(model, self.tokenizer, cold.splits.test, self.config.eval_samples,
                                      self.sampling, TEST_EVAL_SEED)
                write_json(done, {"seed": seed, "arm": name, "lr": row["lr"] if row else None, "test": test,
                                  "compute": row["compute"] if row else None,
                                  "val_greedy": row["val_greedy"] if row else None})
            results[name] = json.loads(done.read_text())
        return results
