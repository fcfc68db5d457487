"""Compute accounting and seed statistics of the learning protocol.

FLOPs (the arms are matched on these, not on wall time: the 2-core machine is shared, so wall time is noise):

- A decoder forward over one token at position ``t`` (0-based; it attends to ``t + 1`` keys) costs
  ``2 * N + 4 * L * (t + 1) * H * D`` FLOPs: ``N`` multiply-accumulates of the weight matrices (q, k, v, o
  projections, the SwiGLU's three matrices, the LM head; norms, biases, rotary and softmax are left out) and
  the two attention products (q·k and p·v), ``2 * (t + 1) * H * D`` each, in each of the ``L`` layers.
- Summed over a sequence of ``T`` tokens: ``forward(T) = 2 * N * T + 2 * L * H * D * T * (T + 1)``.
- Sampling a response of ``R`` tokens after a prompt of ``P`` (KV cache): ``forward(P + R)`` (every position is
  processed once: the prompt in the prefill, each response token when it is fed back).
- Training on a sequence of ``T`` tokens: ``3 * forward(T)`` (backward = 2x forward).

Seed statistics: mean with a two-sided 95% Student t-interval over seeds, ``mean +- t(0.975, n-1) * s / sqrt(n)``
(``s`` the sample standard deviation, ddof 1); with n = 3 the quantile is 4.3027, so intervals are wide.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from thinkrl.model import ModelConfig


@dataclass(frozen=True)
class FlopModel:
    """The shape numbers the FLOP count needs.

    Fields:
        matmul_params: N, multiply-accumulates per token in the weight matrices (incl. the LM head).
        num_layers: L.
        attention_width: H * D (query heads x head dim).
    """

    matmul_params: int
    num_layers: int
    attention_width: int

    @classmethod
    def of(cls, config: ModelConfig) -> FlopModel:
        """From a decoder config (dense SwiGLU; MoE configs are rejected: their active parameters differ)."""
        if config.num_experts:
            raise ValueError("FlopModel counts dense decoders only; this config has experts")
        c, i = config.hidden_size, config.intermediate_size
        d = config.head_dim or c // config.num_attention_heads
        q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
        per_layer = c * q + 2 * c * kv + q * c + 3 * c * i
        return cls(per_layer * config.num_hidden_layers + c * config.vocab_size, config.num_hidden_layers, q)

    def forward(self, num_tokens: int) -> int:
        """FLOPs of one forward over a sequence of ``num_tokens`` tokens (module docstring)."""
        t = num_tokens
        return 2 * self.matmul_params * t + 2 * self.num_layers * self.attention_width * t * (t + 1)

    def sample(self, prompt_tokens: int, response_tokens: int) -> int:
        """FLOPs of sampling one response (prefill + decode with a KV cache)."""
        return self.forward(prompt_tokens + response_tokens)

    def train(self, num_tokens: int) -> int:
        """FLOPs of a forward and backward over one sequence of ``num_tokens`` tokens."""
        return 3 * self.forward(num_tokens)


@dataclass
class ComputeLedger:
    """FLOPs spent by one arm, split into sampling and training, with the sequence counts behind them."""

    flops: FlopModel
    sampling_flops: int = 0
    training_flops: int = 0
    sampled_sequences: int = 0
    trained_sequences: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Sampling + training FLOPs."""
        return self.sampling_flops + self.training_flops

    def add_sampled(self, prompt_tokens: int, response_tokens: int, count: int = 1) -> None:
        """``count`` sampled sequences of these lengths."""
        self.sampling_flops += count * self.flops.sample(prompt_tokens, response_tokens)
        self.sampled_sequences += count

    def add_trained(self, num_tokens: int, count: int = 1) -> None:
        """``count`` trained sequences of ``num_tokens`` tokens each."""
        self.training_flops += count * self.flops.train(num_tokens)
        self.trained_sequences += count

    def to_dict(self) -> dict[str, float]:
        """JSON row (FLOPs as floats, so 1e12-scale numbers read well)."""
        return {"total_flops": float(self.total), "sampling_flops": float(self.sampling_flops),
                "training_flops": float(self.training_flops), "sampled_sequences": self.sampled_sequences,
                "trained_sequences": self.trained_sequences}


def rl_step_compute(ledger: ComputeLedger, row: dict[str, float], group_size: int, prompt_tokens: int) -> None:
    """Add one RL step's FLOPs from its logged metrics row.

    Every sampled response (``groups_sampled * group_size`` of mean length ``response_length_mean``, dynamic
    sampling's dropped groups included) is charged as sampled; every response of a kept group is charged as trained
    once (one PPO epoch) at the same mean length. The log has the mean over all sampled responses, not over the
    kept ones, so the training share is approximate (kept groups are those with mixed outcomes).
    """
    response = round(row["response_length_mean"])
    ledger.add_sampled(prompt_tokens, response, int(row["groups_sampled"]) * group_size)
    ledger.add_trained(prompt_tokens + response, int(row.get("groups_kept_trained", 0)) * group_size)


# --- statistics over seeds -----------------------------------------------------------------------------------


def _t_pdf(x: float, df: int) -> float:
    return math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) * (1 + x * x / df) ** (
        -(df + 1) / 2)


def _t_cdf_upper_half(x: float, df: int, panels: int = 2000) -> float:
    """P(0 <= T <= x) by Simpson's rule (x >= 0)."""
    h = x / panels
    total = _t_pdf(0.0, df) + _t_pdf(x, df)
    total += sum((4 if k % 2 else 2) * _t_pdf(k * h, df) for k in range(1, panels))
    return total * h / 3


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    if not 0.5 < probability < 1.0 or df < 1:
        raise ValueError(f"need 0.5 < probability < 1 and df >= 1, got {probability}, {df}")
    low, high = 0.0, 1.0
    while 0.5 + _t_cdf_upper_half(high, df) < probability:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if 0.5 + _t_cdf_upper_half(mid, df) < probability else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class SeedInterval:
    """Mean over seeds with its 95% t-interval (``low``/``high`` None with one seed)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def text(self, scale: float = 1.0, digits: int = 3) -> str:
        """``0.512 [0.401, 0.623]``."""
        if self.low is None or self.high is None:
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> SeedInterval:
    """Mean and two-sided Student t-interval of ``values`` (one per seed); not clipped."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return SeedInterval(mean, None, None, len(values))
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return SeedInterval(mean, mean - half, mean + half, len(values))
