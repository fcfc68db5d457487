"""Load and save Hugging Face checkpoints: ``config.json`` + single or sharded ``*.safetensors``.

A checkpoint from the Hub, copied to a local folder, loads without conversion.
Every mismatch is an error naming the file and the tensor.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from thinkrl.model.config import ModelConfig
from thinkrl.model.decoder import CausalLM
from thinkrl.model.layers import rope_inverse_frequencies

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Buffers some checkpoints carry that we recompute.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu. ValueError for a malformed device or one this machine lacks."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {str(device)!r} is not a torch device; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device {str(device)!r} is not available: this machine has {count or 'no'} CUDA device"
                         f"{'' if count == 1 else 's'} (use auto or cpu)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} is not available on this machine (use auto or cpu)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def build_model(config: ModelConfig, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                seed: int | None = 0) -> CausalLM:
    """A freshly initialised model (for training from scratch)."""
    model = CausalLM(config)
    model.init_weights(seed=seed)
    return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype))


def _weight_files(path: Path) -> dict[str, Path]:
    """Map tensor name -> file for a single or sharded safetensors checkpoint."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return {str(name): path / fname for name, fname in weight_map.items()}
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            # (a weight_map that is not a mapping of file names, too)
            raise ValueError(f"{index} is not a valid safetensors index: {type(err).__name__}: {err}") from None
    single = path / "model.safetensors"
    if single.exists():
        with _open_weights(single) as f:
            return {name: single for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    found = sorted(p.name for p in path.glob("*.safetensors"))
    raise FileNotFoundError(
        f"no model.safetensors or model.safetensors.index.json in {path}"
        + (f" (found {', '.join(found)})" if found else "")
    )


def _open_weights(file: Path) -> Any:
    """``safe_open(file)``; a truncated or damaged file is a ValueError naming it."""
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except SafetensorError as err:
        raise ValueError(f"{file} is not a valid safetensors file (truncated or damaged?): {err}") from None


def load_pretrained(path: str | Path, device: str | torch.device = "cpu",
                    dtype: str | torch.dtype = "float32") -> CausalLM:
    """Load a HF-format folder into a `CausalLM`.

    Raises ValueError naming the file and tensor on missing, unexpected or mis-shaped tensors.
    """
    path = Path(path)
    if path.is_file():  # (`--model DIR/config.json`: name what is wrong, not a missing folder)
        raise NotADirectoryError(f"model {path} is a file; give the folder that holds config.json and the weights")
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    config = ModelConfig.from_file(path)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    with torch.device("meta"):
        model = CausalLM(config)
    model = model.to_empty(device=device).to(dtype)
    # The non-persistent rope buffer is not in the checkpoint: recompute it (meta init left it empty).
    assert config.head_dim is not None  # ModelConfig's validator fills it in
    model.inv_freq = rope_inverse_frequencies(config.head_dim, config.rope_theta, config.rope_scaling).to(device)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    params = dict(model.named_parameters())
    files = _weight_files(path)
    unexpected = [n for n in files if n not in params and not n.endswith(_IGNORED_SUFFIXES)
                  and not (config.tie_word_embeddings and n == "lm_head.weight")]
    if unexpected:
        raise ValueError(f"unexpected tensors in {path}: {', '.join(sorted(unexpected)[:10])}")
    missing = [n for n in params if n not in files]
    if missing:
        raise ValueError(f"missing tensors in {path}: {', '.join(sorted(missing)[:10])}")
    by_file: dict[Path, list[str]] = {}
    for name in params:
        by_file.setdefault(files[name], []).append(name)
    for fpath, names in by_file.items():
        if not fpath.exists():
            raise FileNotFoundError(f"shard {fpath} named in the index does not exist")
        with _open_weights(fpath) as f:
            for name in names:
                tensor = f.get_tensor(name)
                if tensor.shape != params[name].shape:
                    raise ValueError(
                        f"{fpath.name}: tensor {name} has shape {tuple(tensor.shape)}, "
                        f"expected {tuple(params[name].shape)} from config.json"
                    )
                with torch.no_grad():
                    params[name].copy_(tensor)
    model.eval()
    return model


def save_pretrained(model: CausalLM, path: str | Path, max_shard_bytes: int = 5 * 2**30) -> None:
    """Write ``config.json`` and safetensors (sharded with an index above ``max_shard_bytes``).

    Files are written to temporary names and renamed, so an interrupted save never leaves a
    half-written file under a final name.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict()
    config["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    _atomic_write_text(path / "config.json", json.dumps(config, indent=2, sort_keys=True))
    if len(shards) == 1:
        _atomic_save_tensors(shards[0], path / "model.safetensors")
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save_tensors(shard, path / fname)
        weight_map.update({name: fname for name in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _atomic_write_text(path / "model.safetensors.index.json", json.dumps(index, indent=2, sort_keys=True))


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write_text(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
