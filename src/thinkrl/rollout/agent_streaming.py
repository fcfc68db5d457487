"""Streaming rollout of multi-turn tool-use episodes: `AgentStreamingDriver` (``rollout.mode: streaming`` with an
``agent`` section; docs/agents.md, docs/streaming.md).

A group is G episodes of one problem. It runs on the streaming driver's thread, admission, staleness bound, buffer
and dynamic sampling (`thinkrl.rollout.streaming.StreamingDriver`); what differs is what a request is:

* an episode's assistant turn is one engine request at a time (`MultiTurnRunner.turn_request`: the prompt is the
  episode's ids so far, the turn stops at a tool-call close, a fresh thinking-budget controller: the budget
  applies per assistant turn);
* a weight push interrupts the turn like any streamed response; it continues as a new request over the exact ids
  so far (`thinkrl.rollout.partial.continuation_request`: nothing re-tokenised, the turn's controller shown the
  whole turn), and the turn's pieces are stitched, each token keeping its log-prob and version;
* a finished turn is appended by `MultiTurnRunner.finish_turn`; its tool calls run in a thread of their own (at
  most ``agent.tool_workers`` at once), so the rollout thread and the engine keep going; the results come back
  through the driver's event queue and `MultiTurnRunner.add_tool_turn` appends them as forced tokens (mask 0,
  log-prob 0, the version of the token before them: never older than the episode's oldest sampled token);
* a finished episode (`MultiTurnRunner.close_episode`) is judged by the environment (`score_episodes`) once its
  whole group has finished.

The staleness bound eta applies to the oldest sampled token of the group, over every turn: a group that would lag
more is dropped (aborting its turns; tool results still running are ignored) and its prompt sampled again.
``agent/...`` metrics (`agent_metrics`) of the episodes completed since the last batch join its ``data_metrics``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from thinkrl.engine import Request, TokenEvent
from thinkrl.records import Trajectory
from thinkrl.rollout.agent_rollout import agent_metrics, render_episode_prompt, runner_for, score_episodes
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.environments import build_environment
from thinkrl.rollout.groups import RolloutBatch
from thinkrl.rollout.multiturn import Episode, EpisodeRequest, EpisodeState, run_tool_calls
from thinkrl.rollout.partial import PartialSample, continuation_request, stitch
from thinkrl.rollout.requests import RolloutPrompt, SampleRequest, sampling_params
from thinkrl.rollout.sources import PromptSource
from thinkrl.rollout.specs import RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.rollout.stream_state import StreamState
from thinkrl.rollout.streaming import StreamingDriver, _Group
from thinkrl.rollout.tools import ToolResult
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


@dataclass
class StreamedEpisode:
    """One episode of a streamed group (in the place of a `PartialSample`).

    Fields:
        state: the episode's ids so far (`EpisodeState`).
        turn: the assistant turn being sampled, as a `PartialSample` over the episode's ids before it (its pieces:
            one per weight version it spanned); None between turns (while its tools run).
        result: the episode's trajectory once it ended.
        episode: the finished `Episode` (turns, calls, limit).
    """

    state: EpisodeState
    turn: PartialSample | None = None
    result: Trajectory | None = None
    episode: Episode | None = None

    @property
    def pieces(self) -> list[Trajectory]:
        """The current turn's pieces (the streaming driver appends an interrupted piece here)."""
        assert self.turn is not None, "no assistant turn in flight"
        return self.turn.pieces

    @property
    def oldest_version(self) -> int | None:
        """The oldest weight version of any token so far, over every turn (tool tokens carry the version of the
        sampled token before them, so they never lower it)."""
        versions = list(self.state.versions)
        if self.turn is not None:
            versions += [v for piece in self.turn.pieces for v in piece.token_versions]
        return min(versions, default=None)


@dataclass(frozen=True)
class _ToolsDone:
    """A turn's tool results, handed from a tool thread to the rollout thread."""

    group: _Group
    episode: StreamedEpisode
    results: list[ToolResult] | BaseException


