"""`thinkrl train/sft --layout`: a tuned layout becomes recipe values (micro-batch budget, recompute, tensor
parallelism, offload); what the trainer does not implement, or a rank count that is not the launch's, is refused.
Multi-rank runs with a layout: test_tensor_parallel."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import run_thinkrl
from thinkrl.train.common import prepare_run
from thinkrl.train.config import SFTRecipe, load_recipe
from thinkrl.train.layout import layout_overrides, overrides_from_layout
from thinkrl.tune.layout import ParallelLayout, save_layout

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_single_process_layout_becomes_recipe_values(tmp_path: Path) -> None:
    path = save_layout(ParallelLayout(micro_batch_tokens=2048, recompute="full"), tmp_path / "layout.yaml")
    overrides = overrides_from_layout(path) + [f"trainer.output_dir={tmp_path / 'run'}"]
    recipe = load_recipe(RECIPES / "tiny_sft.yaml", SFTRecipe, overrides)
    assert recipe.trainer.micro_batch_tokens == 2048 and recipe.trainer.activation_checkpointing
    _, _, model = prepare_run(recipe)
    assert model.activation_checkpointing  # the decoder recomputes each layer in backward
    plain = load_recipe(RECIPES / "tiny_sft.yaml", SFTRecipe,
                        layout_overrides(ParallelLayout(micro_batch_tokens=512)) + ["trainer.micro_batch_tokens=300"])
    assert plain.trainer.micro_batch_tokens == 300 and not plain.trainer.activation_checkpointing  # explicit wins


def test_multi_rank_layout_becomes_recipe_values() -> None:
    assert layout_overrides(ParallelLayout(tp=2, fsdp=2, micro_batch_tokens=1024), world_size=4) == [
        "trainer.micro_batch_tokens=1024", "trainer.activation_checkpointing=false", "trainer.tensor_parallel=2",
        "trainer.offload_optimizer=false"]
    assert layout_overrides(ParallelLayout(fsdp=2, micro_batch_tokens=512, recompute="full", offload="full"),
                            world_size=2)[1:] == [
        "trainer.activation_checkpointing=true", "trainer.tensor_parallel=1", "trainer.offload_optimizer=true"]
    # WORLD_SIZE a multiple of tp*fsdp: replicas of the fsdp-sharded model (HSDP)
    assert layout_overrides(ParallelLayout(fsdp=2, micro_batch_tokens=512), world_size=4)[0] == (
        "trainer.fsdp_shard_size=2")
    assert not any("fsdp_shard_size" in o for o in layout_overrides(ParallelLayout(fsdp=2, micro_batch_tokens=512),
                                                                   world_size=2))
    # offload "full" needs FSDP2, which one rank under torchrun has
    assert layout_overrides(ParallelLayout(micro_batch_tokens=512, offload="full"), world_size=1)[-1] == (
        "trainer.offload_optimizer=true")


@pytest.mark.parametrize(("layout", "world_size", "message"), [
    (ParallelLayout(fsdp=8, micro_batch_tokens=4096), None, r"runs on 8 rank\(s\) with FSDP2: launch with torchrun"),
    (ParallelLayout(tp=2, micro_batch_tokens=4096), None, "--nproc-per-node 2 -m thinkrl"),
    (ParallelLayout(micro_batch_tokens=4096, offload="full"), None, "launch with torchrun"),
    (ParallelLayout(tp=2, micro_batch_tokens=4096), 4, r"on WORLD_SIZE=4 needs 2 replicas \(HSDP\) with tp > 1"),
    (ParallelLayout(fsdp=4, micro_batch_tokens=4096), 2, r"needs tp\*fsdp = 4 ranks \(or a multiple: replicas\) but "
     "WORLD_SIZE is 2"),
    (ParallelLayout(fsdp=2, micro_batch_tokens=4096), 3, "but WORLD_SIZE is 3: launch with --nproc-per-node 2"),
    (ParallelLayout(cp=2, micro_batch_tokens=4096), 2, r"context parallelism \(cp=2\) is not implemented"),
    (ParallelLayout(ep=2, fsdp=2, micro_batch_tokens=4096), 2, r"expert parallelism \(ep=2\) is not implemented"),
    (ParallelLayout(fsdp=2, micro_batch_tokens=4096, offload="optimizer"), 2,
     "offload 'optimizer' .* is not implemented in the trainer"),
    (ParallelLayout(tp=2, micro_batch_tokens=4096, offload="full"), 2, "offload together with tp > 1"),
])
def test_what_the_trainer_cannot_run_is_refused(layout: ParallelLayout, world_size: int | None,
                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layout_overrides(layout, world_size)


def test_cli_refuses_a_multi_rank_layout_in_one_line(tmp_path: Path) -> None:
    path = save_layout(ParallelLayout(fsdp=4, micro_batch_tokens=4096), tmp_path / "layout.yaml")
    proc = run_thinkrl("train", str(RECIPES / "tiny_dapo.yaml"), "--layout", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "runs on 4 rank(s) with FSDP2" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
