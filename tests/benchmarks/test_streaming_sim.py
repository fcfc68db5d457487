"""The cluster simulator behind docs/results/streaming.md: a sync step by hand, and the staleness bound enforced
(every trained group within eta) vs bounding admission only (AReaL's rule: trained groups may lag more)."""

from __future__ import annotations

import random

import bench_streaming_sim as sim


def _costs(train_per_token: float = 0.5) -> sim.Costs:
    return sim.Costs(step_fixed=1.0, step_per_seq=0.0, ctx_cost=0.0, train_per_token=train_per_token,
                     prefill_per_token=0.0, push=0.0)


def _long_tail(rng: random.Random) -> int:
    return 200 if rng.random() < 0.2 else 10


def test_sync_step_by_hand() -> None:
    # 2 groups x 2 responses of 10 tokens, slots for all: 10 decode steps of 1 s, then 40 tokens x 0.5 s of training
    work = sim.Workload(prompts=2, group=2, slots=8, prompt_len=4, draw=lambda rng: 10)
    result = sim.simulate_sync(_costs(), work, steps=3)
    assert result["step_s"] == 10.0 + 20.0
    assert result["samples_per_s"] == 4 / 30.0
    assert result["trainer_idle_frac"] == 10.0 / 30.0


def test_sync_waits_for_the_longest_response() -> None:
    # one response of 30 tokens among 10-token ones: the rollout lasts 30 steps (continuous batching, enough slots)
    lengths = iter([10, 30, 10, 10])
    work = sim.Workload(prompts=2, group=2, slots=8, prompt_len=4, draw=lambda rng: next(lengths))
    result = sim.simulate_sync(_costs(train_per_token=0.0), work, steps=1)
    assert result["step_s"] == 30.0


def test_enforced_bound_trains_nothing_staler_than_eta() -> None:
    work = sim.Workload(prompts=4, group=2, slots=64, prompt_len=4, draw=_long_tail)
    for eta in (1, 2):
        for wait in (True, False):
            result = sim.simulate_streaming(_costs(0.05), work, steps=40, eta=eta, wait_for_due=wait)
            assert result["lag_max"] <= eta
            assert result["lag_over_eta_frac"] == 0.0
    dropping = sim.simulate_streaming(_costs(0.05), work, steps=40, eta=1, wait_for_due=False)
    assert dropping["dropped_groups"] > 0  # the long tail goes stale: the bound is doing something here


def test_admission_only_bound_lets_trained_groups_lag_more_and_drops_nothing() -> None:
    work = sim.Workload(prompts=4, group=2, slots=64, prompt_len=4, draw=_long_tail)
    result = sim.simulate_streaming(_costs(0.05), work, steps=40, eta=1, wait_for_due=False, enforce=False)
    assert result["dropped_groups"] == 0
    assert result["lag_max"] > 1
    assert 0.0 < result["lag_over_eta_frac"] < 1.0
