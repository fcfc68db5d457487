"""`thinkrl ablate GRID.yaml [GRID.yaml ...] --seeds 0,1,2`: recipes × seeds on a built-in task, one table.

A grid file (see ``recipes/ablations/``) names a cold-start SFT recipe, a base RL recipe,
a target accuracy and a list of variants, each a set of ``dotted.key: value`` overrides of
the base RL recipe::

    name: dapo
    title: DAPO's progressive ablation
    sft: ../tiny_sft.yaml          # paths are relative to the grid file
    rl: ../tiny_dapo.yaml
    target_accuracy: 0.6
    overrides: {trainer.steps: 60}  # every variant
    variants:
      - name: GRPO
        overrides: {algorithm.eps_high: 0.2, rollout.dynamic_sampling: false}

For each seed the SFT model is trained once (``runs/<name>/sft/seed-<s>``) and shared by
every variant of every grid. Each (grid, variant, seed) cell runs `run_rl` with periodic
held-out evaluation and writes ``result.json`` (final held-out accuracy, the evaluation
curve, steps to the target); a cell whose ``result.json`` exists is skipped, so an
interrupted grid resumes. Finally ``runs/<name>/ablations.md`` gets one table per grid
(final accuracy mean ± sample std over seeds, steps to reach the target) and
``ablations.png`` the mean held-out accuracy curves. ``--workers N`` runs cells in N
processes (spawned, so CUDA works in each; an interrupt stops them: `thinkrl.experiments.workers`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thinkrl.experiments.workers import executor
from thinkrl.spec import describe_errors, read_text_file, read_yaml, run_name

logger = logging.getLogger(__name__)


class Variant(BaseModel):
    """One row of a grid: a name and overrides of the base RL recipe."""

    model_config = ConfigDict(extra="forbid")
    name: str
    overrides: dict[str, Any] = Field(default_factory=dict)


class AblationGrid(BaseModel):
    """A grid file: shared SFT and base RL recipes, a target accuracy and the variants."""

    model_config = ConfigDict(extra="forbid")
    name: str
    title: str = ""
    sft: str
    rl: str
    target_accuracy: float = Field(gt=0.0, le=1.0)
    reference: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(min_length=1)
    notes: str = ""

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_-]+", value):
            raise ValueError(f"grid name {value!r} must be lowercase letters, digits, '-' or '_'")
        return value

    @field_validator("variants")
    @classmethod
    def _unique(cls, value: list[Variant]) -> list[Variant]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        return value


def load_grid(path: str | Path) -> AblationGrid:
    """Read a grid file; ``sft`` and ``rl`` become paths relative to the working directory."""
    path = Path(path)
    try:
        grid = AblationGrid.model_validate(read_yaml(read_text_file(path, "grid file"), f"grid {path}"))
    except ValidationError as err:
        raise ValueError(f"invalid grid {path}: {describe_errors(err)}") from None
    if grid.reference is not None and grid.reference not in [v.name for v in grid.variants]:
        raise ValueError(f"reference {grid.reference!r} is not a variant of grid {grid.name!r}")
    return grid.model_copy(update={"sft": os.path.normpath(path.parent / grid.sft),
                                   "rl": os.path.normpath(path.parent / grid.rl)})


def as_overrides(mapping: dict[str, Any]) -> list[str]:
    """``{"a.b": 0.2}`` -> ``["a.b=0.2"]`` (values as JSON, which ``yaml.safe_load`` reads back)."""
    return [f"{key}={json.dumps(value)}" for key, value in mapping.items()]


def slug(text: str) -> str:
    """A folder name for a variant name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "variant"


@dataclass
class Cell:
    """One RL run of the grid: what to run and where."""

    grid: str
    variant: str
    seed: int
    rl_recipe: str
    overrides: list[str]
    folder: str
    target_accuracy: float
    keep_models: bool = False


