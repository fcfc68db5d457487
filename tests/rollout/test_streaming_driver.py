"""The streaming rollout driver against a real engine loop (a tiny random model): the staleness bound is enforced,
partial responses continue across weight pushes, eta 0 is synchronous, the sync driver is today's rollout, and
every failure reaches the trainer as an error instead of a hang."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.engine.types import TokenEvent
from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.rollout import (
    PromptCursor,
    RewardSpec,
    RolloutError,
    RolloutSpec,
    SamplingSpec,
    StreamingDriver,
    SyncDriver,
    collect_rollout_batch,
)
from thinkrl.rollout.buffer import FinishedGroup, GroupBuffer, take_strands_a_group, version_lag
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
PROBLEMS = generate_dataset("arithmetic", 40, 0, "train", {"num_terms": 2, "max_number": 5})
SAMPLING = SamplingSpec(temperature=1.0, max_new_tokens=12, num_slots=4)
REWARD = RewardSpec(max_response_len=12, overlong_cache_len=4)
WAIT_S = 60  # generous: a failure must surface within this, never hang the suite


def _loop(num_slots: int = 4) -> EngineLoop:
    return EngineLoop(LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=num_slots, max_seq_len=128),
                      idle_wait_s=0.05).start()


def _weights(seed: int) -> list:
    return list(build_model(CFG, seed=seed).state_dict().items())


def _rollout(**changes) -> RolloutSpec:
    fields = {"group_size": 2, "prompts_per_step": 2, "dynamic_sampling": False, "mode": "streaming",
              "max_staleness": 1, **changes}
    return RolloutSpec(**fields)


@pytest.fixture
def loop() -> Iterator[EngineLoop]:
    engine_loop = _loop()
    yield engine_loop
    engine_loop.stop()


def _driver(loop: EngineLoop, source=None, **changes) -> StreamingDriver:
    return StreamingDriver(loop, TOK, source or PromptCursor(PROBLEMS, 0), _rollout(**changes), SAMPLING, REWARD,
                           seed=0, poll_s=0.05).start()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _train(driver: StreamingDriver, steps: int, tokens: int = 8) -> list:
    """A trainer: take each batch, let the rollout generate ``tokens`` more tokens meanwhile ("training"), push new
    weights as version ``step``."""
    batches = []
    for step in range(1, steps + 1):
        weights = _weights(step)  # ready before the batch: the push follows it at once when ``tokens`` is 0
        batches.append(driver.next_batch(step))
        start = driver.tokens_generated
        _wait_for(lambda s=start: driver.tokens_generated >= s + tokens or not driver.num_in_flight,
                  "the rollout to generate")
        driver.push_weights(weights, version=step)
    return batches


def test_sync_driver_is_the_synchronous_rollout() -> None:
    rollout = RolloutSpec(group_size=2, prompts_per_step=2, dynamic_sampling=False)
    a, b = _loop(), _loop()
    try:
        got = SyncDriver(a, TOK, PromptCursor(PROBLEMS, 0), rollout, SAMPLING, REWARD, seed=5).next_batch(3)
        want = collect_rollout_batch(b, TOK, PromptCursor(PROBLEMS, 0), rollout, SAMPLING, REWARD,
                                     seed=5 * 100_003 + 3)
        assert [t.response_ids for t in got.trajectories] == [t.response_ids for t in want.trajectories]
        assert [t.reward for t in got.trajectories] == [t.reward for t in want.trajectories]
        assert got.stream_metrics == {}
    finally:
        a.stop()
        b.stop()


class _InterruptWitness:
    """The engine loop as the driver sees it, recording what really happened: the requests a push interrupted that
    the engine then stopped early (finish reason "abort"; an interrupt landing after the request finished is a
    no-op), and the prompt of every request submitted (a continuation's prompt is the interrupted one's prompt +
    its tokens so far)."""

    def __init__(self, loop: EngineLoop) -> None:
        self._loop = loop
        self._guard = threading.Lock()
        self._prompts: dict[object, tuple[int, ...]] = {}
        self._interrupted: set[object] = set()
        self.submitted: set[tuple[int, ...]] = set()
        self.stopped_early: list[tuple[int, ...]] = []  # interrupted request's prompt + its tokens when stopped

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    def interrupt(self, request_id) -> None:
        with self._guard:
            self._interrupted.add(request_id)
        self._loop.interrupt(request_id)

    def submit(self, requests, sink, **kwargs):
        for r in requests if isinstance(requests, list) else [requests]:
            with self._guard:
                self._prompts[r.request_id] = tuple(r.prompt_ids)
                self.submitted.add(tuple(r.prompt_ids))

        def witness(item) -> None:
            if isinstance(item, TokenEvent) and item.finished and item.trajectory.finish_reason == "abort":
                with self._guard:
                    if item.request_id in self._interrupted:
                        prompt = self._prompts[item.request_id]
                        self.stopped_early.append(prompt + tuple(item.trajectory.response_ids))
            sink(item)

        return self._loop.submit(requests, witness, **kwargs)

    def not_continued(self) -> list[tuple[int, ...]]:
        with self._guard:
            return [p for p in self.stopped_early if p not in self.submitted]


@pytest.mark.parametrize("eta", [1, 2])
def test_trained_tokens_never_lag_more_than_eta_and_partials_continue(loop: EngineLoop, eta: int) -> None:
    witness = _InterruptWitness(loop)
    driver = _driver(witness, max_staleness=eta)
    try:
        batches = _train(driver, steps=5, tokens=0)  # a fast trainer: each push lands mid-response
        # Every response a push really stopped goes on from where it stopped (unless its group was dropped as
        # stale): the rollout thread submits its continuation soon after the push.
        dropped = lambda: sum(b.stream_metrics["stream/dropped_stale"] for b in batches) + driver._tally.dropped_stale
        _wait_for(lambda: not witness.not_continued() or dropped(), "the interrupted responses to continue")
        stopped_so_far = len(witness.stopped_early)
    finally:
        driver.close()
    for step, batch in enumerate(batches, start=1):
        assert len({t.group_id for t in batch.trajectories}) == 2 and len(batch.trajectories) == 4
        for t in batch.trajectories:
            assert version_lag(t.policy_version, step - 1) <= eta, (step, t.token_versions)
            assert t.token_versions == sorted(t.token_versions) and max(t.token_versions) <= step - 1
            assert len(t.response_ids) <= SAMPLING.max_new_tokens and t.reward is not None
        m, groups = batch.stream_metrics, {}
        for t in batch.trajectories:
            groups.setdefault(t.group_id, []).extend(t.token_versions)
        assert m["stream/fresh_share"] == sum(set(v) == {step - 1} for v in groups.values()) / len(groups)
        assert m["stream/version_lag_mean"] == sum(step - 1 - min(v) for v in groups.values()) / len(groups)
    # The driver's own count agrees with what the engine did: one continuation per response stopped early (one
    # stopped by the last push may reach the driver after the wait, or never: the bounds allow for it).
    reported = sum(b.stream_metrics["stream/continued"] for b in batches) + driver._tally.continued
    if not dropped():
        assert stopped_so_far <= reported <= len(witness.stopped_early), (reported, witness.stopped_early)
    assert witness.stopped_early, "no push stopped a response: the test did not exercise continuation"


def test_eta_zero_is_synchronous(loop: EngineLoop) -> None:
    driver = _driver(loop, max_staleness=0)
    try:
        batches = _train(driver, steps=3, tokens=0)  # eta 0: nothing to sample until the push
    finally:
        driver.close()
    for step, batch in enumerate(batches, start=1):
        assert all(set(t.token_versions) == {step - 1} for t in batch.trajectories)
        assert batch.stream_metrics["stream/fresh_share"] == 1.0
        assert batch.stream_metrics["stream/continued"] == 0 and batch.stream_metrics["stream/dropped_stale"] == 0


class _RecordingSource(PromptCursor):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.taken: list[str] = []

    def take(self, n: int):
        problems = super().take(n)
        self.taken += [p.id for p in problems]
        return problems


def test_groups_past_the_bound_are_dropped_counted_and_sampled_again() -> None:
    loop = _loop(num_slots=8)  # every request of the 2 x (eta + 1) groups decodes at once, from version 0
    source = _RecordingSource(PROBLEMS, 0)
    driver = _driver(loop, source=source, max_staleness=1)
    try:
        first = driver.next_batch(1)
        before_push = list(source.taken)
        driver.push_weights(_weights(1), version=3)  # a jump: everything sampled with version 0 now lags 3
        later = [driver.next_batch(step) for step in (2, 3, 4)]
    finally:
        driver.close()
        loop.stop()
    assert len(before_push) == 4  # 2 groups a step x (eta + 1)
    assert sum(b.stream_metrics["stream/dropped_stale"] for b in later) == 2  # the 2 not trained at step 1
    for batch in later:
        assert all(version_lag(t.policy_version, 3) <= 1 for t in batch.trajectories)
    trained = [t.problem.id for b in [first, *later] for t in b.trajectories[::2]]
    assert set(before_push) <= set(trained)  # the dropped groups' prompts were sampled again, and trained


def test_round_token_budget_pauses_the_rollout_until_the_next_push(loop: EngineLoop) -> None:
    driver = _driver(loop, max_staleness=2, round_tokens=6)
    try:
        driver.next_batch(1)
        # The trainer is not waiting now: the rollout pauses (its responses interrupted, kept) and the engine idles.
        _wait_for(lambda: not loop.engine.has_unfinished() and driver._holding, "the rollout to pause")
        driver.push_weights(_weights(1), version=1)
        batch = driver.next_batch(2)
    finally:
        driver.close()
    assert len(batch.trajectories) == 4
    assert batch.stream_metrics["stream/continued"] > 0


def test_buffer_take_drops_groups_past_the_bound_oldest_first() -> None:
    def group(versions: list[int]) -> FinishedGroup:
        return FinishedGroup(PROBLEMS[0], [Trajectory([1], [5] * len(versions), [0.0] * len(versions),
                                                      token_versions=versions)])

    buffer = GroupBuffer()
    for versions in ([0, 1], [2, 2], [1, 3], [3]):
        buffer.put(group(versions))
    assert buffer.num_usable(trainer_version=3, max_staleness=1) == 2
    taken = buffer.take(1, trainer_version=3, max_staleness=1)
    assert [g.oldest for g in taken.stale] == [0, 1] and [g.oldest for g in taken.groups] == [2]
    assert len(buffer) == 1 and taken.groups[0].is_fresh(3) is False and group([3]).is_fresh(3)


class _FailingSource(PromptCursor):
    def take(self, n: int):
        if self.index:
            raise OSError("the prompt file went away")
        return super().take(n)


def test_an_exception_in_the_rollout_thread_reaches_the_trainer(loop: EngineLoop) -> None:
    driver = _driver(loop, source=_FailingSource(PROBLEMS, 0))
    try:
        with pytest.raises(RolloutError, match="the prompt file went away"):
            for step in range(1, 10):
                driver.next_batch(step)
                driver.push_weights(_weights(step), version=step)
        assert not driver._thread.is_alive()
        with pytest.raises(RolloutError):
            driver.push_weights(_weights(9), version=9)
    finally:
        driver.close()


def test_close_stops_the_thread_and_aborts_what_is_in_flight(loop: EngineLoop) -> None:
    driver = _driver(loop, prompts_per_step=4)
    _wait_for(lambda: loop.num_steps >= 2, "the rollout to start")
    driver.close()
    assert not driver._thread.is_alive()
    _wait_for(lambda: not loop.engine.has_unfinished(), "the engine to drain")
    with pytest.raises(RolloutError, match="not running"):
        driver.next_batch(1)
    assert loop.is_running  # the engine client is the caller's to stop


def test_a_failed_weight_push_raises_and_the_run_can_still_close(loop: EngineLoop) -> None:
    driver = _driver(loop)
    try:
        driver.next_batch(1)
        with pytest.raises(ValueError):
            driver.push_weights([("model.embed_tokens.weight", build_model(CFG).model.embed_tokens.weight[:3])], 1)
    finally:
        driver.close()
    assert not driver._thread.is_alive() and loop.is_running


def test_ctrl_c_while_the_trainer_waits_for_the_lock_leaves_the_lock_to_its_holder(loop: EngineLoop) -> None:
    """Ctrl-C reaches the trainer while it waits to re-acquire the driver's lock (its wait for a batch timed out and
    the rollout side holds the lock). Over a plain Lock, the KeyboardInterrupt left the wait without the lock and
    the trainer's ``with`` released the holder's lock: two threads in the critical section, and the holder's own
    release failing ("release unlocked lock"). The interrupt must come after the lock is the trainer's again."""
    driver = _driver(loop, prompts_per_step=1000)  # never ready: the trainer waits in poll_s turns
    holder_errors: list[BaseException] = []
    signalled: list[bool] = []

    def hold() -> None:  # as the rollout thread does around a submission, while the trainer waits for a batch
        time.sleep(0.2)
        try:
            with driver._lock:
                time.sleep(0.3)  # the trainer's 0.05 s wait times out: it waits to re-acquire the lock
                signalled.append(True)
                os.kill(os.getpid(), signal.SIGINT)  # (delivered to the main thread, the trainer)
                time.sleep(0.5)
        except BaseException as error:  # noqa: BLE001 - what the test looks for
            holder_errors.append(error)

    holder = threading.Thread(target=hold)
    fail_safe = threading.Timer(WAIT_S, driver.close)  # no SIGINT delivered: next_batch ends with RolloutError
    holder.start()
    fail_safe.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            driver.next_batch(1)
        holder.join(WAIT_S)
    finally:
        fail_safe.cancel()
        driver.close()
    assert signalled == [True]
    assert holder_errors == []
    assert driver._lock.acquire(blocking=False)  # free again: nobody holds it (and nobody released it twice)
    driver._lock.release()


