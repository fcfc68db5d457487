"""Sharded, reshardable, atomic training checkpoints with ``torch.distributed.checkpoint`` (DCP).

What `thinkrl train` and `thinkrl sft` save, on one rank or many. Layout under a checkpoint root
(``<output_dir>/checkpoints``)::

    latest                      text file naming the newest complete checkpoint ("step-00000004")
    step-00000004/
        .metadata, __R_0.distcp DCP: each rank's shards of the trained modules and their optimizers, keyed by
                                parameter name (FQN), so the checkpoint loads on any number of ranks or in a
                                single process without a process group (resharding is DCP's load plan)
        <name>.pt               small replicated states, written by rank 0: the LR schedulers
        config.json             the policy's HF config (`export_policy` rebuilds the model from it)
        recipe.yaml             the resolved recipe of the run
        trainer_state.json      format_version 2, step, the trainer's state (data cursor, rollout state),
                                every rank's RNG states, the world size, and the size and CRC-32 of every
                                file above (checked at load: `thinkrl.train.checksums`)

Atomic: every rank writes into ``tmp-step-XXXXXXXX``; once DCP's save returns (its finish step is a collective,
so every shard is on disk), rank 0 writes the small files, fsyncs the folder and renames it
(`thinkrl.train.checkpoint.commit_checkpoint`), and only then replaces ``latest``; the other ranks wait at a
barrier. A kill at any point leaves the previous ``latest`` complete and loadable; the stale ``tmp-*`` folder is
ignored by loading and removed by the next save.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from pydantic import BaseModel
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.spec import read_yaml
from thinkrl.train.checkpoint import (
    STATE_FILE,
    Checkpoint,
    begin_checkpoint,
    capture_rng,
    commit_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
)
from thinkrl.train.checksums import file_manifest
from thinkrl.train.config import save_resolved
from thinkrl.train.distributed import DataParallel, barrier, broadcast_object, gather_objects
from thinkrl.train.folders import fsync_tree

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
KILL_IN_SAVE_ENV = "THINKRL_TEST_KILL_IN_SAVE"
"""Test hook: ``THINKRL_TEST_KILL_IN_SAVE=STEP`` makes rank 0 SIGKILL itself in the save of STEP after every shard
is written and before the rename (the worst moment for atomicity). Unset in real runs."""


@dataclass
class Trained:
    """One trained module of a checkpoint with its optimizer and schedule (e.g. the actor's or the critic's).

    Fields:
        model: the module (sharded with FSDP2 or not; its state is saved by parameter name either way).
        optimizer: its optimizer (None: not saved).
        scheduler: its LR schedule (None: not saved); small, replicated, written by rank 0.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


def _dcp_state(parts: Mapping[str, Trained]) -> dict[str, Any]:
    """The DCP state dict: ``{name: model state, name_optimizer: optimizer state}`` (FQN-keyed; under FSDP2 the
    tensors are this rank's DTensor shards)."""
    state: dict[str, Any] = {}
    for name, part in parts.items():
        optimizers = (part.optimizer,) if part.optimizer is not None else ()
        model_state, optim_state = get_state_dict(part.model, optimizers)
        state[name] = model_state
        if part.optimizer is not None:
            state[f"{name}_optimizer"] = optim_state
    return state


