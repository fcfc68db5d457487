"""Length-grouped prefill: rows admitted together are prefilled in forwards of similar length (`prefill_groups`), so
one long continuation does not pad every short prompt to its length; outputs are those of one request alone."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.scheduler import prefill_groups
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)


def test_one_long_row_among_short_ones_gets_a_forward_of_its_own() -> None:
    # One forward: 200 + 32 x 286 = 9352 token-units; split: (200 + 31 x 30) + (200 + 1 x 286) = 1616.
    assert prefill_groups([30] * 31 + [286], forward_cost_tokens=200) == [list(range(31)), [31]]


def test_rows_of_similar_length_stay_in_one_forward() -> None:
    # Buckets [16, 32) = {30, 31} and [32, 64) = {32, 33}. Merged: 200 + 4 x 33 = 332; apart: 262 + 266 = 528.
    assert prefill_groups([30, 31, 32, 33], forward_cost_tokens=200) == [[0, 1, 2, 3]]


def test_rows_are_grouped_by_length_not_by_position() -> None:
    assert prefill_groups([5, 300, 6, 290], forward_cost_tokens=200) == [[0, 2], [1, 3]]


def test_the_cut_follows_the_cost_of_a_forward() -> None:
    lengths = [8, 8, 100]
    # Apart: (F + 2 x 8) + (F + 100) = 2F + 116; together: F + 300. Split exactly when F < 184.
    assert prefill_groups(lengths, forward_cost_tokens=183) == [[0, 1], [2]]
    assert prefill_groups(lengths, forward_cost_tokens=185) == [[0, 1, 2]]
    assert prefill_groups([], forward_cost_tokens=200) == []


@pytest.mark.parametrize("cost", [0, 50, 10_000])
def test_every_row_is_prefilled_exactly_once(cost: int) -> None:
    lengths = [1, 3, 900, 17, 16, 15, 64, 65, 2, 2, 400, 31]
    groups = prefill_groups(lengths, forward_cost_tokens=cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    if cost == 10_000:
        assert len(groups) == 1


def _engine() -> LLMEngine:
    tok = load_tokenizer("builtin")
    return LLMEngine(build_model(CFG, seed=3).eval(), tok, num_slots=8, max_seq_len=256)


def _requests() -> list[Request]:
    prompts = [[5, 6, 7, 8], list(range(10, 170)), [9, 9, 4], [11, 12, 13, 14, 15]]
    return [Request(p, SamplingParams(max_new_tokens=6, seed=40 + i, stop_token_ids=()), request_id=i)
            for i, p in enumerate(prompts)]


def test_the_engine_prefills_a_long_prompt_apart_and_every_result_matches_a_request_run_alone() -> None:
    engine = _engine()
    shapes: list[tuple[int, int]] = []
    forward = engine.model.forward_cached

    def recording(ids: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        shapes.append(tuple(ids.shape))
        return forward(ids, *args, **kwargs)

    engine.model.forward_cached = recording  # type: ignore[method-assign]
    together = engine.generate(_requests())
    # Admission: the three short prompts in one forward padded to 5 tokens, the 160-token one alone (not 4 x 160).
    assert shapes[:2] == [(3, 5), (1, 160)]
    engine.model.forward_cached = forward  # type: ignore[method-assign]
    for request, result in zip(_requests(), together, strict=True):
        alone = _engine().generate([request])[0]
        assert result.response_ids == alone.response_ids
        torch.testing.assert_close(torch.tensor(result.logprobs), torch.tensor(alone.logprobs), atol=1e-5, rtol=0)