class AgentStreamingDriver(StreamingDriver):
    """`StreamingDriver` whose groups are G multi-turn episodes of ``agent``'s environment (see the module
    docstring). Arguments as `StreamingDriver`'s, plus ``agent``: the recipe's agent section."""

    resume_groups = False  # a checkpoint saves the prompts of its groups, sampled again on resume (stream_state)

    def __init__(self, engine: Any, tokenizer: TextTokenizer, source: PromptSource, rollout: RolloutSpec,
                 sampling: SamplingSpec, reward: RewardSpec, agent: AgentSpec, seed: int, start_version: int = 0,
                 stall_timeout_s: float = 600.0, poll_s: float = 0.2) -> None:
        super().__init__(engine, tokenizer, source, rollout, sampling, reward, seed, start_version, stall_timeout_s,
                         poll_s)
        self.env = build_environment(agent.environment, agent.options)
        self.runner = runner_for(engine, tokenizer, self.env, agent)
        self._tool_slots = threading.BoundedSemaphore(agent.tool_workers)
        self._tool_threads: set[threading.Thread] = set()
        self._episodes: dict[int, Episode] = {}  # id(trajectory) -> its episode, until a batch reports it

    # ---- trainer side -------------------------------------------------------------------------------------------
    def next_batch(self, step: int) -> RolloutBatch:
        """`StreamingDriver.next_batch`, with the ``agent/...`` metrics of the episodes sampled since the last
        batch in ``data_metrics``."""
        batch = super().next_batch(step)
        with self._lock:
            episodes = [self._episodes.pop(id(t)) for t in batch.sampled]
        batch.data_metrics = {**batch.data_metrics, **agent_metrics(episodes)}
        return batch

    def close(self, timeout: float = 10.0) -> None:
        """`StreamingDriver.close`, then wait (up to ``timeout``) for the tool threads still running a call; a
        tool past its own timeout is abandoned as in the synchronous path (its daemon thread)."""
        deadline = time.monotonic() + timeout
        super().close(timeout)
        with self._lock:
            threads = list(self._tool_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def score_group(self, trajs: list[Trajectory], tokenizer: TextTokenizer, reward: RewardSpec) -> None:
        """The environment judges each episode's final turn; the reward section shapes the reward."""
        with self._lock:
            episodes = [self._episodes[id(t)] for t in trajs]
        score_episodes(episodes, self.env, tokenizer, reward)

    # ---- rollout thread -----------------------------------------------------------------------------------------
    def _new_group(self, problem: Problem) -> list[Request]:
        """G episodes of ``problem`` (one thinking budget for the group, as single-turn groups draw it): the first
        turn request of each. Caller holds the lock."""
        budget = self._rng.choice(self.sampling.thinking_budgets)
        ids, thinking_open = render_episode_prompt(self.tokenizer, self.env, problem, budget)
        group = _Group(self._ids, problem, [], start_version=self._version)
        self._active[group.group_id] = group
        requests = []
        for k in range(self.rollout.group_size):
            params = sampling_params(self.sampling, self._rng.getrandbits(62))
            episode = StreamedEpisode(EpisodeState(EpisodeRequest(ids, params, budget, thinking_open,
                                                                  request_id=(group.group_id, k))))
            group.samples.append(episode)
            requests.append(self._turn_request(group, episode))
        return requests

    def _turn_request(self, group: _Group, episode: StreamedEpisode) -> Request:
        """The next request of ``episode``: its next turn, or the continuation of its interrupted turn. Caller
        holds the lock."""
        request_id = self._new_id()
        if episode.turn is None:
            request, controller = self.runner.turn_request(episode.state, request_id)
            item = episode.state.item
            prompt = RolloutPrompt(group.problem, item.thinking_budget, tuple(request.prompt_ids),
                                   episode.state.thinking_open)
            episode.turn = PartialSample(SampleRequest(prompt, request.params, group.group_id, request_id),
                                         controller)
        else:  # interrupted by a weight push: go on over the exact ids so far, the same turn controller
            request = continuation_request(episode.turn, request_id)
        self._inflight[request_id] = (group, episode)
        return request

    def _continue(self, group: _Group, sample: Any) -> None:
        """Submit ``sample``'s (a `StreamedEpisode`) next request. Caller holds the lock."""
        # (as the base driver submits: finished events only from a rollout process, unless round_tokens counts)
        self.engine.submit(self._turn_request(group, sample), self._sink,
                           finished_only=self._finished_only)

    def _handle(self, item: Any) -> None:
        if isinstance(item, _ToolsDone):
            self._tools_done(item)
        elif isinstance(item, TokenEvent) and item.trajectory.finish_reason not in ("abort", "error"):
            self._turn_ended(item)
        else:  # engine failures, failed turns, interrupted turns (continued through `_continue`)
            super()._handle(item)

    def _turn_ended(self, event: TokenEvent) -> None:
        """An assistant turn stopped (a tool call, the end of the turn, a limit): stitch its pieces, append it;
        run its tools or close the episode."""
        with self._lock:
            entry = self._inflight.pop(event.request_id, None)
            if entry is None:  # aborted by us (stale group, close)
                return
            group, episode = entry
            episode.pieces.append(event.trajectory)
            if group.abandoned or self._abandon_if_stale(group):
                return
            turn = episode.turn
            params = turn.item.params
            whole = stitch(turn.pieces, turn.item.prompt.prompt_ids, self.tokenizer, params.stop_token_ids,
                           params.stop_strings)
            calls = self.runner.finish_turn(episode.state, whole, turn.controller)
            episode.turn = None
            if calls:
                episode.state.calls = calls
                self._start_tools(group, episode)
                return
        self._close_episode(group, episode)

    def _start_tools(self, group: _Group, episode: StreamedEpisode) -> None:
        """Run ``episode``'s calls in a thread of their own (never blocks the rollout thread). Caller holds the
        lock."""
        thread = threading.Thread(target=self._run_tools, args=(group, episode), name="thinkrl-agent-tools",
                                  daemon=True)
        self._tool_threads.add(thread)
        thread.start()

    def _run_tools(self, group: _Group, episode: StreamedEpisode) -> None:
        results: list[ToolResult] | BaseException
        try:
            with self._tool_slots:  # at most agent.tool_workers turns' tools at once
                if self._stop.is_set():
                    return
                results = run_tool_calls(episode.state.calls, self.runner.tools, self.runner.limits)
        except BaseException as error:  # run_tool_calls never raises; a bug must reach the trainer, not vanish
            results = error
        finally:
            with self._lock:
                self._tool_threads.discard(threading.current_thread())
        self._events.put(_ToolsDone(group, episode, results))

    def _tools_done(self, done: _ToolsDone) -> None:
        """Append the tool turn and submit the next assistant turn (held while the rollout is paused), or close
        the episode when a limit ends it."""
        group, episode = done.group, done.episode
        with self._lock:
            if group.abandoned or self._closed or self._abandon_if_stale(group):
                return
            if self.runner.add_tool_turn(episode.state, done.results):
                if self._holding:
                    self._held.append((group, episode))  # type: ignore[arg-type]
                else:
                    self._continue(group, episode)
                return
        self._close_episode(group, episode)

    def _close_episode(self, group: _Group, episode: StreamedEpisode) -> None:
        """``episode`` ended: its trajectory; the group is scored and buffered once every episode ended."""
        with self._lock:
            if group.abandoned:  # dropped meanwhile (a push released its other episodes past the bound)
                return
            episode.episode = self.runner.close_episode(episode.state)
            traj = episode.result = episode.episode.trajectory
            traj.problem, traj.group_id = group.problem, group.group_id
            self._episodes[id(traj)] = episode.episode
            done = all(e.result is not None for e in group.samples)
        if done:
            self._complete(group)

    def _abandon_if_stale(self, group: _Group) -> bool:
        if not super()._abandon_if_stale(group):
            return False
        for episode in group.samples:  # its finished episodes will never be reported
            if episode.result is not None:
                self._episodes.pop(id(episode.result), None)
        return True


def build_agent_driver(engine: Any, tokenizer: TextTokenizer, source: PromptSource, rollout: RolloutSpec,
                       sampling: SamplingSpec, reward: RewardSpec, agent: AgentSpec, seed: int,
                       start_version: int = 0, restore: StreamState | None = None) -> AgentStreamingDriver:
    """A started `AgentStreamingDriver` (stop it with ``close()``); ``restore``: a resumed run's rollout state."""
    driver = AgentStreamingDriver(engine, tokenizer, source, rollout, sampling, reward, agent, seed=seed,
                                  start_version=start_version)
    if restore is not None:
        driver.restore(restore)
    return driver.start()
