"""The streaming rollout's admission rules (`thinkrl.rollout.admission`): the counts against hand-computed values,
and against a real engine loop (a tiny random model) and a real rollout process: the "slots" rule never puts more
requests in the engine than it has slots, the staleness bound still holds, a group larger than the engine does not
deadlock, and the process placement (finished events only) trains valid batches."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout import PromptCursor, RewardSpec, RolloutSpec, SamplingSpec, StreamingDriver
from thinkrl.rollout.admission import AdmissionCounts, groups_to_admit, staleness_capacity
from thinkrl.rollout.buffer import version_lag
from thinkrl.rollout.process import start_engine_process
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
PROBLEMS = generate_dataset("arithmetic", 40, 0, "train", {"num_terms": 2, "max_number": 5})
REWARD = RewardSpec(max_response_len=12, overlong_cache_len=4)
WAIT_S = 60  # generous: a failure must surface within this, never hang the suite


def _spec(**changes: Any) -> RolloutSpec:
    fields = {"group_size": 2, "prompts_per_step": 2, "dynamic_sampling": False, "mode": "streaming",
              "max_staleness": 2, **changes}
    return RolloutSpec(**fields)


@pytest.mark.parametrize(("spec", "counts", "want"), [
    # batch: P x (eta + 1 - pending) - groups = 4 x 3 - 5, then 4 x 2 - 5
    (dict(prompts_per_step=4), AdmissionCounts(groups=5, requests=99, pending=False, slots=8), 7),
    (dict(prompts_per_step=4), AdmissionCounts(groups=5, requests=99, pending=True, slots=8), 3),
    (dict(prompts_per_step=4, max_buffered_groups=6), AdmissionCounts(5, 0, False, 8), 1),
    (dict(prompts_per_step=4, max_staleness=0), AdmissionCounts(0, 0, True, 8), 0),  # eta 0: after the push only
    (dict(prompts_per_step=4), AdmissionCounts(13, 0, False, 8), 0),  # over capacity: never negative
    # slots: also (slots - requests) // G groups: (8 - 3) // 2 = 2 of the 7 the bound allows
    (dict(prompts_per_step=4, admission="slots"), AdmissionCounts(5, 3, False, 8), 2),
    (dict(prompts_per_step=4, admission="slots"), AdmissionCounts(5, 7, False, 8), 0),
    (dict(prompts_per_step=4, admission="slots", group_size=3), AdmissionCounts(0, 0, False, 2), 1),  # G > slots
    (dict(prompts_per_step=4, admission="slots"), AdmissionCounts(12, 0, False, 8), 0),  # the bound still rules
])
def test_groups_to_admit_hand_computed(spec: dict, counts: AdmissionCounts, want: int) -> None:
    assert groups_to_admit(_spec(**spec), counts) == want


def test_staleness_capacity_is_the_batch_count() -> None:
    assert staleness_capacity(_spec(prompts_per_step=3, max_staleness=1), pending=False) == 6
    assert staleness_capacity(_spec(prompts_per_step=3, max_staleness=1), pending=True) == 3


class _ConcurrencyProbe:
    """The real engine loop, recording the most requests of its callers submitted and not yet finished at once."""

    def __init__(self, inner: EngineLoop) -> None:
        self.inner, self.live, self.most = inner, set(), 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, requests, sink, *, finished_only: bool = False) -> None:
        batch = requests if isinstance(requests, list) else [requests]
        with self._lock:
            self.live.update(r.request_id for r in batch)
            self.most = max(self.most, len(self.live))

        def counted(item) -> None:
            if getattr(item, "finished", False):
                with self._lock:
                    self.live.discard(item.request_id)
            sink(item)
        self.inner.submit(batch, counted, finished_only=finished_only)

    def abort(self, request_id) -> None:
        with self._lock:
            self.live.discard(request_id)
        self.inner.abort(request_id)


def _weights(seed: int) -> list:
    return list(build_model(CFG, seed=seed).state_dict().items())


def _train(driver: StreamingDriver, steps: int, eta: int) -> list:
    """Take a batch, let the rollout generate meanwhile, push version ``step``; check the bound on every batch."""
    batches = []
    for step in range(1, steps + 1):
        batch = driver.next_batch(step)
        assert len(batch.trajectories) == 4
        for t in batch.trajectories:
            assert version_lag(t.policy_version, step - 1) <= eta, (step, t.token_versions)
            assert max(t.token_versions) <= step - 1 and t.reward is not None
        batches.append(batch)
        start, deadline = driver.tokens_generated, time.monotonic() + WAIT_S
        while driver.tokens_generated < start + 6 and driver.num_in_flight:
            assert time.monotonic() < deadline, "the rollout generated nothing"
            time.sleep(0.01)
        driver.push_weights(_weights(step), version=step)
    return batches


@pytest.mark.parametrize(("admission", "within_slots"), [("slots", True), ("batch", False)])
def test_slots_rule_never_queues_requests_beyond_the_engine(admission: str, within_slots: bool) -> None:
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=12, num_slots=4)
    loop = EngineLoop(LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=4, max_seq_len=128),
                      idle_wait_s=0.05).start()
    probe = _ConcurrencyProbe(loop)
    driver = StreamingDriver(probe, TOK, PromptCursor(PROBLEMS, 0), _spec(admission=admission), sampling, REWARD,
                             seed=0, poll_s=0.05).start()
    try:
        _train(driver, steps=4, eta=2)
    finally:
        driver.close()
        loop.stop()
    # eta 2, 2 prompts x 2 samples: the batch rule starts 2 x 3 groups (12 requests) on 4 slots at once
    assert (probe.most <= 4) is within_slots, probe.most


def test_a_group_larger_than_the_engine_runs_one_at_a_time() -> None:
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=8, num_slots=2)
    loop = EngineLoop(LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=2, max_seq_len=128),
                      idle_wait_s=0.05).start()
    driver = StreamingDriver(loop, TOK, PromptCursor(PROBLEMS, 0), _spec(admission="slots", group_size=3),
                             sampling, REWARD, seed=0, poll_s=0.05, stall_timeout_s=WAIT_S).start()
    try:
        batch = driver.next_batch(1)
    finally:
        driver.close()
        loop.stop()
    assert len(batch.trajectories) == 6 and batch.num_groups_sampled >= 2


def test_process_placement_takes_finished_events_only_and_keeps_the_bound() -> None:
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=12, num_slots=4)
    client = start_engine_process(build_model(CFG, seed=0).eval(), TOK, num_slots=4, max_seq_len=128, seed=0)
    driver = StreamingDriver(client, TOK, PromptCursor(PROBLEMS, 0), _spec(admission="slots", placement="process"),
                             sampling, REWARD, seed=0, poll_s=0.05).start()
    try:
        assert driver._finished_only
        batches = _train(driver, steps=3, eta=2)
    finally:
        driver.close()
        client.stop()
    sampled = sum(len(t.response_ids) for b in batches for t in b.sampled)
    generated = sum(b.stream_metrics["stream/tokens_generated"] for b in batches)
    # counted per finished piece: every sampled response's tokens, plus pieces finished after each take
    assert generated >= sampled > 0
