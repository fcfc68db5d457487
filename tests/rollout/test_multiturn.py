"""Multi-turn tool-use rollouts on the real engine loop with a tiny model fitted to a calculator transcript.

The model (fitted in seconds by plain SFT on the environment's own transcripts) makes real tool calls through the
real engine client; the calculator runs in the rollout's thread pool. Checked: an episode holds exactly the tokens
the engine sampled, turn by turn, with the tool tokens between them masked; the trainer's log-probs agree with the
engine's; tool tokens get zero gradient in the actor's loss; other episodes keep decoding while one waits on a
tool; malformed calls, unknown tools and timeouts become observations; every limit ends an episode and is counted.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import replace

import pytest
import torch

from thinkrl.engine import LLMEngine, SamplingParams
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.agent_rollout import agent_metrics, render_episode_prompt, score_episodes
from thinkrl.rollout.multiturn import AgentLimits, EpisodeRequest, MultiTurnRunner
from thinkrl.rollout.specs import RewardSpec
from thinkrl.rollout.tools import build_tool, function_tool
from thinkrl.train.actor import Actor, batch_logprobs
from thinkrl.train.batching import pack_trajectories
from thinkrl.train.specs import AlgorithmSpec

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=1024)


@pytest.fixture(scope="module")
def setup(calculator_policy):
    """(tokenizer, environment, 1 problem, its SFT example, a model that reproduces it greedily): conftest's."""
    return calculator_policy


class RecordingClient:
    """The real engine loop; every streamed event of every turn request is kept (what the engine sampled)."""

    def __init__(self, loop: EngineLoop) -> None:
        self.loop = loop
        self.events: dict[object, list] = defaultdict(list)
        self.prompts: dict[object, list[int]] = {}

    def submit(self, requests, sink, *, finished_only=False):
        for r in requests:
            self.prompts[r.request_id] = list(r.prompt_ids)

        def record(item):
            if not isinstance(item, BaseException):
                self.events[item.request_id].append(item)
                if not item.finished:
                    return
            sink(item)
        self.loop.submit(requests, record, finished_only=False)


def _items(tok, env, problems, temperature=0.0, samples=1, use_tools=True):
    items = []
    for i, problem in enumerate(problems):
        ids, thinking_open = render_episode_prompt(tok, env, problem, use_tools=use_tools)
        for k in range(samples):
            params = SamplingParams(max_new_tokens=48, temperature=temperature, seed=100 * i + k)
            items.append(EpisodeRequest(ids, params, -1, thinking_open, request_id=(i, k)))
    return items


def _run(setup, tools=None, limits=None, samples=2, **kw):
    """Episodes of the problem (``samples`` of them), and the recording client."""
    tok, env, problems, _, model = setup
    with EngineLoop(LLMEngine(model, tok, num_slots=8, max_seq_len=800)) as loop:
        client = RecordingClient(loop)
        runner = MultiTurnRunner(client, tok, env.tools() if tools is None else tools,
                                 limits or AgentLimits(max_total_tokens=300))
        return runner.run(_items(tok, env, problems, samples=samples, **kw)), client


def test_episodes_call_the_calculator_and_hold_exactly_the_sampled_tokens(setup) -> None:
    tok, env, problems, examples, _ = setup
    (problem,), ((ids, mask),) = problems, examples
    episodes, client = _run(setup)
    for k, episode in enumerate(episodes):
        traj = episode.trajectory
        assert env.judge(problem, episode.final_turn, tok.think_tags, episode.finished).correct
        assert [c.name for c in episode.calls] == ["calculator"] * 3 and all(c.result.ok for c in episode.calls)
        # Token in, token out: the SFT rendering of the same conversation is the episode, token for token.
        assert list(traj.prompt_ids) + traj.response_ids == ids
        assert [False] * len(traj.prompt_ids) + traj.response_mask == mask
        # Turn by turn, the episode's tokens are the engine's streamed samples, with their log-probs.
        turns = sorted((r for r in client.events if r[1] == (0, k)), key=lambda r: r[2])
        assert len(turns) == len(episode.turn_spans) == 4
        for request_id, (start, end) in zip(turns, episode.turn_spans, strict=True):
            streamed = [t for e in client.events[request_id] for t in e.token_ids]
            logprobs = [lp for e in client.events[request_id] for lp in e.logprobs]
            assert traj.response_ids[start:end] == streamed and traj.logprobs[start:end] == logprobs
            assert client.prompts[request_id] == list(traj.prompt_ids) + traj.response_ids[:start]
        # Between turns: tool tokens only, masked, log-prob 0.
        spans = episode.turn_spans
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert not any(traj.response_mask[end:start]) and not any(traj.logprobs[end:start])
            assert tok.decode(traj.response_ids[end:start]).startswith("<seed:eos><seed:bos>tool\n")


