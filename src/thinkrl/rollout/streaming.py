"""Streaming rollout: a rollout thread keeps the engine's slots full and buffers finished groups while the trainer
trains; the trainer takes a batch as soon as one is ready (Seed-Thinking-v1.5's streaming rollout system, in one
process). See docs/streaming.md.

* Admission: new groups (G requests each) start as `thinkrl.rollout.admission` allows (``rollout.admission``; eta
  = 0 is synchronous), after every pending event was handled (continuations reach the engine before new groups).
* Partial rollouts: `push_weights` interrupts every in-flight request (`EngineLoop.interrupt`) and then pushes;
  each interrupted piece continues as a new request over prompt + response so far, its KV recomputed with the new
  weights (`thinkrl.rollout.partial`). With ``round_tokens`` > 0 the thread also pauses once it generated that
  many tokens under one weight version, keeping its partial responses until the next push (unless the trainer is
  waiting for data: a paused rollout never starves it).
* Staleness: a group whose oldest token lags more than eta versions by the earliest step that could train it is
  dropped (in flight, or when the trainer takes a batch) and its prompt sampled again; ``stream/dropped_stale``.
  With ``wait_for_due`` the trainer first waits for groups in flight whenever taking now would strand a group
  (`take_strands_a_group`: no later batch could train it in time).
* Dynamic sampling, filters and curricula: every finished group is scored and reported to the prompt source
  (``observe``), and groups whose responses are all right or all wrong are dropped, as in the synchronous path.
* Checkpoints: `state` saves the buffered and in-flight groups (partial responses included) with the prompt
  source's state; a resumed run puts them back before the thread starts (`thinkrl.rollout.stream_state`).
* Failures: an exception in the rollout thread (or a failed engine) reaches the trainer's next call as a
  `RolloutError`; every wait polls the other side's liveness; `close` stops the thread and aborts its requests.

Streaming runs are not bit-reproducible: which prompts share a batch depends on thread timing.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import torch

from thinkrl.engine import Request, TokenEvent
from thinkrl.records import Trajectory
from thinkrl.rl import group_has_variance
from thinkrl.rollout.admission import AdmissionCounts, groups_to_admit
from thinkrl.rollout.buffer import FinishedGroup, GroupBuffer, take_strands_a_group, version_lag
from thinkrl.rollout.groups import RolloutBatch
from thinkrl.rollout.partial import PartialSample, continuation_request, finish_sample, first_request, record_piece
from thinkrl.rollout.requests import SampleRequest, render_prompt, sampling_params
from thinkrl.rollout.scoring import score_trajectories
from thinkrl.rollout.sources import SKIPPED_TOTAL, PromptSource
from thinkrl.rollout.specs import RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.rollout.stream_state import ResumableStream
from thinkrl.rollout.stream_state import StreamGroup as _Group
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)
_WAKE = object()  # put on the rollout thread's queue (`_wake`)


class RolloutError(RuntimeError):
    """The rollout thread failed or stopped; the trainer cannot get more data."""


@dataclass
class _Tally:
    """What happened since the trainer's last batch."""

    sampled: list[Trajectory]
    groups_completed: int = 0
    groups_no_variance: int = 0
    dropped_stale: int = 0
    continued: int = 0

    @classmethod
    def empty(cls) -> _Tally:
        return cls(sampled=[])