def test_a_stopped_engine_fails_the_waiting_trainer(loop: EngineLoop) -> None:
    driver = _driver(loop, prompts_per_step=40)  # far more than the engine samples before it stops
    loop.stop()  # the engine goes away while the rollout thread uses it
    try:
        with pytest.raises(RolloutError, match="engine"):
            driver.next_batch(1)
    finally:
        driver.close()


@pytest.mark.parametrize(("buffered", "in_flight", "version", "eta", "batch", "wait"), [
    ([0, 0], [0], 2, 2, 2, True),  # only this batch may still train the group in flight: wait (the due rule)
    ([1, 1], [1], 2, 2, 2, False),  # its deadline is the next batch's
    # Takes at versions 1 and 2 can train 4 groups with oldest version 0; one is buffered, three are in flight.
    # Taking now trains one of them and a younger group, leaving 3 for the single batch of 2 at version 2: wait.
    ([0, 1, 1], [0, 0, 0], 1, 2, 2, True),
    ([0, 1, 1], [0, 0], 1, 2, 2, False),  # two left for the batch at version 2: they fit
    ([0, 0, 0], [0], 1, 2, 1, False),  # three buffered already need the one batch: waiting cannot save any
    ([None, 1, 1], [0, 0, 0], 1, 2, 2, True),  # a group without tokens is taken first, as the buffer takes it
    ([1, 2, 2, 2], [1, 1, 1, 1], 2, 3, 2, False),  # eta 3: 4 groups with deadline 4 fit the batches at 3 and 4
    ([1, 2, 2, 2], [1, 1, 1, 1, 1], 2, 3, 2, True),  # 5 do not
    ([0, 1], [0], 1, 1, 2, True),  # eta 1: the due rule only
    ([0, 1], [1], 1, 1, 2, False),
])
def test_the_trainer_waits_exactly_when_taking_now_would_strand_a_group(
        buffered: list, in_flight: list, version: int, eta: int, batch: int, wait: bool) -> None:
    # Hand-worked: a group with oldest version o must be taken by the batch at version o + eta; each version takes
    # one batch of `batch` groups, oldest first.
    assert take_strands_a_group(buffered, in_flight, version, eta, batch) is wait


