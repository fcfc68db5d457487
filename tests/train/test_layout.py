"""`thinkrl train/sft --layout`: a tuned layout's micro-batch budget and recompute reach the run; what one process
cannot honour is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(("layout", "message"), [
    (ParallelLayout(fsdp=8, micro_batch_tokens=4096), "over 8 ranks"),
    (ParallelLayout(tp=2, micro_batch_tokens=4096), "over 2 ranks"),
    (ParallelLayout(micro_batch_tokens=4096, offload="optimizer"), "offload 'optimizer' is not supported"),
])
def test_what_one_process_cannot_run_is_refused(layout: ParallelLayout, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layout_overrides(layout)


def test_cli_refuses_a_multi_rank_layout_in_one_line(tmp_path: Path) -> None:
    path = save_layout(ParallelLayout(fsdp=4, micro_batch_tokens=4096), tmp_path / "layout.yaml")
    proc = subprocess.run([sys.executable, "-m", "thinkrl.cli", "train", str(RECIPES / "tiny_dapo.yaml"),
                           "--layout", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "over 4 ranks" in proc.stderr and "Traceback" not in proc.stderr
