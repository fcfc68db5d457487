"""The learning protocol's report: ``learning.md`` (tables with 95% t-intervals over seeds, verdicts computed from
the numbers), raw JSON per seed and arm (``raw/learning_*.json``) and two plots (``img/learning_*.png``)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from thinkrl.experiments.learning_compute import SeedInterval, seed_interval
from thinkrl.experiments.learning_config import LearningConfig

MODELS = ("cold", "sft_more", "rft", "rl")
LABELS = {"cold": "cold start (SFT)", "sft_more": "continued SFT", "rft": "RFT", "rl": "RL (DAPO)"}
GOAL_POINTS = 10.0


def load_results(root: Path, seeds: list[int]) -> dict[str, list[dict]]:
    """model -> one test record per seed (``seed-<s>/test/<model>.json``), in seed order."""
    out: dict[str, list[dict]] = {m: [] for m in MODELS}
    for seed in seeds:
        for model in MODELS:
            path = root / f"seed-{seed}" / "test" / f"{model}.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run --stage final for seed {seed}")
            out[model].append(json.loads(path.read_text()))
    return out


def metric(record: dict, name: str) -> float:
    """One test figure of a record: greedy, avg@k, pass@1, pass@k or response tokens."""
    test = record["test"]
    k = str(test["k"])
    return {"greedy": test["greedy_accuracy"], "avg": test["avg_at_k"], "pass1": test["pass_at"]["1"],
            "passk": test["pass_at"][k], "tokens": test["mean_response_tokens"]}[name]


def paired(results: dict[str, list[dict]], a: str, b: str, name: str = "greedy") -> SeedInterval:
    """Mean and t-interval over seeds of the per-seed difference ``a - b`` (paired: same seed, same data)."""
    return seed_interval([metric(x, name) - metric(y, name) for x, y in zip(results[a], results[b], strict=True)])


def verdicts(results: dict[str, list[dict]]) -> list[str]:
    """Plain sentences on the goal (+10 greedy points over the cold start) and on the controls."""
    gain = paired(results, "rl", "cold")
    lines = [f"- RL over its cold start: **{gain.text(100, 1)} greedy points** (goal >= {GOAL_POINTS:.0f}): "
             + ("**met** (mean)" if gain.mean * 100 >= GOAL_POINTS else "**not met**")
             + ("; the interval excludes 0" if gain.low is not None and gain.low > 0 else
                "; the interval includes 0")]
    for control in ("sft_more", "rft"):
        diff = paired(results, "rl", control)
        if diff.low is not None and diff.low > 0:
            word = "RL **beats**"
        elif diff.high is not None and diff.high < 0:
            word = "RL **loses to**"
        else:
            word = "RL is **not distinguishable from**"
        lines.append(f"- {word} {LABELS[control]} at equal FLOPs: RL - {LABELS[control]} = "
                     f"{diff.text(100, 1)} greedy points")
    return lines


def main_table(results: dict[str, list[dict]], k: int) -> list[str]:
    rows = [f"| model | greedy | avg@{k} (T=1) | pass@1 | pass@{k} | response tokens | FLOPs (x1e12) | wall s |",
            "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        recs = results[model]
        cells = [seed_interval([metric(r, n) for r in recs]).text(1, 3 if n != "tokens" else 1)
                 for n in ("greedy", "avg", "pass1", "passk", "tokens")]
        spent = None if recs[0]["compute"] is None else _mean([r["compute"]["total_flops"] for r in recs])
        flops = "-" if spent is None else f"{spent / 1e12:.2f}"
        secs = "-" if recs[0].get("seconds") is None else f"{_mean([r['seconds'] for r in recs]):.0f}"
        rows.append(f"| {LABELS[model]} | " + " | ".join(cells) + f" | {flops} | {secs} |")
    return rows


def per_seed_table(results: dict[str, list[dict]], seeds: list[int]) -> list[str]:
    rows = ["| seed | " + " | ".join(f"{LABELS[m]} greedy / pass@k" for m in MODELS) + " |",
            "|---|" + "---|" * len(MODELS)]
    for i, seed in enumerate(seeds):
        rows.append(f"| {seed} | " + " | ".join(
            f"{metric(results[m][i], 'greedy'):.3f} / {metric(results[m][i], 'passk'):.3f}" for m in MODELS) + " |")
    return rows


def sweep_table(root: Path) -> list[str]:
    sweep = json.loads((root / "sweep.json").read_text())
    rows = ["| arm | lr | seed | greedy val | FLOPs (x1e12) | wall s | chosen |", "|---|---|---|---|---|---|---|"]
    for r in sweep["rows"]:
        chosen = "yes" if sweep["chosen_lr"][r["arm"]] == r["lr"] else ""
        rows.append(f"| {LABELS[r['arm']]} | {r['lr']:g} | {r['seed']} | {r['val_greedy']:.3f} | "
                    f"{r['compute']['total_flops'] / 1e12:.2f} | {r['seconds']:.0f} | {chosen} |")
    return rows


def curve_table(curves: dict[int, list[dict]]) -> list[str]:
    seeds = sorted(curves)
    steps = [p["step"] for p in curves[seeds[0]]]
    rows = ["| SFT step | " + " | ".join(f"seed {s} greedy val" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for i, step in enumerate(steps):
        rows.append(f"| {step} | " + " | ".join(f"{curves[s][i]['val_greedy']:.3f}" for s in seeds) + " |")
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def plot_curves(curves: dict[int, list[dict]], rl_logs: dict[int, list[dict]], out: Path,
                name: str = "learning") -> list[Path]:
    """``<name>_sft_plateau.png`` (greedy val vs SFT step) and ``<name>_rl_length.png`` (response length and
    sampled accuracy per RL step)."""
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for seed, points in sorted(curves.items()):
        ax.plot([p["step"] for p in points], [p["val_greedy"] for p in points], marker=".", label=f"seed {seed}")
    ax.set(xlabel="cold-start SFT step", ylabel="greedy validation accuracy", title="SFT on correct traces")
    ax.grid(alpha=0.3)
    ax.legend()
    plateau = out / f"{name}_sft_plateau.png"
    fig.savefig(plateau, dpi=110)
    fig = Figure(figsize=(6.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for seed, log in sorted(rl_logs.items()):
        steps = [r for r in log if "response_length_mean" in r]
        top.plot([r["step"] for r in steps], [r["response_length_mean"] for r in steps], label=f"seed {seed}")
        bottom.plot([r["step"] for r in steps], [r["accuracy"] for r in steps], label=f"seed {seed}")
    top.set(ylabel="mean response tokens", title="DAPO: response length and sampled accuracy per step")
    bottom.set(xlabel="RL step", ylabel="accuracy of sampled batch")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend()
    length = out / f"{name}_rl_length.png"
    fig.savefig(length, dpi=110)
    return [plateau, length]


def write_raw(root: Path, docs: Path, seeds: list[int], name: str = "learning") -> list[Path]:
    """Copy the small per-seed records into ``docs/raw`` (``<name>_s<seed>_<model>.json``, ``<name>_sweep.json``):
    test results, compute, logs, the curve, the sweep."""
    missing = [root / f"seed-{seed}" / "test" / f"{model}.json" for seed in seeds for model in MODELS
               if not (root / f"seed-{seed}" / "test" / f"{model}.json").is_file()]
    if missing:  # before any file of the report is written
        raise FileNotFoundError(f"no test result {missing[0]} ({len(missing)} missing): run the protocol's final "
                                "stage for these seeds first (thinkrl learn ... --stage final)")
    raw = docs / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = []
    for seed in seeds:
        base = root / f"seed-{seed}"
        for model in MODELS:
            record = json.loads((base / "test" / f"{model}.json").read_text())
            if model == "cold":
                record["cold_start"] = json.loads((base / "cold" / "result.json").read_text())
                record["compute"], record["seconds"] = record["cold_start"]["compute"], record["cold_start"]["seconds"]
            else:
                arm = json.loads((base / "arms" / model / f"lr={record['lr']:g}" / "result.json").read_text())
                record["log"], record["seconds"] = arm["log"], arm["seconds"]
            path = raw / f"{name}_s{seed}_{model}.json"
            path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            written.append(path)
    sweep = raw / f"{name}_sweep.json"
    sweep.write_text((root / "sweep.json").read_text())
    return [*written, sweep]


def trace_design(config: LearningConfig) -> str:
    """One phrase naming the SFT trace design of ``config``."""
    if config.search_attempts:
        design = (f"search traces, 0..{config.search_attempts} distinct checked failed attempts (uniform) before the "
                  "solution")
    elif config.task == "countdown":
        design = "the solution's steps, after one failed attempt in 30% of traces"
    else:
        design = f"the {config.task} task's worked traces"
    if config.terse_share:
        design += (f"; {config.terse_share:.0%} of them terse (the correct answer after an empty thinking block, "
                   "without the working)")
    return design


def write_report(root: Path, docs: Path, seeds: list[int], config: LearningConfig, command: str,
                 name: str = "learning") -> Path:
    """Write ``docs/<name>.md``, ``docs/raw/<name>_*.json`` and ``docs/img/<name>_*.png``; returns the md."""
    write_raw(root, docs, seeds, name)
    results = {m: [json.loads((docs / "raw" / f"{name}_s{s}_{m}.json").read_text()) for s in seeds]
               for m in MODELS}
    curves = {s: results["cold"][i]["cold_start"]["curve"] for i, s in enumerate(seeds)}
    rl_logs = {s: results["rl"][i]["log"] for i, s in enumerate(seeds)}
    plot_curves(curves, rl_logs, docs / "img", name)
    k = config.eval_samples
    lines = [
        "# Does RL make the cold start reason better? RL vs continued SFT vs RFT at equal FLOPs",
        "",
        f"Command: `{command} --seeds {','.join(map(str, seeds))}`.",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs during the run; "
        f"fp32, one torch thread per process. Date: {datetime.date.today().isoformat()}.",
        f"Task `{config.task}` {config.difficulty}; {config.num_train} train / {config.num_val} validation / "
        f"{config.num_test} test problems per seed. Intervals: mean [95% Student t-interval over {len(seeds)} "
        f"seeds, t(0.975, {len(seeds) - 1})]; avg@{k} and unbiased pass@k from {k} samples at temperature 1.",
        f"SFT traces (cold start, continued SFT): {trace_design(config)}; responses up to {config.max_new_tokens} "
        "tokens.",
        "",
        "## Verdict (computed from the test table)",
        "",
        *verdicts(results),
        "",
        "## Test split (evaluated once, after every setting was chosen on validation)",
        "",
        *main_table(results, k),
        "",
        *per_seed_table(results, seeds),
        "",
        "## Validation sweep (the only place settings were chosen)",
        "",
        *sweep_table(root),
        "",
        "## Cold start: greedy validation accuracy vs SFT steps",
        "",
        *curve_table(curves),
        "",
        f"![SFT plateau](img/{name}_sft_plateau.png)",
        "",
        "## Response length over RL training",
        "",
        f"![RL response length](img/{name}_rl_length.png)",
        "",
        f"Raw records: `raw/{name}_s<seed>_<model>.json` (test metrics, compute, training log; the cold start's "
        f"holds its curve) and `raw/{name}_sweep.json`.",
        "",
    ]
    path = docs / f"{name}.md"
    path.write_text("\n".join(lines) + hand_written(path))
    return path


READING_HEADING = "## Reading (hand-written"
"""A section of the report that starts with this heading is the author's, not the generator's."""


def hand_written(path: Path) -> str:
    """The hand-written tail of an existing report (from `READING_HEADING` to the end), kept when the report is
    generated again; "" if there is none."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    start = text.find(READING_HEADING)
    return "" if start < 0 else "\n" + text[start:]