class _HoldingEngine:
    """The real engine loop, holding back the finished events of chosen requests (long responses, as far as the
    driver can tell) until `release`."""

    def __init__(self, inner: EngineLoop, hold: set) -> None:
        self.inner, self.hold, self.held = inner, hold, []
        self._guard = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def submit(self, requests, sink, **kwargs) -> None:
        def holding(item) -> None:
            if isinstance(item, TokenEvent) and item.finished and item.request_id in self.hold:
                with self._guard:
                    self.held.append((sink, item))
                return
            sink(item)
        return self.inner.submit(requests, holding, **kwargs)

    def release(self) -> None:
        with self._guard:
            held, self.held = self.held, []
        for sink, item in held:
            sink(item)


def test_the_trainer_waits_for_old_groups_in_flight_rather_than_strand_one() -> None:
    # eta 2, 2 groups of one response a step: six groups start with version 0. Groups 4-6 finish in the engine but
    # reach the driver only later. At step 2 the buffer holds one old group and two of version 1: taking the old one
    # and a young one would leave three version-0 groups for the one batch (of 2) that may still train them.
    loop = _loop(num_slots=8)
    engine = _HoldingEngine(loop, hold={("stream", 4), ("stream", 5), ("stream", 6)})
    driver = StreamingDriver(engine, TOK, PromptCursor(PROBLEMS, 0), _rollout(max_staleness=2, group_size=1),
                             SAMPLING, REWARD, seed=0, poll_s=0.05).start()
    try:
        batches = [driver.next_batch(1)]
        _wait_for(lambda: len(engine.held) == 3, "the three long responses to finish in the engine")
        driver.push_weights(_weights(1), version=1)
        _wait_for(lambda: len(driver._buffer) == 3, "one version-0 and two version-1 groups buffered")
        taken: list = []
        trainer = threading.Thread(target=lambda: taken.append(driver.next_batch(2)))
        trainer.start()
        _wait_for(lambda: taken or driver._trainer_waiting, "the trainer to take or wait")
        engine.release()
        trainer.join(WAIT_S)
        batches += taken
        for step in (3, 4):
            driver.push_weights(_weights(step - 1), version=step - 1)
            batches.append(driver.next_batch(step))
    finally:
        driver.close()
        loop.stop()
    assert [t.policy_version for t in batches[1].trajectories] == [0, 0]  # the old groups, not a young one
    assert sum(b.stream_metrics["stream/dropped_stale"] for b in batches) == 0
    assert [len(b.trajectories) for b in batches] == [2, 2, 2, 2]
