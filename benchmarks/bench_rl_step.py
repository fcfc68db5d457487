"""One DAPO RL step: thinkrl (engine rollout + packed update) vs TRL's ``GRPOTrainer`` (loss_type "dapo").

Both sides start from the same tiny random weights (``--model``: a model of bench_generate.py, "demo" by default,
saved by thinkrl in HF format with the built-in tokenizer files), sample the same prompts (identical prompt token
ids, checked), G completions each of exactly ``--max-new-tokens`` tokens (EOS is ignored on both sides: thinkrl's
engine gets no stop tokens, TRL gets ``min_new_tokens`` = ``max_completion_length``), score them with thinkrl's
rule verifier (+1 / -1), and take one AdamW step (same lr, betas, eps, no weight decay, grad clip 1.0, constant lr)
of the token-level clip-higher loss (eps_low 0.2, eps_high 0.28, no KL), fp32 on CPU. thinkrl runs the RL loop's
own pieces (``thinkrl.rollout.sample_groups`` → ``score_trajectories`` → ``thinkrl.train.rl_step.prepare_batch``
→ ``update`` (the `Actor`'s update) → ``engine.update_weights``), configured by an RL recipe (the ``dapo`` preset) with
dynamic sampling, soft overlong punishment and dual-clip off, so both sides do exactly one
generation round and the same loss. As in ``run_rl``, the engine owns its own copy of the weights and the new
policy is pushed to it after each update (timed as part of the step, ``push_s``); TRL generates from the weights
it trains. The two sides alternate in one process (TRL step i, then thinkrl step i), so on a shared machine both
see the same load; the medians of several steps after one warm-up are reported, split generation (+ scoring) vs
update. On a busy machine pass ``--threads 1`` (and ``--clock cpu``: CPU seconds of this process). The fp32 matmul
peak is measured first in the same run (``benchmarks/_peak.py``); the update's model FLOP/s is reported as a
fraction of it. Prints one JSON line; a progress line goes to stderr as each step (both sides) ends.

    thinkrl bench rl-step [--steps 3] [--prompts 16] [--group-size 8] [--max-new-tokens 64] [--threads N]
        [--model demo|small|medium] [--compile-pointwise] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import torch

import _peak  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
import bench_generate
from _cli import check_at_least, progress, stdout_to_stderr
from thinkrl.engine import LLMEngine
from thinkrl.model import ModelConfig, build_model, compile_pointwise, load_pretrained, save_pretrained
from thinkrl.rewards import score_response
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.rollout import sample_groups, score_trajectories
from thinkrl.tasks import Problem, get_task
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import BUILTIN_DIR, TextTokenizer, load_tokenizer
from thinkrl.train.actor import Actor
from thinkrl.train.config import RLRecipe, validate_recipe
from thinkrl.train.rl_step import prepare_batch, update
from thinkrl.train.schedule import build_optimizer, build_scheduler

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
TASK, DIFFICULTY = "arithmetic", {"num_terms": 3, "max_number": 9}
LR, BETAS, ADAM_EPS, GRAD_CLIP, EPS_LOW, EPS_HIGH = 1e-5, (0.9, 0.95), 1e-8, 1.0, 0.2, 0.28
CLOCK = time.perf_counter  # main() sets it from --clock (_peak.CLOCKS)


class StepRow(TypedDict):  # one step of a side: seconds, tokens, accuracy; push and lengths: thinkrl only
    total: float
    generation: float
    update: float
    push: NotRequired[float]
    tokens: NotRequired[int]
    accuracy: NotRequired[float]
    sequence_lengths: NotRequired[list[int]]


def _model_config(name: str = "demo") -> ModelConfig:
    """``MODELS[name]`` of bench_generate.py (one definition of the benchmark models)."""
    return bench_generate.MODELS[name]


class _NoStopTokenizer:
    """The engine's view of the tokenizer with no stop tokens, so every response runs to max length."""

    stop_token_ids: tuple[int, ...] = ()

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.pad_token_id = tokenizer.pad_token_id
        self.decode = tokenizer.decode


