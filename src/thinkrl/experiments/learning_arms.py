"""The parts of the learning protocol that train and evaluate: an SFT loop over given examples (cold start,
continued SFT, RFT), sampling and evaluation of a model, and the three arms from one cold start.

Every arm charges its FLOPs to a `ComputeLedger` (`learning_compute`); the RL arm runs first and its total is
the budget the two controls spend (continued SFT on fresh traces; rejection-sampling fine-tuning on the policy's
own correct samples), each stopping at the first step that reaches it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from thinkrl.engine import LLMEngine
from thinkrl.eval.evaluate import EvalResult, eval_requests, summarise
from thinkrl.experiments.learning_compute import ComputeLedger, rl_step_compute
from thinkrl.experiments.learning_data import Example, Splits, response_example, trace_examples
from thinkrl.model import CausalLM, load_pretrained
from thinkrl.records import Trajectory
from thinkrl.rollout import judge, render_prompt, sample
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.batching import pack_sft_examples, split_micro_batches
from thinkrl.train.common import clipped_step, forward_responses, save_policy
from thinkrl.train.config import RLRecipe, load_recipe
from thinkrl.train.metrics import read_metrics
from thinkrl.train.rl_loop import run_rl
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import OptimSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSettings:
    """How responses are sampled for RFT and evaluation: ``max_new_tokens`` limit, ``num_slots`` engine slots."""

    max_new_tokens: int = 48
    num_slots: int = 128


# --- SFT on given examples -----------------------------------------------------------------------------------


def token_batches(examples: Sequence[Example], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Shuffle the example indices, then cut into consecutive batches of at most ``max_tokens`` tokens."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = [[]]
    size = 0
    for i in order:
        n = len(examples[i][0])
        if batches[-1] and size + n > max_tokens:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += n
    return [b for b in batches if b]


def sft_update(model: CausalLM, optimizer: torch.optim.Optimizer, examples: Sequence[Example],
               micro_batch_tokens: int, grad_clip: float | None) -> float:
    """One optimizer step of token-mean NLL over the assistant tokens of ``examples``; returns the loss."""
    total_tokens = sum(sum(mask[1:]) for _, mask in examples)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for part in split_micro_batches([len(ids) for ids, _ in examples], micro_batch_tokens):
        batch = pack_sft_examples([examples[i] for i in part]).to(model.device)
        fwd = forward_responses(model, batch)
        loss = -(fwd.logprobs * batch.response_mask).sum() / total_tokens
        loss.backward()
        loss_sum += float(loss.detach())
    clipped_step(optimizer, model.parameters(), grad_clip, FloatingPointError, "SFT gradient")
    return loss_sum


class SFTRunner:
    """AdamW + schedule over a fixed number of steps; ``step(examples)`` trains one batch and charges its FLOPs."""

    def __init__(self, model: CausalLM, optim: OptimSpec, total_steps: int, batch_tokens: int,
                 ledger: ComputeLedger) -> None:
        self.model, self.batch_tokens, self.ledger, self.optim = model, batch_tokens, ledger, optim
        self.optimizer = build_optimizer(model.parameters(), optim)
        self.scheduler = build_scheduler(self.optimizer, optim, total_steps)
        self.steps = 0

    def step(self, examples: Sequence[Example]) -> float:
        """One update on ``examples``."""
        self.model.train()
        loss = sft_update(self.model, self.optimizer, examples, self.batch_tokens, self.optim.grad_clip)
        self.scheduler.step()
        for ids, _ in examples:
            self.ledger.add_trained(len(ids))
        self.steps += 1
        return loss


# --- sampling and evaluation ---------------------------------------------------------------------------------


def engine_for(model: CausalLM, tokenizer: TextTokenizer, settings: SampleSettings) -> LLMEngine:
    """A sampling engine on a copy of ``model``'s current weights (the engine owns its model)."""
    return LLMEngine(copy.deepcopy(model).eval(), tokenizer, num_slots=settings.num_slots,
                     max_seq_len=160 + settings.max_new_tokens)


