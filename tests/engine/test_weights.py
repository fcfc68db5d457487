"""The weight boundary: the engine's weights change only through `update_weights`, every token records the version
that produced it, and a request that fails on its own does not stop the others."""

from __future__ import annotations

import copy

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.loop import EngineLoop
from thinkrl.engine.weights import named_weights
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
GREEDY = SamplingParams(max_new_tokens=24, temperature=0, stop_token_ids=())


def _trained_copy(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """A copy of ``model`` whose weights moved as after an optimizer step (a different policy)."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return other


def _token_logprobs(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    ids = torch.tensor(prompt + response)
    with torch.no_grad():
        logits = model.logits(model(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden)
    logp = logits.float().log_softmax(-1)[len(prompt) - 1 : -1]
    return logp.gather(-1, torch.tensor(response)[:, None]).squeeze(-1)


def test_engine_weights_change_only_through_update_weights() -> None:
    trainer_model = build_model(CFG, seed=0)
    engine = LLMEngine(copy.deepcopy(trainer_model).eval(), TOK, num_slots=2, max_seq_len=64)
    before = {n: p.clone() for n, p in engine.model.named_parameters()}
    pointers = {n: p.data_ptr() for n, p in engine.model.named_parameters()}
    opt = torch.optim.SGD(trainer_model.parameters(), lr=0.1)
    ids = torch.tensor([5, 6, 7, 8])
    out = trainer_model(ids, torch.arange(4), torch.tensor([0, 4]))
    trainer_model.logits(out.hidden).logsumexp(-1).sum().backward()
    opt.step()  # the trainer's weights move ...
    assert any(not torch.equal(p, before[n]) for n, p in trainer_model.named_parameters())
    for n, p in engine.model.named_parameters():  # ... the engine's do not
        assert torch.equal(p, before[n]), n
    assert engine.update_weights(named_weights(trainer_model), version=1) == len(before)
    for n, p in engine.model.named_parameters():  # now they equal the trainer's, copied in place
        assert torch.equal(p, dict(trainer_model.named_parameters())[n]) and p.data_ptr() == pointers[n], n
    assert engine.version == 1


def test_bad_weight_push_is_refused_and_copies_nothing() -> None:
    model = build_model(CFG, seed=0).eval()
    engine = LLMEngine(copy.deepcopy(model), TOK, num_slots=1, max_seq_len=32)
    good = {n: p.detach() + 1 for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        engine.update_weights([*good.items(), ("nope", torch.zeros(1))], version=1)
    name = next(iter(good))
    with pytest.raises(ValueError, match="shape"):
        engine.update_weights({**good, name: torch.zeros(3, 3)}, version=1)
    with pytest.raises(ValueError, match="missing"):
        engine.update_weights(dict(list(good.items())[1:]), version=1)
    for n, p in engine.model.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n])
    engine.update_weights(good, version=3)
    with pytest.raises(ValueError, match="older"):
        engine.update_weights(good, version=2)


def test_token_versions_follow_an_update_mid_sequence() -> None:
    old = build_model(CFG, seed=0).eval()
    new = _trained_copy(old)
    engine = LLMEngine(copy.deepcopy(old), TOK, num_slots=2, max_seq_len=64)
    prompt = [5, 6, 7]
    engine.add_request(Request(prompt, GREEDY, request_id="a"))
    with torch.inference_mode():
        for _ in range(10):
            engine.step()
        engine.update_weights(named_weights(new), version=7)
        traj = None
        while engine.has_unfinished():
            for event in engine.step():
                traj = event.trajectory if event.finished else traj
    assert traj.token_versions == [0] * 10 + [7] * 14
    assert traj.policy_version == 0
    # Each token's log-prob is that of the weights its version names (the KV cache of the first 10 tokens was
    # written by the old weights, so compare per segment with the weights of that segment's version).
    got = torch.tensor(traj.logprobs)
    assert (got[:10] - _token_logprobs(old, prompt, traj.response_ids)[:10]).abs().max() < 1e-4
    assert (got[10:] - _token_logprobs(old, prompt, traj.response_ids)[10:]).abs().max() > 1e-3


def test_loop_applies_pushes_between_steps_in_submission_order() -> None:
    old = build_model(CFG, seed=0).eval()
    new = _trained_copy(old)
    prompts = [[5, 6], [7, 8, 9], [10]]
    want_old = [t.response_ids for t in LLMEngine(copy.deepcopy(old), TOK, 4, 64).generate_from_ids(prompts, GREEDY)]
    want_new = [t.response_ids for t in LLMEngine(copy.deepcopy(new), TOK, 4, 64).generate_from_ids(prompts, GREEDY)]
    assert want_old != want_new  # the two policies differ on these prompts
    with EngineLoop(LLMEngine(copy.deepcopy(old), TOK, num_slots=4, max_seq_len=64)) as loop:
        first = loop.generate([Request(p, GREEDY) for p in prompts])
        assert loop.update_weights(named_weights(new), version=1) == len(list(new.parameters()))
        second = loop.generate([Request(p, GREEDY) for p in prompts])
        assert loop.version == 1
        with pytest.raises(ValueError, match="unknown parameter"):  # a bad push fails the caller, not the loop
            loop.update_weights([("nope", torch.zeros(1))], version=2)
        assert loop.is_running and loop.version == 1
    assert [t.response_ids for t in first] == want_old and all(set(t.token_versions) == {0} for t in first)
    assert [t.response_ids for t in second] == want_new and all(set(t.token_versions) == {1} for t in second)


def test_loop_push_while_streaming_versions_match_the_weights_used() -> None:
    old = build_model(CFG, seed=0).eval()
    new = _trained_copy(old)
    params = SamplingParams(max_new_tokens=40, temperature=0, stop_token_ids=())
    with EngineLoop(LLMEngine(copy.deepcopy(old), TOK, num_slots=2, max_seq_len=64)) as loop:
        events = loop.stream([Request([5, 6, 7], params, request_id="long")])
        for _ in range(5):
            next(events)
        loop.update_weights(named_weights(new), version=1)  # applied between two steps of the running request
        traj = [e for e in events if e.finished][0].trajectory
    versions = traj.token_versions
    switch = versions.index(1)
    assert 5 <= switch < 40 and versions == [0] * switch + [1] * (40 - switch)
    old_lp = _token_logprobs(old, [5, 6, 7], traj.response_ids)
    assert (torch.tensor(traj.logprobs[:switch]) - old_lp[:switch]).abs().max() < 1e-4


class _Exploding:
    """A controller that raises on its third token."""

    def __init__(self) -> None:
        self.calls = 0

    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        return []

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return []


@pytest.mark.parametrize("bad", ["seed", "controller"])
def test_a_failing_request_ends_with_an_error_and_the_others_go_on(bad: str) -> None:
    model = build_model(CFG, seed=0).eval()
    prompts = [[5, 6], [7, 8, 9]]
    want = [t.response_ids for t in LLMEngine(model, TOK, 4, 64).generate_from_ids(prompts, GREEDY)]
    if bad == "seed":
        broken = Request([11, 12], SamplingParams(max_new_tokens=8, seed=2**64), request_id="bad")
    else:
        broken = Request([11, 12], GREEDY, request_id="bad", controller=_Exploding())
    with EngineLoop(LLMEngine(model, TOK, num_slots=4, max_seq_len=64)) as loop:
        good = [Request(p, GREEDY, request_id=i) for i, p in enumerate(prompts)]
        out = loop.generate([good[0], broken, good[1]])
        assert loop.is_running
        after = loop.generate([Request(p, GREEDY) for p in prompts])
    assert [out[0].response_ids, out[2].response_ids] == want == [t.response_ids for t in after]
    assert out[1].finish_reason == "error" and out[1].error
    assert ("boom" in out[1].error) == (bad == "controller")
    if bad == "controller":
        assert len(out[1].response_ids) == 3  # it ran until its controller raised


def test_a_push_from_the_loop_thread_is_refused_instead_of_hanging() -> None:
    model = build_model(CFG, seed=0).eval()
    errors: list[BaseException] = []
    with EngineLoop(LLMEngine(copy.deepcopy(model), TOK, num_slots=1, max_seq_len=64)) as loop:
        def sink(item) -> None:  # runs in the loop thread
            if not errors:
                try:
                    loop.update_weights(named_weights(model), version=1)
                except RuntimeError as error:
                    errors.append(error)

        loop.submit(Request([5, 6], SamplingParams(max_new_tokens=3, temperature=0, stop_token_ids=())), sink)
        assert loop.generate([Request([7], GREEDY)])[0].finish_reason == "length"  # the loop went on
    assert errors and "own thread" in str(errors[0])