def _is_correct(tokenizer: TextTokenizer, problem: Problem, response_ids: list[int]) -> bool:
    """thinkrl's rule reward on the decoded response; finished = it ends with a stop token."""
    finished = bool(response_ids) and response_ids[-1] in tokenizer.stop_token_ids
    score = score_response(get_task(problem.task), problem, tokenizer.decode(response_ids), tokenizer.think_tags,
                           finished=finished)
    return score.correct


def _write_model(folder: Path, seed: int, name: str = "demo") -> int:
    """Random-init model ``name`` + built-in tokenizer files in ``folder``; returns the parameter count."""
    config = _model_config(name)
    model = build_model(config, seed=seed)
    save_pretrained(model, folder)
    for name in TOKENIZER_FILES:
        (folder / name).write_bytes((BUILTIN_DIR / name).read_bytes())
    return config.num_parameters()


def _check_same_prompt_ids(folder: Path, tokenizer: TextTokenizer, problems: list[Problem]) -> int:
    """Raise unless transformers' chat template (what TRL uses) gives our prompt ids; returns the max length."""
    import transformers

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    longest = 0
    for problem in problems:
        messages = [{"role": "user", "content": problem.prompt}]
        ours = tokenizer.encode_chat(messages, thinking_budget=-1)
        encoded = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)
        theirs = encoded["input_ids"] if isinstance(encoded, transformers.BatchEncoding) else encoded
        if list(theirs) != ours:
            raise ValueError(f"prompt ids differ for problem {problem.id!r}: thinkrl {ours} vs transformers {theirs}")
        longest = max(longest, len(ours))
    return longest


