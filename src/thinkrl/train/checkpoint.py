"""Atomic training checkpoints: save, find, load, restore (weights, optimizer, scheduler, RNG).

`thinkrl train` / `thinkrl sft` write the sharded, reshardable format of `thinkrl.train.dcp` (format 2), which
uses this module's atomic commit (`begin_checkpoint`, `commit_checkpoint`), lookup and verification
(`latest_checkpoint`, `load_checkpoint`) and RNG capture. `save_checkpoint` / `restore_checkpoint` below are the
single-process format 1 (HF weights + ``torch.save`` state dicts), kept for plain modules and old run folders.

Layout under a checkpoint root (usually ``<output_dir>/checkpoints``)::

    latest                  text file naming the newest complete checkpoint ("step-00000100")
    step-00000100/
        config.json         HF model config  } a Hugging Face folder: `thinkrl.model.load_pretrained`
        model.safetensors   weights          } (and HF tools) load it directly
        optimizer.pt        torch.save(optimizer.state_dict())
        scheduler.pt        torch.save(scheduler.state_dict())
        <name>.pt           state_dict of each extra object (e.g. a critic and its optimizer)
        recipe.yaml         the resolved recipe of the run
        trainer_state.json  step, the caller's trainer state, RNG states, size and CRC-32 of every file above

A checkpoint is written into ``tmp-step-XXXXXXXX``, every file fsynced, then renamed to
``step-XXXXXXXX``; only then is ``latest`` replaced (write + fsync + ``os.replace``). A crash at
any point leaves the previous ``latest`` checkpoint complete and loadable; stale ``tmp-*``
folders are ignored by loading and removed by the next save. Re-saving an existing step renames it
to ``old-step-XXXXXXXX`` first: killed between the two renames, loading uses that copy and the next
save renames it back. Saving is single-writer
(call it on rank 0 only). Weights of a `thinkrl.model.CausalLM` go through
`thinkrl.model.save_pretrained`; any other ``nn.Module`` is written with
`safetensors.torch.save_model`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from thinkrl.model import CausalLM, save_pretrained
from thinkrl.train.checksums import file_manifest, verify_files
from thinkrl.train.config import save_resolved
from thinkrl.train.folders import fsync_dir, fsync_tree, recover_swap, swap_in

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_FILE = "trainer_state.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_RESERVED = {"model", "optimizer", "scheduler", "recipe", "trainer_state", "config"}


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint found on disk.

    Fields:
        path: the step folder; it is also the HF model folder (config.json + safetensors).
        step: the training step it was saved at.
        trainer_state: the dict the trainer passed to `save_checkpoint` (data cursor, metrics...).
        rng_state: RNG states as written by `capture_rng` (give it to `restore_rng`).
        files: every file of the checkpoint (name -> path), sizes and CRC-32s verified at load time.
        record: the whole parsed ``trainer_state.json`` (format version, ranks... for the sharded loader).
    """

    path: Path
    step: int
    trainer_state: dict[str, Any]
    rng_state: dict[str, Any]
    files: dict[str, Path]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def optimizer_path(self) -> Path | None:
        return self.files.get("optimizer.pt")

    @property
    def scheduler_path(self) -> Path | None:
        return self.files.get("scheduler.pt")

    @property
    def recipe_path(self) -> Path:
        return self.files["recipe.yaml"]

    def extra_path(self, name: str) -> Path:
        """Path of the extra state saved under ``name``."""
        if f"{name}.pt" not in self.files:
            known = sorted(f[:-3] for f in self.files if f.endswith(".pt"))
            raise KeyError(f"checkpoint {self.path} has no extra state {name!r}; it has {known}")
        return self.files[f"{name}.pt"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def capture_rng() -> dict[str, Any]:
    """JSON-serialisable RNG states of python ``random``, numpy, torch CPU and (if initialised) CUDA."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state(legacy=True)  # numpy's default, but its stub types the no-argument call as a dict
    if not isinstance(legacy, tuple):  # only a non-MT19937 generator gives a dict; the global one is MT19937
        raise TypeError(f"numpy's global RNG state is not the legacy MT19937 tuple: {type(legacy).__name__}")
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore RNG states written by `capture_rng`; CUDA states are skipped (with a warning)
    when this machine has no or fewer GPUs."""
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"RNG state is malformed ({type(err).__name__}: {err})") from None
    cuda_states = state.get("cuda", [])
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(cuda_states) > available:
        logger.warning("checkpoint has CUDA RNG states for %d devices, this machine has %d; restoring %d",
                       len(cuda_states), available, available)
    for device, encoded in enumerate(cuda_states[:available]):
        raw = torch.frombuffer(bytearray(base64.b64decode(encoded)), dtype=torch.uint8)
        torch.cuda.set_rng_state(raw, device)


