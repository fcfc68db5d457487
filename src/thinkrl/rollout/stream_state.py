"""The streaming rollout's state in a checkpoint: what `StreamingDriver.state` saves and `.restore` puts back
(`ResumableStream`, the driver's checkpoint half, mixed into it).

A checkpoint is taken between two steps while the rollout thread goes on, so besides the prompt source's state
(where the data order stands) it must save the groups whose prompts the source already handed out: otherwise a
resumed run skips them. `state` takes the driver's lock and copies, interrupting nothing:

* the buffered finished groups (scored: rewards, verdicts, every token's behaviour log-prob and version);
* the groups in flight, per response: its rendered prompt (ids, thinking budget), its sampling parameters (seed
  included), the pieces that came back so far (response ids, behaviour log-probs, masks, per-token versions) with
  its thinking-budget controller's counts as they were after the last piece, or its stitched result once it
  finished. Tokens a request generated since its last piece are not saved: they live in the engine only;
* the retry queue (prompts of groups dropped as stale, to be sampled again).

Everything is plain JSON (`dataclasses.asdict` of the typed records below): token ids, floats, strings, the
problem's own JSON fields; no pickle, nothing evaluated.

`restore` runs before the driver's thread starts. Buffered groups go back into the buffer; a response with
pieces continues as a `continuation_request` over prompt + response so far under the resumed weights, keeping
its tokens and their versions; one without any starts again from its prompt with its own seed. The staleness
bound then applies as always: a group already too old for the next batch is dropped (``stream/dropped_stale``)
and its prompt sampled again. Groups of multi-turn episodes (``resume_groups`` False: `AgentStreamingDriver`)
are not saved piece by piece: their prompts, buffered or in flight, go to the retry queue and are sampled again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from thinkrl.engine import Request, SamplingParams
from thinkrl.engine.budget import ThinkingBudgetController, budget_vocab
from thinkrl.records import RewardParts, Trajectory
from thinkrl.rollout.buffer import FinishedGroup, GroupBuffer
from thinkrl.rollout.partial import PartialSample, continuation_request, finish_sample
from thinkrl.rollout.requests import RolloutPrompt, SampleRequest
from thinkrl.tasks import Problem

STATE_KEY = "streaming_rollout"  # the entry of `StreamingDriver.state()` beside the prompt source's own


@dataclass
class StreamGroup:
    """A group in flight: G responses of one problem (`PartialSample`, or an agent's episodes)."""

    group_id: int
    problem: Problem
    samples: list[Any]
    start_version: int  # the engine's version when it was submitted: no token of it is older
    abandoned: bool = False

    def oldest(self) -> int | None:
        versions = [v for s in self.samples if (v := s.oldest_version) is not None]
        return min(versions, default=None)


@dataclass
class SavedSample:
    """One response of a group in flight. ``controller``: its budget controller's counts after the last piece
    (`PartialSample.controller_state`); ``pieces``: the engine's pieces so far; ``result``: once finished."""

    prompt_ids: list[int]
    thinking_budget: int
    thinking_open: bool
    params: SamplingParams
    controller: dict[str, Any]
    pieces: list[Trajectory] = field(default_factory=list)
    result: Trajectory | None = None


@dataclass
class SavedGroup:
    """A group in flight (``samples``) or buffered (``finished``: its scored trajectories)."""

    problem: Problem
    start_version: int = 0
    samples: list[SavedSample] = field(default_factory=list)
    finished: list[Trajectory] = field(default_factory=list)


@dataclass
class StreamState:
    """The driver's rollout state: weight version at the snapshot, buffered and in-flight groups, retry queue."""

    version: int
    buffered: list[SavedGroup]
    in_flight: list[SavedGroup]
    retry: list[Problem]


class ResumableStream:
    """The checkpoint half of `StreamingDriver`, mixed into it: `state` and `restore` (see the module docstring).
    The attributes and methods below the docstring are the driver's own (set in `StreamingDriver.__init__`)."""

    engine: Any
    source: Any
    tokenizer: Any
    resume_groups: bool
    _lock: threading.RLock
    _retry: deque[Problem]
    _active: dict[int, StreamGroup]
    _inflight: dict[Any, tuple[StreamGroup, Any]]
    _buffer: GroupBuffer
    _thread: threading.Thread
    _ids: int
    _finished_only: bool
    _version: int
    _sink: Callable[[Any], None]
    _new_id: Callable[[], Any]
    _abandon_if_stale: Callable[[StreamGroup], bool]
    _complete: Callable[[StreamGroup], None]

    def state(self) -> dict[str, Any]:
        """The prompt source's state with the driver's `StreamState` under ``STATE_KEY`` (JSON-able); under the
        driver's lock, nothing interrupted."""
        with self._lock:
            source = self.source.state()
            retry = list(self._retry)
            active = [g for g in self._active.values() if not g.abandoned]
            if not self.resume_groups:  # multi-turn episodes: sampled again from their prompts
                retry += [g.problem for g in self._buffer] + [g.problem for g in active]
                state = StreamState(self._version, [], [], retry)
            else:
                buffered = [SavedGroup(g.problem, finished=list(g.trajectories)) for g in self._buffer]
                in_flight = [SavedGroup(g.problem, g.start_version, [_save_sample(s) for s in g.samples])
                             for g in active]
                state = StreamState(self._version, buffered, in_flight, retry)
            return {**source, STATE_KEY: asdict(state)}  # asdict copies: nothing shared with the running thread

    def restore(self, state: StreamState) -> None:
        """Put ``state`` back before the driver's thread starts (see the module docstring)."""
        if self._thread.is_alive():
            raise RuntimeError("restore the streaming rollout state before starting the driver")
        if not self.resume_groups:  # (a checkpoint of single-turn groups resumed with an agent recipe)
            lost = [g.problem for g in state.buffered + state.in_flight]
            state = StreamState(state.version, [], [], state.retry + lost)
        self._retry.extend(state.retry)
        for saved in state.buffered:  # new group ids: the run's advantages are taken per group id
            self._ids += 1
            for traj in saved.finished:
                traj.group_id = self._ids
            self._buffer.put(FinishedGroup(saved.problem, saved.finished))
        complete = []
        with self._lock:
            for saved in state.in_flight:
                group = self._restore_group(saved)
                if self._abandon_if_stale(group):  # counted; its prompt goes to the retry queue
                    continue
                pending = [s for s in group.samples if s.result is None]
                if not pending:
                    complete.append(group)
                requests = [self._resume_request(group, s) for s in pending]
                if requests:
                    self.engine.submit(requests, self._sink, finished_only=self._finished_only)
        for group in complete:  # every response had finished, not yet scored at the snapshot
            self._complete(group)

    def _restore_group(self, saved: SavedGroup) -> StreamGroup:
        """``saved`` as a group of this driver's, under a new group id. Caller holds the lock."""
        self._ids += 1
        group = StreamGroup(self._ids, saved.problem, [], saved.start_version)
        for s in saved.samples:
            prompt = RolloutPrompt(saved.problem, s.thinking_budget, tuple(s.prompt_ids), s.thinking_open)
            controller = ThinkingBudgetController.__new__(ThinkingBudgetController)  # mid-way: its counts are state
            vars(controller).update(s.controller, vocab=budget_vocab(self.tokenizer))
            sample = PartialSample(SampleRequest(prompt, s.params, group_id=group.group_id), controller,
                                   list(s.pieces), s.result, dict(s.controller))
            if sample.result is not None:
                sample.result.group_id = group.group_id
            if sample.result is None and sample.pieces and sample.pieces[-1].finish_reason != "abort":
                finish_sample(sample, self.tokenizer, ("restored", group.group_id))  # finished, not yet stitched
            group.samples.append(sample)
        self._active[group.group_id] = group
        return group

    def _resume_request(self, group: StreamGroup, sample: PartialSample) -> Request:
        """The request that goes on with ``sample``: a continuation over its pieces, or its first request again."""
        request_id = self._new_id()
        if sample.pieces:
            request = continuation_request(sample, request_id)
        else:
            request = Request(list(sample.item.prompt.prompt_ids), sample.item.params, request_id=request_id,
                              controller=sample.controller)
        self._inflight[request_id] = (group, sample)
        return request


def split_state(cursor: dict[str, Any]) -> tuple[dict[str, Any], StreamState | None]:
    """A checkpoint's cursor as the prompt source's state and the rollout state (None in a checkpoint written
    before it was saved, or by the synchronous driver)."""
    source = {k: v for k, v in cursor.items() if k != STATE_KEY}
    saved = cursor.get(STATE_KEY)
    return source, None if saved is None else _load_state(saved)


# ---- helpers -----------------------------------------------------------------------------------------------------
def _save_sample(sample: PartialSample) -> SavedSample:
    prompt = sample.item.prompt
    return SavedSample(list(prompt.prompt_ids), prompt.thinking_budget, prompt.thinking_open, sample.item.params,
                       dict(sample.controller_state), list(sample.pieces), sample.result)


def _problem(raw: dict[str, Any]) -> Problem:
    return Problem(**raw)


def _trajectory(raw: dict[str, Any]) -> Trajectory:
    problem, parts = raw.get("problem"), raw.get("reward_parts")
    return Trajectory(**{**raw, "problem": None if problem is None else _problem(problem),
                         "reward_parts": None if parts is None else RewardParts(**parts)})


def _params(raw: dict[str, Any]) -> SamplingParams:
    stops = raw.get("stop_token_ids")
    return SamplingParams(**{**raw, "stop_token_ids": None if stops is None else tuple(stops),
                             "stop_strings": tuple(raw.get("stop_strings", ()))})


def _load_group(raw: dict[str, Any]) -> SavedGroup:
    samples = [SavedSample(s["prompt_ids"], s["thinking_budget"], s["thinking_open"], _params(s["params"]),
                           s["controller"], [_trajectory(p) for p in s["pieces"]],
                           None if s["result"] is None else _trajectory(s["result"])) for s in raw["samples"]]
    return SavedGroup(_problem(raw["problem"]), raw["start_version"], samples,
                      [_trajectory(t) for t in raw["finished"]])


def _load_state(raw: dict[str, Any]) -> StreamState:
    try:
        return StreamState(raw["version"], [_load_group(g) for g in raw["buffered"]],
                           [_load_group(g) for g in raw["in_flight"]], [_problem(p) for p in raw["retry"]])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the checkpoint's streaming rollout state ({STATE_KEY!r}) is malformed: {error!r}") from error
