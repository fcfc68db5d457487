"""Samplers: turn evaluation jobs (problem x thinking budget) into judged `ProblemResult` records.

Two implementations share the `Sampler` protocol: `LocalSampler` samples a thinkrl model in this process through
`thinkrl.rollout.sample` and judges with `thinkrl.rollout.judge` (as RL and `thinkrl.eval.evaluate` do);
`thinkrl.eval.endpoint.EndpointSampler` sends chat requests to an OpenAI-compatible server and judges the returned
text with the same verifiers (`judge_message`). Both call ``on_done`` once per finished job, as soon as it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from thinkrl.engine import SamplingParams
from thinkrl.eval.records import Job, ProblemResult, SampleResult, sample_seed
from thinkrl.records import Trajectory
from thinkrl.rewards import RuleScore, score_response
from thinkrl.rewards.external import task_for
from thinkrl.rollout import GenerateClient, SampleRequest, judge, render_prompt, sample
from thinkrl.tasks import Problem
from thinkrl.tokenizer import SEED_TAGS, TextTokenizer, parse_completion

MAX_ANSWER_CHARS = 2000

OnDone = Callable[[ProblemResult], None]


@dataclass(frozen=True)
class SampleSettings:
    """How every response of a run is sampled.

    Fields:
        samples: k, responses per problem and budget.
        temperature: 0 is greedy.
        top_p: nucleus mass in (0, 1].
        max_tokens: generated-token limit per response.
        seed: base of the per-sample seeds (`thinkrl.eval.records.sample_seed`).
    """

    samples: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_tokens < 1:
            raise ValueError(f"samples ({self.samples}) and max_tokens ({self.max_tokens}) must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature ({self.temperature}) must be >= 0 and top_p ({self.top_p}) in (0, 1]")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def seed_of(self, job: Job, sample_index: int) -> int:
        return sample_seed(self.seed, job.index, self.samples, sample_index)


class Sampler(Protocol):
    """Samples and judges jobs, calling ``on_done`` with each finished one (in any order)."""

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...


def _answer(text: str) -> str:
    return text[:MAX_ANSWER_CHARS]


class LocalSampler:
    """A thinkrl model in this process: ``chunk`` jobs at a time through `thinkrl.rollout.sample` (one engine batch
    each), judged by `thinkrl.rollout.judge`. ``enforce_budget`` forces the end of thinking at a finite budget, as
    ``thinkrl serve`` does by default."""

    def __init__(self, client: GenerateClient, tokenizer: TextTokenizer, settings: SampleSettings, *,
                 chunk: int = 16, enforce_budget: bool = True) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.client, self.tokenizer, self.settings = client, tokenizer, settings
        self.chunk, self.enforce_budget = chunk, enforce_budget

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        for start in range(0, len(jobs), self.chunk):
            part = jobs[start : start + self.chunk]
            items = [self._request(n, job, j) for n, job in enumerate(part) for j in range(self.settings.samples)]
            trajs = sample(self.client, self.tokenizer, items, enforce_budget=self.enforce_budget)
            judge(trajs, self.tokenizer)
            k = self.settings.samples
            for n, job in enumerate(part):
                on_done(self._result(job, items[n * k : (n + 1) * k], trajs[n * k : (n + 1) * k]))

    def _request(self, n: int, job: Job, j: int) -> SampleRequest:
        s = self.settings
        params = SamplingParams(max_new_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                                seed=s.seed_of(job, j))
        return SampleRequest(render_prompt(self.tokenizer, job.problem, job.thinking_budget), params, group_id=n,
                             request_id=(job.index, job.thinking_budget, j))

    def _result(self, job: Job, items: list[SampleRequest], trajs: list[Trajectory]) -> ProblemResult:
        samples = []
        for j, (item, traj) in enumerate(zip(items, trajs, strict=True)):
            content = parse_completion(traj.text, self.tokenizer.think_tags,
                                       thinking_open=item.prompt.thinking_open).content
            samples.append(SampleResult(index=j, seed=int(item.params.seed or 0), correct=bool(traj.correct),
                                        reason=str(traj.reward_reason), finish_reason=str(traj.finish_reason),
                                        response_tokens=len(traj.response_ids),
                                        thinking_tokens=int(traj.thinking_tokens or 0), answer=_answer(content)))
        return ProblemResult(problem_id=job.problem.id, task=job.problem.task, thinking_budget=job.thinking_budget,
                             samples=samples)


def judge_message(problem: Problem, reasoning: str | None, content: str | None, finished: bool) -> RuleScore:
    """The verdict of a chat message split into ``reasoning_content`` and ``content`` (``answer``: what was judged).

    The text the verifier reads is rebuilt in one thinking format (`SEED_TAGS`): the reasoning inside a closed
    thinking block, then the content; `thinkrl.rewards.score_response` then judges the content with the
    problem's task verifier, and an unfinished response (finish reason "length") is "truncated".
    """
    tags = SEED_TAGS
    text = f"{tags.open}{reasoning}{tags.close}{content or ''}" if reasoning else (content or "")
    return score_response(task_for(problem.task), problem, text, tags, finished=finished)