def sample_responses(model: CausalLM, tokenizer: TextTokenizer, problems: Sequence[Problem], samples: int,
                     temperature: float, settings: SampleSettings, seed: int) -> list[Trajectory]:
    """``samples`` judged responses per problem (consecutive), seeded per request."""
    items = eval_requests(tokenizer, list(problems), samples=samples, temperature=temperature,
                          max_new_tokens=settings.max_new_tokens, thinking_budget=-1, seed=seed)
    trajs = sample(engine_for(model, tokenizer, settings), tokenizer, items)
    judge(trajs, tokenizer)
    return trajs


def evaluate_final(model: CausalLM, tokenizer: TextTokenizer, problems: Sequence[Problem], samples: int,
                   settings: SampleSettings, seed: int) -> dict[str, object]:
    """Greedy accuracy, avg@k and unbiased pass@k (temperature 1) and response length of one model."""
    greedy = summarise(sample_responses(model, tokenizer, problems, 1, 0.0, settings, seed), len(problems), 1)
    sampled = summarise(sample_responses(model, tokenizer, problems, samples, 1.0, settings, seed),
                        len(problems), samples)
    return {"greedy_accuracy": greedy.accuracy, "avg_at_k": sampled.accuracy, "k": samples,
            "pass_at": {str(k): v for k, v in sampled.pass_at.items()},
            "mean_response_tokens": sampled.mean_response_tokens,
            "greedy_response_tokens": greedy.mean_response_tokens, "num_problems": len(problems)}


def greedy_accuracy(model: CausalLM, tokenizer: TextTokenizer, problems: Sequence[Problem],
                    settings: SampleSettings) -> EvalResult:
    """Greedy accuracy (one sample at temperature 0) on ``problems``."""
    return summarise(sample_responses(model, tokenizer, problems, 1, 0.0, settings, 0), len(problems), 1)


# --- the arms ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmResult:
    """One trained arm: its final model folder, the FLOPs it spent and its training log rows."""

    model_dir: Path
    compute: dict[str, float]
    log: list[dict[str, float]]


def run_rl_arm(recipe_path: str | Path, cold_dir: Path, paths: dict[str, Path], out: Path, seed: int,
               overrides: Sequence[str], ledger: ComputeLedger, prompt_tokens: int) -> ArmResult:
    """DAPO from the cold start with `run_rl`; validation set as its held-out set; FLOPs from its metrics log."""
    recipe = load_recipe(recipe_path, RLRecipe, [
        f"model.path={cold_dir}", f"data.train_file={paths['train']}", f"data.test_file={paths['val']}",
        f"trainer.output_dir={out}", f"trainer.seed={seed}", f"data.seed={seed}", *overrides])
    final = run_rl(recipe)
    rows = read_metrics(out / "metrics.jsonl")
    for row in rows:
        if "groups_sampled" in row:
            rl_step_compute(ledger, row, recipe.rollout.group_size, prompt_tokens)
    keep = ("step", "reward", "accuracy", "response_length_mean", "eval/accuracy", "groups_sampled",
            "groups_kept_trained")
    log = [{k: row[k] for k in keep if k in row} for row in rows]
    return ArmResult(final, ledger.to_dict(), log)


def run_sft_more_arm(cold_dir: Path, tokenizer: TextTokenizer, splits: Splits, out: Path, seed: int,
                     optim: OptimSpec, batch_tokens: int, ledger: ComputeLedger, budget: float,
                     search_attempts: int = 0, terse_share: float = 0.0) -> ArmResult:
    """Continued SFT on fresh correct traces of the train split (new trace draws each epoch; ``search_attempts``
    and ``terse_share`` as in `learning_data.trace_examples`), constant learning rate, stopping at the first step
    whose FLOPs reach ``budget``."""
    model = load_pretrained(cold_dir, device="cpu")
    runner = SFTRunner(model, optim.model_copy(update={"schedule": "constant", "warmup_steps": 0}), 1_000_000,
                       batch_tokens, ledger)
    rng, epoch, log = random.Random(seed * 7 + 1), 0, []
    while ledger.total < budget:
        examples = trace_examples(tokenizer, splits.train, random.Random(f"{seed}:{epoch}"), search_attempts,
                                  terse_share)
        for batch in token_batches(examples, batch_tokens, rng):
            loss = runner.step([examples[i] for i in batch])
            if runner.steps % 50 == 0 or ledger.total >= budget:
                log.append({"step": runner.steps, "loss": loss, "flops": float(ledger.total)})
            if ledger.total >= budget:
                break
        epoch += 1
    return ArmResult(save_policy(model, tokenizer, out / "final"), ledger.to_dict(), log)