def steps_to_target(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose accuracy reaches ``target`` (None if none does)."""
    return next((step for step, acc in curve if acc >= target), None)


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one RL cell (or read its ``result.json``); returns the result record."""
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import RLRecipe, load_recipe
    from thinkrl.train.metrics import read_metrics
    from thinkrl.train.rl_loop import run_rl

    folder = Path(cell.folder)
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    if folder.exists():
        shutil.rmtree(folder)  # a half-finished cell restarts from scratch
    recipe = load_recipe(cell.rl_recipe, RLRecipe, [*cell.overrides, f"trainer.output_dir={json.dumps(str(folder))}"],
                         presets=ALGORITHM_PRESETS)
    start = time.perf_counter()
    run_rl(recipe)
    records = read_metrics(folder)
    curve = sorted({r["step"]: r["eval/accuracy"] for r in records if "eval/accuracy" in r}.items())
    pretrain = next((r for r in records if "value_pretrain/steps" in r), {})
    result = {"grid": cell.grid, "variant": cell.variant, "seed": cell.seed, "curve": curve,
              "final_accuracy": curve[-1][1] if curve else None,
              "steps_to_target": steps_to_target(curve, cell.target_accuracy),
              "seconds": round(time.perf_counter() - start, 1),
              "value_pretrain": {k.split("/", 1)[1]: v for k, v in pretrain.items() if k.startswith("value_pretrain/")}}
    if not cell.keep_models:
        for name in ("final", "checkpoints", "tensorboard"):
            shutil.rmtree(folder / name, ignore_errors=True)
    done.write_text(json.dumps(result))
    return result


def run_sft_seed(sft_recipe: str, overrides: list[str], folder: str, seed: int) -> str:
    """Train (or reuse) the cold-start model of one seed; returns its HF folder."""
    from thinkrl.train.config import SFTRecipe, load_recipe
    from thinkrl.train.sft import run_sft

    final = Path(folder) / "final"
    if (final / "config.json").exists():
        return str(final)
    recipe = load_recipe(sft_recipe, SFTRecipe, [f"trainer.output_dir={json.dumps(folder)}", f"trainer.seed={seed}",
                                                 "trainer.save_every=0", *overrides])
    return str(run_sft(recipe))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def build_cells(grids: list[AblationGrid], seeds: list[int], sft_models: dict[int, str], root: Path,
                extra_overrides: list[str], keep_models: bool) -> list[Cell]:
    """Every (seed, grid, variant) cell, seed-major so an interrupted run has whole seeds done first."""
    cells = []
    for seed in seeds:
        for grid in grids:
            for variant in grid.variants:
                overrides = [*as_overrides(grid.overrides), *as_overrides(variant.overrides), *extra_overrides,
                             f"trainer.seed={seed}", f"model.path={json.dumps(sft_models[seed])}"]
                cells.append(Cell(grid.name, variant.name, seed, grid.rl, overrides,
                                  str(root / grid.name / slug(variant.name) / f"seed-{seed}"),
                                  grid.target_accuracy, keep_models))
    return cells


def check_recipes(cells: list[Cell]) -> None:
    """Validate every cell's recipe before any work (an unknown key or bad value fails here)."""
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.config import RLRecipe, load_recipe

    for cell in cells:
        try:
            load_recipe(cell.rl_recipe, RLRecipe, cell.overrides, presets=ALGORITHM_PRESETS)
        except ValueError as err:
            raise ValueError(f"grid {cell.grid!r}, variant {cell.variant!r}: {err}") from None


def rerun_command(args: argparse.Namespace) -> str:
    """The ``thinkrl ablate`` command line that reproduces this run's results (shell-quoted)."""
    words = ["thinkrl", "ablate", *args.grids, "--seeds", args.seeds, "--name", args.name]
    words += [w for o in args.rl_override for w in ("--rl-override", o)]
    words += [w for o in args.sft_override for w in ("--sft-override", o)]
    return shlex.join(words + (["--keep-models"] if args.keep_models else []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grids", nargs="+", help="grid YAML files (see recipes/ablations/)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--name", default="ablations", help="run folder: runs/<name>")
    parser.add_argument("--workers", type=int, default=1, help="cells run in this many processes")
    parser.add_argument("--rl-override", action="append", default=[], help="dotted override for every RL run")
    parser.add_argument("--sft-override", action="append", default=[], help="dotted override for the SFT runs")
    parser.add_argument("--keep-models", action="store_true", help="keep each cell's final model and checkpoints")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        raise ValueError(f"--workers ({args.workers}) must be >= 1")
    grids = [load_grid(path) for path in args.grids]
    names = [grid.name for grid in grids]
    if len(set(names)) != len(names):  # their cells would share one folder: one grid's results read as the other's
        twice = ", ".join(sorted({name for name in names if names.count(name) > 1}))
        raise ValueError(f"grid names must be distinct (each names its results folder); given twice: {twice}")
    from thinkrl.experiments.learning import parse_seeds

    seeds = parse_seeds(args.seeds)
    sft_recipes = {grid.sft for grid in grids}
    if len(sft_recipes) != 1:
        raise ValueError(f"every grid must share one SFT recipe (one cold-start model per seed), got "
                         f"{sorted(sft_recipes)}")
    root = Path("runs") / run_name(args.name)
    sft_folders = {seed: str(root / "sft" / f"seed-{seed}") for seed in seeds}
    check_recipes(build_cells(grids, seeds, {s: f + "/final" for s, f in sft_folders.items()}, root,
                              args.rl_override, args.keep_models))
    sft_path = sft_recipes.pop()
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    with executor(args.workers, _init_worker, (threads,)) as pool:
        models = dict(zip(seeds, pool.map(run_sft_seed, [sft_path] * len(seeds), [args.sft_override] * len(seeds),
                                          [sft_folders[s] for s in seeds], seeds), strict=True))
        cells = build_cells(grids, seeds, models, root, args.rl_override, args.keep_models)
        results = []
        for result in pool.map(run_cell, cells):
            results.append(result)
            logger.info("%s / %s / seed %d: final accuracy %s", result["grid"], result["variant"], result["seed"],
                        result["final_accuracy"])
    (root / "results.json").write_text(json.dumps(results, indent=1))
    report = write_report(grids, results, root / "ablations.md", root / "ablations.png", command=rerun_command(args))
    print(report)
    return 0


@dataclass
class RowSummary:
    """One variant of one grid, over seeds.

    Fields:
        variant: its name.
        accuracies: final held-out accuracy per seed (seed order).
        mean / std: their mean and sample std (0 with one seed).
        steps: steps to the target per seed (None where it was not reached).
        start_accuracy: mean held-out accuracy at step 0 (the SFT model), or None.
    """

    variant: str
    accuracies: list[float]
    mean: float
    std: float
    steps: list[int | None]
    start_accuracy: float | None


def summarise(grid: AblationGrid, results: list[dict[str, Any]]) -> list[RowSummary]:
    """Per-variant statistics of ``grid`` from cell results (variants without results are left out)."""
    rows = []
    for variant in grid.variants:
        mine = sorted((r for r in results if r["grid"] == grid.name and r["variant"] == variant.name
                       and r["final_accuracy"] is not None), key=lambda r: r["seed"])
        if not mine:
            continue
        accs = [float(r["final_accuracy"]) for r in mine]
        starts = [r["curve"][0][1] for r in mine if r["curve"] and r["curve"][0][0] == 0]
        rows.append(RowSummary(variant.name, accs, statistics.mean(accs),
                               statistics.stdev(accs) if len(accs) > 1 else 0.0,
                               [r["steps_to_target"] for r in mine],
                               statistics.mean(starts) if starts else None))
    return rows


def format_table(grid: AblationGrid, rows: list[RowSummary]) -> str:
    """Markdown table of one grid: final accuracy mean ± std, per seed, delta to the reference, steps to target."""
    reference = next((r for r in rows if r.variant == grid.reference), None)
    target = f"{grid.target_accuracy:.2f}"
    lines = [f"| variant | final held-out accuracy (mean ± std) | per seed | Δ vs {grid.reference or '—'} (points) "
             f"| steps to {target} (seeds reaching it) |", "|---|---|---|---|---|"]
    for row in rows:
        reached = [s for s in row.steps if s is not None]
        steps = (f"{statistics.mean(reached):.0f} ({len(reached)}/{len(row.steps)})" if reached
                 else f"not reached (0/{len(row.steps)})")
        delta = "" if reference is None or row is reference else f"{100 * (row.mean - reference.mean):+.1f}"
        per_seed = " / ".join(f"{a:.3f}" for a in row.accuracies)
        lines.append(f"| {row.variant} | {row.mean:.3f} ± {row.std:.3f} | {per_seed} | {delta} | {steps} |")
    return "\n".join(lines)


def plot_curves(grids: list[AblationGrid], results: list[dict[str, Any]], png: Path) -> Path:
    """One panel per grid: held-out accuracy vs step, mean over seeds (band: ± std), target dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.0 * len(grids)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(grids), 1, squeeze=False)[:, 0]
    for ax, grid in zip(axes, grids, strict=True):
        for variant in grid.variants:
            curves = [dict(r["curve"]) for r in results if r["grid"] == grid.name and r["variant"] == variant.name]
            steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not steps:
                continue
            means = [statistics.mean(c[s] for c in curves) for s in steps]
            stds = [statistics.stdev(c[s] for c in curves) if len(curves) > 1 else 0.0 for s in steps]
            (line,) = ax.plot(steps, means, marker=".", label=f"{variant.name} (n={len(curves)})")
            ax.fill_between(steps, [m - s for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)], color=line.get_color(), alpha=0.12)
        ax.axhline(grid.target_accuracy, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(grid.title or grid.name, fontsize=9)
        ax.set_xlabel("RL step")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    return png


def write_report(grids: list[AblationGrid], results: list[dict[str, Any]], md_path: Path, png_path: Path,
                 command: str) -> str:
    """Write the markdown tables and the PNG; returns the markdown."""
    parts = [f"# Ablations\n\nCommand: `{command}`\n"]
    for grid in grids:
        parts.append(f"## {grid.title or grid.name}\n")
        if grid.notes:
            parts.append(grid.notes.strip() + "\n")
        parts.append(format_table(grid, summarise(grid, results)) + "\n")
    plot_curves(grids, results, png_path)
    parts.append(f"![held-out accuracy per step, mean over seeds]({png_path.name})\n")
    text = "\n".join(parts)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text, encoding="utf-8")
    return text
