"""Synchronous group rollout for RL: sample G responses per prompt, score them, apply DAPO dynamic sampling.

(The asynchronous streaming rollout with partial rollouts lives in ``thinkrl.rollout``;
this is the simple on-policy path the DAPO recipe uses by default.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.records import Trajectory
from thinkrl.rewards import score_response
from thinkrl.rl import group_has_variance, soft_overlong_penalty
from thinkrl.tasks import Problem, get_task
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.config import AlgorithmSpec, SamplingSpec


class PromptCursor:
    """Walks the training problems in a fresh seeded shuffle each epoch; its state is two ints."""

    def __init__(self, problems: list[Problem], seed: int, epoch: int = 0, index: int = 0) -> None:
        if not problems:
            raise ValueError("no training problems")
        self.problems, self.seed, self.epoch, self.index = problems, seed, epoch, index
        self._order = self._shuffled(epoch)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, n: int) -> list[Problem]:
        out = []
        for _ in range(n):
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self.problems[self._order[self.index]])
            self.index += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


@dataclass
class RolloutBatch:
    """What one RL step trains on, plus what it cost to get it.

    Fields:
        trajectories: kept responses (whole groups), scored.
        num_groups_sampled / num_groups_dropped: dynamic-sampling counts over all rounds.
        num_rounds: sampling rounds used.
        sampled_correct: correctness of every sampled response (kept or not), for accuracy metrics.
        sampled_lengths: response lengths of every sampled response.
        reasons: verifier reasons over every sampled response.
    """

    trajectories: list[Trajectory]
    num_groups_sampled: int = 0
    num_groups_dropped: int = 0
    num_rounds: int = 0
    sampled_correct: list[bool] = field(default_factory=list)
    sampled_lengths: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def sample_groups(engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem], group_size: int,
                  sampling: SamplingSpec, seed: int, first_group_id: int) -> list[Trajectory]:
    """G seeded samples for each problem; ``metadata`` carries the problem and its thinking budget."""
    rng = random.Random(seed)
    requests = []
    for g, problem in enumerate(problems):
        budget = rng.choice(sampling.thinking_budgets)
        prompt_ids = tokenizer.encode_chat([{"role": "user", "content": problem.prompt}], thinking_budget=budget)
        for k in range(group_size):
            params = SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                    top_p=sampling.top_p, top_k=sampling.top_k, seed=rng.getrandbits(62))
            meta = {"problem": problem, "group_id": first_group_id + g, "thinking_budget": budget}
            requests.append(Request(prompt_ids, params, request_id=(first_group_id + g, k), metadata=meta))
    return engine.generate(requests)


def score_trajectories(trajs: list[Trajectory], tokenizer: TextTokenizer, algo: AlgorithmSpec) -> None:
    """Set ``reward`` (rule reward +1/-1 plus DAPO soft overlong punishment) and ``reward_reason``."""
    for traj in trajs:
        problem: Problem = traj.metadata["problem"]
        score = score_response(get_task(problem.task), problem, traj.text, tokenizer.think_tags,
                               finished=traj.finish_reason == "stop")
        traj.metadata["correct"] = score.correct
        traj.reward_reason = score.reason
        traj.reward = algo.correct_reward if score.correct else algo.wrong_reward
    if algo.overlong_penalty and trajs:
        lengths = torch.tensor([len(t.response_ids) for t in trajs])
        penalty = soft_overlong_penalty(lengths, algo.max_response_len, algo.overlong_cache_len).tolist()
        for traj, p in zip(trajs, penalty, strict=True):
            traj.reward = float(traj.reward) + p


def collect_rollout_batch(engine: LLMEngine, tokenizer: TextTokenizer, cursor: PromptCursor,
                          algo: AlgorithmSpec, sampling: SamplingSpec, seed: int) -> RolloutBatch:
    """Sample and score until ``prompts_per_step`` groups are kept (DAPO dynamic sampling).

    With dynamic sampling, groups whose responses are all correct or all wrong carry no
    gradient under group-normalised advantages and are dropped; more prompts are sampled,
    for at most ``max_sampling_rounds`` rounds (then the step trains on what it has).
    """
    batch = RolloutBatch(trajectories=[])
    kept_groups = 0
    rounds = algo.max_sampling_rounds if algo.dynamic_sampling else 1
    for round_index in range(rounds):
        need = algo.prompts_per_step - kept_groups
        if need <= 0:
            break
        problems = cursor.take(need)
        trajs = sample_groups(engine, tokenizer, problems, algo.group_size, sampling,
                              seed=seed * 7919 + round_index, first_group_id=batch.num_groups_sampled)
        score_trajectories(trajs, tokenizer, algo)
        batch.num_rounds += 1
        batch.num_groups_sampled += len(problems)
        for t in trajs:
            batch.sampled_correct.append(bool(t.metadata["correct"]))
            batch.sampled_lengths.append(len(t.response_ids))
            batch.reasons[t.reward_reason] = batch.reasons.get(t.reward_reason, 0) + 1
        if algo.dynamic_sampling:
            correct = torch.tensor([float(t.metadata["correct"]) for t in trajs])
            keep = group_has_variance(correct, torch.tensor([t.group_id for t in trajs])).tolist()
            dropped = len({t.group_id for t, k in zip(trajs, keep, strict=True) if not k})
            batch.num_groups_dropped += dropped
            trajs = [t for t, k in zip(trajs, keep, strict=True) if k]
            kept_groups += len(problems) - dropped
        else:
            kept_groups += len(problems)
        batch.trajectories += trajs
    return batch
