"""Pieces shared by the SFT and RL loops: building the policy, loading problems, rendering, log-probs."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from thinkrl.model import CausalLM, ModelConfig, build_model, load_pretrained, resolve_device
from thinkrl.rl import entropy_from_logits, token_logprobs
from thinkrl.tasks import Problem, Task, get_task
from thinkrl.tokenizer import BUILTIN_DIR, TextTokenizer, load_tokenizer
from thinkrl.tokenizer.budget import reflection_interval, reflection_text
from thinkrl.train.batching import PackedBatch
from thinkrl.train.config import save_resolved
from thinkrl.train.dcp import broadcast_resume_step
from thinkrl.train.folders import replace_folder
from thinkrl.train.metrics import METRICS_FILE, MetricsLogger
from thinkrl.train.specs import DEFAULT_ARCHITECTURE, ModelSpec, TokenizerSpec

if TYPE_CHECKING:  # torch.distributed is imported only where a run is sharded
    from thinkrl.train.distributed import DataParallel


def build_tokenizer(spec: TokenizerSpec) -> TextTokenizer:
    return load_tokenizer(spec.path)


def build_policy(spec: ModelSpec, tokenizer: TextTokenizer, seed: int) -> CausalLM:
    """Load ``spec.path`` or build a fresh model from ``spec.init`` (HF config fields)."""
    device = resolve_device(spec.device)
    if spec.path is not None:
        return load_pretrained(spec.path, device=device, dtype=spec.dtype)
    init: dict[str, Any] = {"architectures": [DEFAULT_ARCHITECTURE], "vocab_size": tokenizer.vocab_size,
                            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                            "pad_token_id": tokenizer.pad_token_id}
    init.update(spec.init or {})  # (a bare architecture name is read as a list by `ModelConfig.from_hf_dict`)
    if init["vocab_size"] < tokenizer.vocab_size:
        raise ValueError(f"model.init.vocab_size ({init['vocab_size']}) is smaller than the tokenizer's "
                         f"vocabulary ({tokenizer.vocab_size})")
    return build_model(ModelConfig.from_hf_dict(init), device=device, dtype=spec.dtype, seed=seed)


def encode_sft_example(tokenizer: TextTokenizer, problem: Problem, thinking: str, answer: str,
                       thinking_budget: int = -1) -> tuple[list[int], list[bool]]:
    """Token ids of prompt + assistant turn and the loss mask (True on assistant tokens).

    The prompt ids equal ``tokenizer.encode_chat`` of the user turn, which RL and evaluation sample from.
    With budget 0 the generation prompt already closes the thinking block, so the target is just the answer.
    """
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": problem.prompt}],
                                           add_generation_prompt=True, thinking_budget=thinking_budget)
    if thinking_budget == 0:
        eos = tokenizer.id_to_token(tokenizer.eos_token_id) if tokenizer.eos_token_id is not None else ""
        completion = "\n" + answer + (eos or "")
    else:
        messages = [{"role": "user", "content": problem.prompt},
                    {"role": "assistant", "content": answer, "reasoning_content": thinking}]
        full = tokenizer.apply_chat_template(messages, add_generation_prompt=False, thinking_budget=thinking_budget)
        if not full.startswith(prompt):
            raise ValueError("chat template renders the assistant turn inconsistently with the generation prompt")
        completion = full[len(prompt):]
    prompt_ids, completion_ids = tokenizer.encode(prompt), tokenizer.encode(completion)
    return prompt_ids + completion_ids, [False] * len(prompt_ids) + [True] * len(completion_ids)


def add_budget_reflections(tokenizer: TextTokenizer, thinking: str, budget: int, interval: int | None = None) -> str:
    """``thinking`` with a Seed-OSS budget reflection after every ``interval`` trace tokens, below ``budget``.

    Each reflection, on a line of its own between the format's reflect tags, reads "I have used k tokens, and there
    are budget - k tokens remaining for use.", k being the thinking tokens before its tag as the engine counts a
    model's sampled tokens (earlier reflections included). ``interval`` None takes the Seed-OSS table
    (`reflection_interval`: 128 up to a 512 budget, ...). Budgets 0 and -1 get none.
    """
    if budget <= 0:
        return thinking
    interval = reflection_interval(budget) if interval is None else interval
    if interval < 1:
        raise ValueError(f"reflection interval must be >= 1, got {interval}")
    tags = tokenizer.think_tags
    ids = tokenizer.encode(thinking)
    text, last = "", 0
    for cut in range(interval, len(ids), interval):
        text += tokenizer.decode(ids[last:cut])
        last = cut
        # What the engine counts when the model writes the tag: everything before it (the tag is one special token
        # or at least tokenised apart).
        used = len(tokenizer.encode(text + "\n" + tags.reflect_open)) - len(tokenizer.encode(tags.reflect_open))
        if used >= budget:
            break
        text += f"\n{tags.reflect_open}{reflection_text(used, budget - used)}{tags.reflect_close}\n"
    return text + tokenizer.decode(ids[last:])


def fit_thinking_to_budget(tokenizer: TextTokenizer, thinking: str, budget: int, reflect: bool = False,
                           reflect_interval: int | None = None) -> str:
    """The longest prefix of whole reasoning lines that fits in ``budget`` tokens (-1: all; 0: none).

    Budget-aware SFT: a model told to think at most B tokens sees traces that stop thinking in time and then
    answer — from partial reasoning when the full trace is longer (so accuracy can depend on the budget).
    With ``reflect`` the trace gets `add_budget_reflections`, and the reflections count toward the budget (the
    model writes them, and the engine counts every sampled thinking token).
    """
    def render(text: str) -> str:
        return add_budget_reflections(tokenizer, text, budget, reflect_interval) if reflect else text

    if budget < 0:
        return render(thinking)
    kept: list[str] = []
    for line in thinking.split("\n"):
        candidate = "\n".join([*kept, line])
        if len(tokenizer.encode(render(candidate))) > budget:
            break
        kept.append(line)
    return render("\n".join(kept))


def task_of(problem: Problem) -> Task:
    return get_task(problem.task)


@dataclass
class ResponseForward:
    """Per-response-token outputs of one packed forward.

    Fields:
        logprobs: (S, R) float32 log-probabilities of the response tokens.
        entropy: (S, R) float32 entropy of the predictive distribution (detached).
        aux_loss: () MoE load-balancing loss (0 for dense models).
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor
    aux_loss: torch.Tensor


