"""Multi-turn tool-use episodes in streaming mode (`AgentStreamingDriver`) on the real engine loop, with a tiny model
fitted in seconds to a calculator transcript and the real calculator.

Checked: an episode whose turn a weight push interrupts continues over its exact ids under the new weights, and
the trainer's episode is the engine's sampled tokens turn by turn (pieces stitched), with each token's log-prob and
version (the trainer's log-probs of each version's model agree; tool tokens are masked, log-prob 0, zero gradient);
pushing unchanged weights gives the uninterrupted synchronous episode; trained groups never lag more than eta; a
tool that raises or hangs is an observation and the run goes on; close leaves no thread.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import replace

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import build_model
from thinkrl.rollout.agent_rollout import render_episode_prompt
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.agent_streaming import AgentStreamingDriver
from thinkrl.rollout.buffer import version_lag
from thinkrl.rollout.environments import ENVIRONMENTS, build_environment
from thinkrl.rollout.multiturn import EpisodeRequest, MultiTurnRunner
from thinkrl.rollout.sources import PromptCursor
from thinkrl.rollout.specs import RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.actor import Actor, batch_logprobs
from thinkrl.train.batching import pack_trajectories
from thinkrl.train.specs import AlgorithmSpec

TOK = load_tokenizer("builtin")
ENV = build_environment("big_arithmetic")
PROBLEMS = generate_dataset("big_arithmetic", 1, 0, "train", {"digits": 2})
AGENT = AgentSpec(environment="big_arithmetic", max_total_tokens=300, max_tokens_per_turn=48)
REWARD = RewardSpec(overlong_penalty=False)
WAIT_S = 60  # generous: a failure must surface within this, never hang the suite


@pytest.fixture(scope="module")
def fitted(calculator_policy):
    """conftest's micro model that reproduces the calculator transcript of ``PROBLEMS`` greedily."""
    return calculator_policy[4]


def _copy(model, noise: float = 0.0, seed: int = 1):
    """A copy of ``model``'s weights, each tensor moved by ``noise`` x N(0, 1)."""
    out = build_model(model.config, seed=0)
    out.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(noise * torch.randn(p.shape, generator=generator))
    return out.eval()


def _loop(model) -> EngineLoop:
    return EngineLoop(LLMEngine(_copy(model), TOK, num_slots=8, max_seq_len=800), idle_wait_s=0.05).start()


def _driver(client, *, group_size=1, prompts_per_step=1, temperature=0.0, agent=AGENT, **rollout):
    spec = RolloutSpec(group_size=group_size, prompts_per_step=prompts_per_step, dynamic_sampling=False,
                       mode="streaming", **{"max_staleness": 1, **rollout})
    sampling = SamplingSpec(temperature=temperature, max_new_tokens=48, num_slots=8)
    return AgentStreamingDriver(client, TOK, PromptCursor(PROBLEMS * 4, 0), spec, sampling, REWARD, agent, seed=0,
                                poll_s=0.05).start()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class CuttingClient:
    """The real engine loop between the driver and the engine, recording every request and streamed event. Once an
    episode's later turn has streamed ``cut`` tokens, it interrupts that turn from the loop thread (as a weight push
    does) and keeps what the driver submits next (the continuation) until `release`: the test pushes new weights
    in between, so the continuation runs under them."""

    def __init__(self, loop: EngineLoop, opening_len: int, cut: int) -> None:
        self.loop, self.opening_len, self.cut = loop, opening_len, cut
        self.order: list = []
        self.prompts: dict = {}
        self.events: dict = defaultdict(list)
        self.cut_request = None
        self.cut_done = threading.Event()
        self._stash: list = []
        self._holding = False
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        return self.loop.version

    def __getattr__(self, name):  # abort, interrupt, update_weights: the loop's
        return getattr(self.loop, name)

    def submit(self, requests, sink, *, finished_only=False):
        batch = [requests] if isinstance(requests, Request) else list(requests)
        with self._lock:
            if self._holding:
                self._stash.append((batch, sink))
                return
            for r in batch:
                self.order.append(r.request_id)
                self.prompts[r.request_id] = list(r.prompt_ids)

        def record(item):
            if not isinstance(item, BaseException):
                self.events[item.request_id].append(item)
                streamed = sum(len(e.token_ids) for e in self.events[item.request_id])
                later_turn = len(self.prompts[item.request_id]) > self.opening_len
                if later_turn and not item.finished and streamed >= self.cut and self.cut_request is None:
                    self.cut_request = item.request_id
                    with self._lock:
                        self._holding = True
                    self.loop.interrupt(item.request_id)  # from the loop thread: applied before the next step
                    self.cut_done.set()
            sink(item)
        self.loop.submit(batch, record)

    def release(self) -> None:
        with self._lock:
            self._holding, stash = False, self._stash
            self._stash = []
        for batch, sink in stash:
            self.submit(batch, sink)


