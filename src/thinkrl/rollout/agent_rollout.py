"""Multi-turn tool-use rollouts for RL and evaluation: environment problems → episodes → scored trajectories.

The agent counterpart of `thinkrl.rollout.groups` / `thinkrl.eval.evaluate`: prompts are rendered with the
environment's tools in the system turn, every response is an `Episode` of `thinkrl.rollout.multiturn`, the
environment judges it, and the reward section shapes the reward as for single-turn RL (outcome + optional
overlong penalty on the whole response). Dynamic sampling drops groups whose episodes all agree, as DAPO does.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import torch

from thinkrl.engine import SamplingParams
from thinkrl.model import CausalLM
from thinkrl.records import RewardParts
from thinkrl.rl import group_has_variance, soft_overlong_penalty
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.engine import EngineClient, Placement, start_engine_client
from thinkrl.rollout.environments import Environment, build_environment
from thinkrl.rollout.groups import RolloutBatch
from thinkrl.rollout.multiturn import Episode, EpisodeRequest, MultiTurnRunner, SubmitClient
from thinkrl.rollout.requests import sampling_params
from thinkrl.rollout.sources import SKIPPED_TOTAL, PromptSource
from thinkrl.rollout.specs import RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


def render_episode_prompt(tokenizer: TextTokenizer, env: Environment, problem: Problem, thinking_budget: int = -1,
                          use_tools: bool = True) -> tuple[tuple[int, ...], bool]:
    """``(prompt_ids, thinking_open)`` of the opening conversation, the tools rendered in the system turn
    (``use_tools`` False renders none: the no-tool baseline)."""
    tools = env.tool_schemas() if use_tools else None
    text = tokenizer.apply_chat_template(env.messages(problem), add_generation_prompt=True,
                                         thinking_budget=thinking_budget, tools=tools)
    return tuple(tokenizer.encode(text)), tokenizer.think_tags.ends_inside_thinking(text)


def runner_for(client: SubmitClient, tokenizer: TextTokenizer, env: Environment, spec: AgentSpec,
               use_tools: bool = True) -> MultiTurnRunner:
    """The `MultiTurnRunner` of ``env`` under ``spec``'s limits (no tools for the no-tool baseline)."""
    return MultiTurnRunner(client, tokenizer, env.tools() if use_tools else [], spec.limits(),
                           max_workers=spec.tool_workers)


def sample_episodes(runner: MultiTurnRunner, env: Environment, problems: list[Problem], group_size: int,
                    sampling: SamplingSpec, seed: int, first_group_id: int, use_tools: bool = True) -> list[Episode]:
    """``group_size`` seeded episodes per problem (budget drawn from ``sampling.thinking_budgets``); each
    trajectory gets its ``problem`` and ``group_id``."""
    rng = random.Random(seed)
    items, owners = [], []
    for g, problem in enumerate(problems):
        budget = rng.choice(sampling.thinking_budgets)
        ids, thinking_open = render_episode_prompt(runner.tokenizer, env, problem, budget, use_tools)
        for k in range(group_size):
            params = sampling_params(sampling, rng.getrandbits(62))
            items.append(EpisodeRequest(ids, params, budget, thinking_open, request_id=(first_group_id + g, k)))
            owners.append((problem, first_group_id + g))
    episodes = runner.run(items)
    for episode, (problem, group_id) in zip(episodes, owners, strict=True):
        episode.trajectory.problem, episode.trajectory.group_id = problem, group_id
    return episodes


