"""Sharded (DCP) checkpoints in a single process: exact round trip of model, optimizer, schedule and RNG; keep-last;
errors that name the problem; HF export. (Multi-rank saving and resharding: test_distributed_train.py.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from thinkrl.model import CausalLM, ModelConfig, build_model, load_pretrained
from thinkrl.train.checkpoint import save_checkpoint
from thinkrl.train.dcp import Trained, export_policy, has_checkpoint, load_sharded, save_sharded
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import OptimSpec

CONFIG = ModelConfig(architecture="SeedOssForCausalLM", vocab_size=64, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
OPTIM = OptimSpec(lr=1e-2, schedule="cosine", warmup_steps=2)


class Recipe(BaseModel):
    name: str = "unit"


def parts(seed: int = 0) -> tuple[CausalLM, Trained]:
    model = build_model(CONFIG, seed=seed)
    optimizer = build_optimizer(model.parameters(), OPTIM)
    return model, Trained(model, optimizer, build_scheduler(optimizer, OPTIM, 10))


def train_step(part: Trained) -> float:
    ids = torch.arange(24) % CONFIG.vocab_size
    out = part.model(ids, torch.arange(24), torch.tensor([0, 24]))
    loss = part.model.logits(out.hidden).float().log_softmax(-1)[:-1].gather(1, ids[1:, None]).mean().neg()
    loss.backward()
    part.optimizer.step()
    part.optimizer.zero_grad()
    part.scheduler.step()
    return float(loss.detach())


def save(root: Path, step: int, part: Trained, keep_last: int | None = None) -> Path:
    return save_sharded(root, step, parts={"model": part}, trainer_state={"step": step, "cursor": [1, 2]},
                        recipe=Recipe(), config=CONFIG, keep_last=keep_last, data_parallel=None)


def test_round_trip_resumes_exactly(tmp_path: Path) -> None:
    _, part = parts()
    for _ in range(2):
        train_step(part)
    save(tmp_path, 2, part)
    random.random()
    expected_draw = random.random()  # what the RNG gives after the save...
    straight = [train_step(part) for _ in range(2)]
    _, fresh = parts(seed=1)  # other weights, empty optimizer state, schedule at 0
    random.seed(123)
    state = load_sharded(tmp_path, parts={"model": fresh}, data_parallel=None)
    assert state == {"step": 2, "cursor": [1, 2]}
    random.random()
    assert random.random() == expected_draw  # ...and after the load (RNG restored)
    assert fresh.scheduler.last_epoch == 2
    assert [train_step(fresh) for _ in range(2)] == straight  # weights, Adam moments and lr all restored
    for (name, a), b in zip(part.model.state_dict().items(), fresh.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_keep_last_and_latest(tmp_path: Path) -> None:
    _, part = parts()
    assert not has_checkpoint(tmp_path / "none")
    for step in (1, 2, 3):
        save(tmp_path, step, part, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    assert (tmp_path / "latest").read_text().strip() == "step-00000003"
    record = json.loads((tmp_path / "step-00000003" / "trainer_state.json").read_text())
    assert record["format_version"] == 2 and record["world_size"] == 1 and len(record["rng_per_rank"]) == 1
    assert ".metadata" in record["files"] and "__0_0.distcp" in record["files"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    _, part = parts()
    with pytest.raises(TypeError, match="not JSON serializable"):
        save_sharded(tmp_path, 1, parts={"model": part}, trainer_state={"bad": object()}, recipe=Recipe(),
                     config=CONFIG, keep_last=None, data_parallel=None)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(ValueError, match="keep_last"):
        save(tmp_path, 1, part, keep_last=0)
    step_dir = save(tmp_path, 1, part)
    shard = step_dir / "__0_0.distcp"
    original = shard.read_bytes()
    shard.write_bytes(original[:-10])
    with pytest.raises(ValueError, match="__0_0.distcp is .* bytes, expected"):
        load_sharded(tmp_path, parts={"model": part}, data_parallel=None)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01  # one bit inside a tensor, same size: DCP would load it as a wrong weight
    shard.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="__0_0.distcp does not match its recorded CRC-32"):
        load_sharded(tmp_path, parts={"model": part}, data_parallel=None)
    with pytest.raises(ValueError, match="__0_0.distcp does not match its recorded CRC-32"):
        export_policy(step_dir, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    shard.write_bytes(original)
    old = tmp_path / "old"
    save_checkpoint(old, 1, model=part.model, optimizer=None, scheduler=None, trainer_state={}, recipe=Recipe())
    with pytest.raises(ValueError, match="format-1 checkpoint"):
        load_sharded(old, parts={"model": part}, data_parallel=None)


def test_export_writes_the_policy_as_hf(tmp_path: Path) -> None:
    model, part = parts()
    train_step(part)
    (tmp_path / "ckpt").mkdir()
    step_dir = save(tmp_path / "ckpt", 1, part)
    folder = export_policy(step_dir, tmp_path / "hf")
    assert (folder / "tokenizer.json").is_file()  # the recipe's (default, builtin) tokenizer
    loaded = load_pretrained(folder)
    for name, param in model.named_parameters():
        assert torch.equal(dict(loaded.named_parameters())[name], param.detach()), name


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from thinkrl.cli import main

    _, part = parts()
    save(tmp_path / "ckpt", 3, part)
    assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0  # a root: its latest checkpoint
    assert capsys.readouterr().out.strip() == str(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_an_interrupt_inside_dcp_ends_as_an_interrupt_not_as_damage(tmp_path: Path, monkeypatch) -> None:
    """DCP wraps a KeyboardInterrupt (Ctrl-C, or SIGTERM as `Terminated`) raised while it writes or reads in its
    CheckpointException; the save and the load raise it as itself, and the last good checkpoint stays."""
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

    _, part = parts()
    save(tmp_path, 1, part)

    def interrupted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(FileSystemWriter, "write_data", interrupted)
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path, 2, part)
    assert (tmp_path / "latest").read_text().strip() == "step-00000001"
    assert (tmp_path / "tmp-step-00000002").is_dir()  # half written; the next save removes it
    with monkeypatch.context() as patch:
        patch.setattr(FileSystemReader, "read_data", interrupted)
        with pytest.raises(KeyboardInterrupt):
            load_sharded(tmp_path, parts={"model": parts()[1]}, data_parallel=None)
    save(tmp_path, 3, part)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000001", "step-00000003"]
    assert load_sharded(tmp_path, parts={"model": parts()[1]}, data_parallel=None)["step"] == 3
