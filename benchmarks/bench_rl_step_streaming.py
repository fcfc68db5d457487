"""The DAPO RL step on the long-tail workload: thinkrl sync, thinkrl streaming (eta = 1) and TRL ``GRPOTrainer``.

Same model (the "demo" model of bench_generate.py, random init, written by ``bench_rl_step._write_model``), same
prompts (the arithmetic train problems of the recipe's data section, given to TRL as its dataset), same group size,
same loss (token-level clip-higher, eps 0.2 / 0.28, no KL, group-normalised +1/-1 rule reward, one epoch, AdamW with
bench_rl_step's settings). EOS is honoured on every side. Long tail: a random model rarely samples a stop token, so
each response's length is drawn from bench_streaming's distribution (``draw_length``: 90% uniform in [L/2, L], 10%
uniform in (L, 8L], L = ``--short-len``): thinkrl's engine gets it as the sample's ``max_new_tokens``
(``bench_streaming.LengthDrivenClient``, a continuation keeps its limit), TRL's ``generate`` gets a logits processor
that forces EOS at the row's drawn length (`ForceEosAt`). A sampled stop token ends a response earlier on both sides.

Sides: ``sync`` and ``stream_eta1`` (and with ``--with-process`` ``stream_eta1@process``, the engine in its own
process) run the RL loop's own ``rl_step`` (``bench_streaming.run_mode``: eta + 1 unmeasured steps, the pipeline's
fill, by default; ``--warmup N`` to set them), then ``--steps``; TRL runs ``1 + --steps`` optimizer steps of
``GRPOTrainer`` (the first is the warm-up). The streaming side has a rollout thread that keeps sampling between
steps, so the sides cannot alternate step by step; they alternate in blocks over ``--rounds`` (sync, streaming, TRL
in each round) so load from other jobs on the machine falls on all of them alike. Wall clock (the streaming side's
gain is overlap, which CPU time would not show).
Figures: trained samples/s and optimizer steps/s over the measured steps, tokens generated per trained sample;
ratios to TRL. Prints one JSON line.

    thinkrl bench rl-step-streaming [--steps 4] [--rounds 2] [--prompts 16] [--group-size 8] [--short-len 16]
                                    [--with-process] [--warmup N] [--skip-trl] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import bench_rl_step  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
import bench_streaming
from _cli import check_at_least, progress, stdout_to_stderr
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout import load_problems
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.config import RLRecipe, validate_recipe

RL_STEP, STREAMING = bench_rl_step, bench_streaming
SIDES = {"sync": ("sync", 0), "stream_eta1": ("streaming", 1)}  # side: (rollout.mode, max_staleness)
# --with-process: streaming eta 1 with the engine in its own process (rollout.placement: process)
PROCESS_SIDE = "stream_eta1@process"
# --with-sync-decoupled: sync with streaming's loss (decoupled PPO: one more forward for the proximal log-probs),
# to tell the loss's cost from the cost of sharing the process with the rollout thread
SYNC_DECOUPLED = "sync_decoupled"
NUM_TRAIN = 400


def side_settings(side: str) -> tuple[str, int, str | None, str]:
    """A thinkrl side's rollout.mode, max_staleness, algorithm.off_policy override and rollout.placement."""
    if side == SYNC_DECOUPLED:
        return "sync", 0, "decoupled", "thread"
    mode, eta = SIDES[side.split("@")[0]]
    return mode, eta, None, "process" if side == PROCESS_SIDE else "thread"


