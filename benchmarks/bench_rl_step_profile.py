"""Profile of thinkrl's update in ``bench rl-step``: ``torch.profiler`` ops by self CPU time.

Builds bench rl-step's thinkrl side for ``--model``, samples one step's groups (16 prompts x 8 x 64 tokens), gives
every third response reward 1 (so advantages, and the backward, are not zero), runs the update (prepare_batch is
outside) twice untimed, times three, and profiles one. Prints one JSON line; ``--out FILE`` also writes the table.

    thinkrl bench rl-step-profile [--model small] [--compile-pointwise] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import bench_rl_step  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from _cli import check_at_least, check_names
from thinkrl.model import compile_pointwise
from thinkrl.rollout import sample_groups, score_trajectories
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--compile-pointwise", action="store_true")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--out", default=None)
    cli = parser.parse_args()
    check_names(parser, "--model", [cli.model], bench_rl_step.bench_generate.MODELS)
    check_at_least(parser, cli, rows=1)
    torch.set_num_threads(1)
    rl = bench_rl_step
    args = argparse.Namespace(steps=1, prompts=16, group_size=8, max_new_tokens=64, micro_batch_tokens=32768,
                              seed=0, threads=1, skip_trl=True, model=cli.model, compile_pointwise=False)
    problems = generate_dataset(rl.TASK, args.prompts, args.seed, "train", rl.DIFFICULTY)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rl._write_model(folder, args.seed, cli.model)
        stepper = rl.ThinkrlStepper(folder, problems, args, rl._check_same_prompt_ids(
            folder, load_tokenizer(str(folder)), problems))
    if cli.compile_pointwise:
        compile_pointwise(stepper.actor.model)
    trajs = sample_groups(stepper.engine, stepper.tokenizer, problems, args.group_size, stepper.recipe.sampling,
                          seed=0, first_group_id=0)
    score_trajectories(trajs, stepper.tokenizer, stepper.recipe.reward)
    for i, traj in enumerate(trajs):
        traj.reward = float(i % 3 == 0)
    batch = rl.prepare_batch(trajs, stepper.actor, None, None)
    seconds = []
    for step in range(5):
        start = time.perf_counter()
        rl.update(batch, stepper.actor, None, seed=0, step=step + 1)
        seconds.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        rl.update(batch, stepper.actor, None, seed=0, step=9)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=cli.rows)
    if cli.out:
        Path(cli.out).write_text(table + "\n")
    print(json.dumps({"benchmark": "rl-step-profile", "model": cli.model, "compile_pointwise": cli.compile_pointwise,
                      "update_tokens": int(batch.cu_seqlens[-1]), "update_s": [round(s, 3) for s in seconds],
                      "update_s_median_last3": round(statistics.median(seconds[2:]), 3),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__, "table": table}))


if __name__ == "__main__":
    main()
