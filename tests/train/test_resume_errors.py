"""A checkpoint that cannot be resumed or exported the way the command line asks is one line, exit status 2, and the
checkpoint is left as it was: another model's shapes, an SFT run resumed by `thinkrl train` (and the reverse), an
export folder inside the checkpoint root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli_runner import run_thinkrl

MODEL = {"architectures": "SeedOssForCausalLM", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256}
DATA = {"task": "arithmetic", "num_train": 40, "num_test": 4, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 5}}


def thinkrl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_thinkrl(*map(str, args), cwd=cwd, timeout=600)


def refused(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The error line of a command that refused its input: exit 2, no traceback, the last line of stderr."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"thinkrl {command}: error: "), line
    return line


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under a checkpoint root, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An SFT run and an RL run from it, each with a checkpoint; and their recipe files."""
    root = tmp_path_factory.mktemp("runs")
    sft = {"name": "sft", "model": {"init": MODEL, "device": "cpu"}, "data": DATA, "epochs": 1,
           "optim": {"lr": 3e-3, "warmup_steps": 1},
           "trainer": {"steps": 2, "micro_batch_tokens": 512, "save_every": 2, "output_dir": str(root / "sft")}}
    rl = {"name": "rl", "model": {"path": str(root / "sft" / "final"), "device": "cpu"}, "data": DATA,
          "sampling": {"max_new_tokens": 8, "num_slots": 4}, "rollout": {"group_size": 2, "prompts_per_step": 2},
          "reward": {"max_response_len": 8, "overlong_cache_len": 2}, "algorithm": {"preset": "dapo"},
          "trainer": {"steps": 1, "micro_batch_tokens": 512, "eval_every": 0, "save_every": 1,
                      "output_dir": str(root / "rl")}}
    paths = {"sft_recipe": root / "sft.yaml", "rl_recipe": root / "rl.yaml"}
    paths["sft_recipe"].write_text(yaml.safe_dump(sft))
    paths["rl_recipe"].write_text(yaml.safe_dump(rl))
    for command, recipe in (("sft", paths["sft_recipe"]), ("train", paths["rl_recipe"])):
        proc = thinkrl(command, recipe, cwd=root)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {**paths, "sft": root / "sft", "rl": root / "rl"}


def test_resuming_into_another_model_names_the_tensor(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "sft"
    shutil.copytree(runs["sft"], run)
    before = snapshot(run / "checkpoints")
    line = refused(thinkrl("sft", runs["sft_recipe"], f"trainer.output_dir={run}", "trainer.steps=4",
                           "model.init.hidden_size=64", "--resume", cwd=tmp_path), "sft")
    assert f"checkpoint {run / 'checkpoints' / 'step-00000002'} cannot be loaded into this run (damaged, or saved " \
           "from another model): ValueError: Size mismatch between saved torch.Size([512, 32]) and current: " \
           "torch.Size([512, 64])" in line
    assert snapshot(run / "checkpoints") == before


@pytest.mark.parametrize(("command", "resumed", "saved_by"), [("train", "sft", "thinkrl sft"),
                                                              ("sft", "rl", "thinkrl train")])
def test_a_checkpoint_is_resumed_only_by_the_command_that_saved_it(runs: dict[str, Path], tmp_path: Path,
                                                                   command: str, resumed: str, saved_by: str) -> None:
    run = tmp_path / resumed
    shutil.copytree(runs[resumed], run)
    before = snapshot(run / "checkpoints")
    recipe = runs["rl_recipe" if command == "train" else "sft_recipe"]
    line = refused(thinkrl(command, recipe, f"trainer.output_dir={run}", "--resume", cwd=tmp_path), command)
    assert f"the checkpoint in {run / 'checkpoints'} was not saved by thinkrl {command} (by {saved_by}?)" in line
    assert snapshot(run / "checkpoints") == before


@pytest.mark.parametrize("inside", ["checkpoints", "checkpoints/step-00000002", "checkpoints/new"])
def test_export_refuses_a_folder_inside_the_checkpoint_root(runs: dict[str, Path], tmp_path: Path,
                                                           inside: str) -> None:
    run = tmp_path / "sft"
    shutil.copytree(runs["sft"], run)
    before = snapshot(run / "checkpoints")
    line = refused(thinkrl("export", run / "checkpoints", run / inside, cwd=tmp_path), "export")
    assert f"export folder {run / inside} is inside the checkpoint root {run / 'checkpoints'}" in line
    assert snapshot(run / "checkpoints") == before
    proc = thinkrl("export", run / "checkpoints", tmp_path / "hf", cwd=tmp_path)  # elsewhere: exported
    assert proc.returncode == 0 and (tmp_path / "hf" / "model.safetensors").is_file(), proc.stderr[-3000:]
