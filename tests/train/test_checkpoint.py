"""Checkpoints on real files: round trip, resume equivalence, pruning, crash safety, corruption errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import thinkrl.train.checkpoint as checkpoint_module
from thinkrl.model import CausalLM, ModelConfig, build_model, load_pretrained
from thinkrl.train.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_checkpoint,
    restore_rng,
    save_checkpoint,
)
from thinkrl.train.config import OptimSpec, SFTRecipe, load_recipe, validate_recipe
from thinkrl.train.schedule import build_optimizer, build_scheduler

CONFIG = ModelConfig.from_hf_dict({
    "architectures": ["Qwen3ForCausalLM"], "vocab_size": 40, "hidden_size": 16, "intermediate_size": 32,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": True,
})
RECIPE = validate_recipe({"name": "ckpt-test", "model": {"init": {"architectures": ["Qwen3ForCausalLM"]}},
                          "data": {"task": "countdown"}}, SFTRecipe)
SPEC = OptimSpec(lr=0.01, warmup_steps=1)


def make_parts(seed: int = 0) -> tuple[CausalLM, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    model = build_model(CONFIG, seed=seed)
    optimizer = build_optimizer(model.parameters(), SPEC)
    return model, optimizer, build_scheduler(optimizer, SPEC, total_steps=10)


def train_step(model: CausalLM, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler) -> float:
    """One step whose data comes from the torch RNG, so the RNG state matters for resuming."""
    ids = torch.randint(0, CONFIG.vocab_size, (6,))
    hidden = model(ids, torch.arange(6), torch.tensor([0, 6], dtype=torch.int32)).hidden
    loss = torch.nn.functional.cross_entropy(model.logits(hidden[:-1]), ids[1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()
    return float(loss.detach())


def save(root: Path, step: int, model: torch.nn.Module, optimizer, scheduler, **kwargs) -> Path:
    return save_checkpoint(root, step, model=model, optimizer=optimizer, scheduler=scheduler,
                           trainer_state={"data_cursor": step * 4, "metrics": {"loss": 1.5}}, recipe=RECIPE, **kwargs)


def test_round_trip_and_resume_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, optimizer, scheduler = make_parts()
    for _ in range(2):
        train_step(model, optimizer, scheduler)
    folder = save(tmp_path, 2, model, optimizer, scheduler)
    assert folder == tmp_path / "step-00000002"
    assert (tmp_path / "latest").read_text().strip() == "step-00000002"
    expected = [train_step(model, optimizer, scheduler) for _ in range(2)]

    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 2 and ckpt.trainer_state == {"data_cursor": 8, "metrics": {"loss": 1.5}}
    assert {"config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "recipe.yaml"} <= set(ckpt.files)
    assert load_recipe(ckpt.recipe_path, SFTRecipe) == RECIPE
    # the step folder is a Hugging Face model folder
    hf_model = load_pretrained(ckpt.path)
    fresh, fresh_opt, fresh_sched = make_parts(seed=1)
    torch.manual_seed(123)  # scramble the RNG; restore must bring it back
    state = restore_checkpoint(ckpt, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert state["data_cursor"] == 8
    for (name, p), q in zip(fresh.named_parameters(), hf_model.parameters(), strict=True):
        assert torch.equal(p, q), name
    resumed = [train_step(fresh, fresh_opt, fresh_sched) for _ in range(2)]
    assert resumed == expected  # bitwise: same weights, optimizer moments, lr schedule and data RNG


def test_generic_module_and_extra_state(tmp_path: Path) -> None:
    critic = torch.nn.Linear(4, 1)
    critic_opt = torch.optim.AdamW(critic.parameters(), lr=0.1)
    critic(torch.ones(2, 4)).sum().backward()
    critic_opt.step()
    policy = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    save(tmp_path, 0, policy, None, None, extra={"critic": critic, "critic_optimizer": critic_opt})
    ckpt = load_checkpoint(tmp_path / "step-00000000")
    assert ckpt.optimizer_path is None and ckpt.scheduler_path is None
    new_policy = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    new_critic = torch.nn.Linear(4, 1)
    new_opt = torch.optim.AdamW(new_critic.parameters(), lr=0.1)
    restore_checkpoint(ckpt, model=new_policy, extra={"critic": new_critic, "critic_optimizer": new_opt}, rng=False)
    for a, b in zip(policy.parameters(), new_policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(critic.weight, new_critic.weight)
    assert torch.equal(new_opt.state_dict()["state"][0]["exp_avg"], critic_opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(KeyError, match="no extra state 'value'"):
        ckpt.extra_path("value")
    with pytest.raises(FileNotFoundError, match="no optimizer.pt"):
        restore_checkpoint(ckpt, optimizer=new_opt, rng=False)


def test_keep_last_prunes_and_latest_moves(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_parts()
    assert latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3, 4):
        save(tmp_path, step, model, optimizer, scheduler, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000003", "step-00000004"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000004"
    # saving an existing step replaces it
    save(tmp_path, 3, model, optimizer, scheduler, keep_last=2)
    assert load_checkpoint(tmp_path).step == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000003", "step-00000004"]


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer, scheduler = make_parts()
    save(tmp_path, 1, model, optimizer, scheduler)
    real_save = checkpoint_module.save_pretrained

    def crash_after_partial_write(m: CausalLM, path: Path) -> None:
        real_save(m, path)
        (Path(path) / "optimizer.pt").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_pretrained", crash_after_partial_write)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, model, optimizer, scheduler)
    assert (tmp_path / "latest").read_text().strip() == "step-00000001"
    assert not (tmp_path / "step-00000002").exists() and not (tmp_path / "tmp-step-00000002").exists()
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 1
    restore_checkpoint(ckpt, model=make_parts()[0], optimizer=make_parts()[1], rng=False)


def test_killed_save_leaves_ignored_tmp_that_next_save_removes(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_parts()
    save(tmp_path, 1, model, optimizer, scheduler)
    stale = tmp_path / "tmp-step-00000002"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half a file")
    assert load_checkpoint(tmp_path).step == 1
    save(tmp_path, 3, model, optimizer, scheduler)
    assert not stale.exists() and load_checkpoint(tmp_path).step == 3


def test_corruption_errors_name_the_file(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_parts()
    train_step(model, optimizer, scheduler)
    folder = save(tmp_path, 5, model, optimizer, scheduler)
    opt_file = folder / "optimizer.pt"
    original = opt_file.read_bytes()

    opt_file.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match=r"optimizer.pt is \d+ bytes, expected \d+"):
        load_checkpoint(tmp_path)
    opt_file.write_bytes(b"\0" * len(original))  # same size, garbage content: the CRC-32 catches it at load
    with pytest.raises(ValueError, match=r"optimizer.pt does not match its recorded CRC-32 \(.{8}, saved .{8}\)"):
        load_checkpoint(tmp_path)
    weights = folder / "model.safetensors"
    weights_bytes = weights.read_bytes()
    flipped = bytearray(weights_bytes)
    flipped[len(flipped) // 2] ^= 0x10  # one bit inside a tensor: it would load, as a wrong weight
    weights.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="model.safetensors does not match its recorded CRC-32"):
        load_checkpoint(tmp_path)

    # A checkpoint written before CRCs were recorded is checked by size only; reading the files still fails cleanly
    state_file = folder / "trainer_state.json"
    record = json.loads(state_file.read_text())
    del record["crc32"]
    state_file.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="cannot read checkpoint file .*optimizer.pt"):
        restore_checkpoint(load_checkpoint(tmp_path), optimizer=optimizer, rng=False)
    opt_file.write_bytes(original)
    weights.write_bytes(b"\xff" * len(weights_bytes))
    with pytest.raises(ValueError, match="cannot load weights from .*model.safetensors"):
        restore_checkpoint(load_checkpoint(tmp_path), model=model, rng=False)
    weights.write_bytes(weights_bytes)

    (folder / "recipe.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="recipe.yaml is missing"):
        load_checkpoint(tmp_path)
    (folder / "trainer_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="trainer_state.json is corrupted"):
        load_checkpoint(folder)
    (tmp_path / "latest").write_text("step-00000009\n")
    with pytest.raises(FileNotFoundError, match="names step-00000009"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


def test_bad_arguments(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_parts()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path, 1, model=model, optimizer=optimizer, scheduler=scheduler,
                        trainer_state={"x": object()}, recipe=RECIPE)
    with pytest.raises(ValueError, match="extra state name 'optimizer'"):
        save(tmp_path, 1, model, optimizer, scheduler, extra={"optimizer": optimizer})
    with pytest.raises(TypeError, match="has no state_dict"):
        save(tmp_path, 1, model, optimizer, scheduler, extra={"thing": 3})
    with pytest.raises(ValueError, match="step"):
        save(tmp_path, -1, model, optimizer, scheduler)
    assert not (tmp_path / "latest").exists()


def test_rng_round_trip_through_json() -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.random(), np.random.normal(), torch.rand(1)  # advance past the seed (numpy caches a gaussian)
    state = json.loads(json.dumps(capture_rng()))
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng(state)
    got = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])
    with pytest.raises(ValueError, match="RNG state is malformed"):
        restore_rng({"python": [3]})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_round_trip(tmp_path: Path) -> None:
    torch.cuda.manual_seed_all(3)
    torch.rand(1, device="cuda")
    state = json.loads(json.dumps(capture_rng()))
    assert len(state["cuda"]) == torch.cuda.device_count()
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(99)
    restore_rng(state)
    assert torch.equal(torch.rand(4, device="cuda"), expected)
    model = build_model(CONFIG, device="cuda", seed=0)
    optimizer = build_optimizer(model.parameters(), SPEC)
    scheduler = build_scheduler(optimizer, SPEC, total_steps=10)
    ids = torch.randint(0, CONFIG.vocab_size, (6,), device="cuda")
    hidden = model(ids, torch.arange(6, device="cuda"), torch.tensor([0, 6], dtype=torch.int32, device="cuda")).hidden
    model.logits(hidden).sum().backward()
    optimizer.step()
    save(tmp_path, 1, model, optimizer, scheduler)
    fresh = build_model(CONFIG, device="cuda", seed=1)
    fresh_opt = build_optimizer(fresh.parameters(), SPEC)
    restore_checkpoint(load_checkpoint(tmp_path), model=fresh, optimizer=fresh_opt)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True))
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].device.type == "cuda"


def test_crc32_is_the_standard_check_value_in_any_chunking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thinkrl.train import checksums

    file = tmp_path / "f"
    file.write_bytes(b"123456789")
    assert checksums.crc32_of(file) == "cbf43926"  # CRC-32's published check value for "123456789"
    monkeypatch.setattr(checksums, "_CHUNK", 4)  # read in pieces of 4, 4 and 1 bytes: the same value
    assert checksums.crc32_of(file) == "cbf43926"


def test_a_resave_killed_between_its_renames_is_loaded_and_then_put_back(tmp_path: Path) -> None:
    """Re-saving step k renames step-k to old-step-k, then the new folder in: killed in between, ``latest`` names a
    missing folder. Loading uses old-step-k (the committed copy), and the next save renames it back."""
    model, optimizer, scheduler = make_parts()
    save(tmp_path, 1, model, optimizer, scheduler)
    (tmp_path / "step-00000001").rename(tmp_path / "old-step-00000001")  # the kill, between the two renames
    assert load_checkpoint(tmp_path).step == 1
    save(tmp_path, 2, model, optimizer, scheduler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000001", "step-00000002"]
    assert load_checkpoint(tmp_path / "step-00000001").step == 1
    (tmp_path / "old-step-00000002").mkdir()  # killed after the second rename: the old copy is garbage
    save(tmp_path, 3, model, optimizer, scheduler)
    assert not (tmp_path / "old-step-00000002").exists() and load_checkpoint(tmp_path).step == 3
    (tmp_path / "latest").write_text("step-00000009\n")
    with pytest.raises(FileNotFoundError, match="names step-00000009, but .* does not exist"):
        load_checkpoint(tmp_path)


def test_a_policy_folder_is_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`save_policy` (a run's ``final``, an export) writes beside the folder and renames: a failure in the middle of
    the write leaves the previous folder as it was (or none), and nothing half-written under the folder's name."""
    import thinkrl.train.common as common
    from thinkrl.tokenizer import load_tokenizer

    final = tmp_path / "final"
    tokenizer = load_tokenizer()

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(common, "_copy_tokenizer_files", broken)  # after the weights were written
        with pytest.raises(OSError, match="disk full"):
            common.save_policy(build_model(CONFIG, seed=0), tokenizer, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    common.save_policy(build_model(CONFIG, seed=0), tokenizer, final)
    first = load_pretrained(final).state_dict()
    with monkeypatch.context() as patch:
        patch.setattr(common, "_copy_tokenizer_files", broken)
        with pytest.raises(OSError, match="disk full"):
            common.save_policy(build_model(CONFIG, seed=1), tokenizer, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    for name, value in load_pretrained(final).state_dict().items():
        assert torch.equal(value, first[name]), name  # still the first policy, whole
    common.save_policy(build_model(CONFIG, seed=1), tokenizer, final)
    assert not torch.equal(load_pretrained(final).state_dict()["model.embed_tokens.weight"],
                           first["model.embed_tokens.weight"])
    assert (final / "tokenizer.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a model folder"):
        common.save_policy(build_model(CONFIG, seed=0), tokenizer, notes)
    assert (notes / "todo.txt").read_text() == "mine"
