"""Held-out evaluation: sample k responses per problem and report verifier accuracy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.rewards import score_response
from thinkrl.rewards.external import task_for
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


@dataclass
class EvalResult:
    """Accuracy of one model on one problem set.

    Fields:
        accuracy: mean correctness over all (problem, sample) pairs (avg@k).
        pass_at_k: share of problems with at least one correct sample.
        num_problems / samples_per_problem: sizes.
        mean_response_tokens: mean generated tokens.
        reasons: verifier reasons counted over all samples.
    """

    accuracy: float
    pass_at_k: float
    num_problems: int
    samples_per_problem: int
    mean_response_tokens: float
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate(engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem], *, samples: int = 4,
             temperature: float = 1.0, max_new_tokens: int = 256, thinking_budget: int = -1,
             seed: int = 0) -> EvalResult:
    """Sample ``samples`` responses per problem (seeded per request, so reruns are identical) and verify them."""
    requests = []
    for i, problem in enumerate(problems):
        prompt_ids = tokenizer.encode_chat([{"role": "user", "content": problem.prompt}],
                                           thinking_budget=thinking_budget)
        for j in range(samples):
            params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                    seed=seed * 1_000_003 + i * samples + j)
            requests.append(Request(prompt_ids, params, request_id=(i, j), metadata={"problem": i}))
    trajs = engine.generate(requests)
    correct = [False] * len(trajs)
    reasons: Counter[str] = Counter()
    for k, traj in enumerate(trajs):
        problem = problems[traj.metadata["problem"]]
        s = score_response(task_for(problem.task), problem, traj.text, tokenizer.think_tags,
                           traj.finish_reason == "stop")
        correct[k] = s.correct
        reasons[s.reason] += 1
    per_problem = [any(correct[i * samples:(i + 1) * samples]) for i in range(len(problems))]
    return EvalResult(
        accuracy=sum(correct) / max(1, len(correct)),
        pass_at_k=sum(per_problem) / max(1, len(problems)),
        num_problems=len(problems), samples_per_problem=samples,
        mean_response_tokens=sum(len(t.response_ids) for t in trajs) / max(1, len(trajs)),
        reasons=dict(reasons),
    )