def forward_responses(model: CausalLM, batch: PackedBatch, temperature: float = 1.0) -> ResponseForward:
    """Packed forward; logits are computed only where a response token is predicted."""
    out = model(batch.input_ids, batch.position_ids, batch.cu_seqlens)
    hidden = out.hidden[batch.response_index]  # [S, R, C]
    logits = model.logits(hidden).float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    with torch.no_grad():
        entropy = entropy_from_logits(logits)
    return ResponseForward(token_logprobs(logits, batch.response_ids), entropy, out.aux_loss)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is a dependency, but seeding must not be the reason a run fails
        pass


def save_policy(model: CausalLM, tokenizer: TextTokenizer, folder: str | Path,
                data_parallel: DataParallel | None = None) -> Path:
    """HF-format weights plus the tokenizer files, so ``thinkrl generate --model folder`` just works. The folder is
    replaced whole (`replace_folder`); an existing folder that is not a model folder is refused (FileExistsError).
    Sharded (``data_parallel`` set): the full tensors are gathered (call on every rank) and rank 0 writes."""
    from thinkrl.model import save_pretrained
    from thinkrl.train.dcp import full_state_copy

    folder = Path(folder)
    full = full_state_copy(model, data_parallel)  # (a collective: every rank gets here before any may raise)
    if full is not None:
        if folder.is_dir() and any(folder.iterdir()) and not (folder / "config.json").is_file():
            raise FileExistsError(f"{folder} exists and is not a model folder (no config.json): not replacing it; "
                                  "give a new or empty folder")

        def write(tmp: Path) -> None:
            save_pretrained(full, tmp)
            _copy_tokenizer_files(tokenizer, tmp)

        replace_folder(folder, write)
    return folder


class SilentMetrics(MetricsLogger):
    """The metrics logger of a rank other than 0: logs nothing (rank 0 writes the run's metrics)."""

    def __init__(self) -> None:  # no file, no TensorBoard writer
        self._file, self._writer = None, None

    def log(self, step: int, metrics: Any) -> None:
        pass


