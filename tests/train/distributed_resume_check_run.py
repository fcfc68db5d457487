"""Run by tests/train/test_distributed.py under torchrun (2 ranks, gloo): resuming a sharded checkpoint.

Both ranks save an FSDP2-sharded model and optimizer, then load it back three times: intact (every rank counts how
many files it CRC-checked), with one bit of a shard flipped, and with ``latest`` naming a missing folder. Each rank
writes ``rank<R>.json`` to ``--dir``: its CRC count and, per damaged case, the error type and message it raised.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from thinkrl.model import ModelConfig, build_model
from thinkrl.train import checksums
from thinkrl.train.dcp import Trained, load_sharded, save_sharded
from thinkrl.train.distributed import barrier, close_data_parallel, init_data_parallel, shard_model
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import OptimSpec

CONFIG = ModelConfig(architecture="SeedOssForCausalLM", vocab_size=64, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
OPTIM = OptimSpec(lr=1e-2)


class Recipe(BaseModel):
    name: str = "resume-check"


def trained(data_parallel) -> Trained:  # noqa: ANN001
    model = shard_model(build_model(CONFIG, seed=0), data_parallel)
    optimizer = build_optimizer(model.parameters(), OPTIM)
    return Trained(model, optimizer, build_scheduler(optimizer, OPTIM, 10))


def load_error(root: Path, data_parallel) -> list[str] | None:  # noqa: ANN001
    try:
        load_sharded(root, parts={"model": trained(data_parallel)}, data_parallel=data_parallel)
    except (OSError, ValueError) as error:
        return [type(error).__name__, str(error)]
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    folder = Path(parser.parse_args().dir)
    data_parallel = init_data_parallel("gloo")
    root = folder / "ckpt"
    step_dir = save_sharded(root, 1, parts={"model": trained(data_parallel)}, trainer_state={"step": 1},
                            recipe=Recipe(), config=CONFIG, keep_last=None, data_parallel=data_parallel)
    crc_files: list[str] = []
    real = checksums.crc32_of
    checksums.crc32_of = lambda file: crc_files.append(Path(file).name) or real(file)  # type: ignore[assignment]
    result: dict[str, object] = {"intact": load_error(root, data_parallel)}
    result["crc_files"] = list(crc_files)  # the intact load's
    barrier(data_parallel)
    shard = step_dir / "__1_0.distcp"  # rank 1's shard: rank 1 itself never reads its CRC-32
    if data_parallel.is_main:
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(data))
    barrier(data_parallel)
    result["flipped_bit"] = load_error(root, data_parallel)
    barrier(data_parallel)
    if data_parallel.is_main:
        (root / "latest").write_text("step-00000009\n")
    barrier(data_parallel)
    result["missing_step"] = load_error(root, data_parallel)
    (folder / f"rank{data_parallel.rank}.json").write_text(json.dumps(result))
    close_data_parallel(synchronize=True)