def _interrupted_episode(fitted, new_model):
    """One greedy episode whose second turn is cut after 3 tokens; ``new_model``'s weights are pushed as version 1
    before it continues. Returns (the trained trajectory, the client)."""
    opening = len(render_episode_prompt(TOK, ENV, PROBLEMS[0])[0])
    loop = _loop(fitted)
    client = CuttingClient(loop, opening, cut=3)
    driver = _driver(client, max_buffered_groups=1)  # one group at a time: the batch is the cut episode's group
    try:
        assert client.cut_done.wait(WAIT_S), "no later turn was streamed"
        driver.push_weights(list(new_model.state_dict().items()), version=1)
        client.release()
        batch = driver.next_batch(2)
    finally:
        driver.close()
        loop.stop()
    (traj,) = batch.trajectories
    return traj, client, batch


def _walk(traj, client):
    """Walk the episode's requests in submission order: each request's prompt is the episode's ids so far, its
    streamed tokens are the next ones of the trajectory (with their log-probs and versions), and what lies between
    two requests is a tool turn. Returns [(request id, start, end)] of the sampled spans."""
    full = list(traj.prompt_ids) + traj.response_ids
    p = len(traj.prompt_ids)
    spans, pos = [], 0
    for request_id in client.order:
        prompt = client.prompts[request_id]
        if len(prompt) > p + len(traj.response_ids) or prompt != full[:len(prompt)] or len(prompt) - p < pos:
            continue  # another episode's request
        start = len(prompt) - p
        assert not any(traj.response_mask[pos:start]) and not any(traj.logprobs[pos:start])  # a tool turn: masked
        events = client.events[request_id]
        ids = [t for e in events for t in e.token_ids]
        end = start + len(ids)
        assert traj.response_ids[start:end] == ids  # the trainer's tokens are the engine's sampled tokens
        assert traj.logprobs[start:end] == [x for e in events for x in e.logprobs or []]
        assert traj.token_versions[start:end] == events[-1].trajectory.token_versions
        assert all(traj.response_mask[start:end])
        spans.append((request_id, start, end))
        pos = end
    assert pos == len(traj.response_ids), "the episode's tokens are not covered by its requests"
    return spans


def test_a_turn_interrupted_by_a_push_continues_over_its_exact_ids_under_the_new_weights(fitted) -> None:
    new = _copy(fitted, noise=0.02)
    traj, client, batch = _interrupted_episode(fitted, new)
    spans = _walk(traj, client)
    cut = [i for i, (rid, _, _) in enumerate(spans) if rid == client.cut_request]
    assert cut, "the interrupted turn is not in the trained episode"
    i = cut[0]
    piece, continuation = spans[i], spans[i + 1]
    assert client.events[piece[0]][-1].trajectory.finish_reason == "abort" and piece[2] - piece[1] >= 3
    assert piece[2] == continuation[1]  # continued right after the cut: no tool turn, nothing re-tokenised
    assert set(traj.token_versions[:piece[2]]) == {0} and set(traj.token_versions[continuation[1]:]) == {1}
    assert batch.stream_metrics["stream/continued"] >= 1 and batch.data_metrics["agent/turns_mean"] >= 2
    # Per-token behaviour log-probs: each version's model gives the trainer the engine's log-probs of its tokens.
    traj.reward = 0.0
    packed = pack_trajectories([traj])
    versions = packed.token_versions[0]
    sampled = packed.response_mask[0]
    old, fresh = (batch_logprobs(m, packed, 4096, 1.0)[0] for m in (fitted, new))
    behaviour = packed.old_logprobs[0]
    for version, model_logprobs in ((0, old), (1, fresh)):
        mine = sampled & (versions == version)
        assert mine.any() and torch.allclose(model_logprobs[mine], behaviour[mine], atol=1e-4)
    assert (old[sampled & (versions == 1)] - behaviour[sampled & (versions == 1)]).abs().max() > 1e-3
    # Tool tokens (between turns) get zero gradient; every sampled token of every turn gets some.
    advantages = [[1.0] * len(traj.response_ids)]
    packed = pack_trajectories([traj], advantages=advantages)
    actor = Actor(new, torch.optim.SGD(new.parameters(), lr=0.0), None, AlgorithmSpec(), 8192, None, 1.0, 300)
    micro = actor.micro_batch_loss(packed, {"num_tokens": int(packed.response_mask.sum())}, 0, 1.0)
    micro.forward.logprobs.retain_grad()
    micro.loss.backward()
    grad = micro.forward.logprobs.grad[0, : len(traj.response_ids)]
    assert (~packed.response_mask[0]).any() and (grad[~packed.response_mask[0, : len(grad)]] == 0).all()
    assert (grad[packed.response_mask[0, : len(grad)]] != 0).all()


