"""Packing (layout by hand, logprobs = unpacked forward, select = repack) and micro-batches under a token budget."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest
import torch

from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.train.batching import PackedBatch, pack_sft_examples, pack_trajectories, split_micro_batches


def trajs() -> list[Trajectory]:
    return [
        Trajectory(prompt_ids=[1, 2, 3], response_ids=[4, 5], logprobs=[-0.1, -0.2], reward=1.0),
        Trajectory(prompt_ids=[6], response_ids=[7, 8, 9], logprobs=[-1.0, -2.0, -3.0],
                   response_mask=[True, False, True], reward=-1.0),
        Trajectory(prompt_ids=[10, 11], response_ids=[12], logprobs=[-0.5], reward=0.5),
    ]


def test_pack_layout_by_hand() -> None:
    batch = pack_trajectories(trajs(), torch.tensor([0.5, -0.5, 2.0]))
    assert batch.input_ids.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert batch.position_ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]
    assert batch.cu_seqlens.tolist() == [0, 5, 9, 12] and batch.cu_seqlens.dtype == torch.int32
    assert batch.max_seqlen == 5
    # the logit predicting token 4 (packed position 3) sits at position 2, and so on
    assert batch.response_index.tolist() == [[2, 3, 0], [5, 6, 7], [10, 0, 0]]
    assert batch.response_ids.tolist() == [[4, 5, 0], [7, 8, 9], [12, 0, 0]]
    assert batch.response_mask.tolist() == [[True, True, False], [True, False, True], [True, False, False]]
    assert batch.response_lengths.tolist() == [2, 3, 1]
    torch.testing.assert_close(batch.old_logprobs, torch.tensor([[-0.1, -0.2, 0], [-1, -2, -3], [-0.5, 0, 0]]))
    assert batch.advantages.tolist() == [[0.5, 0.5, 0.0], [-0.5, -0.5, -0.5], [2.0, 0.0, 0.0]]
    assert batch.rewards.tolist() == [1.0, -1.0, 0.5]
    assert batch.is_correct.tolist() == [True, False, True]
    assert batch.returns is None and batch.old_values is None and batch.ref_logprobs is None
    assert batch.num_tokens == 5 and batch.num_sequences == 3 and batch.seq_lengths == [5, 4, 3]
    # every response token is the input token one position after its predicting logit
    valid = torch.arange(3)[None, :] < batch.response_lengths[:, None]
    assert torch.equal(batch.input_ids[batch.response_index + 1][valid], batch.response_ids[valid])


def test_token_value_forms() -> None:
    per_token = [[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]
    from_list = pack_trajectories(trajs(), per_token, returns=per_token, is_correct=[False, True, False])
    padded = torch.tensor([[1.0, 2.0, 9.0, 9.0], [3.0, 4.0, 5.0, 9.0], [6.0, 9.0, 9.0, 9.0]])
    from_tensor = pack_trajectories(trajs(), padded, old_values=padded, ref_logprobs=padded)
    expected = [[1.0, 2.0, 0.0], [3.0, 4.0, 5.0], [6.0, 0.0, 0.0]]
    assert from_list.advantages.tolist() == expected and from_tensor.advantages.tolist() == expected
    assert from_list.returns.tolist() == expected
    assert from_tensor.old_values.tolist() == expected and from_tensor.ref_logprobs.tolist() == expected
    assert from_list.is_correct.tolist() == [False, True, False]
    assert pack_trajectories(trajs()).advantages.abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"advantages": [[1.0], [1.0, 2.0, 3.0], [1.0]]}, r"advantages\[0\] has 1 values"),
        ({"advantages": torch.zeros(3, 2)}, r"advantages has shape \(3, 2\)"),
        ({"advantages": torch.zeros(2)}, r"advantages has shape \(2,\)"),
        ({"returns": [[1.0, 2.0]]}, "returns has 1 entries"),
        ({"is_correct": [True]}, "is_correct has 1 entries"),
    ],
)
def test_pack_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack_trajectories(trajs(), **kwargs)


def test_pack_rejects_bad_trajectories() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pack_trajectories([])
    with pytest.raises(ValueError, match="trajectory 0 has an empty prompt"):
        pack_trajectories([Trajectory(prompt_ids=[], response_ids=[1], logprobs=[0.0], reward=1.0)])
    with pytest.raises(ValueError, match="trajectory 1 has no reward"):
        pack_trajectories([trajs()[0], Trajectory(prompt_ids=[1], response_ids=[2], logprobs=[0.0])])


def test_packed_logprobs_equal_unpacked_forward() -> None:
    """Gathering at response_index from one packed forward = each sequence run alone."""
    config = ModelConfig(architecture="LlamaForCausalLM", vocab_size=32, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = build_model(config, seed=0).eval()
    batch = pack_trajectories(trajs())
    with torch.no_grad():
        hidden = model(batch.input_ids, batch.position_ids, batch.cu_seqlens).hidden  # (N, C)
        logprobs = model.logits(hidden[batch.response_index]).log_softmax(-1)  # (S, R, V)
        packed = logprobs.gather(-1, batch.response_ids[..., None])[..., 0]  # (S, R)
        for i, traj in enumerate(trajs()):
            ids = torch.tensor(traj.prompt_ids + traj.response_ids)
            alone = model(ids, torch.arange(len(ids)), torch.tensor([0, len(ids)], dtype=torch.int32)).hidden
            lp = model.logits(alone).log_softmax(-1)  # (T, V)
            p = len(traj.prompt_ids)
            expected = lp[p - 1 : len(ids) - 1].gather(-1, torch.tensor(traj.response_ids)[:, None])[:, 0]
            torch.testing.assert_close(packed[i, : len(traj.response_ids)], expected, rtol=1e-5, atol=1e-5)


def assert_batches_equal(a: PackedBatch, b: PackedBatch) -> None:
    for field in dataclasses.fields(PackedBatch):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), field.name
        else:
            assert x == y, field.name


def test_select_equals_repacking() -> None:
    advantages = [[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]
    batch = pack_trajectories(trajs(), advantages, returns=advantages)
    for order in ([2, 0], [1], [2, 1, 0]):
        picked = [trajs()[i] for i in order]
        expected = pack_trajectories(picked, [advantages[i] for i in order], returns=[advantages[i] for i in order])
        assert_batches_equal(batch.select(order), expected)
    with pytest.raises(ValueError, match="indices must lie"):
        batch.select([3])
    with pytest.raises(ValueError, match="at least one"):
        batch.select([])


def test_replace_and_to() -> None:
    batch = pack_trajectories(trajs())
    updated = dataclasses.replace(batch, advantages=torch.ones(3, 3))
    assert updated.advantages.sum() == 9 and batch.advantages.sum() == 0
    with pytest.raises(ValueError, match=r"advantages has shape \(3, 2\)"):
        dataclasses.replace(batch, advantages=torch.ones(3, 2))
    moved = batch.to("meta")
    assert all(t.device.type == "meta" for t in (moved.input_ids, moved.cu_seqlens, moved.advantages))
    assert moved.returns is None and moved.max_seqlen == batch.max_seqlen


def test_to_keeps_every_field() -> None:
    values = [[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]
    batch = pack_trajectories(trajs(), values, returns=values, old_values=values, ref_logprobs=values)
    batch = dataclasses.replace(batch, behaviour_logprobs=batch.old_logprobs + 1.0)
    assert all(getattr(batch, f.name) is not None for f in dataclasses.fields(PackedBatch))
    assert_batches_equal(batch.to("cpu"), batch)
    moved = batch.to("meta")
    for field in dataclasses.fields(PackedBatch):
        value = getattr(moved, field.name)
        assert value.device.type == "meta" if isinstance(value, torch.Tensor) else value == batch.max_seqlen


def test_pack_sft_examples() -> None:
    batch = pack_sft_examples([([1, 2, 3, 4], [False, False, True, True]), ([5, 6], [True, True])])
    assert batch.input_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert batch.position_ids.tolist() == [0, 1, 2, 3, 0, 1]
    assert batch.response_index.tolist() == [[0, 1, 2], [4, 0, 0]]
    assert batch.response_ids.tolist() == [[2, 3, 4], [6, 0, 0]]
    assert batch.response_mask.tolist() == [[False, True, True], [True, False, False]]
    assert batch.advantages.tolist() == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert batch.is_correct.all() and batch.num_tokens == 3
    with pytest.raises(ValueError, match="example 0 has 1 tokens"):
        pack_sft_examples([([1], [True])])
    with pytest.raises(ValueError, match="example 0 has 2 tokens but 1 loss-mask"):
        pack_sft_examples([([1, 2], [True])])


# ---- micro-batches (Karmarkar-Karp itself: test_balance.py) --------------------------------------


def test_split_micro_batches_fits_budget() -> None:
    rng = random.Random(2)
    for _ in range(30):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 40))]
        groups = split_micro_batches(lengths, 100)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(g and sum(lengths[i] for i in g) <= 100 for g in groups)
        assert len(groups) >= -(-sum(lengths) // 100)
    # a perfectly packable case uses the minimum count, balanced
    groups = split_micro_batches([50, 50, 30, 70, 40, 60], 100)
    assert len(groups) == 3 and sorted(sum([50, 50, 30, 70, 40, 60][i] for i in g) for g in groups) == [100] * 3
    assert split_micro_batches([], 10) == []


def test_split_micro_batches_oversize_goes_alone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        groups = split_micro_batches([5, 30, 4, 3], 10)
    assert [1] in groups and sorted(i for g in groups for i in g) == [0, 1, 2, 3]
    assert "longer than the micro-batch budget" in caplog.text
    with pytest.raises(ValueError, match="max_tokens"):
        split_micro_batches([1], 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_on_cuda_select_matches_cpu() -> None:
    batch = pack_trajectories(trajs(), [[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]])
    on_gpu = batch.to("cuda")
    assert on_gpu.cu_seqlens.device.type == "cuda" and on_gpu.cu_seqlens.dtype == torch.int32
    assert_batches_equal(on_gpu.select([2, 0]).to("cpu"), batch.select([2, 0]))
