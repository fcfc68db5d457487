"""Cold-start supervised fine-tuning on solution traces rendered in the chat format.

Loss: token-mean NLL over assistant tokens (thinking block + answer), packed
sequences, AdamW with warmup + cosine decay, gradient clipping, atomic sharded checkpoints (`thinkrl.train.dcp`).
Under torchrun the model is sharded with FSDP2 and every rank runs its share of each step's examples (the
Karmarkar-Karp split of `rank_micro_batches`) under the step's global token count, so N ranks take the same steps
as one process; rank 0 writes the metrics and the final model.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR

from thinkrl.model import CausalLM
from thinkrl.rollout import load_problems
from thinkrl.rollout.agent_sft import build_agent_sft_examples
from thinkrl.rollout.environments import build_environment
from thinkrl.tasks import get_task
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.batching import pack_sft_examples, split_micro_batches
from thinkrl.train.common import (
    clipped_step,
    drop_metrics_after,
    encode_sft_example,
    fit_thinking_to_budget,
    forward_responses,
    prepare_run,
    rank_metrics,
    save_policy,
    write_run_recipe,
)
from thinkrl.train.config import SFTRecipe
from thinkrl.train.dcp import Trained, broadcast_resume_step, load_sharded, save_sharded
from thinkrl.train.distributed import DataParallel, closing_data_parallel, data_parallel_from_env, shard_model
from thinkrl.train.metrics import progress
from thinkrl.train.schedule import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


def build_sft_examples(recipe: SFTRecipe, tokenizer: TextTokenizer) -> list[tuple[list[int], list[bool]]]:
    """One traced example per training problem, with ``trace_noise`` mistakes mixed in.

    Each example gets a budget from ``thinking_budgets`` (rendered in its prompt) and a trace that fits it.
    """
    if recipe.agent is not None:  # tool-use transcripts of the environment (docs/agents.md)
        return build_agent_sft_examples(tokenizer, build_environment(recipe.agent.environment, recipe.agent.options),
                                        load_problems(recipe.data, "train"), seed=recipe.data.seed,
                                        noise=recipe.trace_noise, without_tools=recipe.agent.sft_without_tools)
    task = get_task(recipe.data.task)
    rng = random.Random(recipe.data.seed)
    examples = []
    for problem in load_problems(recipe.data, "train"):
        try:
            trace = task.write_trace(problem, rng, noise=recipe.trace_noise)
        except ValueError as error:  # a data file's ground truth the task cannot trace: name the problem
            raise ValueError(f"data: problem {problem.id!r} of task {problem.task!r}: {error}") from None
        budget = rng.choice(recipe.thinking_budgets) if len(recipe.thinking_budgets) > 1 else recipe.thinking_budgets[0]
        thinking = fit_thinking_to_budget(tokenizer, trace.thinking, budget, reflect=recipe.budget_reflections,
                                          reflect_interval=recipe.reflect_interval)
        examples.append(encode_sft_example(tokenizer, problem, thinking, trace.answer, budget))
    return examples


def _batches(examples: list[tuple[list[int], list[bool]]], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then cut into consecutive micro-batches of at most ``max_tokens`` tokens."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in order:
        n = len(examples[i][0])
        if current and size + n > max_tokens:
            batches.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        batches.append(current)
    return batches


def run_sft(recipe: SFTRecipe) -> Path:
    """Train (on every rank under torchrun); returns the folder of the final HF-format model
    (``<output_dir>/final``)."""
    data_parallel = data_parallel_from_env(tensor_parallel=recipe.trainer.tensor_parallel,
                                           shard_size=recipe.trainer.fsdp_shard_size)
    with closing_data_parallel():
        return _run_sft(recipe, data_parallel)


def _run_sft(recipe: SFTRecipe, dp: DataParallel | None) -> Path:
    out, tokenizer, model = prepare_run(recipe, dp)
    if dp is not None:
        shard_model(model, dp, offload=recipe.trainer.offload_optimizer)
    examples = build_sft_examples(recipe, tokenizer)
    rng = random.Random(recipe.trainer.seed)
    steps_per_epoch = len(_batches(examples, recipe.trainer.micro_batch_tokens, random.Random(0)))
    total = min(recipe.trainer.steps, steps_per_epoch * recipe.epochs)
    optimizer = build_optimizer(model.parameters(), recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.optim, total)
    step, epoch = 0, 0
    ckpt_root = out / "checkpoints"
    parts = {"model": Trained(model, optimizer, scheduler)}
    if recipe.trainer.resume and broadcast_resume_step(ckpt_root, dp):
        state = load_sharded(ckpt_root, parts=parts, data_parallel=dp)
        if "epoch" not in state:
            raise ValueError(f"the checkpoint in {ckpt_root} was not saved by thinkrl sft (by thinkrl train?); "
                             "resume it with the command that saved it, or set another trainer.output_dir")
        step, epoch = state["step"], state["epoch"]
        rng.setstate(_decode_rng(state["data_rng"]))
        if dp is None or dp.is_main:
            drop_metrics_after(out, step)
        logger.info("resumed SFT at step %d (epoch %d)", step, epoch)
    write_run_recipe(recipe, out, dp)
    logger.info("SFT: %d examples, %.2fM parameters, %d steps", len(examples),
                sum(p.numel() for p in model.parameters()) / 1e6, total)
    model.train()
    stream = None if dp is None or dp.is_main else io.StringIO()  # one progress bar, rank 0's
    with rank_metrics(out, dp) as metrics, progress(total, "sft", stream=stream) as bar:
        bar.update(step)
        while step < total:
            data_rng_state = _encode_rng(rng.getstate())
            for batch_ids in _batches(examples, recipe.trainer.micro_batch_tokens, rng)[step % steps_per_epoch:]:
                loss = sft_step(model, optimizer, scheduler, [examples[i] for i in batch_ids], recipe, dp)
                step += 1
                bar.update(1, loss=round(loss, 4))
                if step % recipe.trainer.log_every == 0:
                    metrics.log(step, {"loss": loss, "lr": scheduler.get_last_lr()[0], "epoch": epoch})
                if recipe.trainer.save_every and step % recipe.trainer.save_every == 0:
                    save_sharded(ckpt_root, step, parts=parts, recipe=recipe, config=model.config,
                                 trainer_state={"step": step, "epoch": epoch, "data_rng": data_rng_state},
                                 keep_last=recipe.trainer.keep_last, data_parallel=dp)
                if step >= total:
                    break
            epoch += 1
    final = save_policy(model, tokenizer, out / "final", dp)
    logger.info("SFT done: %s", final)
    return final


def sft_step(model: CausalLM, optimizer: torch.optim.Optimizer, scheduler: LambdaLR,
             examples: list[tuple[list[int], list[bool]]], recipe: SFTRecipe, dp: DataParallel | None = None) -> float:
    """One optimizer step on ``examples``; micro-batches balanced by Karmarkar-Karp within the token budget
    (sharded: this rank's share, as many micro-batches as every other rank's, each rank's loss times the number of
    ranks because FSDP2 averages the gradients)."""
    device = model.device
    lengths = [len(ids) for ids, _ in examples]
    total_tokens = sum(sum(mask[1:]) for _, mask in examples)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    parts = (split_micro_batches(lengths, recipe.trainer.micro_batch_tokens) if dp is None
             else dp.micro_batches(lengths, recipe.trainer.micro_batch_tokens))
    for part in parts:
        # An empty part (data parallel) is a zero-weight step on one example: the collectives line up.
        batch = pack_sft_examples([examples[i] for i in part or [0]]).to(device)
        fwd = forward_responses(model, batch)
        loss = -(fwd.logprobs * batch.response_mask).sum() / total_tokens + fwd.aux_loss * (len(part) / len(lengths))
        if not torch.isfinite(loss) and dp is None:  # (sharded: the global gradient norm catches it on every rank)
            raise FloatingPointError("SFT loss is not finite; stopping before the weights are corrupted")
        (loss * (0.0 if not part else 1.0 if dp is None else dp.loss_scale)).backward()
        loss_sum += float(loss.detach()) if part else 0.0
    if dp is not None:
        loss_sum = dp.all_reduce_sum([loss_sum])[0]
    clipped_step(optimizer, model.parameters(), recipe.optim.grad_clip, FloatingPointError, "SFT gradient")
    scheduler.step()
    return loss_sum


def _encode_rng(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _decode_rng(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])
