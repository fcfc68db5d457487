"""Counter-based sampling: each seeded draw is SplitMix64's output at (seed, response position), and a token is
the inverse CDF of its row's distribution at that draw."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.sampling import check_seed, row_uniforms, sample_tokens, stream_draw
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

MASK = (1 << 64) - 1


def splitmix64(seed: int, count: int) -> list[int]:
    """Reference SplitMix64 (Steele, Lea, Flood 2014) on Python integers: its first ``count`` outputs."""
    state, out = seed & MASK, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def test_reference_gives_splitmix64_published_outputs_for_seed_0() -> None:
    assert splitmix64(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("seed", [0, 1, 7, 1234567, 2**62 - 1, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63)])
def test_stream_draws_are_the_top_24_bits_of_splitmix64(seed: int) -> None:
    """The draw at a position jumps straight to the generator's state there; the reference steps through it."""
    positions = [0, 1, 2, 5, 99, 1000]
    stream = splitmix64(seed, max(positions) + 1)
    got = [stream_draw(seed, p) for p in positions]
    assert got == [(stream[p] >> 40) / 2**24 for p in positions]
    assert all(0 <= u < 1 for u in got) and len(set(got)) == len(got)


def test_seeds_outside_64_bits_are_refused() -> None:
    check_seed(2**64 - 1)
    check_seed(-(2**63))
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match="seed must be in"):
            check_seed(bad)


def test_row_uniforms_mix_seeded_rows_with_the_shared_generator() -> None:
    shared = torch.rand(3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = row_uniforms([None, 11, None], [0, 4, 9], torch.Generator().manual_seed(5))
    assert got[0] == shared[0] and got[2] == shared[2]
    assert float(got[1]) == (splitmix64(11, 5)[4] >> 40) / 2**24


def test_inverse_cdf_on_an_even_grid_gives_the_exact_probabilities() -> None:
    """probs [1/2, 1/4, 1/8, 1/8] (log-probs as logits) and 1000 uniforms (i + 0.5) / 1000: 500, 250, 125, 125."""
    rows = 1000
    logits = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log().repeat(rows, 1)
    grid = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    tokens, logprobs = sample_tokens(logits, torch.ones(rows), torch.zeros(rows, dtype=torch.long),
                                     torch.ones(rows), grid)
    assert torch.bincount(tokens, minlength=4).tolist() == [500, 250, 125, 125]
    torch.testing.assert_close(logprobs, logits[0][tokens])


def test_truncated_tokens_are_never_taken_even_at_the_extreme_draws() -> None:
    """top-k 2 of four tokens: the largest draw (1 - 2**-24) takes the second token, never a truncated one; the
    smallest (0) takes the first; a token banned with -inf (probability 0) in the middle is skipped."""
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [3.0, float("-inf"), 1.0, 0.0]])
    extremes = torch.tensor([1 - 2**-24, 0.0], dtype=torch.float64)
    for row, top_k, want in ((0, 2, [1, 0]), (1, 0, [3, 0])):
        tokens, _ = sample_tokens(logits[row].repeat(2, 1), torch.ones(2), torch.full((2,), top_k), torch.ones(2),
                                  extremes)
        assert tokens.tolist() == want


def test_a_row_with_every_token_banned_samples_an_index_in_range() -> None:
    logits = torch.full((2, 5), float("-inf"))
    logits[1] = torch.arange(5.0)
    tokens, _ = sample_tokens(logits, torch.ones(2), torch.zeros(2, dtype=torch.long), torch.ones(2),
                              torch.tensor([0.3, 0.999], dtype=torch.float64))
    assert 0 <= int(tokens[0]) < 5 and int(tokens[1]) == 4


def test_a_continuation_with_seed_offset_resumes_the_sampled_stream() -> None:
    """20 sampled tokens in one request equal 8 tokens, then the prompt + those 8 with ``seed_offset=8``."""
    cfg = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    engine = LLMEngine(build_model(cfg, seed=0).eval(), load_tokenizer("builtin"), num_slots=2, max_seq_len=64)
    prompt = [5, 6, 7, 8]
    params = SamplingParams(max_new_tokens=20, temperature=1.0, seed=2**63 + 3, stop_token_ids=())
    whole = engine.generate([Request(prompt, params)])[0].response_ids
    head = engine.generate([Request(prompt, SamplingParams(max_new_tokens=8, temperature=1.0, seed=2**63 + 3,
                                                           stop_token_ids=()))])[0].response_ids
    tail = engine.generate([Request(prompt + head, SamplingParams(max_new_tokens=12, temperature=1.0,
                                                                  seed=2**63 + 3, seed_offset=8,
                                                                  stop_token_ids=()))])[0].response_ids
    assert head + tail == whole
    greedy = engine.generate([Request(prompt, SamplingParams(max_new_tokens=20, temperature=0.0,
                                                             stop_token_ids=()))])[0].response_ids
    assert whole != greedy  # it really sampled
    with pytest.raises(ValueError, match="seed_offset"):
        SamplingParams(seed_offset=-1)