def _write_weights(model: torch.nn.Module, folder: Path) -> None:
    """HF folder for a `CausalLM`; ``model.safetensors`` via safetensors for any other module."""
    if isinstance(model, CausalLM):
        save_pretrained(model, folder)
    else:
        save_model(model, str(folder / "model.safetensors"))


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders under ``root`` as (step, path), oldest first."""
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def _check_extra_names(extra: Mapping[str, Any]) -> None:
    for name, obj in extra.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in _RESERVED:
            raise ValueError(f"extra state name {name!r} must be lowercase snake case and not one of {_RESERVED}")
        if not hasattr(obj, "state_dict"):
            raise TypeError(f"extra state {name!r} is a {type(obj).__name__}, which has no state_dict()")


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    trainer_state: Mapping[str, Any],
    recipe: BaseModel,
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint atomically into ``root/step-XXXXXXXX`` and point ``root/latest`` at it.

    Args:
        root: checkpoint root folder (created if missing).
        step: training step (>= 0); saving a step that exists replaces it.
        model: the policy; a `CausalLM` is saved in HF format.
        optimizer, scheduler: saved as state dicts (None skips the file).
        trainer_state: JSON-serialisable dict (data cursor, metrics...), returned by `load_checkpoint`.
        recipe: the resolved recipe, written as ``recipe.yaml``.
        extra: more objects with ``state_dict()`` (a critic, its optimizer...), saved as ``<name>.pt``.
        keep_last: keep only the newest this-many checkpoints (None keeps all).
    Returns the checkpoint folder.
    """
    if step < 0:
        raise ValueError(f"step ({step}) must be >= 0")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last ({keep_last}) must be >= 1 or None")
    extra = dict(extra or {})
    _check_extra_names(extra)
    try:
        state_json = json.dumps(dict(trainer_state))
    except TypeError as err:
        raise TypeError(f"trainer_state must be JSON-serialisable: {err}") from None
    root = Path(root)
    tmp = begin_checkpoint(root, step)
    try:
        _write_weights(model, tmp)
        objects = {"optimizer": optimizer, "scheduler": scheduler, **extra}
        for key, obj in objects.items():
            if obj is not None:
                torch.save(obj.state_dict(), tmp / f"{key}.pt")
        save_resolved(recipe, tmp / "recipe.yaml")
        record = {"format_version": FORMAT_VERSION, "step": step, "trainer_state": json.loads(state_json),
                  "rng": capture_rng(), **file_manifest(tmp)}
        (tmp / STATE_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return commit_checkpoint(root, tmp, step, keep_last)


def begin_checkpoint(root: Path, step: int) -> Path:
    """Create ``root`` and an empty ``root/tmp-step-XXXXXXXX`` (stale ``tmp-*`` folders of killed saves are
    removed first); write a checkpoint there, then `commit_checkpoint` it."""
    if step < 0:
        raise ValueError(f"step ({step}) must be >= 0")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("tmp-step-*"):
        shutil.rmtree(stale)
    for old in root.glob("old-step-*"):  # a re-save of a step killed while it replaced the folder
        recover_swap(root / old.name.removeprefix("old-"), old)
    tmp = root / f"tmp-step-{step:08d}"
    tmp.mkdir()
    return tmp


def commit_checkpoint(root: Path, tmp: Path, step: int, keep_last: int | None) -> Path:
    """Make the fully written (and fsynced) ``tmp`` folder the checkpoint of ``step``: rename it to
    ``step-XXXXXXXX``, point ``latest`` at it (atomic replace), then keep only the newest ``keep_last``.
    Up to the rename, a crash leaves the previous checkpoint as ``latest``."""
    name = f"step-{step:08d}"
    final = root / name
    swap_in(tmp, final, root / f"old-{name}")
    _write_text_atomic(root / LATEST_FILE, name + "\n")
    if keep_last is not None:
        for _, path in _step_dirs(root)[:-keep_last]:
            if path != final:
                shutil.rmtree(path)
    logger.info("saved checkpoint %s", final)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The folder ``root/latest`` names (or its ``old-`` copy when a re-save of that step was killed between
    renaming it away and renaming the new one in), or None when ``root`` holds no checkpoint yet."""
    pointer = Path(root) / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:  # (its message would not name the file)
        raise ValueError(f"{pointer} is corrupted: not text naming a step-XXXXXXXX folder") from None
    if not _STEP_DIR.match(name):
        raise ValueError(f"{pointer} names {name!r}, which is not a step-XXXXXXXX folder")
    path = Path(root) / name
    if not path.is_dir():
        old = Path(root) / f"old-{name}"
        if old.is_dir():  # a re-save of this step was killed between its two renames; the next save renames it back
            logger.warning("%s is missing (a save was killed while replacing it): using %s", path, old)
            return old
        raise FileNotFoundError(f"{pointer} names {name}, but {path} does not exist")
    return path


def load_checkpoint(root_or_step_dir: str | Path, verify_crc: bool = True) -> Checkpoint:
    """Find and verify a checkpoint: a step folder, or a root whose ``latest`` names one.

    Raises FileNotFoundError naming a missing file and ValueError naming a corrupted one
    (unparseable trainer_state.json, or a file whose size or CRC-32 differs from the recorded one:
    `thinkrl.train.checksums`). ``verify_crc`` False checks sizes only (a rank whose CRC-32s rank 0 read).
    """
    path = Path(root_or_step_dir)
    if not (path / STATE_FILE).exists():
        found = latest_checkpoint(path) if path.is_dir() else None
        if found is None:
            raise FileNotFoundError(f"no checkpoint at {path}: it has neither {STATE_FILE} nor a '{LATEST_FILE}' file")
        path = found
    state_file = path / STATE_FILE
    if not state_file.is_file():  # `latest` names a folder that lost its record (the last file a save writes)
        raise FileNotFoundError(f"checkpoint file {state_file} is missing")
    try:
        record = json.loads(state_file.read_text(encoding="utf-8"))
        step, trainer_state, rng = int(record["step"]), record["trainer_state"], record["rng"]
        files = verify_files(path, record, crc=verify_crc)  # (its own errors name the damaged file)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{state_file} is corrupted ({type(err).__name__}: {err})") from None
    if "recipe.yaml" not in files:
        raise FileNotFoundError(f"checkpoint file {path / 'recipe.yaml'} is missing")
    return Checkpoint(path=path, step=step, trainer_state=trainer_state, rng_state=rng, files=files, record=record)


def _load_state(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged files
        raise ValueError(f"cannot read checkpoint file {path}: {type(err).__name__}: {err}") from err


def load_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``model`` in place (names and shapes must match)."""
    if not isinstance(model, CausalLM):
        file = ckpt.files["model.safetensors"]
        try:
            load_model(model, str(file), strict=True)
        except (SafetensorError, RuntimeError) as err:
            raise ValueError(f"cannot load weights from {file}: {err}") from err
        return
    index = ckpt.path / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"] if index.exists() else None
    params = dict(model.named_parameters())
    by_file: dict[str, list[str]] = {}
    for name in params:
        by_file.setdefault(weight_map[name] if weight_map else "model.safetensors", []).append(name)
    for fname, names in by_file.items():
        file = ckpt.path / fname
        try:
            with safe_open(str(file), framework="pt", device="cpu") as f, torch.no_grad():
                for name in names:
                    params[name].copy_(f.get_tensor(name))
        except (SafetensorError, RuntimeError) as err:
            raise ValueError(f"cannot load weights from {file}: {err}") from err


def restore_checkpoint(
    ckpt: Checkpoint,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    extra: Mapping[str, Any] | None = None,
    rng: bool = True,
) -> dict[str, Any]:
    """Load the given objects' states from ``ckpt`` (and the RNG states); returns its trainer_state.

    Objects left None are not touched. Raises ValueError naming the file when one cannot be read.
    """
    if model is not None:
        load_weights(model, ckpt)
    targets = {"optimizer": (optimizer, ckpt.optimizer_path), "scheduler": (scheduler, ckpt.scheduler_path)}
    targets.update({name: (obj, ckpt.extra_path(name)) for name, obj in (extra or {}).items()})
    for key, (obj, path) in targets.items():
        if obj is None:
            continue
        if path is None:
            raise FileNotFoundError(f"checkpoint {ckpt.path} has no {key}.pt")
        obj.load_state_dict(_load_state(path))
    if rng:
        restore_rng(ckpt.rng_state)
    return ckpt.trainer_state

