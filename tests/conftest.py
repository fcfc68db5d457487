"""Fixtures shared across test folders."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """A shell without job control starts background commands (``make test &``) with SIGINT ignored, and every
    subprocess inherits that: the Ctrl-C tests' runs would then never see their SIGINT and time out. Restore
    Python's handler; a handled (not ignored) signal is reset to the default in each child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A benchmark's ``main`` run in-process sets torch's thread count for its measurement; the tests after it must
    not inherit that (results that compare runs across processes, e.g. the Ray placement test, depend on it)."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sft_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro model (the test module's ``MICRO`` config) that learned the answer format, and some answers, of the
    module's ``DATA`` in ~10 s of SFT. It answers few problems right (~1% of samples at temperature 1 on the
    2-term arithmetic most modules use), so a test that needs an update at every step turns dynamic sampling off
    rather than count on a group with mixed rewards.
    A module that defines its own ``sft_model`` fixture uses that one instead. Modules with the same ``MICRO`` and
    ``DATA`` share one model (training is deterministic, and the tests only read the folder)."""
    key = json.dumps([request.module.MICRO, request.module.DATA], sort_keys=True)
    if key not in _SFT_MODELS:
        _SFT_MODELS[key] = _train_sft_model(request.module.MICRO, request.module.DATA,
                                            tmp_path_factory.mktemp("sft"))
    return _SFT_MODELS[key]


_SFT_MODELS: dict[str, Path] = {}  # json of (MICRO, DATA) -> the trained folder, for the whole session


def _train_sft_model(micro: dict, data: dict, out: Path) -> Path:
    from thinkrl.train.config import SFTRecipe, validate_recipe
    from thinkrl.train.sft import run_sft

    recipe = validate_recipe({
        "name": "micro-sft", "model": {"init": micro, "device": "cpu"}, "data": data,
        "epochs": 12, "optim": {"lr": 3e-3, "warmup_steps": 5},
        "trainer": {"micro_batch_tokens": 384, "save_every": 0, "output_dir": str(out), "log_every": 5},
    }, SFTRecipe)
    return run_sft(recipe)


def _wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout_s: float = 300.0) -> None:
    """Poll ``run_dir/metrics.jsonl`` until step ``step`` is logged; fails (with the run's stderr) if ``proc``
    exits first or ``timeout_s`` passes."""
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout_s
    while not metrics.exists() or f'"step": {step}' not in metrics.read_text():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"step {step} not reached within {timeout_s:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def wait_for_step() -> Callable[..., None]:
    """``wait_for_step(proc, run_dir, step, timeout_s=300)``: wait until a running `thinkrl train` logged ``step``."""
    return _wait_for_step