def side_recipe(folder: Path, out: str, mode: str, eta: int, args: argparse.Namespace,
                off_policy: str | None = None, placement: str = "thread") -> RLRecipe:
    """bench_rl_step's recipe (dapo preset, no dynamic sampling / overlong punishment / dual clip, TRL's clip range
    and optimizer) with the long tail's length cap and the side's rollout mode; EOS honoured."""
    cap = 8 * args.short_len
    return validate_recipe({
        "name": f"bench-rl-step-{mode}", "model": {"path": str(folder), "device": "cpu"},
        "data": {"task": RL_STEP.TASK, "difficulty": RL_STEP.DIFFICULTY, "num_train": NUM_TRAIN, "num_test": 0,
                 "seed": args.seed},
        "sampling": {"temperature": 1.0, "max_new_tokens": cap, "num_slots": args.prompts * args.group_size},
        "rollout": {"group_size": args.group_size, "prompts_per_step": args.prompts, "dynamic_sampling": False,
                    "mode": mode, "max_staleness": eta, "placement": placement},
        "reward": {"overlong_penalty": False, "max_response_len": cap, "overlong_cache_len": 0},
        "algorithm": {"preset": "dapo", "dual_clip": None, "eps_low": RL_STEP.EPS_LOW, "eps_high": RL_STEP.EPS_HIGH,
                      **({"off_policy": off_policy} if off_policy else {})},
        "optim": {"lr": RL_STEP.LR, "betas": list(RL_STEP.BETAS), "eps": RL_STEP.ADAM_EPS, "weight_decay": 0.0,
                  "schedule": "constant", "grad_clip": RL_STEP.GRAD_CLIP},
        "trainer": {"steps": 10_000, "micro_batch_tokens": args.micro_batch_tokens, "seed": args.seed,
                    "output_dir": out, "save_every": 0, "eval_every": 0, "log_every": 1},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


class ForceEosAt:
    """A transformers logits processor forcing EOS at each row's drawn length (``draw_length``) in one ``generate``
    call. ``reset()`` before each call; the first call sees the (left-padded) prompt width."""

    def __init__(self, eos_id: int, short: int, seed: int) -> None:
        self.eos_id, self.short, self.rng = eos_id, short, random.Random(seed)
        self.width: int | None = None
        self.limits = torch.zeros(0, dtype=torch.long)

    def reset(self) -> None:
        self.width = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, prompt + generated) ids; scores: (B, V) next-token scores; rows at their limit → EOS."""
        if self.width is None:
            self.width = input_ids.shape[1]
            self.limits = torch.tensor([STREAMING.draw_length(self.rng.getrandbits(32), self.short)
                                        for _ in range(input_ids.shape[0])])
        at_limit = self.limits - 1 == input_ids.shape[1] - self.width  # the row's last token is the next one
        if at_limit.any():
            scores = scores.clone()
            scores[at_limit] = float("-inf")
            scores[at_limit, self.eos_id] = 0.0
        return scores


def run_trl(folder: Path, recipe: RLRecipe, args: argparse.Namespace, round_index: int) -> dict[str, float]:
    """``1 + args.steps`` GRPOTrainer steps (EOS honoured, long tail forced); totals of the measured steps."""
    import datasets
    import transformers
    from trl import GRPOTrainer

    tokenizer = load_tokenizer(str(folder))
    problems = load_problems(recipe.data, "train")
    dataset = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}], "problem_index": i}
                                          for i, p in enumerate(problems)])
    tokens: list[int] = []

    def rule_reward(prompts: list, completions: list, completion_ids: list[list[int]], problem_index: list[int],
                    **kwargs: Any) -> list[float | None]:  # TRL's reward-function type (None: not scored)
        tokens.append(sum(map(len, completion_ids)))
        return [1.0 if RL_STEP._is_correct(tokenizer, problems[i], ids) else -1.0
                for i, ids in zip(problem_index, completion_ids, strict=True)]

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    force = ForceEosAt(hf_tokenizer.eos_token_id, args.short_len, seed=args.seed * 1000 + round_index)
    generate = model.generate

    def forced_generate(*a: Any, **k: Any) -> Any:
        force.reset()
        return generate(*a, logits_processor=transformers.LogitsProcessorList([force]), **k)

    model.generate = forced_generate  # TRL calls generate on the model it was given (no wrapper on one CPU)
    trl_args = argparse.Namespace(**{**vars(args), "max_new_tokens": 8 * args.short_len})
    with tempfile.TemporaryDirectory() as output_dir:
        config = RL_STEP._trl_config(trl_args, output_dir)
        config.generation_kwargs = None  # bench_rl_step's min_new_tokens would ignore EOS; here EOS is honoured
        config.dataloader_drop_last, config.seed = True, args.seed + round_index
        trainer = GRPOTrainer(model=model, reward_funcs=rule_reward, args=config, train_dataset=dataset,
                              processing_class=hf_tokenizer)
        timer = RL_STEP._trl_step_timer(trainer, None)
        trainer.add_callback(timer)
        with stdout_to_stderr():
            trainer.train()
    if len(timer.steps) != 1 + args.steps or len(tokens) != 1 + args.steps:
        raise RuntimeError(f"expected {1 + args.steps} TRL steps with one generation each, got "
                           f"{len(timer.steps)} steps and {len(tokens)} generations")
    measured = timer.steps[1:]
    return {"wall_s": sum(s["total"] for s in measured), "samples": args.steps * args.prompts * args.group_size,
            "steps": args.steps, "generated_tokens": sum(tokens[1:]),
            "generation_s": sum(s["generation"] for s in measured)}


def summarize(totals: dict[str, float]) -> dict[str, float]:
    """samples/s, steps/s and tokens per trained sample of one side's summed measured steps."""
    return {"samples_per_s": totals["samples"] / totals["wall_s"], "steps_per_s": totals["steps"] / totals["wall_s"],
            "tokens_per_sample": totals["generated_tokens"] / max(1, totals["samples"]),
            "wall_s": totals["wall_s"], "samples": totals["samples"], "steps": totals["steps"],
            **({"generation_s": totals["generation_s"]} if "generation_s" in totals else {}),
            **({"trainer_idle_frac": totals["idle_s"] / totals["wall_s"],  # waiting for the batch / wall
                "train_s": totals["train_s"]} if "idle_s" in totals else {}),
            **({"dropped_stale_groups": totals["dropped_stale"]} if "dropped_stale" in totals else {})}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="measured steps per side and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (sync, streaming, TRL) blocks")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--short-len", type=int, default=16, help="L: 90%% of lengths in [L/2, L], 10%% up to 8L")
    parser.add_argument("--micro-batch-tokens", type=int, default=32768, help="thinkrl packed micro-batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--with-sync-decoupled", action="store_true", help="also sync with decoupled PPO")
    parser.add_argument("--with-process", action="store_true",
                        help="also streaming eta 1 with the engine in its own process (rollout.placement: process)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured thinkrl steps per side and round (default: eta + 1, the pipeline's fill; "
                             "sync 1); TRL always has one")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    check_at_least(parser, args, steps=1, rounds=1, prompts=1, micro_batch_tokens=1, group_size=2, short_len=2,
                   warmup=0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(args.seed)
    sides = [*SIDES, *([SYNC_DECOUPLED] if args.with_sync_decoupled else []),
             *([PROCESS_SIDE] if args.with_process else []), *([] if args.skip_trl else ["trl"])]
    sums: dict[str, dict[str, float]] = {s: {} for s in sides}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        num_params = RL_STEP._write_model(folder, args.seed)
        for r in range(args.rounds):
            for side in sides:
                if side == "trl":
                    recipe = side_recipe(folder, os.path.join(tmp, f"trl-{r}"), "sync", 0, args)
                    totals = run_trl(folder, recipe, args, r)
                else:
                    mode, eta, off_policy, placement = side_settings(side)
                    recipe = side_recipe(folder, os.path.join(tmp, f"{side}-{r}"), mode, eta, args, off_policy,
                                         placement)
                    totals = STREAMING.run_mode(recipe, args.steps, args.short_len,
                                                STREAMING.warmup_steps(eta, args.warmup))
                for key, value in totals.items():
                    sums[side][key] = sums[side].get(key, 0) + value
                progress("rl-step-streaming", f"round {r + 1}/{args.rounds} {side}: "
                                              f"{totals['samples'] / totals['wall_s']:.1f} samples/s")
    results = {side: summarize(t) for side, t in sums.items()}
    record = {
        "bench": "rl-step-streaming", "results": results,
        "ratio_samples_per_s_vs_trl": None if args.skip_trl else {
            s: results[s]["samples_per_s"] / results["trl"]["samples_per_s"] for s in results if s != "trl"},
        "ratio_stream_vs_sync": results["stream_eta1"]["samples_per_s"] / results["sync"]["samples_per_s"],
        "workload": {"model": "demo (SeedOssForCausalLM, random init)", "model_params": num_params,
                     "task": RL_STEP.TASK, "difficulty": RL_STEP.DIFFICULTY, "num_train": NUM_TRAIN,
                     "prompts_per_step": args.prompts, "group_size": args.group_size, "short_len": args.short_len,
                     "long_max": 8 * args.short_len, "long_share": 0.1, "eos": "honoured on every side"},
        "steps_per_side": args.steps * args.rounds, "rounds": args.rounds, "clock": "wall",
        "thinkrl_warmup_steps": {s: STREAMING.warmup_steps(side_settings(s)[1], args.warmup)
                                 for s in sides if s != "trl"},
        "versions": {"torch": torch.__version__, "trl": None if args.skip_trl else __import__("trl").__version__},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
        "load_average_before_after": [load_before, os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    line = json.dumps(record)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
