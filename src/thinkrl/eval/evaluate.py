"""Held-out evaluation: sample k responses per problem through the rollout stage and report verifier accuracy.

Metrics per problem set: avg@k (mean correctness over problems × samples), the unbiased pass@k estimator
(Chen et al. 2021, arXiv 2107.03374, Eq. 1) for every k up to the samples drawn, and mean response and thinking
tokens. Requests are built exactly as RL builds them (`thinkrl.rollout.sample`); only the seeds differ.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import comb

from thinkrl.engine import SamplingParams
from thinkrl.records import Trajectory
from thinkrl.rollout import GenerateClient, SampleRequest, judge, render_prompt, sample
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of one problem from ``num_correct`` of ``num_samples`` samples: 1 - C(n-c, k) / C(n, k)."""
    if not 1 <= k <= num_samples:
        raise ValueError(f"k must be in [1, {num_samples}], got {k}")
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"num_correct must be in [0, {num_samples}], got {num_correct}")
    return 1.0 - comb(num_samples - num_correct, k) / comb(num_samples, k)


@dataclass
class EvalResult:
    """Accuracy of one model on one problem set.

    Fields:
        accuracy: mean correctness over all (problem, sample) pairs (avg@k).
        pass_at_k: share of problems with at least one correct sample (pass@k with k = samples_per_problem).
        pass_at: k -> mean unbiased pass@k over problems, for k = 1, 2, 4, ... up to samples_per_problem.
        num_problems / samples_per_problem: sizes.
        mean_response_tokens: mean generated tokens.
        mean_thinking_tokens: mean thinking tokens (the engine's counting rule).
        reasons: verifier reasons counted over all samples.
    """

    accuracy: float
    pass_at_k: float
    num_problems: int
    samples_per_problem: int
    mean_response_tokens: float
    mean_thinking_tokens: float = 0.0
    pass_at: dict[int, float] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def eval_requests(tokenizer: TextTokenizer, problems: list[Problem], *, samples: int, temperature: float,
                  max_new_tokens: int, thinking_budget: int, seed: int, top_p: float = 1.0) -> list[SampleRequest]:
    """``samples`` seeded requests per problem (seed ``seed * 1_000_003 + i * samples + j``), grouped by problem."""
    items = []
    for i, problem in enumerate(problems):
        prompt = render_prompt(tokenizer, problem, thinking_budget)
        for j in range(samples):
            params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    seed=seed * 1_000_003 + i * samples + j)
            items.append(SampleRequest(prompt, params, group_id=i, request_id=(i, j)))
    return items


def summarise(trajs: list[Trajectory], num_problems: int, samples: int) -> EvalResult:
    """`EvalResult` of judged trajectories, ``samples`` consecutive ones per problem."""
    correct = [bool(t.correct) for t in trajs]
    per_problem = [sum(correct[i * samples:(i + 1) * samples]) for i in range(num_problems)]
    ks = [k for k in (2**e for e in range(samples.bit_length())) if k <= samples]
    n = max(1, len(trajs))
    return EvalResult(
        accuracy=sum(correct) / n,
        pass_at_k=sum(c > 0 for c in per_problem) / max(1, num_problems),
        num_problems=num_problems, samples_per_problem=samples,
        mean_response_tokens=sum(len(t.response_ids) for t in trajs) / n,
        mean_thinking_tokens=sum(int(t.thinking_tokens or 0) for t in trajs) / n,
        pass_at={k: sum(pass_at_k(samples, c, k) for c in per_problem) / max(1, num_problems) for k in ks},
        reasons=dict(Counter(t.reward_reason for t in trajs)),
    )


def evaluate(client: GenerateClient, tokenizer: TextTokenizer, problems: list[Problem], *, samples: int = 4,
             temperature: float = 1.0, max_new_tokens: int = 256, thinking_budget: int = -1,
             seed: int = 0, top_p: float = 1.0) -> EvalResult:
    """Sample ``samples`` responses per problem (seeded per request from ``seed``, so reruns are identical) and
    verify them."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    items = eval_requests(tokenizer, problems, samples=samples, temperature=temperature,
                          max_new_tokens=max_new_tokens, thinking_budget=thinking_budget, seed=seed, top_p=top_p)
    trajs = sample(client, tokenizer, items)
    judge(trajs, tokenizer)
    return summarise(trajs, len(problems), samples)