def test_trainer_logprobs_agree_with_the_engine_across_turns(setup) -> None:
    tok, env, problems, _, model = setup
    episodes, _ = _run(setup, temperature=1.0, samples=4)
    for e in episodes:
        e.trajectory.reward = 0.0
    batch = pack_trajectories([e.trajectory for e in episodes])
    trainer = batch_logprobs(model, batch, micro_batch_tokens=4096, temperature=1.0)
    mask = batch.response_mask
    assert mask.sum() < sum(len(e.trajectory.response_ids) for e in episodes)  # tool tokens are out
    assert torch.allclose(trainer[mask], batch.old_logprobs[mask], atol=1e-4)


def test_tool_tokens_get_zero_gradient(setup) -> None:
    tok, env, problems, _, model = setup
    episodes, _ = _run(setup, temperature=1.0, samples=4)
    trajs = [e.trajectory for e in episodes]
    for t in trajs:
        t.reward = 0.0
    advantages = [[1.0 if i % 2 else -1.0] * len(t.response_ids) for i, t in enumerate(trajs)]
    batch = pack_trajectories(trajs, advantages=advantages)
    actor = Actor(model, torch.optim.SGD(model.parameters(), lr=0.0), None, AlgorithmSpec(), 8192, None, 1.0, 300)
    micro = actor.micro_batch_loss(batch, {"num_tokens": int(batch.response_mask.sum())}, 0, 1.0)
    micro.forward.logprobs.retain_grad()
    micro.loss.backward()
    grad = micro.forward.logprobs.grad
    tool = ~batch.response_mask & (torch.arange(grad.shape[1]) < batch.response_lengths[:, None])
    assert tool.any() and (grad[tool] == 0).all()
    assert (grad[batch.response_mask] != 0).all()
    model.zero_grad(set_to_none=True)


def test_advantages_cover_every_sampled_token_of_every_turn_and_no_tool_token(setup) -> None:
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.train.rl_step import compute_advantages

    episodes, _ = _run(setup, temperature=1.0, samples=4)
    rewards = [1.0, -1.0, -1.0, 1.0]
    for episode, r in zip(episodes, rewards, strict=True):
        episode.trajectory.reward = r
    batch = pack_trajectories([e.trajectory for e in episodes])
    algo = AlgorithmSpec(**{k: v for k, v in ALGORITHM_PRESETS["dapo"].items() if "." not in k})
    advantages = compute_advantages(batch, torch.zeros(4, dtype=torch.long), algo).advantages
    std = torch.tensor(rewards).std()  # unbiased, as GRPO/DAPO normalise: (R - mean) / (std + eps), mean 0 here
    for row, (episode, r) in enumerate(zip(episodes, rewards, strict=True)):
        n = len(episode.trajectory.response_ids)
        mask = batch.response_mask[row, :n]
        assert torch.allclose(advantages[row, :n][mask], torch.full((int(mask.sum()),), r / (float(std) + 1e-6)))
        assert (advantages[row, :n][~mask] == 0).all()  # the tool tokens between turns
        for start, end in episode.turn_spans:  # every turn's sampled tokens carry the episode's advantage
            assert mask[start:end].all()


def test_other_episodes_keep_decoding_while_a_tool_runs(setup) -> None:
    tok, env, problems, _, _ = setup
    calls = [expression for expression, _ in env.expression_calls(problems[0])]
    other_finished = threading.Event()
    seen: dict[str, bool] = {}
    count: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    calculator = build_tool("calculator")

    def slow_calculator(expression: str) -> str:
        with lock:
            count[expression] += 1
            nth = count[expression]
        if expression == calls[0] and nth == 1:  # the first episode's first call waits for the other's last call
            seen["other_done_meanwhile"] = other_finished.wait(60)
        if expression == calls[-1]:
            other_finished.set()
        return calculator.function(expression)

    tool = replace(function_tool(slow_calculator, name="calculator"), parameters=calculator.parameters)
    episodes, _ = _run(setup, tools=[tool], limits=AgentLimits(max_total_tokens=300, tool_timeout_s=120))
    assert seen["other_done_meanwhile"] is True  # 3 more turns of the other episode decoded while the tool ran
    assert all(len(e.calls) == 3 and all(c.result.ok for c in e.calls) for e in episodes)


