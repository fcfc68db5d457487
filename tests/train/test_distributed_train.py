"""`thinkrl train` / `thinkrl sft` under a real 2-rank torchrun (gloo, CPU) end to end: the same losses and final
weights as one process on the same global batch; sharded checkpoints that resume on another number of ranks; runs
killed with SIGKILL (at a random step, and inside a save) that resume to the uninterrupted run's weights and metrics.

The RL recipe is VAPO with a KL term and decoupled PPO, so the actor, the critic and the reference policy are all
sharded and the critic's values and the proximal log-probs are scored across ranks; the model is a fresh random
micro model (the critic's advantages are non-zero from the first step, no SFT needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from thinkrl.model import load_pretrained
from thinkrl.rl import ALGORITHM_PRESETS
from thinkrl.train.config import RLRecipe, SFTRecipe, load_recipe
from thinkrl.train.dcp import KILL_IN_SAVE_ENV, export_policy

MICRO = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": "arithmetic", "num_train": 60, "num_test": 4, "seed": 0,
        "difficulty": {"num_terms": 2, "max_number": 9}}
STEPS = 4
RL = {
    "name": "dist-rl", "model": {"init": MICRO, "device": "cpu"}, "data": DATA,
    "sampling": {"max_new_tokens": 16, "num_slots": 16},
    "rollout": {"group_size": 4, "prompts_per_step": 4, "dynamic_sampling": False},
    "reward": {"max_response_len": 16, "overlong_cache_len": 4},
    "algorithm": {"preset": "vapo", "kl_coef": 0.01, "num_mini_batches": 2, "off_policy": "decoupled"},
    "critic": {"pretrain_steps": 0},
    "optim": {"lr": 1e-3, "schedule": "linear", "min_lr_ratio": 0.5, "grad_clip": 1.0},
    "trainer": {"steps": STEPS, "micro_batch_tokens": 256, "save_every": 1, "keep_last": STEPS, "log_every": 1},
}
SFT = {
    "name": "dist-sft", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 2,
    "optim": {"lr": 3e-3, "warmup_steps": 1}, "trainer": {"steps": 4, "micro_batch_tokens": 256, "save_every": 2,
                                                          "log_every": 1},
}
# What a run computes (timings and wall-clock rates differ between runs)
RL_KEYS = ("reward", "accuracy", "response_length_mean", "loss", "clip_frac", "approx_kl", "entropy", "grad_norm",
           "value_loss", "value_mse", "critic_grad_norm", "explained_variance", "value_mean", "is_weight_mean", "lr")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(ranks: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--standalone"]


def _launch(ranks: int, command: str, recipe: Path, out: Path, *extra: str, env: dict | None = None,
            wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """``thinkrl COMMAND recipe`` on ``ranks`` ranks (1: a plain process, no torchrun), in its own session."""
    cmd = (_torchrun(ranks) if ranks > 1 else [sys.executable]) + ["-m", "thinkrl", command, str(recipe),
                                                                   f"trainer.output_dir={out}", *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    proc = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _in_process(kind: str, recipe: Path, out: Path, *extra: str) -> Path:
    """The same command in this process (one rank, one intra-op thread as each torchrun rank has)."""
    from thinkrl.train.rl_loop import run_rl
    from thinkrl.train.sft import run_sft

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if kind == "train":
            return run_rl(load_recipe(recipe, RLRecipe, [f"trainer.output_dir={out}", *extra],
                                      presets=ALGORITHM_PRESETS))
        return run_sft(load_recipe(recipe, SFTRecipe, [f"trainer.output_dir={out}", *extra]))
    finally:
        torch.set_num_threads(threads)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_pretrained(folder).state_dict()


def assert_same_run(a: Path, b: Path, keys: tuple[str, ...]) -> None:
    """Same metrics rows (1e-5 relative) and final weights (1e-5 absolute) in run folders ``a`` and ``b``."""
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert {k for k in keys if k in row_a} == {k for k in keys if k in row_b}, row_a["step"]
        for key in keys:
            if key in row_a:
                assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-6, nan_ok=True), (row_a["step"], key)
    wa, wb = _weights(a / "final"), _weights(b / "final")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recipes")
    (folder / "rl.yaml").write_text(yaml.safe_dump(RL))
    (folder / "sft.yaml").write_text(yaml.safe_dump(SFT))
    return {"train": folder / "rl.yaml", "sft": folder / "sft.yaml"}


@pytest.fixture(scope="module")
def one_rank(recipes, tmp_path_factory) -> Path:
    """The uninterrupted single-process RL run: the reference."""
    out = tmp_path_factory.mktemp("one") / "run"
    _in_process("train", recipes["train"], out)
    return out


def test_rl_two_ranks_train_like_one(recipes, one_rank, tmp_path) -> None:
    out = tmp_path / "two"
    _launch(2, "train", recipes["train"], out)
    rows = _rows(one_rank)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(r["loss"] != 0 and r["value_loss"] > 0 for r in rows)  # every step trained actor and critic
    assert_same_run(one_rank, out, RL_KEYS)
    # the checkpoints are sharded: one DCP file per rank, the world size recorded
    step_dir = out / "checkpoints" / f"step-{STEPS:08d}"
    assert sorted(p.name for p in step_dir.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert json.loads((step_dir / "trainer_state.json").read_text())["world_size"] == 2
    # exported in one process from the shards, the policy is the run's final policy
    exported = export_policy(step_dir, tmp_path / "export")
    for name, weight in _weights(out / "final").items():
        torch.testing.assert_close(_weights(exported)[name], weight, rtol=0, atol=0, msg=name)


def test_weights_moved(one_rank) -> None:
    """Equal runs are not "both unchanged": the policy trained."""
    from thinkrl.model import ModelConfig, build_model

    config = ModelConfig.from_hf_dict(json.loads((one_rank / "final" / "config.json").read_text()))
    initial = build_model(config, seed=0).state_dict()
    final = _weights(one_rank / "final")
    assert max(float((final[k] - initial[k]).abs().max()) for k in final) > 1e-3


def _wait_for_latest(root: Path, step: int, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    pointer, deadline = root / "latest", time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if pointer.is_file() and pointer.read_text().strip() >= f"step-{step:08d}":
            return
        time.sleep(0.02)
    tail = proc.stderr.read()[-3000:] if proc.stderr and proc.poll() is not None else ""
    raise AssertionError(f"the run never saved step {step} (exit status {proc.poll()}): {tail}")


def _descendants(pid: int) -> list[int]:
    """``pid``'s child processes, recursively (torchrun starts each rank in a session of its own, so a process
    group kill would miss them)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return _descendants_of(pid, parents)


