"""Admission batching (``admit_batch``): waiting requests are held while sequences run until enough slots are free,
then admitted by one prefill forward; nothing waits longer than ``admit_wait_steps``, and no output changes."""

from __future__ import annotations

import pytest

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.scheduler import Scheduler
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.process import start_engine_process
from thinkrl.rollout.specs import SamplingSpec
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)


def _request(name: str) -> Request:
    return Request([5, 6, 7], SamplingParams(max_new_tokens=4), request_id=name)


def _ids(states) -> list[str]:
    return [s.request.request_id for s in states]


def test_requests_are_held_until_enough_slots_are_free_or_they_waited_long_enough() -> None:
    scheduler = Scheduler(num_slots=6, max_seq_len=64, admit_batch=3, admit_wait_steps=2)
    for i in range(6):
        scheduler.add(_request(f"r{i}"))
    first = scheduler.admit()  # nothing runs: no reason to wait
    assert _ids(first) == [f"r{i}" for i in range(6)]
    scheduler.add(_request("a"))
    scheduler.add(_request("b"))
    scheduler.release(first[0])
    scheduler.release(first[1])  # 2 free slots < 3: held
    assert scheduler.admit() == [] and len(scheduler.waiting) == 2
    scheduler.release(first[2])  # 3 free (= admit_batch): both waiting go in together, in one admission
    assert _ids(scheduler.admit()) == ["a", "b"]
    scheduler.add(_request("c"))
    scheduler.release(first[3])  # free: slots 2 (a, b took 0 and 1) and 3 -> 2 < 3: held for at most 2 steps
    assert [_ids(scheduler.admit()) for _ in range(3)] == [[], [], ["c"]]


def test_the_wait_counter_restarts_with_each_admission_and_an_empty_queue() -> None:
    scheduler = Scheduler(num_slots=4, max_seq_len=64, admit_batch=4, admit_wait_steps=1)
    for i in range(4):
        scheduler.add(_request(f"r{i}"))
    running = scheduler.admit()
    assert len(running) == 4
    scheduler.release(running[0])
    assert scheduler.admit() == []  # queue empty: nothing held, the counter stays at 0
    scheduler.add(_request("x"))
    assert scheduler.admit() == []  # held once (1 free < 4)
    assert _ids(scheduler.admit()) == ["x"]  # waited admit_wait_steps = 1


@pytest.mark.parametrize("kwargs, message", [
    ({"admit_batch": 0}, "admit_batch must be between 1 and num_slots (4), got 0"),
    ({"admit_batch": 5}, "admit_batch must be between 1 and num_slots (4), got 5"),
    ({"admit_wait_steps": -1}, "admit_wait_steps must be >= 0, got -1"),
])
def test_bad_admission_settings_are_rejected(kwargs, message) -> None:
    with pytest.raises(ValueError) as error:
        Scheduler(num_slots=4, max_seq_len=64, **kwargs)
    assert str(error.value) == message


def test_a_recipe_cannot_ask_for_more_than_its_slots() -> None:
    assert SamplingSpec(num_slots=32, admit_batch=8).admit_batch == 8
    with pytest.raises(ValueError, match=r"admit_batch \(40\) must be at most num_slots \(32\)"):
        SamplingSpec(num_slots=32, admit_batch=40)


def _prefill_rows(admit_batch: int) -> tuple[list[int], list[list[int]]]:
    """Rows of every prefill forward, and the responses, of 24 seeded requests of mixed lengths on 8 slots."""
    engine = LLMEngine(build_model(CFG, seed=0).eval(), load_tokenizer("builtin"), num_slots=8, max_seq_len=96,
                       admit_batch=admit_batch)
    rows: list[int] = []
    eager = engine._eager_logits

    def counting(states, prefix):
        if all(s.num_cached == 0 for s in states):  # a prefill: prompts not yet in the cache
            rows.append(len(states))
        return eager(states, prefix)

    engine._eager_logits = counting
    requests = [Request([5 + i % 7, 6, 7 + i % 3], SamplingParams(max_new_tokens=3 + (i * 7) % 23, seed=i,
                                                                  stop_token_ids=()), request_id=i)
                for i in range(24)]
    return rows, [t.response_ids for t in engine.generate(requests)]


def test_fewer_fuller_prefills_and_the_same_responses() -> None:
    one_rows, one_out = _prefill_rows(1)
    four_rows, four_out = _prefill_rows(4)
    assert four_out == one_out  # when a request starts does not change what it samples (its own seed)
    assert sum(one_rows) == sum(four_rows) == 24
    assert min(one_rows) == 1 and len(four_rows) < len(one_rows)
    # after the first (everything fits: nothing runs), each prefill admits >= 4, or the last few requests left
    assert all(rows >= 4 for rows in four_rows[1:-1]), four_rows


def test_the_rollout_process_engine_gets_the_setting() -> None:
    """A setting the child's engine refuses fails the start with the engine's own message: it reached the child."""
    with pytest.raises(Exception, match="admit_batch must be between 1 and num_slots"):
        start_engine_process(build_model(CFG, seed=0), load_tokenizer("builtin"), num_slots=4, max_seq_len=64,
                             seed=0, admit_batch=9, start_timeout=120)
