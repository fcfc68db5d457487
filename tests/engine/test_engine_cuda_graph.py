"""CUDA-graph decode: bucket maths, the fixed-shape decode step (any device), graphs == eager on CUDA."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.cuda_graph import DecodeGraphs, batch_buckets, context_buckets, pick_bucket
from thinkrl.model import CachedStep, ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
GREEDY = dict(temperature=0.0, stop_token_ids=())


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("builtin")


def _prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 512, (n,), generator=gen).tolist() for n in lengths]


def _mixed_requests() -> list[Request]:
    """7 requests for 3 slots: prompts of 1..40 tokens, finishing after 2..30 tokens (slot reuse)."""
    lengths, new = [5, 40, 1, 17, 9, 3, 28], [30, 4, 12, 2, 25, 7, 16]
    return [Request(p, SamplingParams(max_new_tokens=n, **GREEDY), request_id=i)
            for i, (p, n) in enumerate(zip(_prompts(lengths), new, strict=True))]


class _ForceEveryFive:
    """Forces three tokens after every fifth sampled token and bans token 9."""

    def banned_tokens(self, response_ids):
        return [9]

    def forced_tokens(self, response_ids):
        return [30, 31, 32] if len(response_ids) % 5 == 0 else []


def _assert_same(got, want, atol: float) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.response_ids == w.response_ids and g.response_mask == w.response_mask
        assert g.finish_reason == w.finish_reason
        assert max(abs(a - b) for a, b in zip(g.logprobs, w.logprobs, strict=True)) < atol


# ---- bucket maths ---------------------------------------------------------------------


def test_buckets_cover_every_size_once():
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(12) == [1, 2, 4, 8, 12]
    assert context_buckets(192) == [192]
    assert context_buckets(1100) == [256, 512, 1024, 1100]
    assert context_buckets(1024, smallest=512) == [512, 1024]
    assert [pick_bucket([1, 2, 4, 12], n) for n in (1, 2, 3, 5, 12)] == [1, 2, 4, 12, 12]
    with pytest.raises(ValueError, match="size 13 exceeds the largest bucket 12"):
        pick_bucket([1, 2, 4, 12], 13)


# ---- the fixed-shape step, without capture (CPU) -----------------------------------------


def test_fixed_shape_decode_matches_cached_forward_with_padding_rows():
    """Slots 0 and 2 decode, slot 1 is a padding row; logits equal the eager cached forward."""
    model = build_model(CFG, seed=0).eval()
    prompts = _prompts([6, 3, 11], seed=1)
    caches = [model.allocate_cache(4, 32) for _ in range(2)]
    for cache in caches:  # prefill slots 0, 1, 2
        ids = torch.tensor([p + [0] * (11 - len(p)) for p in prompts])
        model.forward_cached(ids, CachedStep(torch.arange(3), torch.zeros(3, dtype=torch.long),
                                             torch.tensor([6, 3, 11]), context_len=11), cache)
    graphs = DecodeGraphs(model, caches[0], capture=False, smallest_context=4)
    assert graphs.num_rows(3) == 4 and graphs.context_buckets == [4, 8, 16, 32]
    # row 3 (free slot) writes position 0; row 1 (running, not decoding) writes its next position 3.
    got = graphs.logits([50, 0, 60, 0], [6, 3, 11, 0], [0, 2], context_len=12)
    step = CachedStep(torch.tensor([0, 2]), torch.tensor([6, 11]), torch.tensor([1, 1]), context_len=12)
    want = model.logits(model.forward_cached(torch.tensor([[50], [60]]), step, caches[1])[:, 0])
    assert got.shape == (2, 512) and (got - want).abs().max() < 1e-5
    assert torch.equal(caches[0].keys[0][:3, :, :3], caches[1].keys[0][:3, :, :3])  # slot 1's prefix intact


def test_engine_fixed_shape_path_matches_eager_on_cpu(tokenizer):
    """The engine's graph bookkeeping (rows, padding positions, context buckets), run without capture."""
    model = build_model(CFG, seed=0).eval()
    eager = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=80).generate(_mixed_requests())
    engine = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=80, cuda_graphs=True)
    assert engine.decode_graphs is None  # CPU stays eager
    engine.decode_graphs = DecodeGraphs(model, engine.cache, capture=False, smallest_context=8)
    _assert_same(engine.generate(_mixed_requests()), eager, atol=1e-4)
    assert engine.decode_graphs.stats.replays == 34  # every decode step (89 tokens over 3 slots)
    forced = Request(_prompts([4])[0], SamplingParams(max_new_tokens=14, **GREEDY), controller=_ForceEveryFive())
    want = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=80).generate([forced])
    _assert_same(engine.generate([forced]), want, atol=1e-4)
    assert engine.decode_graphs.stats.eager_steps == 2  # after sampled tokens 5 and 10