def test_with_unchanged_weights_the_interrupted_episode_is_the_synchronous_one(fitted) -> None:
    traj, client, _ = _interrupted_episode(fitted, _copy(fitted))
    assert len([s for s in _walk(traj, client)]) >= 5  # 4 turns, one of them in two pieces
    ids, thinking_open = render_episode_prompt(TOK, ENV, PROBLEMS[0])
    with EngineLoop(LLMEngine(_copy(fitted), TOK, num_slots=2, max_seq_len=800)) as loop:
        runner = MultiTurnRunner(loop, TOK, ENV.tools(), AGENT.limits())
        (episode,) = runner.run([EpisodeRequest(ids, SamplingParams(max_new_tokens=48, temperature=0.0), -1,
                                                thinking_open, request_id=0)])
    want = episode.trajectory
    assert traj.response_ids == want.response_ids and traj.response_mask == want.response_mask
    assert torch.allclose(torch.tensor(traj.logprobs), torch.tensor(want.logprobs), atol=1e-4)
    assert traj.correct and traj.reward == 1.0 and len(episode.calls) == 3


@pytest.mark.parametrize("eta", [0, 1])
def test_multi_turn_groups_never_lag_more_than_eta(fitted, eta) -> None:
    loop = _loop(fitted)
    # eta 1: the rollout pauses after 20 tokens of a version, interrupting the turns in flight, which go on after
    # the push (without it, whether a push meets a turn in flight depends on the machine's speed)
    driver = _driver(loop, group_size=2, prompts_per_step=2, temperature=1.0, max_staleness=eta,
                     round_tokens=20 if eta else 0)
    batches = []
    try:
        for step in range(1, 5):
            batches.append(driver.next_batch(step))
            start = driver.tokens_generated
            _wait_for(lambda s=start: eta == 0 or driver.tokens_generated >= s + 20 or not driver.num_in_flight,
                      "the rollout to generate while the trainer trains")
            driver.push_weights(list(_copy(fitted, 0.01, seed=step).state_dict().items()), version=step)
    finally:
        driver.close()
        loop.stop()
    continued = 0
    for step, batch in enumerate(batches, start=1):
        assert len(batch.trajectories) == 4 and len({t.group_id for t in batch.trajectories}) == 2
        for t in batch.trajectories:
            assert version_lag(t.policy_version, step - 1) <= eta, (step, t.token_versions)
            assert t.token_versions == sorted(t.token_versions) and max(t.token_versions) <= step - 1
            tool = [i for i, m in enumerate(t.response_mask) if not m]
            assert all(t.logprobs[i] == 0.0 for i in tool) and t.reward in (1.0, -1.0)
        assert batch.data_metrics["agent/turns_mean"] > 1 and "agent/limit_max_turns" in batch.data_metrics
        continued += batch.stream_metrics["stream/continued"]
    if eta == 0:  # synchronous: every token of a trained group by the trainer's current weights
        assert all(set(t.token_versions) == {s - 1} for s, b in enumerate(batches, 1) for t in b.trajectories)
    else:
        assert continued > 0  # turns interrupted before the pushes went on


@pytest.mark.parametrize("limit, name", [({"max_turns": 2}, "max_turns"),
                                         ({"max_total_tokens": 60}, "max_total_tokens")])
