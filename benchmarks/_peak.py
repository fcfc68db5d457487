"""The machine's matmul peak, measured in the benchmark's own run, and model FLOPs per token.

Speed benchmarks report ``fraction_of_peak`` = model FLOPs per token x tokens/s / peak FLOP/s beside
the ratio to their peer. The peak is the best square ``torch.mm`` rate of a few sizes, measured with
the benchmark's thread count, device and dtype. What is counted per token (forward):

* ``2 x`` non-embedding parameters (each weight is one multiply-add); the LM head counts when it is
  a matmul (its weights are the tied embedding or a separate matrix), the input embedding lookup does not;
* attention: ``2 x layers x context x (num_heads x head_dim)`` for scores and again for the weighted sum,
  i.e. ``4 x layers x context x heads x head_dim``, where ``context`` is the mean number of cached
  positions each decoded token attends to.

A training step (forward + backward) is ``3 x`` the forward count.

Import it by name from a benchmark (``import _peak``): ``thinkrl bench``, ``python benchmarks/x.py`` and the
tests (pytest ``pythonpath``) all put ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from thinkrl.model import ModelConfig

PEAK_SIZES = (1024, 2048)


@dataclass(frozen=True)
class Peak:
    """The best measured matmul rate: ``gflops`` (GFLOP/s), the ``size`` (n of n x n x n) that reached it,
    ``per_size`` (GFLOP/s of each size tried), and the ``threads`` / ``device`` / ``dtype`` used."""

    gflops: float
    size: int
    per_size: dict[int, float]
    threads: int
    device: str
    dtype: str
    clock: str = "wall"

    def as_json(self) -> dict:
        return {"gflops": round(self.gflops, 1), "size": self.size, "threads": self.threads, "device": self.device,
                "dtype": self.dtype, "per_size_gflops": {str(n): round(g, 1) for n, g in self.per_size.items()},
                "clock": self.clock, "method": "best of repeats of torch.mm on n x n x n, 2 n^3 FLOPs each"}


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""How benchmarks time: "wall" (elapsed seconds) or "cpu" (this process's CPU seconds: on a shared machine with
one torch thread, the time it actually ran, whatever the other jobs do; CPU devices only)."""


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = PEAK_SIZES,
                 repeats: int = 5, clock: str = "wall") -> Peak:
    """Best GFLOP/s of ``torch.mm`` over ``sizes`` (n x n times n x n), each the best of ``repeats`` runs
    after one warm-up; uses torch's current thread count; timed by ``clock`` (`CLOCKS`)."""
    now = CLOCKS[clock]
    per_size: dict[int, float] = {}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        torch.mm(a, b)  # warm-up
        calls = 1 if device == "cpu" else 10  # one GPU matmul is too short to time alone
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = now()
            for _ in range(calls):
                torch.mm(a, b)
            _sync(device)
            best = min(best, (now() - start) / calls)
        per_size[n] = 2 * n**3 / best / 1e9
    size = max(per_size, key=per_size.__getitem__)
    return Peak(per_size[size], size, per_size, torch.get_num_threads(), device, str(dtype).removeprefix("torch."),
                clock)


def non_embedding_parameters(config: ModelConfig) -> int:
    """Parameters that take part in a matmul per token: all but the input embedding table (the LM head
    stays, whether tied or not). Norm weights are included (negligible)."""
    return config.num_parameters() - (config.vocab_size * config.hidden_size if not config.tie_word_embeddings
                                      else 0)


def forward_flops_per_token(config: ModelConfig, context: float) -> float:
    """Forward FLOPs for one token attending to ``context`` positions (see the module docstring)."""
    assert config.head_dim is not None  # ModelConfig's validator fills it in
    attention = 4 * config.num_hidden_layers * context * config.num_attention_heads * config.head_dim
    return 2 * non_embedding_parameters(config) + attention


def fraction_of_peak(flops_per_token: float, tokens_per_s: float, peak: Peak) -> float:
    """Achieved model FLOP/s over the measured peak (0..1 when below the peak)."""
    return flops_per_token * tokens_per_s / (peak.gflops * 1e9)