def test_capture_needs_cuda():
    model = build_model(CFG, seed=0)
    with pytest.raises(ValueError, match="CUDA graphs need CUDA"):
        DecodeGraphs(model, model.allocate_cache(2, 16), capture=True)


# ---- CUDA graphs == eager on CUDA --------------------------------------------------------


def _cuda_model():
    if not torch.cuda.is_available():
        pytest.fail("gpu tests need CUDA (deselect them with -m 'not gpu')")
    return build_model(CFG, seed=0, device="cuda").eval()


def _both(model, tokenizer, requests_fn, **kwargs):
    """(trajectories with graphs, trajectories eager, the graph engine)."""
    graphed = LLMEngine(model, tokenizer, **kwargs)
    assert graphed.decode_graphs is not None
    got = graphed.generate(requests_fn())
    want = LLMEngine(model, tokenizer, cuda_graphs=False, **kwargs).generate(requests_fn())
    return got, want, graphed


@pytest.mark.gpu
def test_cuda_graphs_match_eager_with_slot_reuse(tokenizer):
    model = _cuda_model()
    got, want, engine = _both(model, tokenizer, _mixed_requests, num_slots=3, max_seq_len=80)
    _assert_same(got, want, atol=1e-4)
    stats = engine.decode_graphs.stats
    assert stats.captures == 3 and stats.replays == 34 and stats.eager_steps == 0  # buckets 1, 2, 3


@pytest.mark.gpu
def test_cuda_graphs_cross_context_buckets(tokenizer):
    """Sequences grow through the 256 and 512 context buckets (max_seq_len 600)."""
    model = _cuda_model()

    def requests():
        return [Request(p, SamplingParams(max_new_tokens=24, **GREEDY)) for p in _prompts([245, 500, 20], seed=2)]

    got, want, engine = _both(model, tokenizer, requests, num_slots=4, max_seq_len=600)
    assert engine.decode_graphs.context_buckets == [256, 512, 600]
    _assert_same(got, want, atol=1e-4)


@pytest.mark.gpu
def test_cuda_graphs_controller_and_seeded_sampling(tokenizer):
    """Forced tokens fall back to eager steps (3: after forcing at 5, 10, 15 tokens; the force at 20
    ends the request); seeded sampling gives the same tokens as eager."""
    model = _cuda_model()

    def requests():
        prompts = _prompts([7, 12, 3], seed=3)
        return [Request(prompts[0], SamplingParams(max_new_tokens=23, **GREEDY), controller=_ForceEveryFive()),
                Request(prompts[1], SamplingParams(max_new_tokens=20, temperature=0.8, top_p=0.9, seed=5,
                                                   stop_token_ids=())),
                Request(prompts[2], SamplingParams(max_new_tokens=9, temperature=1.0, seed=6, stop_token_ids=()))]

    got, want, engine = _both(model, tokenizer, requests, num_slots=2, max_seq_len=64)
    _assert_same(got, want, atol=1e-4)
    assert got[0].response_mask.count(False) == 12
    assert engine.decode_graphs.stats.eager_steps == 3 and engine.decode_graphs.stats.replays > 0


@pytest.mark.gpu
def test_cuda_graphs_follow_weight_updates(tokenizer):
    """In-place updates are replayed as is; replaced storage triggers a recapture."""
    model = _cuda_model()
    graphed = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=80)
    eager = LLMEngine(model, tokenizer, num_slots=3, max_seq_len=80, cuda_graphs=False)
    before = graphed.generate(_mixed_requests())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    in_place = graphed.generate(_mixed_requests())
    assert [t.response_ids for t in in_place] != [t.response_ids for t in before]
    _assert_same(in_place, eager.generate(_mixed_requests()), atol=1e-4)
    layer = model.model.layers[0].mlp.up_proj
    layer.weight.data = layer.weight.data.clone() * -1.0
    _assert_same(graphed.generate(_mixed_requests()), eager.generate(_mixed_requests()), atol=1e-4)
    assert graphed.decode_graphs.stats.recaptures == 1