def rank_metrics(out: Path, data_parallel: DataParallel | None, **kwargs: Any) -> MetricsLogger:
    """``MetricsLogger(out)`` on rank 0 (or a single process), a `SilentMetrics` elsewhere."""
    if data_parallel is None or data_parallel.is_main:
        return MetricsLogger(out, **kwargs)
    return SilentMetrics()


def drop_metrics_after(out: Path, step: int) -> None:
    """Remove the rows of ``out/metrics.jsonl`` logged after ``step``: a run killed after logging a step but
    before checkpointing it re-runs that step on resume, and its row must appear once."""
    path = out / METRICS_FILE
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _row_step(line) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def _row_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):  # a line cut by the kill: drop it
        return 1 << 62


def _copy_tokenizer_files(tokenizer: TextTokenizer, folder: Path) -> None:
    import shutil

    source = BUILTIN_DIR if tokenizer.name_or_path == "builtin" else Path(tokenizer.name_or_path)
    if source.is_dir():
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                     "generation_config.json"):
            if (source / name).exists():
                shutil.copy(source / name, folder / name)


def prepare_run(recipe: Any, data_parallel: DataParallel | None = None) -> tuple[Path, TextTokenizer, CausalLM]:
    """What every training recipe does first: seed everything, build the tokenizer and the model (the same seed on
    every rank, so every rank starts from the same weights). The output folder (``trainer.output_dir`` or
    ``runs/<name>``) is not touched yet: `write_run_recipe` creates it once the run's inputs are checked.

    Returns (output folder, tokenizer, model).
    """
    if recipe.trainer.tensor_parallel > 1 and data_parallel is None:
        raise ValueError(f"trainer.tensor_parallel={recipe.trainer.tensor_parallel} needs torchrun")
    if recipe.trainer.tensor_parallel > 1 and recipe.trainer.offload_optimizer:
        raise ValueError("trainer.offload_optimizer with trainer.tensor_parallel > 1 is not implemented")
    if recipe.trainer.offload_optimizer and data_parallel is None:
        raise ValueError("trainer.offload_optimizer needs FSDP2: launch with torchrun (python -m torch.distributed.run "
                         "--nproc-per-node N -m thinkrl ...; N = 1 works)")
    out = Path(recipe.trainer.output_dir or f"runs/{recipe.name}")
    if not recipe.trainer.resume and broadcast_resume_step(out / "checkpoints", data_parallel):
        # a fresh run there would overwrite the earlier run's step folders and prune the rest (keep_last)
        raise ValueError(f"{out / 'checkpoints'} holds an earlier run's checkpoints: pass --resume to continue that "
                         "run, or set trainer.output_dir to another folder (or remove that one)")
    seed_everything(recipe.trainer.seed)
    tokenizer = build_tokenizer(recipe.tokenizer)
    model = build_policy(recipe.model, tokenizer, seed=recipe.trainer.seed)
    model.activation_checkpointing = recipe.trainer.activation_checkpointing
    return out, tokenizer, model


def write_run_recipe(recipe: Any, out: Path, data_parallel: DataParallel | None = None) -> None:
    """Create the output folder and save the resolved recipe there (rank 0 only). Called once the model, the data and
    a resumed checkpoint loaded: input refused before then leaves no folder, and never overwrites the recipe.yaml of
    an earlier run in the same folder."""
    if data_parallel is None or data_parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_resolved(recipe, out / "recipe.yaml")


def clipped_step(optimizer: torch.optim.Optimizer, parameters: Any, grad_clip: float | None,
                 error: type[Exception], what: str = "gradient") -> float:
    """Clip the gradients to ``grad_clip`` (None: no clipping) and step, unless their norm is NaN/inf.

    A non-finite norm clears the gradients and raises ``error`` before ``optimizer.step()``, so the weights
    (and the last checkpoint) stay good. Returns the norm before clipping.
    """
    params = [p for p in parameters if p.grad is not None]
    if len({getattr(p.grad, "device_mesh", None) for p in params}) > 1:  # tensor parallel: several meshes
        from thinkrl.train.tensor_parallel import clip_grad_norm

        norm = clip_grad_norm(params, grad_clip or float("inf"))
    else:
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf")))
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        raise error(f"{what} norm is {norm}; the step was not applied")
    optimizer.step()
    return norm