def save_sharded(root: str | Path, step: int, *, parts: Mapping[str, Trained], trainer_state: Mapping[str, Any],
                 recipe: BaseModel, config: ModelConfig | None, keep_last: int | None,
                 data_parallel: DataParallel | None) -> Path:
    """Save a checkpoint of ``parts`` (call on every rank: it is a collective); returns the step folder.

    Args:
        root: checkpoint root (created if missing).
        step: training step (>= 0).
        parts: the trained modules by name (``"model"`` is the policy; names are lowercase snake case).
        trainer_state: JSON-serialisable state of the loop (data cursor, rollout state, epoch...).
        recipe: the resolved recipe, written as ``recipe.yaml``.
        config: the policy's config, written as ``config.json`` (None: no export possible).
        keep_last: keep only the newest this-many checkpoints (None keeps all).
        data_parallel: this rank's group, or None for a single process.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last ({keep_last}) must be >= 1 or None")
    state_json = json.dumps(dict(trainer_state))  # fails here, on every rank, before anything is written
    root = Path(root)
    tmp = root / f"tmp-step-{step:08d}"
    if data_parallel is None or data_parallel.is_main:
        tmp = begin_checkpoint(root, step)
    barrier(data_parallel)
    with _single_process_ok(), _interrupts_unwrapped():
        dcp.save(_dcp_state(parts), checkpoint_id=str(tmp))
    rngs = gather_objects(capture_rng(), data_parallel)
    final = root / f"step-{step:08d}"
    if data_parallel is None or data_parallel.is_main:
        for name, part in parts.items():
            if part.scheduler is not None:
                torch.save(part.scheduler.state_dict(), tmp / f"{name}_scheduler.pt")
        if config is not None:
            (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2, sort_keys=True))
        save_resolved(recipe, tmp / "recipe.yaml")
        record = {"format_version": FORMAT_VERSION, "step": step, "trainer_state": json.loads(state_json),
                  "rng": rngs[0], "rng_per_rank": rngs, "world_size": len(rngs), **file_manifest(tmp)}
        (tmp / STATE_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        fsync_tree(tmp)
        if os.environ.get(KILL_IN_SAVE_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        final = commit_checkpoint(root, tmp, step, keep_last)
    barrier(data_parallel)
    return final


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    """Silence DCP's warning that it saves/loads in a single process without a process group: here that is meant
    (a plain ``thinkrl train``, or a 1-rank resume of an N-rank checkpoint)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


@contextlib.contextmanager
def _interrupts_unwrapped() -> Iterator[None]:
    """A Ctrl-C or SIGTERM (`KeyboardInterrupt`) inside ``dcp.save``/``dcp.load`` comes out wrapped in DCP's
    `CheckpointException`: raise it as itself, so the run ends as interrupted, not as a failed save or a damaged
    checkpoint (the half-written ``tmp-step-*`` folder is removed by the next save)."""
    try:
        yield
    except CheckpointException as error:
        for cause, _ in error.failures.values():
            if isinstance(cause, KeyboardInterrupt):
                raise cause from None
        raise


def has_checkpoint(root: str | Path) -> bool:
    """Whether ``root`` holds a complete checkpoint (its ``latest`` names one)."""
    return Path(root).is_dir() and latest_checkpoint(root) is not None


def _verified_checkpoint(root_or_step_dir: str | Path, data_parallel: DataParallel | None) -> Checkpoint:
    """The checkpoint every rank loads: rank 0 finds it (``latest``) and checks every file's CRC-32, the other ranks
    check the sizes of the same step folder (N ranks reading every byte would cost N times the checkpoint). Rank 0's
    error is raised on every rank at once: one rank raising alone would leave the others waiting in ``dcp.load``."""
    if data_parallel is None or data_parallel.world_size == 1:
        return load_checkpoint(root_or_step_dir)
    verdict: tuple[str, str] | None = None
    if data_parallel.is_main:
        try:
            verdict = ("ok", str(load_checkpoint(root_or_step_dir).path))
        except (OSError, ValueError) as error:
            verdict = (type(error).__name__, str(error))
    kind, detail = broadcast_object(verdict, data_parallel)
    if kind != "ok":
        raise {"FileNotFoundError": FileNotFoundError, "ValueError": ValueError}.get(kind, OSError)(detail)
    return load_checkpoint(detail, verify_crc=False)


