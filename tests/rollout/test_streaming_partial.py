"""Partial rollouts: `EngineLoop.interrupt` hands back the partial response, and a response continued after an
interruption (prompt + response so far, the same budget controller) stitches into what one request records."""

from __future__ import annotations

import queue

import pytest
import torch

from thinkrl.engine import LLMEngine, SamplingParams, TokenEvent
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.rollout import RolloutPrompt, SampleRequest
from thinkrl.rollout.partial import continuation_request, finish_sample, first_request, stitch
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
PROBLEM = generate_dataset("arithmetic", 1, 0, "test", {"num_terms": 2, "max_number": 5})[0]
MAX_NEW = 16
BUDGET = 6  # enforced: the controller forces the end of thinking after 6 sampled thinking tokens


def _item(thinking_open: bool = True, temperature: float = 0.0) -> SampleRequest:
    # A prompt that opened the thinking block, so the enforced budget acts mid-response on a random model.
    ids = tuple(TOK.encode_chat([{"role": "user", "content": PROBLEM.prompt}], thinking_budget=BUDGET))
    prompt = RolloutPrompt(PROBLEM, BUDGET, ids, thinking_open)
    return SampleRequest(prompt, SamplingParams(max_new_tokens=MAX_NEW, temperature=temperature, seed=7))


def _loop(seed: int = 0) -> EngineLoop:
    return EngineLoop(LLMEngine(build_model(CFG, seed=seed).eval(), TOK, num_slots=2, max_seq_len=160)).start()


def _run_interrupted(loop: EngineLoop, request, after: int) -> Trajectory:
    """Submit ``request``; interrupt it from the sink once it has ``after`` tokens; its finished event."""
    out: queue.SimpleQueue = queue.SimpleQueue()
    count = 0

    def sink(event: TokenEvent | BaseException) -> None:
        nonlocal count
        if isinstance(event, TokenEvent):
            count += len(event.token_ids)
            if not event.finished and count >= after:
                loop.interrupt(event.request_id)  # from the loop thread: applied before the next step
        out.put(event)

    loop.submit(request, sink)
    while True:
        event = out.get(timeout=30)
        assert isinstance(event, TokenEvent), event
        if event.finished:
            return event.trajectory


def _single(loop: EngineLoop, temperature: float = 0.0) -> Trajectory:
    request, sample = first_request(TOK, _item(temperature=temperature), "single", enforce_budget=True)
    sample.pieces.append(loop.generate([request])[0])
    return finish_sample(sample, TOK, "single")