def score_episodes(episodes: list[Episode], env: Environment, tokenizer: TextTokenizer, spec: RewardSpec) -> None:
    """Set ``correct``, ``reward_reason``, ``reward`` and ``reward_parts`` of each episode's trajectory: the
    environment's verdict on the final turn, shaped by the reward section (outcome + soft overlong penalty)."""
    for episode in episodes:
        traj = episode.trajectory
        if traj.problem is None:
            raise ValueError("an episode to score has no problem (`sample_episodes` sets it)")
        verdict = env.judge(traj.problem, episode.final_turn, tokenizer.think_tags, episode.finished)
        traj.correct, traj.reward_reason = verdict.correct, verdict.reason
    overlong = [0.0] * len(episodes)
    if spec.overlong_penalty and episodes:
        lengths = torch.tensor([len(e.trajectory.response_ids) for e in episodes])
        overlong = soft_overlong_penalty(lengths, spec.max_response_len, spec.overlong_cache_len).tolist()
    for episode, penalty in zip(episodes, overlong, strict=True):
        traj = episode.trajectory
        outcome = spec.correct_reward if traj.correct else spec.wrong_reward
        traj.reward_parts = RewardParts(outcome, float(penalty))
        traj.reward = float(outcome) + float(penalty)


def agent_metrics(episodes: list[Episode]) -> dict[str, float]:
    """Per-episode means of turns and calls, the shares of well-formed and of failed calls (when there are calls),
    timeouts, and how many episodes each limit ended (``agent/...``)."""
    n = max(1, len(episodes))
    calls = [c for e in episodes for c in e.calls]
    errors = Counter((c.result.error or "").split(":")[0] for c in calls if not c.result.ok)
    limits = Counter(e.limit for e in episodes if e.limit)
    row = {"agent/turns_mean": sum(len(e.turn_spans) for e in episodes) / n,
           "agent/tool_calls_mean": len(calls) / n,
           "agent/tool_timeouts": float(errors.get("timeout", 0)),
           "agent/episodes_with_calls_frac": sum(bool(e.calls) for e in episodes) / n}
    if calls:  # shares of calls: undefined without any
        row["agent/wellformed_frac"] = sum(c.well_formed for c in calls) / len(calls)
        row["agent/tool_error_frac"] = sum(not c.result.ok for c in calls) / len(calls)
    for name in ("max_turns", "max_total_tokens", "length"):
        row[f"agent/limit_{name}"] = float(limits.get(name, 0))
    return row


def collect_agent_batch(runner: MultiTurnRunner, env: Environment, source: PromptSource, rollout: RolloutSpec,
                        sampling: SamplingSpec, reward: RewardSpec, seed: int) -> RolloutBatch:
    """`thinkrl.rollout.collect_rollout_batch` for episodes: sample and score until ``prompts_per_step`` groups
    are kept (dynamic sampling); the agent metrics join ``data_metrics``."""
    batch = RolloutBatch(trajectories=[])
    skipped_before = source.metrics().get(SKIPPED_TOTAL, 0)
    kept_groups, episodes_all = 0, []
    for round_index in range(rollout.max_sampling_rounds if rollout.dynamic_sampling else 1):
        need = rollout.prompts_per_step - kept_groups
        if need <= 0:
            break
        problems = source.take(need)
        episodes = sample_episodes(runner, env, problems, rollout.group_size, sampling,
                                   seed=seed * 7919 + round_index, first_group_id=batch.num_groups_sampled)
        score_episodes(episodes, env, runner.tokenizer, reward)
        trajs = [e.trajectory for e in episodes]
        size = rollout.group_size
        for g, problem in enumerate(problems):
            source.observe(problem, [bool(t.correct) for t in trajs[g * size:(g + 1) * size]])
        batch.num_rounds += 1
        batch.num_groups_sampled += len(problems)
        batch.sampled += trajs
        episodes_all += episodes
        if rollout.dynamic_sampling:
            keep = group_has_variance(torch.tensor([float(bool(t.correct)) for t in trajs]),
                                      torch.tensor([t.group_id for t in trajs])).tolist()
            dropped = len({t.group_id for t, k in zip(trajs, keep, strict=True) if not k})
            batch.num_groups_dropped += dropped
            trajs = [t for t, k in zip(trajs, keep, strict=True) if k]
            kept_groups += len(problems) - dropped
        else:
            kept_groups += len(problems)
        batch.trajectories += trajs
    batch.data_metrics = {**source.metrics(), **agent_metrics(episodes_all)}
    batch.num_prompts_skipped = int(batch.data_metrics.get(SKIPPED_TOTAL, 0) - skipped_before)
    return batch