def load_sharded(root_or_step_dir: str | Path, *, parts: Mapping[str, Trained],
                 data_parallel: DataParallel | None, rng: bool = True) -> dict[str, Any]:
    """Load ``parts`` (and this rank's RNG states) from a checkpoint saved on any number of ranks; returns the
    trainer state. Call on every rank. Raises FileNotFoundError / ValueError naming a missing or damaged file."""
    ckpt = _verified_checkpoint(root_or_step_dir, data_parallel)
    record = ckpt.record
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{ckpt.path} is a format-{record.get('format_version')} checkpoint (single-process, "
                         f"HF weights); load it with thinkrl.train.checkpoint.restore_checkpoint")
    state = _dcp_state(parts)
    try:
        with _single_process_ok(), _interrupts_unwrapped():
            dcp.load(state, checkpoint_id=str(ckpt.path))
    except CheckpointException as error:  # a BaseException: name the cause (damaged shard, another model's shapes)
        causes = "; ".join(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                           for exc, _ in error.failures.values())
        raise ValueError(f"checkpoint {ckpt.path} cannot be loaded into this run (damaged, or saved from another "
                         f"model): {causes}") from error
    for name, part in parts.items():
        optimizers = (part.optimizer,) if part.optimizer is not None else ()
        set_state_dict(part.model, optimizers, model_state_dict=state[name],
                       optim_state_dict=state.get(f"{name}_optimizer", {}))
        if part.scheduler is not None:
            file = ckpt.path / f"{name}_scheduler.pt"
            if not file.is_file():
                raise FileNotFoundError(f"checkpoint file {file} is missing")
            part.scheduler.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    if rng:
        rank = data_parallel.rank if data_parallel is not None else 0
        per_rank = record["rng_per_rank"]
        # A rank the saving run did not have takes rank 0's states (the loop's own randomness is seeded per step).
        restore_rng(per_rank[rank] if rank < len(per_rank) else per_rank[0])
    logger.info("loaded checkpoint %s (saved on %d ranks)", ckpt.path, record["world_size"])
    return ckpt.trainer_state


def export_policy(step_dir: str | Path, out: str | Path) -> Path:
    """Write the checkpoint's policy (``parts["model"]``) as a Hugging Face folder (config.json + safetensors + the
    run's tokenizer files, so ``thinkrl generate --model out`` works), in a single process: rebuild the model from
    ``config.json`` and load its full tensors from the shards of any number of ranks."""
    from thinkrl.train.common import build_tokenizer, save_policy
    from thinkrl.train.specs import TokenizerSpec

    ckpt = load_checkpoint(step_dir)
    if Path(out).resolve().is_relative_to(ckpt.path.parent.resolve()):
        raise ValueError(f"export folder {out} is inside the checkpoint root {ckpt.path.parent}; write the Hugging "
                         "Face folder elsewhere (its files would mix with the checkpoints')")
    config_file = ckpt.path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"checkpoint file {config_file} is missing (saved without a policy config)")
    model = build_model(ModelConfig.from_hf_dict(json.loads(config_file.read_text())), seed=None)
    load_sharded(ckpt.path, parts={"model": Trained(model)}, data_parallel=None, rng=False)
    recipe = read_yaml(ckpt.recipe_path.read_text(encoding="utf-8"), f"checkpoint recipe {ckpt.recipe_path}") or {}
    tokenizer = build_tokenizer(TokenizerSpec.model_validate(recipe.get("tokenizer") or {}))
    return save_policy(model, tokenizer, out)


def full_state_copy(model: CausalLM, data_parallel: DataParallel | None) -> CausalLM | None:
    """An unsharded copy of ``model`` on rank 0's CPU (None on the other ranks; ``model`` itself without a process
    group), e.g. to write the final HF folder. A collective: call it on every rank."""
    if data_parallel is None:
        return model
    from thinkrl.train.distributed import full_weights

    weights = dict(full_weights(model))  # every rank takes part in the all-gathers
    if not data_parallel.is_main:
        return None
    copy = build_model(model.config, dtype=next(iter(weights.values())).dtype, seed=None)
    with torch.no_grad():
        for name, param in copy.named_parameters():
            param.copy_(weights[name].cpu())
    return copy


def broadcast_resume_step(root: Path, data_parallel: DataParallel | None) -> bool:
    """Whether ``root`` holds a checkpoint to resume from, as rank 0 sees it (every rank gets the same answer)."""
    return bool(broadcast_object(has_checkpoint(root), data_parallel))
