"""`thinkrl train/sft --layout` under real torchrun (gloo, CPU): tensor parallelism (tp=2), tp=2 composed with
FSDP2 (fsdp=2, 4 ranks), FSDP2 with CPU offload (fsdp=2) and two replicas (HSDP) give the same metrics and
final weights as one process (1e-5); the tp-split checkpoints export to the run's final policy and resume in one
process; a layout whose rank count is not the launch's is refused in one line.

The RL recipe (VAPO, KL, decoupled PPO: actor, critic and reference all split) and the launch helpers are those
of test_distributed_train.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from thinkrl.train.dcp import export_policy
from thinkrl.train.tensor_parallel import check_divisible
from thinkrl.tune.layout import ParallelLayout, save_layout

from .test_distributed_train import (
    ENV,
    RL,
    RL_KEYS,
    SFT,
    _in_process,
    _launch,
    _torchrun,
    _weights,
    assert_same_run,
)

SFT_KEYS = ("loss", "lr", "epoch")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tp")
    (folder / "rl.yaml").write_text(yaml.safe_dump(RL))
    (folder / "sft.yaml").write_text(yaml.safe_dump(SFT))
    return folder


def _layout(folder: Path, name: str, **fields) -> str:
    return str(save_layout(ParallelLayout(micro_batch_tokens=256, **fields), folder / f"{name}.yaml"))


def test_rl_tp2_fsdp2_on_four_ranks_trains_like_one(folder, tmp_path) -> None:
    """The whole 2-D composition: each layer split over a tp pair, FSDP2 over the two pairs."""
    one, four = tmp_path / "one", tmp_path / "four"
    _in_process("train", folder / "rl.yaml", one)
    _launch(4, "train", folder / "rl.yaml", four, "--layout", _layout(folder, "tp2f2", tp=2, fsdp=2))
    assert (yaml.safe_load((four / "recipe.yaml").read_text())["trainer"]["tensor_parallel"]) == 2
    step_dir = four / "checkpoints" / "step-00000004"
    assert len(list(step_dir.glob("*.distcp"))) == 4
    assert_same_run(one, four, RL_KEYS)


def test_sft_tp2_with_recompute_trains_like_one_and_exports(folder, tmp_path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _in_process("sft", folder / "sft.yaml", one, "trainer.activation_checkpointing=true")
    _launch(2, "sft", folder / "sft.yaml", two, "--layout", _layout(folder, "tp2", tp=2, recompute="full"))
    assert_same_run(one, two, SFT_KEYS)
    step_dir = two / "checkpoints" / "step-00000004"
    exported = export_policy(step_dir, tmp_path / "export")  # one process, from the tp-split shards
    final = _weights(two / "final")
    for name, weight in _weights(exported).items():
        torch.testing.assert_close(weight, final[name], rtol=0, atol=0, msg=name)
    # the tp-split checkpoint of step 2 resumes in one process: steps 3-4 again give the same run
    resumed = tmp_path / "resumed"
    shutil.copytree(two / "checkpoints", resumed / "checkpoints")
    (resumed / "checkpoints" / "latest").write_text("step-00000002\n")
    shutil.rmtree(resumed / "checkpoints" / "step-00000004")
    shutil.copy(two / "metrics.jsonl", resumed / "metrics.jsonl")
    _in_process("sft", folder / "sft.yaml", resumed, "trainer.activation_checkpointing=true", "trainer.resume=true")
    assert_same_run(one, resumed, SFT_KEYS)


def test_sft_fsdp2_with_full_offload_trains_like_one(folder, tmp_path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _in_process("sft", folder / "sft.yaml", one)
    _launch(2, "sft", folder / "sft.yaml", two, "--layout", _layout(folder, "f2off", fsdp=2, offload="full"))
    assert yaml.safe_load((two / "recipe.yaml").read_text())["trainer"]["offload_optimizer"] is True
    assert_same_run(one, two, SFT_KEYS)


def test_sft_replicas_of_the_sharded_model_hsdp_train_like_one(folder, tmp_path) -> None:
    """A layout with fsdp=1 on 2 ranks: 2 replicas (HSDP on a (replicate, shard) = (2, 1) mesh)."""
    one, two = tmp_path / "one", tmp_path / "two"
    _in_process("sft", folder / "sft.yaml", one)
    _launch(2, "sft", folder / "sft.yaml", two, "--layout", _layout(folder, "r2", fsdp=1))
    assert yaml.safe_load((two / "recipe.yaml").read_text())["trainer"]["fsdp_shard_size"] == 1
    assert_same_run(one, two, SFT_KEYS)


def test_a_layout_for_another_rank_count_is_refused_in_one_line(folder, tmp_path) -> None:
    cmd = _torchrun(2) + ["-m", "thinkrl", "sft", str(folder / "sft.yaml"), f"trainer.output_dir={tmp_path}",
                          "--layout", _layout(folder, "tp4", tp=4)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # a rank exits 2 with the one-line error (torchrun then stops the other; the traceback below is torchrun's own
    # failure report)
    assert "error: layout tp=4 cp=1 ep=1 fsdp=1" in proc.stderr and "exitcode  : 2" in proc.stderr
    assert "needs tp*fsdp = 4 ranks (or a multiple: replicas) but WORLD_SIZE is 2" in proc.stderr
    assert "ValueError" not in proc.stderr
    assert not (tmp_path / "recipe.yaml").exists()  # refused before anything ran


@pytest.mark.parametrize(("sizes", "message"), [
    ((4, 2, 64, 4), "num_key_value_heads=2"),
    ((6, 2, 30, 4), "num_attention_heads=6, num_key_value_heads=2, intermediate_size=30"),
])
def test_sizes_tp_does_not_divide_are_named(sizes: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_divisible(*sizes)
    check_divisible(8, 4, 64, 4)  # all divisible: no error