def test_unknown_tools_and_timeouts_are_observations_not_crashes(setup) -> None:
    tok, env, _, _, _ = setup
    episodes, _ = _run(setup, tools=[])  # the prompt lists the calculator, the runner has no tools
    for episode in episodes:  # after an error the model is off its transcript: later calls may be malformed
        assert "unknown tool 'calculator'" in episode.calls[0].result.error
        assert all(c.result.error.startswith(("unknown tool", "malformed")) for c in episode.calls)
        assert "error: unknown tool" in episode.trajectory.text
    release = threading.Event()

    def stuck(expression: str) -> str:
        release.wait(30)
        return "0"

    tool = function_tool(stuck, name="calculator")
    episodes, _ = _run(setup, tools=[tool], limits=AgentLimits(max_total_tokens=300, tool_timeout_s=0.3))
    release.set()
    assert all(e.calls[0].result.error.startswith("timeout: calculator ran longer than 0.3 s") for e in episodes)
    timeouts = sum(bool(c.result.error and c.result.error.startswith("timeout")) for e in episodes for c in e.calls)
    assert agent_metrics(episodes)["agent/tool_timeouts"] == timeouts >= len(episodes)


@pytest.mark.parametrize("limits, name", [
    (AgentLimits(max_turns=2, max_total_tokens=300), "max_turns"),
    (AgentLimits(max_total_tokens=60), "max_total_tokens"),
])
def test_limits_end_episodes_and_are_counted(setup, limits, name) -> None:
    tok, env, problems, _, _ = setup
    episodes, _ = _run(setup, limits=limits)
    for episode in episodes:
        assert episode.limit == name and not episode.finished and episode.trajectory.finish_reason == "length"
        assert len(episode.trajectory.response_ids) <= limits.max_total_tokens
        assert len(episode.turn_spans) <= limits.max_turns
    assert agent_metrics(episodes)[f"agent/limit_{name}"] == len(episodes)
    for e in episodes:
        e.trajectory.problem = problems[0]
    score_episodes(episodes, env, tok, RewardSpec(overlong_penalty=False))
    assert all(e.trajectory.reward == -1.0 and e.trajectory.reward_reason == "truncated" for e in episodes)


def test_a_multi_turn_dapo_run_raises_the_reward(setup) -> None:
    """Real pieces of the RL loop on episodes: sample and score groups, pack, DAPO update, push the weights. The
    same 48 seeded episodes (T=0.7) are scored before and after 12 steps."""
    from thinkrl.rl import ALGORITHM_PRESETS
    from thinkrl.rollout.agent_rollout import collect_agent_batch, runner_for, sample_episodes
    from thinkrl.rollout.agent_spec import AgentSpec
    from thinkrl.rollout.sources import PromptCursor
    from thinkrl.rollout.specs import RolloutSpec, SamplingSpec
    from thinkrl.train.rl_step import prepare_batch, update

    tok, env, problems, _, fitted = setup
    torch.manual_seed(1)
    policy = build_model(CFG, seed=0)
    policy.load_state_dict(fitted.state_dict())
    algo = AlgorithmSpec(**{k: v for k, v in ALGORITHM_PRESETS["dapo"].items() if "." not in k})
    optimizer = torch.optim.Adam(policy.parameters(), lr=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    actor = Actor(policy, optimizer, scheduler, algo, 8192, 1.0, 0.7, 300)  # sampled at T=0.7: often wrong
    engine_model = build_model(CFG, seed=0)
    engine_model.load_state_dict(policy.state_dict())
    spec = AgentSpec(environment="big_arithmetic", max_total_tokens=300, max_tokens_per_turn=48)
    rollout = RolloutSpec(group_size=8, prompts_per_step=2, dynamic_sampling=False)
    sampling = SamplingSpec(temperature=0.7, max_new_tokens=48, num_slots=16)
    reward = RewardSpec(overlong_penalty=False)

    def held_out_reward(runner) -> float:
        episodes = sample_episodes(runner, env, problems, 48, sampling, seed=999, first_group_id=0)
        score_episodes(episodes, env, tok, reward)
        return sum(e.trajectory.reward for e in episodes) / len(episodes)

    with EngineLoop(LLMEngine(engine_model.eval(), tok, num_slots=16, max_seq_len=800)) as loop:
        runner = runner_for(loop, tok, env, spec)
        before = held_out_reward(runner)
        source = PromptCursor(problems * 4, seed=0)
        for step in range(1, 13):
            batch = collect_agent_batch(runner, env, source, rollout, sampling, reward, seed=step)
            update(prepare_batch(batch.trajectories, actor, None, None), actor, None, seed=0, step=step)
            loop.update_weights(actor.weights(), version=step)
        after = held_out_reward(runner)
    assert after > before + 0.2, (before, after)
