"""Metrics of an evaluation run, computed from its ``samples.jsonl`` records.

Per thinking budget, over the m problems of the benchmark (each with n = k samples, c of them correct):

- avg@k: the mean over problems of c / n (= mean correctness over all problem x sample pairs).
- pass@k for k = 1, 2, 4, ... up to n: the mean over problems of the unbiased estimator 1 - C(n-c, k) / C(n, k)
  (Chen et al. 2021, arXiv 2107.03374, Eq. 1; `thinkrl.eval.evaluate.pass_at_k`). pass@1 equals avg@k.
- A 95% confidence interval for each: the normal approximation of the mean of the m per-problem values,
  mean +- 1.959964 * s / sqrt(m), with s the sample standard deviation (ddof 1) of the per-problem values, clipped
  to [0, 1]. It reflects the spread over problems (the benchmark as a sample of problems), not sampling noise
  within a problem alone. With one problem there is no interval (``low`` = ``high`` = None).
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

from pydantic import BaseModel, ConfigDict

from thinkrl.eval.evaluate import pass_at_k
from thinkrl.eval.records import ProblemResult, RunConfig

CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959964...


class Estimate(BaseModel):
    """A mean over problems with its 95% confidence interval (normal approximation, clipped to [0, 1])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    low: float | None
    high: float | None


class BudgetMetrics(BaseModel):
    """The metrics of one thinking budget.

    Fields:
        thinking_budget: -1 unlimited.
        num_problems / samples: m and n.
        avg_at_k: mean correctness (avg@n) with its interval.
        pass_at: "k" -> unbiased pass@k with its interval, k = 1, 2, 4, ... <= n (string keys, as in JSON).
        mean_response_tokens / mean_thinking_tokens: per sample.
        truncated: share of samples that hit the token limit.
        reasons: verifier reasons counted over all samples.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    thinking_budget: int
    num_problems: int
    samples: int
    avg_at_k: Estimate
    pass_at: dict[str, Estimate]
    mean_response_tokens: float
    mean_thinking_tokens: float
    truncated: float
    reasons: dict[str, int]


class EvalReport(BaseModel):
    """``report.json``: the run's settings and one `BudgetMetrics` per budget (in the order of ``config.budgets``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: RunConfig
    confidence: float = CONFIDENCE
    interval: str = "normal approximation over problems"
    budgets: list[BudgetMetrics]


def estimate(values: list[float]) -> Estimate:
    """Mean of ``values`` with its normal-approximation interval (see the module docstring)."""
    if not values:
        raise ValueError("no values to estimate a mean from")
    m = len(values)
    mean = sum(values) / m
    if m < 2:
        return Estimate(mean=mean, low=None, high=None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (m - 1))
    half = Z * sd / math.sqrt(m)
    return Estimate(mean=mean, low=max(0.0, mean - half), high=min(1.0, mean + half))


def pass_ks(samples: int) -> list[int]:
    """k = 1, 2, 4, ... up to ``samples``."""
    return [2**e for e in range(samples.bit_length()) if 2**e <= samples]


def budget_metrics(results: list[ProblemResult], budget: int, samples: int) -> BudgetMetrics:
    """`BudgetMetrics` of the units of one budget, each with ``samples`` samples."""
    if not results:
        raise ValueError(f"no finished problems at thinking budget {budget}")
    for result in results:
        if len(result.samples) != samples:
            raise ValueError(f"problem {result.problem_id} (budget {budget}) has {len(result.samples)} samples, "
                             f"the run asks for {samples}")
    flat = [s for r in results for s in r.samples]
    return BudgetMetrics(
        thinking_budget=budget, num_problems=len(results), samples=samples,
        avg_at_k=estimate([r.num_correct / samples for r in results]),
        pass_at={str(k): estimate([pass_at_k(samples, r.num_correct, k) for r in results]) for k in pass_ks(samples)},
        mean_response_tokens=sum(s.response_tokens for s in flat) / len(flat),
        mean_thinking_tokens=sum(s.thinking_tokens for s in flat) / len(flat),
        truncated=sum(s.reason == "truncated" for s in flat) / len(flat),
        reasons=dict(sorted(Counter(s.reason for s in flat).items())),
    )


def build_report(config: RunConfig, results: list[ProblemResult]) -> EvalReport:
    """The report of a run from its records (one `BudgetMetrics` per budget of ``config``)."""
    per_budget = [budget_metrics([r for r in results if r.thinking_budget == b], b, config.samples)
                  for b in config.budgets]
    return EvalReport(config=config, budgets=per_budget)