def test_interrupt_delivers_the_partial_response_and_the_loop_goes_on() -> None:
    loop = _loop()
    try:
        request, _ = first_request(TOK, _item(), "r", enforce_budget=True)
        partial = _run_interrupted(loop, request, after=3)
        assert partial.finish_reason == "abort" and len(partial.response_ids) == 3
        assert partial.token_versions == [0, 0, 0] and partial.response_mask == [True] * 3
        # interrupting a finished or unknown request does nothing; the loop still serves requests
        loop.interrupt("r")
        loop.interrupt("never-submitted")
        again, _ = first_request(TOK, _item(), "r2", enforce_budget=True)
        assert loop.generate([again])[0].finish_reason != "abort"
        assert loop.is_running
    finally:
        loop.stop()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stitched_response_equals_one_uninterrupted_request(temperature: float) -> None:
    """Greedy, and sampled: a continuation resumes its seed's stream at the position it reached."""
    loop = _loop()
    try:
        single = _single(loop, temperature)
        # the enforced budget acted: forced tokens (mask False) follow BUDGET sampled thinking tokens
        assert single.response_mask[:BUDGET] == [True] * BUDGET and not all(single.response_mask)
        if temperature:  # the rows really sample (a random model's sampled tokens are not its greedy ones)
            assert single.response_ids[:BUDGET] != _single(loop).response_ids[:BUDGET]
        for after in (1, 3, BUDGET - 1):  # interrupted before the budget: the controller must keep counting
            request, sample = first_request(TOK, _item(temperature=temperature), ("a", after), enforce_budget=True)
            sample.pieces.append(_run_interrupted(loop, request, after))
            while sample.pieces[-1].finish_reason == "abort":
                nxt = continuation_request(sample, ("c", after, len(sample.pieces)))
                assert nxt.params.seed == 7 and nxt.params.seed_offset == sample.num_tokens
                assert nxt.prompt_ids == list(_item().prompt.prompt_ids) + [t for p in sample.pieces
                                                                            for t in p.response_ids]
                assert nxt.params.max_new_tokens == MAX_NEW - sample.num_tokens
                sample.pieces.append(_run_interrupted(loop, nxt, after=2))
            got = finish_sample(sample, TOK, "stitched")
            assert len(sample.pieces) >= 2
            assert got.response_ids == single.response_ids
            assert got.response_mask == single.response_mask
            assert got.token_versions == single.token_versions
            assert got.finish_reason == single.finish_reason and got.text == single.text
            assert got.thinking_tokens == single.thinking_tokens == BUDGET
            assert got.kept_budget == single.kept_budget
            torch.testing.assert_close(torch.tensor(got.logprobs), torch.tensor(single.logprobs), atol=1e-5,
                                       rtol=0)
    finally:
        loop.stop()


def test_a_continuation_after_a_weight_push_recomputes_with_the_new_weights() -> None:
    loop, fresh = _loop(seed=0), _loop(seed=1)
    new_weights = list(build_model(CFG, seed=1).state_dict().items())
    try:
        request, sample = first_request(TOK, _item(), "p", enforce_budget=True)
        sample.pieces.append(_run_interrupted(loop, request, after=3))
        loop.update_weights(new_weights, version=1)
        sample.pieces.append(loop.generate([continuation_request(sample, "p2")])[0])
        got = finish_sample(sample, TOK, "p")
        n1, n = 3, len(got.response_ids)
        assert got.token_versions == [0] * n1 + [1] * (n - n1)  # each token keeps the version that sampled it
        # The second piece is what the new weights sample from prompt + first piece (a fresh engine with them,
        # whose KV cache never saw the old weights), with the same controller state.
        ref_request, ref_sample = first_request(TOK, _item(), "ref", enforce_budget=True)
        ref_sample.pieces.append(Trajectory(list(ref_request.prompt_ids), got.response_ids[:n1],
                                            got.logprobs[:n1], "abort"))
        for i in range(n1):  # replay the first piece (3 sampled thinking tokens) into the reference controller
            assert ref_sample.controller.forced_tokens(got.response_ids[: i + 1]) == []
        ref = fresh.generate([continuation_request(ref_sample, "ref2")])[0]
        assert got.response_ids[n1:] == ref.response_ids
        torch.testing.assert_close(torch.tensor(got.logprobs[n1:]), torch.tensor(ref.logprobs), atol=1e-5, rtol=0)
    finally:
        loop.stop()
        fresh.stop()


def test_stitch_concatenates_fields_and_decodes_like_the_engine() -> None:
    stop = TOK.stop_token_ids[0]
    a = Trajectory([1, 2], [10, 11], [-0.5, -0.25], "abort", [True, False], [0, 0])
    b = Trajectory([1, 2, 10, 11], [12, stop], [-1.0, -2.0], "stop", [True, True], [2, 2])
    got = stitch([a, b], [1, 2], TOK)
    assert got.prompt_ids == [1, 2] and got.response_ids == [10, 11, 12, stop]
    assert got.logprobs == [-0.5, -0.25, -1.0, -2.0] and got.response_mask == [True, False, True, True]
    assert got.token_versions == [0, 0, 2, 2] and got.policy_version == 0 and got.finish_reason == "stop"
    assert got.text == TOK.decode([10, 11, 12])