class StreamingDriver(ResumableStream):
    """The rollout thread and the trainer's side of it: `next_batch`, `push_weights`, `close`; `state` and
    `restore` (checkpoints) come from `ResumableStream`.

    Args:
        engine: the engine client (`EngineLoop`, `RolloutProcess` or another with their interface).
        tokenizer, source, rollout, sampling, reward: as for `collect_rollout_batch`.
        seed: seeds the thinking-budget draws and per-request sampling seeds.
        start_version: the trainer's weight version at start (the last finished step; 0 for a fresh run).
        stall_timeout_s: `next_batch` raises when the engine generated nothing for this long.
        poll_s: how often waits check the other side's liveness.
    """

    score_group = staticmethod(score_trajectories)  # a finished group's rewards (agents: the environment judges)
    resume_groups = True  # a checkpoint saves the groups' partial responses (else their prompts: stream_state)

    def __init__(self, engine: Any, tokenizer: TextTokenizer, source: PromptSource, rollout: RolloutSpec,
                 sampling: SamplingSpec, reward: RewardSpec, seed: int, start_version: int = 0,
                 stall_timeout_s: float = 600.0, poll_s: float = 0.2) -> None:
        self.engine, self.tokenizer, self.source = engine, tokenizer, source
        self.rollout, self.sampling, self.reward = rollout, sampling, reward
        self.stall_timeout_s, self.poll_s = stall_timeout_s, poll_s
        self._rng = random.Random(seed)
        self._lock = threading.RLock()  # shared state, submissions; RLock: Ctrl-C in a wait can't free another's hold
        self._ready = threading.Condition(self._lock)
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()  # TokenEvent, BaseException or _WAKE
        self._inflight: dict[Any, tuple[_Group, Any]] = {}  # a PartialSample, or an agent's episode
        self._active: dict[int, _Group] = {}
        self._held: list[tuple[_Group, PartialSample]] = []
        self._buffer = GroupBuffer()
        self._retry: deque[Problem] = deque()
        self._tally = _Tally.empty()
        self._version = start_version
        self._pending_push = False  # a batch was taken and its update is not pushed yet
        self._tokens = self._ids = 0  # tokens: written by the engine thread only (the sink); ids: the last request id
        # an engine in another process sends a pipe message per event: finished ones only (unless round_tokens)
        self._finished_only = rollout.placement == "process" and not rollout.round_tokens
        self._round_start = self._tokens_reported = 0
        self._skipped_reported = int(source.metrics().get(SKIPPED_TOTAL, 0))
        self._holding = self._trainer_waiting = self._closed = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thinkrl-rollout", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def version(self) -> int:
        """The weight version last pushed: the trainer's current weights."""
        return self._version

    @property
    def tokens_generated(self) -> int:
        """Tokens the engine generated for this driver so far (interrupted and dropped ones included)."""
        return self._tokens

    @property
    def num_in_flight(self) -> int:
        """Requests of this driver in the engine (or on their way to it)."""
        return len(self._inflight)

    # ---- trainer side -------------------------------------------------------------------------------------------
    def next_batch(self, step: int) -> RolloutBatch:
        """Block until ``prompts_per_step`` usable groups are buffered (or, with dynamic sampling, until
        ``prompts_per_step x max_sampling_rounds`` groups finished since the last batch and some are usable); take
        them. Raises `RolloutError` when the rollout thread failed, TimeoutError when the engine stalls."""
        need = self.rollout.prompts_per_step
        enough = need * self.rollout.max_sampling_rounds
        eta = self.rollout.max_staleness
        started = time.monotonic()
        with self._ready:
            self._trainer_waiting = True
            self._wake()  # a rollout paused by round_tokens resumes now
            try:
                last_tokens, last_progress = -1, started
                while True:
                    self._check_alive()
                    self._drop_stale(self._buffer.take(0, self._version, eta).stale)
                    usable = self._buffer.num_usable(self._version, eta)
                    if (usable >= need and not self._must_wait(need)) or self._tally.groups_completed >= enough:
                        break  # (the second: as the synchronous path's rounds limit)
                    now = time.monotonic()
                    if self._tokens != last_tokens:
                        last_tokens, last_progress = self._tokens, now
                    elif now - last_progress > self.stall_timeout_s:
                        raise TimeoutError(f"streaming rollout: the engine generated nothing for "
                                           f"{self.stall_timeout_s:.0f} s while the trainer waited for step {step}")
                    self._ready.wait(self.poll_s)
            finally:
                self._trainer_waiting = False
            taken = self._buffer.take(need, self._version, eta)
            self._drop_stale(taken.stale)
            self._pending_push = bool(taken.groups)  # the loop pushes after a step that trained
            self._wake()  # room in the buffer
            tally, self._tally = self._tally, _Tally.empty()
            data_metrics = self.source.metrics()
            buffered = len(self._buffer)
        return self._batch(taken.groups, tally, data_metrics, time.monotonic() - started, buffered)

    def push_weights(self, weights: Any, version: int) -> None:
        """Interrupt every in-flight request, then push ``weights`` as ``version`` (blocks until applied); the
        interrupted responses continue with the new weights."""
        with self._lock:  # no submission between the interrupts and the push
            self._check_alive()
            for request_id in list(self._inflight):
                self.engine.interrupt(request_id)
            self.engine.update_weights(weights, version=version)
            self._version, self._pending_push = version, False
            self._round_start = self._tokens
            if self._holding:
                self._release_held()
            self._wake()  # the new version admits groups

    def close(self, timeout: float = 10.0) -> None:
        """Stop the rollout thread and abort its in-flight requests (idempotent)."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._lock:
            self._closed = True
            for request_id in list(self._inflight):
                self.engine.abort(request_id)
            self._inflight.clear()
            self._ready.notify_all()

    def _wake(self) -> None:  # admission or pausing may change: an idle engine sends no event to wake the thread
        self._events.put(_WAKE)

    def _check_alive(self) -> None:
        if self._error is not None:
            raise RolloutError(f"the rollout thread failed: {self._error}") from self._error
        if self._closed or not self._thread.is_alive():
            raise RolloutError("the rollout thread is not running (closed)")

    def _must_wait(self, need: int) -> bool:
        """With ``wait_for_due``: a group in flight must finish before this batch is taken, or some group would go
        stale (`take_strands_a_group`). Caller holds the lock."""
        if not self.rollout.wait_for_due:
            return False
        return take_strands_a_group([g.oldest for g in self._buffer], [g.start_version for g in self._active.values()],
                                    self._version, self.rollout.max_staleness, need)

    def _batch(self, groups: list[FinishedGroup], tally: _Tally, data_metrics: dict[str, float], waited: float,
               buffered: int) -> RolloutBatch:
        kept = [t for g in groups for t in g.trajectories]
        lags = [version_lag(g.oldest, self._version) for g in groups]
        batch = RolloutBatch(trajectories=kept, sampled=tally.sampled, num_groups_sampled=tally.groups_completed,
                             num_groups_dropped=tally.groups_no_variance, num_rounds=1, data_metrics=data_metrics)
        skipped = int(data_metrics.get(SKIPPED_TOTAL, 0))
        batch.num_prompts_skipped, self._skipped_reported = skipped - self._skipped_reported, skipped
        tokens, self._tokens_reported = self._tokens - self._tokens_reported, self._tokens
        batch.stream_metrics = {
            "stream/buffer_wait_s": waited, "stream/dropped_stale": tally.dropped_stale,
            "stream/fresh_share": sum(g.is_fresh(self._version) for g in groups) / max(1, len(groups)),
            "stream/version_lag_mean": sum(lags) / max(1, len(lags)), "stream/continued": tally.continued,
            "stream/buffered_groups": buffered, "stream/tokens_generated": tokens}
        return batch

    # ---- rollout thread -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._admit()
                self._pause_or_resume()
                try:
                    item = self._events.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                while True:  # every finished event before admitting: continuations reach the engine first
                    if item is not _WAKE:
                        self._handle(item)
                    try:
                        item = self._events.get_nowait()
                    except queue.Empty:
                        break
        except BaseException as error:  # reaches the trainer at its next call
            logger.debug("the rollout thread failed", exc_info=True)  # the trainer reports it (--traceback)
            with self._ready:
                self._error = error
                self._ready.notify_all()

    def _sink(self, item: TokenEvent | BaseException) -> None:
        """Runs in the engine's thread: count tokens, pass on finished events and errors (never blocks)."""
        if isinstance(item, TokenEvent):  # finished_only: the finished event's trajectory holds the piece's tokens
            before, budget = self._tokens - self._round_start, self.rollout.round_tokens
            self._tokens += len(item.trajectory.response_ids if self._finished_only and item.finished
                                else item.token_ids)
            if budget and before < budget <= self._tokens - self._round_start:
                self._wake()  # the round's token budget is spent: pause now, not at the next finish
            if not item.finished:
                return
        self._events.put(item)

    def _admit(self) -> None:
        """Start the groups `groups_to_admit` allows (``rollout.admission``)."""
        with self._lock:
            free = groups_to_admit(self.rollout, AdmissionCounts(
                len(self._active) + len(self._buffer), len(self._inflight) + len(self._held), self._pending_push,
                self.sampling.num_slots))
            if self._holding or free <= 0:
                return
            problems = [self._retry.popleft() for _ in range(min(free, len(self._retry)))]
            problems += self.source.take(free - len(problems))
            requests = [r for p in problems for r in self._new_group(p)]
            if requests:
                self.engine.submit(requests, self._sink, finished_only=self._finished_only)

    def _new_group(self, problem: Problem) -> list[Request]:
        prompt = render_prompt(self.tokenizer, problem, self._rng.choice(self.sampling.thinking_budgets))
        group = _Group(self._ids, problem, [], start_version=self._version)
        self._active[group.group_id] = group
        requests = []
        for _ in range(self.rollout.group_size):
            request_id = self._new_id()
            item = SampleRequest(prompt, sampling_params(self.sampling, self._rng.getrandbits(62)),
                                 group_id=group.group_id, request_id=request_id)
            request, sample = first_request(self.tokenizer, item, request_id)
            group.samples.append(sample)
            self._inflight[request_id] = (group, sample)
            requests.append(request)
        return requests

    def _new_id(self) -> tuple[str, int]:
        self._ids += 1
        return ("stream", self._ids)  # never an id another caller of the engine uses (theirs are ints or pairs)

    def _handle(self, item: TokenEvent | BaseException) -> None:
        if isinstance(item, BaseException):
            raise RolloutError(f"the engine failed under the rollout: {item}") from item
        with self._lock:
            entry = self._inflight.pop(item.request_id, None)
        if entry is None:  # aborted by us (stale group, close)
            return
        group, sample = entry
        traj: Trajectory = item.trajectory
        if traj.finish_reason == "error":
            raise RolloutError(f"request {item.request_id} failed in the engine: {traj.error}")
        with self._lock:
            record_piece(sample, traj)  # (under the lock: a checkpoint's snapshot sees pieces and counts together)
            if group.abandoned or self._abandon_if_stale(group):
                return
            if traj.finish_reason == "abort":  # interrupted: continue now, or after the next push when paused
                self._tally.continued += 1
                if self._holding:
                    self._held.append((group, sample))
                else:
                    self._continue(group, sample)
                return
        finish_sample(sample, self.tokenizer, item.request_id)
        if all(s.result is not None for s in group.samples):
            self._complete(group)

    def _continue(self, group: _Group, sample: PartialSample) -> None:
        request_id = self._new_id()
        request = continuation_request(sample, request_id)
        self._inflight[request_id] = (group, sample)
        self.engine.submit(request, self._sink, finished_only=self._finished_only)

    def _abandon_if_stale(self, group: _Group) -> bool:
        """Drop ``group`` (abort its requests, sample its prompt again) when even the next batch to be taken would
        train its oldest token past the staleness bound. Caller holds the lock."""
        next_version = self._version + self._pending_push  # the trainer's weights at the next batch, at the earliest
        if version_lag(group.oldest(), next_version) <= self.rollout.max_staleness:
            return False
        group.abandoned = True
        for request_id, (owner, _) in list(self._inflight.items()):
            if owner is group:
                del self._inflight[request_id]
                self.engine.abort(request_id)
        self._held = [(g, s) for g, s in self._held if g is not group]
        self._active.pop(group.group_id, None)
        self._tally.dropped_stale += 1
        self._retry.append(group.problem)
        return True

    def _drop_stale(self, groups: list[FinishedGroup]) -> None:
        """Buffered groups past the bound: counted, their prompts sampled again. Caller holds the lock."""
        self._tally.dropped_stale += len(groups)
        self._retry.extend(g.problem for g in groups)

    def _complete(self, group: _Group) -> None:
        trajs: list[Trajectory] = [s.result for s in group.samples]
        self.score_group(trajs, self.tokenizer, self.reward)
        correct = [bool(t.correct) for t in trajs]
        one_group = torch.zeros(len(trajs), dtype=torch.long)
        keep = not self.rollout.dynamic_sampling or bool(
            group_has_variance(torch.tensor(correct, dtype=torch.float), one_group).all())
        with self._ready:
            self.source.observe(group.problem, correct)
            self._active.pop(group.group_id, None)
            self._tally.sampled += trajs
            self._tally.groups_completed += 1
            if keep:
                self._buffer.put(FinishedGroup(group.problem, trajs))
                self._ready.notify_all()
            else:
                self._tally.groups_no_variance += 1

    def _pause_or_resume(self) -> None:
        """``round_tokens``: pause (interrupting what is in flight) once this weight version generated that many
        tokens, unless the trainer is waiting for data; resume when it is."""
        if not self.rollout.round_tokens:
            return
        with self._lock:
            spent = self._tokens - self._round_start >= self.rollout.round_tokens
            pause = spent and not self._trainer_waiting
            if pause and not self._holding:
                self._holding = True
                for request_id in list(self._inflight):
                    self.engine.interrupt(request_id)
            elif not pause and self._holding:
                self._release_held()

    def _release_held(self) -> None:
        """Continue the responses kept while paused. Caller holds the lock."""
        self._holding = False
        held, self._held = self._held, []
        for group, sample in held:
            if not group.abandoned and not self._abandon_if_stale(group):
                self._continue(group, sample)