def _descendants_of(pid: int, parents: dict[int, int]) -> list[int]:
    children = [child for child, parent in parents.items() if parent == pid]
    return children + [grandchild for child in children for grandchild in _descendants_of(child, parents)]


def _sigkill_job(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank it started, all at once (a machine or job being killed)."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


def test_sigkill_at_two_ranks_at_a_random_step_resumes_on_one(recipes, one_rank, tmp_path) -> None:
    """SIGKILL to every process of a 2-rank run once step k (random) is saved; resumed in one process from the
    2-rank shards, the run ends with the uninterrupted run's weights and metrics."""
    k = random.Random().randrange(1, STEPS - 1)
    print(f"SIGKILL once step {k} is saved")  # (shown with a failure: the random step is part of the case)
    out = tmp_path / "killed"
    proc = _launch(2, "train", recipes["train"], out, wait=False)
    try:
        _wait_for_latest(out / "checkpoints", k, proc)
        _sigkill_job(proc)
        assert proc.wait(timeout=60) == -signal.SIGKILL, f"killed after step {k}"
    finally:
        if proc.poll() is None:
            _sigkill_job(proc)
            proc.wait()
    saved = (out / "checkpoints" / "latest").read_text().strip()
    assert saved < f"step-{STEPS:08d}", f"the run finished before the kill (k={k})"
    _in_process("train", recipes["train"], out, "trainer.resume=true")
    assert_same_run(one_rank, out, RL_KEYS)


def test_sigkill_inside_a_save_keeps_the_previous_checkpoint_and_resumes_on_two(recipes, one_rank, tmp_path) -> None:
    """A 1-rank run SIGKILLs itself inside the save of step k (random), after every shard and file is written and
    before the rename: ``latest`` still names step k-1, which loads; resumed on 2 ranks (resharded 1 -> 2), the run
    ends with the uninterrupted run's weights and metrics."""
    k = random.Random().randrange(2, STEPS)
    print(f"SIGKILL inside the save of step {k}")
    out = tmp_path / "killed"
    proc = _launch(1, "train", recipes["train"], out, env={**ENV, KILL_IN_SAVE_ENV: str(k)}, wait=False)
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()[-3000:]
    root = out / "checkpoints"
    assert (root / "latest").read_text().strip() == f"step-{k - 1:08d}"
    assert (root / f"tmp-step-{k:08d}" / "trainer_state.json").is_file()  # the save had written everything
    assert not (root / f"step-{k:08d}").exists()
    _launch(2, "train", recipes["train"], out, "trainer.resume=true")
    assert not (root / f"tmp-step-{k:08d}").exists()  # the next save removed the stale folder
    assert_same_run(one_rank, out, RL_KEYS)


def test_sft_two_ranks_train_like_one(recipes, tmp_path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _in_process("sft", recipes["sft"], one)
    _launch(2, "sft", recipes["sft"], two)
    assert [r["step"] for r in _rows(one)] == [1, 2, 3, 4]
    assert_same_run(one, two, ("loss", "lr", "epoch"))
    assert sorted(p.name for p in (two / "checkpoints" / "step-00000004").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp"]
    # a 2-rank SFT checkpoint resumes in one process: steps 3-4 again from step 2 give the same run
    resumed = tmp_path / "resumed"
    shutil.copytree(two / "checkpoints", resumed / "checkpoints")
    (resumed / "checkpoints" / "latest").write_text("step-00000002\n")
    shutil.rmtree(resumed / "checkpoints" / "step-00000004")
    shutil.copy(two / "metrics.jsonl", resumed / "metrics.jsonl")
    _in_process("sft", recipes["sft"], resumed, "trainer.resume=true")
    assert_same_run(one, resumed, ("loss", "lr", "epoch"))


def test_offload_needs_torchrun(recipes, tmp_path) -> None:
    with pytest.raises(ValueError, match="trainer.offload_optimizer needs FSDP2: launch with torchrun"):
        _in_process("sft", recipes["sft"], tmp_path, "trainer.offload_optimizer=true")