@dataclass
class AgentEvalResult:
    """Held-out accuracy of episodes.

    Fields:
        accuracy: avg@k over problems × samples.
        pass_at_k: share of problems with a correct sample.
        metrics: `agent_metrics` of the episodes (well-formed calls, turns, limits).
        reasons: verdict reasons counted.
        mean_response_tokens: response tokens per episode (tool tokens included).
    """

    accuracy: float
    pass_at_k: float
    num_problems: int
    samples_per_problem: int
    mean_response_tokens: float
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


def evaluate_agent(runner: MultiTurnRunner, env: Environment, problems: list[Problem], *, samples: int = 4,
                   temperature: float = 1.0, max_new_tokens: int = 128, seed: int = 0,
                   use_tools: bool = True) -> AgentEvalResult:
    """``samples`` seeded episodes per problem, judged by the environment (greedy: ``temperature`` 0)."""
    items = []
    for i, problem in enumerate(problems):
        ids, thinking_open = render_episode_prompt(runner.tokenizer, env, problem, -1, use_tools)
        for j in range(samples):
            params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                    seed=seed * 1_000_003 + i * samples + j)
            items.append(EpisodeRequest(ids, params, -1, thinking_open, request_id=(i, j)))
    episodes = runner.run(items)
    correct = []
    for k, episode in enumerate(episodes):
        verdict = env.judge(problems[k // samples], episode.final_turn, runner.tokenizer.think_tags, episode.finished)
        episode.trajectory.correct, episode.trajectory.reward_reason = verdict.correct, verdict.reason
        correct.append(verdict.correct)
    solved = [any(correct[i * samples:(i + 1) * samples]) for i in range(len(problems))]
    n = max(1, len(episodes))
    return AgentEvalResult(sum(correct) / n, sum(solved) / max(1, len(problems)), len(problems), samples,
                           sum(len(e.trajectory.response_ids) for e in episodes) / n, agent_metrics(episodes),
                           dict(Counter(e.trajectory.reward_reason for e in episodes)))


def start_agent_engine(policy: CausalLM, tokenizer: TextTokenizer, spec: AgentSpec, sampling: SamplingSpec,
                       sized: list[Problem], seed: int, placement: Placement = "thread") -> EngineClient:
    """`thinkrl.rollout.start_engine` for episodes: slots long enough for the longest opening prompt (tools
    rendered, any of the sampling budgets) plus ``spec.max_total_tokens``; the engine runs in a thread or a child
    process (``placement``; turn requests carry only thinking-budget controllers, which cross to it)."""
    env = build_environment(spec.environment, spec.options)
    max_prompt = max(len(render_episode_prompt(tokenizer, env, p, b)[0]) for p in sized
                     for b in sampling.thinking_budgets)
    return start_engine_client(policy, tokenizer, sampling, max_prompt + 16 + spec.max_total_tokens, seed, placement)


def collect_agent_rollout(spec: AgentSpec, client: SubmitClient, tokenizer: TextTokenizer, source: PromptSource,
                          rollout: RolloutSpec, sampling: SamplingSpec, reward: RewardSpec, seed: int) -> RolloutBatch:
    """`collect_agent_batch` in the environment of ``spec`` (the RL loop's call when a recipe has ``agent``)."""
    env = build_environment(spec.environment, spec.options)
    return collect_agent_batch(runner_for(client, tokenizer, env, spec), env, source, rollout, sampling, reward, seed)


def evaluate_agent_policy(spec: AgentSpec, client: SubmitClient, tokenizer: TextTokenizer, problems: list[Problem],
                          *, samples: int, temperature: float, max_new_tokens: int, seed: int = 0,
                          use_tools: bool = True) -> AgentEvalResult:
    """`evaluate_agent` in the environment of ``spec``."""
    env = build_environment(spec.environment, spec.options)
    return evaluate_agent(runner_for(client, tokenizer, env, spec, use_tools), env, problems, samples=samples,
                          temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, use_tools=use_tools)