@dataclass(frozen=True)
class RFTSettings:
    """Rejection-sampling fine-tuning: per iteration ``prompts`` train prompts x ``samples`` responses at
    temperature 1; the distinct correct ones are trained on for ``epochs`` passes; repeat until the budget."""

    prompts: int = 128
    samples: int = 4
    epochs: int = 1


def run_rft_arm(cold_dir: Path, tokenizer: TextTokenizer, splits: Splits, out: Path, seed: int, optim: OptimSpec,
                batch_tokens: int, rft: RFTSettings, sampling: SampleSettings, ledger: ComputeLedger,
                budget: float, max_iterations: int = 1000) -> ArmResult:
    """RFT from the cold start until ``budget`` FLOPs are spent (constant learning rate)."""
    model = load_pretrained(cold_dir, device="cpu")
    runner = SFTRunner(model, optim.model_copy(update={"schedule": "constant", "warmup_steps": 0}), 1_000_000,
                       batch_tokens, ledger)
    rng, log = random.Random(seed * 11 + 3), []
    order = list(splits.train)
    for iteration in range(max_iterations):
        if ledger.total >= budget:
            break
        if iteration * rft.prompts % len(order) == 0:
            rng.shuffle(order)
        start = iteration * rft.prompts % len(order)
        prompts = (order + order)[start:start + rft.prompts]
        trajs = sample_responses(model, tokenizer, prompts, rft.samples, 1.0, sampling, seed * 1000 + iteration)
        for t in trajs:
            ledger.add_sampled(len(t.prompt_ids), len(t.response_ids))
        kept = _distinct_correct(trajs)
        loss = _train_until(runner, kept, rft.epochs, batch_tokens, rng, ledger, budget)
        log.append({"iteration": iteration + 1, "sample_accuracy": sum(bool(t.correct) for t in trajs) / len(trajs),
                    "kept": len(kept), "loss": loss, "flops": float(ledger.total), "steps": runner.steps})
    return ArmResult(save_policy(model, tokenizer, out / "final"), ledger.to_dict(), log)


def _distinct_correct(trajs: Sequence[Trajectory]) -> list[Example]:
    """The correct responses, one per distinct (prompt, response) pair."""
    seen, kept = set(), []
    for t in trajs:
        key = (tuple(t.prompt_ids), tuple(t.response_ids))
        if t.correct and key not in seen:
            seen.add(key)
            kept.append(response_example(t.prompt_ids, t.response_ids))
    return kept


def _train_until(runner: SFTRunner, examples: list[Example], epochs: int, batch_tokens: int, rng: random.Random,
                 ledger: ComputeLedger, budget: float) -> float:
    """``epochs`` passes over ``examples`` (stopping at the budget); returns the last loss (nan if none)."""
    loss = float("nan")
    for _ in range(epochs):
        for batch in token_batches(examples, batch_tokens, rng):
            if ledger.total >= budget:
                return loss
            loss = runner.step([examples[i] for i in batch])
    return loss


def prompt_length(tokenizer: TextTokenizer, problems: Sequence[Problem]) -> int:
    """Mean rendered prompt length in tokens (the RL FLOP count uses it for every sampled response)."""
    return round(sum(len(render_prompt(tokenizer, p).prompt_ids) for p in problems) / max(1, len(problems)))


def write_json(path: Path, data: object) -> None:
    """Pretty JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