def test_limits_end_streamed_episodes_and_are_counted(fitted, limit, name) -> None:
    """The synchronous limits end streamed episodes, with a push interrupting the turns in flight on the way (a
    continuation has only what its turn had left), and each is counted in the batch's metrics."""
    agent = AgentSpec(environment="big_arithmetic", **{"max_total_tokens": 300, "max_tokens_per_turn": 48, **limit})
    loop = _loop(fitted)
    driver = _driver(loop, group_size=2, agent=agent, max_buffered_groups=1)
    try:
        _wait_for(lambda: driver.tokens_generated >= 20, "a first turn")
        driver.push_weights(list(fitted.state_dict().items()), version=1)  # interrupts what is in flight
        batch = driver.next_batch(2)
    finally:
        driver.close()
        loop.stop()
    for t in batch.trajectories:
        assert t.finish_reason == "length" and t.reward == -1.0 and t.reward_reason == "truncated"
        assert len(t.response_ids) <= agent.max_total_tokens
    assert batch.data_metrics[f"agent/limit_{name}"] == len(batch.sampled) == 2


def _with_tool(tool, name: str, tool_timeout_s: float = 120.0) -> AgentSpec:
    """Register ``name``: the big_arithmetic environment with ``tool`` as its calculator (unregister it after)."""

    @ENVIRONMENTS.register(name)
    class WithTool(type(ENV)):
        def tools(self):
            return [tool]

    WithTool.name = name
    return AgentSpec(environment=name, max_total_tokens=300, max_tokens_per_turn=48, tool_timeout_s=tool_timeout_s)


def test_other_episodes_keep_decoding_while_a_tool_runs(fitted) -> None:
    """Episode A's first call blocks until the other episode made its last call: only possible if the rollout
    thread and the engine went on (3 more turns of the other episode) while A's tool ran."""
    (calculator,) = ENV.tools()
    calls = [expression for expression, _ in ENV.expression_calls(PROBLEMS[0])]
    other_done, seen, count, lock = threading.Event(), {}, defaultdict(int), threading.Lock()

    def calculator_tool(expression: str) -> str:
        with lock:
            count[expression] += 1
            nth = count[expression]
        if expression == calls[0] and nth == 1:
            seen["other_done_meanwhile"] = other_done.wait(WAIT_S)
        if expression == calls[-1]:
            other_done.set()
        return calculator.function(expression)

    name = "stream_test_blocking"
    agent = _with_tool(replace(calculator, function=calculator_tool), name)
    loop = _loop(fitted)
    try:
        driver = _driver(loop, group_size=2, agent=agent)
        try:
            batch = driver.next_batch(1)
        finally:
            driver.close()
    finally:
        loop.stop()
        ENVIRONMENTS.unregister(name)
    assert seen["other_done_meanwhile"] is True
    assert all(t.correct for t in batch.trajectories) and batch.data_metrics["agent/tool_calls_mean"] == 3


def _flaky_calculator(delay_s: float):
    """A calculator that sleeps ``delay_s`` on each call and raises on every other one."""
    (calculator,), count, lock = ENV.tools(), [0], threading.Lock()

    def calculator_tool(expression: str) -> str:
        with lock:
            count[0] += 1
            n = count[0]
        time.sleep(delay_s)
        if n % 2:
            raise ZeroDivisionError("the tool's own bug")
        return calculator.function(expression)

    return replace(calculator, function=calculator_tool)  # the same schema: the prompt the model was fitted on


def test_tool_errors_never_kill_the_run_and_close_leaves_no_thread(fitted) -> None:
    name = "stream_test_flaky"
    agent = _with_tool(_flaky_calculator(delay_s=0.2), name, tool_timeout_s=10.0)
    before = {t.ident for t in threading.enumerate()}
    loop = _loop(fitted)
    try:
        driver = _driver(loop, group_size=2, agent=agent)
        try:
            batches = [driver.next_batch(1)]
            driver.push_weights(list(fitted.state_dict().items()), version=1)
            batches.append(driver.next_batch(2))
            driver.push_weights(list(fitted.state_dict().items()), version=2)  # new groups start
            _wait_for(lambda: any(t.name == "thinkrl-agent-tools" for t in threading.enumerate()), "a tool call")
        finally:
            driver.close()  # while a tool runs
    finally:
        loop.stop()
        ENVIRONMENTS.unregister(name)
    shares = [b.data_metrics.get("agent/tool_error_frac") for b in batches]
    assert any(x is not None for x in shares) and all(x > 0 for x in shares if x is not None)
    errors = [t for b in batches for t in b.trajectories if "ZeroDivisionError: the tool's own bug" in t.text]
    assert errors  # the model saw the error as the tool turn's output
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not left, left