def bench_recipe(folder: Path, args: argparse.Namespace) -> RLRecipe:
    """The RL recipe of thinkrl's side: the ``dapo`` preset with dynamic sampling, soft overlong punishment and
    dual-clip off, TRL's clip range, optimizer and batch."""
    return validate_recipe({
        "name": "bench-rl-step", "model": {"path": str(folder), "device": "cpu"},
        "data": {"task": TASK, "difficulty": DIFFICULTY, "seed": args.seed},
        "sampling": {"temperature": 1.0, "max_new_tokens": args.max_new_tokens,
                     "num_slots": args.prompts * args.group_size},
        "rollout": {"group_size": args.group_size, "prompts_per_step": args.prompts, "dynamic_sampling": False},
        "reward": {"overlong_penalty": False, "max_response_len": args.max_new_tokens, "overlong_cache_len": 0},
        "algorithm": {"preset": "dapo", "dual_clip": None, "eps_low": EPS_LOW, "eps_high": EPS_HIGH},
        "optim": {"lr": LR, "betas": list(BETAS), "eps": ADAM_EPS, "weight_decay": 0.0, "schedule": "constant",
                  "grad_clip": GRAD_CLIP},
        "trainer": {"steps": 1 + args.steps, "micro_batch_tokens": args.micro_batch_tokens, "seed": args.seed},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


class ThinkrlStepper:
    """thinkrl's DAPO step, as `run_rl` does it, on a fixed prompt set; each call runs and times one step."""

    def __init__(self, folder: Path, problems: list[Problem], args: argparse.Namespace, max_prompt: int) -> None:
        self.problems, self.args = problems, args
        self.recipe = recipe = bench_recipe(folder, args)
        self.tokenizer = load_tokenizer(str(folder))
        model = load_pretrained(str(folder), device="cpu", dtype=torch.float32)
        optimizer = build_optimizer(model.parameters(), recipe.optim)
        self.actor = Actor(model, optimizer, build_scheduler(optimizer, recipe.optim, recipe.trainer.steps),
                           recipe.algorithm, recipe.trainer.micro_batch_tokens, recipe.optim.grad_clip,
                           recipe.sampling.temperature, recipe.reward.max_response_len)
        engine_model = copy.deepcopy(model).eval().requires_grad_(False)  # the engine owns its weights
        if args.compile_pointwise:
            compile_pointwise(model)
        self.engine = LLMEngine(engine_model, _NoStopTokenizer(self.tokenizer), num_slots=recipe.sampling.num_slots,
                                max_seq_len=max_prompt + args.max_new_tokens, seed=args.seed)
        self.steps: list[StepRow] = []

    def __call__(self) -> None:
        """Rollout → score → advantages → update → push weights, appending seconds and token counts to ``steps``."""
        step = len(self.steps) + 1
        recipe = self.recipe
        start = CLOCK()
        trajs = sample_groups(self.engine, self.tokenizer, self.problems, recipe.rollout.group_size, recipe.sampling,
                              seed=self.args.seed * 7919 + step - 1, first_group_id=0)
        score_trajectories(trajs, self.tokenizer, recipe.reward)
        generated = CLOCK()
        if any(t.policy_version != step - 1 for t in trajs):  # every token from the weights pushed last step
            raise RuntimeError(f"step {step} sampled with weight versions {sorted({t.policy_version for t in trajs})}")
        batch = prepare_batch(trajs, self.actor, None, None)
        update(batch, self.actor, None, seed=recipe.trainer.seed, step=step)
        updated = CLOCK()
        self.engine.update_weights(self.actor.weights(), version=step)
        done = CLOCK()
        self.steps.append({"total": done - start, "generation": generated - start, "update": updated - generated,
                           "push": done - updated, "tokens": sum(len(t.response_ids) for t in trajs),
                           "sequence_lengths": [len(t.prompt_ids) + len(t.response_ids) for t in trajs],
                           "accuracy": sum(bool(t.correct) for t in trajs) / len(trajs)})


def _trl_config(args: argparse.Namespace, output_dir: str) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, report_to="none", save_strategy="no", logging_steps=10_000, disable_tqdm=True,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=args.seed,
        max_steps=1 + args.steps, per_device_train_batch_size=args.prompts * args.group_size,
        gradient_accumulation_steps=1, num_generations=args.group_size, num_iterations=1,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        generation_kwargs={"min_new_tokens": args.max_new_tokens},  # ignore EOS, as thinkrl's side does
        loss_type="dapo", epsilon=EPS_LOW, epsilon_high=EPS_HIGH, beta=0.0, scale_rewards="group",
        use_vllm=False, mask_truncated_completions=False,
        learning_rate=LR, adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=ADAM_EPS, weight_decay=0.0,
        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=GRAD_CLIP,
    )


def bench_trl(folder: Path, problems: list[Problem], args: argparse.Namespace,
              after_step: Callable[[StepRow], None] | None = None) -> list[StepRow]:
    """Time ``1 + args.steps`` optimizer steps of TRL's ``GRPOTrainer`` (the first is the warm-up). ``after_step``
    runs (untimed) on each TRL step's row, so the two sides can alternate and see the same load on a shared machine.
    """
    import datasets
    import transformers
    from trl import GRPOTrainer

    tokenizer = load_tokenizer(str(folder))
    dataset = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}], "problem_index": i}
                                          for i, p in enumerate(problems)])
    step_tokens: list[int] = []
    step_correct: list[float] = []

    def rule_reward(prompts: list, completions: list, completion_ids: list[list[int]], problem_index: list[int],
                    **kwargs: Any) -> list[float | None]:  # TRL's reward-function type (None: not scored)
        correct = [_is_correct(tokenizer, problems[i], ids) for i, ids in zip(problem_index, completion_ids,
                                                                               strict=True)]
        step_tokens.append(sum(map(len, completion_ids)))
        step_correct.append(sum(correct) / len(correct))
        return [1.0 if c else -1.0 for c in correct]

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    with tempfile.TemporaryDirectory() as output_dir, stdout_to_stderr():
        trainer = GRPOTrainer(model=model, reward_funcs=rule_reward, args=_trl_config(args, output_dir),
                              train_dataset=dataset, processing_class=hf_tokenizer)
        timer = _trl_step_timer(trainer, after_step)
        trainer.add_callback(timer)
        trainer.train()
    if len(timer.steps) != 1 + args.steps or len(step_tokens) != 1 + args.steps:
        raise RuntimeError(f"expected {1 + args.steps} TRL steps with one generation each, got "
                           f"{len(timer.steps)} steps and {len(step_tokens)} generations")
    for row, tokens, accuracy in zip(timer.steps, step_tokens, step_correct, strict=True):
        row.update(tokens=tokens, accuracy=accuracy)
    return timer.steps


