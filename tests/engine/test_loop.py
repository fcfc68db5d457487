"""`EngineLoop`: events from the engine thread reach asyncio consumers; refusals and shutdown are errors."""

from __future__ import annotations

import asyncio

import pytest

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.loop import EngineError, EngineLoop, stream_events
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
PARAMS = SamplingParams(max_new_tokens=10, temperature=0, stop_token_ids=())


def _engine() -> LLMEngine:
    return LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=2, max_seq_len=32)


async def _collect(runner: EngineLoop, requests: list[Request]) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {r.request_id: [] for r in requests}
    async for event in stream_events(runner, requests):
        tokens[event.request_id] += event.token_ids
        if event.finished:
            assert event.trajectory.response_ids == tokens[event.request_id]
    return tokens


def test_runner_streams_the_same_tokens_as_generate() -> None:
    prompts = [[5, 6], [7, 8, 9], [10], [11, 12]]  # more prompts than slots
    want = [t.response_ids for t in _engine().generate_from_ids(prompts, PARAMS)]
    runner = EngineLoop(_engine())
    runner.start()
    try:
        requests = [Request(p, PARAMS, request_id=f"r{i}") for i, p in enumerate(prompts)]
        got = asyncio.run(_collect(runner, requests))
        assert [got[f"r{i}"] for i in range(len(prompts))] == want
        assert runner.num_steps >= 10
    finally:
        runner.stop()


def test_refused_request_raises_and_dropped_stream_frees_the_runner() -> None:
    runner = EngineLoop(_engine())
    runner.start()
    try:
        with pytest.raises(ValueError, match="max_seq_len"):
            asyncio.run(_collect(runner, [Request([1] * 40, PARAMS)]))

        async def first_event_only() -> None:
            async for _ in stream_events(runner, [Request([5, 6], PARAMS, request_id="gone")]):
                break  # the consumer leaves: the request is dropped from delivery

        asyncio.run(first_event_only())
        got = asyncio.run(_collect(runner, [Request([5, 6], PARAMS, request_id="next")]))
        assert len(got["next"]) == 10 and runner.is_running
    finally:
        runner.stop()
    assert not runner.is_running
    with pytest.raises(EngineError, match="not running"):
        runner.submit(Request([5], PARAMS), lambda item: None)


def test_a_dropped_stream_is_aborted_in_the_engine() -> None:
    engine = LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=1, max_seq_len=4096)
    runner = EngineLoop(engine)
    runner.start()
    long = SamplingParams(max_new_tokens=4000, temperature=0, stop_token_ids=())
    try:
        async def first_event_only() -> None:
            async for _ in stream_events(runner, [Request([5, 6], long, request_id="gone")]):
                break  # the client leaves after one token; 3999 are left

        asyncio.run(first_event_only())
        # The one slot is free again long before 4000 steps: the next request runs right away.
        got = asyncio.run(_collect(runner, [Request([5, 6], PARAMS, request_id="next")]))
        assert len(got["next"]) == 10
        assert runner.num_aborted == 1 and runner.num_steps < 4000
    finally:
        runner.stop()