def _trl_step_timer(trainer: Any, after_step: Callable[[StepRow], None] | None) -> Any:
    """A trainer callback timing each optimizer step, and the generation (+ scoring) inside it (it wraps
    ``trainer._generate_and_score_completions``, an instance attribute); ``after_step`` runs once it is timed.
    """
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[StepRow] = []
            self.start = self.generation = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start, self.generation = CLOCK(), 0.0

        def on_step_end(self, *a: Any, **k: Any) -> None:
            total = CLOCK() - self.start
            self.steps.append({"total": total, "generation": self.generation, "update": total - self.generation})
            if after_step is not None:
                after_step(self.steps[-1])

    timer = StepTimer()
    generate = trainer._generate_and_score_completions

    def timed_generate(*a: Any, **k: Any) -> Any:
        start = CLOCK()
        out = generate(*a, **k)
        timer.generation += CLOCK() - start
        return out

    trainer._generate_and_score_completions = timed_generate
    return timer


def _summarise(steps: list[StepRow]) -> dict:
    """Medians of the timed steps (seconds), tokens per step, and the raw per-step totals."""
    keys: tuple[Literal["total", "generation", "update", "push"], ...] = ("total", "generation", "update")
    keys += ("push",) if "push" in steps[0] else ()
    median = {key: statistics.median(s[key] for s in steps) for key in keys}
    return {
        "seconds_per_step": round(median["total"], 3), "generation_s": round(median["generation"], 3),
        "update_s": round(median["update"], 3), **({"push_s": round(median["push"], 3)} if "push" in median else {}),
        "tokens_generated_per_step": sorted({int(s["tokens"]) for s in steps}),
        "step_seconds": [round(s["total"], 3) for s in steps],
        "sampled_accuracy": [round(s["accuracy"], 3) for s in steps]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="completion length (EOS ignored)")
    parser.add_argument("--micro-batch-tokens", type=int, default=32768, help="thinkrl packed micro-batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--model", default="demo", help="a model of bench_generate.MODELS: demo (0.85M), "
                        "small (3.3M), medium (12.6M)")
    parser.add_argument("--compile-pointwise", action="store_true", help="thinkrl.model.compile_pointwise, trainer")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: this process's CPU time")
    args = parser.parse_args()
    check_at_least(parser, args, steps=1, prompts=1, max_new_tokens=1, micro_batch_tokens=1, group_size=2, threads=0)
    if args.model not in bench_generate.MODELS:
        parser.error(f"--model {args.model!r} is not one of {sorted(bench_generate.MODELS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    global CLOCK
    CLOCK = _peak.CLOCKS[args.clock]
    peak = _peak.measure_peak("cpu", torch.float32, clock=args.clock)
    problems = generate_dataset(TASK, args.prompts, args.seed, "train", DIFFICULTY)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        num_params = _write_model(folder, args.seed, args.model)
        max_prompt = _check_same_prompt_ids(folder, load_tokenizer(str(folder)), problems)
        ours = ThinkrlStepper(folder, problems, args, max_prompt)

        def step(trl: StepRow | None = None) -> None:  # thinkrl's step, then (untimed) the progress line
            ours()
            n, theirs_s = len(ours.steps), "" if trl is None else f", trl {trl['total']:.2f} s"
            progress("rl-step", f"step {n}/{1 + args.steps}{' (warm-up)' * (n == 1)}: thinkrl "
                                f"{ours.steps[-1]['total']:.2f} s{theirs_s}")
        if args.skip_trl:
            for _ in range(1 + args.steps):
                step()
            theirs = None
        else:  # alternate: TRL step i, then thinkrl step i
            theirs = bench_trl(folder, problems, args, after_step=step)
    record = _report(args, num_params, max_prompt, ours.steps[1:], theirs and theirs[1:], load_before)
    record["peak"] = peak.as_json()
    record["fraction_of_peak"] = _update_fraction(_peak, peak, ours.steps[1:], theirs and theirs[1:],
                                                  args.model)
    print(json.dumps(record))


def _update_fraction(peak_module: Any, peak: Any, ours: list[StepRow], theirs: list[StepRow] | None,
                     model: str = "demo") -> dict:
    """The training update's model FLOP/s over the measured matmul peak: every prompt + response token of the
    step's sequences, forward + backward (3x forward), each attending to its causal prefix (mean context
    sum L(L+1)/2 / sum L); tokens/s from the median update time. TRL's side uses the same useful tokens."""
    lengths = ours[0]["sequence_lengths"]
    tokens = sum(lengths)
    context = sum(n * (n + 1) / 2 for n in lengths) / tokens
    flops = 3 * peak_module.forward_flops_per_token(_model_config(model), context)
    ours_rate = tokens / statistics.median(s["update"] for s in ours)
    out = {"update_tokens_per_step": tokens, "mean_attention_context": round(context, 1),
           "flops_per_token": round(flops), "thinkrl_update_tokens_per_s": round(ours_rate, 1),
           "thinkrl": round(peak_module.fraction_of_peak(flops, ours_rate, peak), 4)}
    if theirs is not None:
        theirs_rate = tokens / statistics.median(s["update"] for s in theirs)
        out.update(trl_update_tokens_per_s=round(theirs_rate, 1),
                   trl=round(peak_module.fraction_of_peak(flops, theirs_rate, peak), 4),
                   ratio_thinkrl_vs_trl=round(ours_rate / theirs_rate, 2))
    return out


def _report(args: argparse.Namespace, num_params: int, max_prompt: int, ours: list[StepRow],
            theirs: list[StepRow] | None, load_before: tuple[float, float, float]) -> dict:
    """The JSON record: per-side medians, the speed-up (ratio of medians and median of paired ratios), settings."""
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    speedup = None
    if theirs is not None:
        paired = [t["total"] / o["total"] for o, t in zip(ours, theirs, strict=True)]
        speedup = {"ratio_of_medians": round(statistics.median(t["total"] for t in theirs)
                                             / statistics.median(o["total"] for o in ours), 2),
                   "median_paired_ratio": round(statistics.median(paired), 2),
                   "paired_ratios": [round(r, 2) for r in paired]}
    return {
        "benchmark": "rl-step",
        "thinkrl": _summarise(ours), "trl": theirs and _summarise(theirs), "speedup_thinkrl_vs_trl": speedup,
        "settings": {
            "model": f"{args.model} (SeedOssForCausalLM, random init)", "model_params": num_params,
            "task": TASK, "difficulty": DIFFICULTY, "prompts": args.prompts, "group_size": args.group_size,
            "completions_per_step": args.prompts * args.group_size, "max_prompt_tokens": max_prompt,
            "max_completion_tokens": args.max_new_tokens, "eos": "ignored on both sides (fixed-length completions)",
            "timed_steps": args.steps, "warmup_steps": 1, "statistic": "median",
            "schedule": "interleaved: TRL step i then thinkrl step i, same process",
            "algorithm": {"loss": "token-level PPO clip (DAPO)", "eps_low": EPS_LOW, "eps_high": EPS_HIGH,
                          "kl_beta": 0.0, "advantage": "group-normalised", "reward": "rule verifier +1/-1",
                          "thinkrl": "dapo preset with dynamic sampling, soft overlong punishment and dual-clip "
                                     "disabled; 1 epoch, 1 mini-batch; weights pushed to the engine's own copy",
                          "trl": "GRPOTrainer loss_type=dapo, num_iterations=1, no vLLM, "
                                 "gradient_checkpointing=False"},
            "optimizer": {"name": "AdamW", "lr": LR, "betas": list(BETAS), "eps": ADAM_EPS, "weight_decay": 0.0,
                          "grad_clip": GRAD_CLIP, "schedule": "constant"},
            "thinkrl_micro_batch_tokens": args.micro_batch_tokens, "device": "cpu", "dtype": "float32",
            "thinkrl_compile_pointwise": args.compile_pointwise, "clock": args.clock},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl_version},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
    }


if __name__ == "__main__":
    main()
