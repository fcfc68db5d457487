"""The one packed batch type for training, and sequence balancing across micro-batches.

`PackedBatch` holds S sequences concatenated without padding (the model input,
ready for varlen attention via ``cu_seqlens``) plus the per-response-token
tensors of the loss, padded to (S, R). RL batches come from `pack_trajectories`,
SFT batches from `pack_sft_examples`; ``batch.select(indices)`` cuts micro- and
mini-batches out of either.

`split_micro_batches` picks how many micro-batches a token budget needs and
balances an attention-aware workload across them with Karmarkar-Karp
(`thinkrl.train.balance`, which also splits a global batch across
data-parallel ranks).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, overload

import torch
from torch import Tensor

from thinkrl.records import Trajectory
from thinkrl.train.balance import attention_workload, karmarkar_karp

logger = logging.getLogger(__name__)

TokenValues = Tensor | Sequence[Tensor | Sequence[float]] | None
"""Per-response-token values: (S,) one per sequence, (S, R') padded, a list of (R_i,), or None (zeros)."""


@dataclass(frozen=True)
class PackedBatch:
    """S sequences packed into one row of N tokens, with response-token tensors padded to (S, R).

    Fields:
        input_ids: (N,) long — prompt + response tokens of every sequence, concatenated, no padding.
        position_ids: (N,) long — position within its own sequence (restarts at 0 per sequence).
        cu_seqlens: (S+1,) int32 — sequence i occupies packed positions cu_seqlens[i]:cu_seqlens[i+1].
        max_seqlen: longest sequence, in tokens (for varlen attention kernels).
        response_index: (S, R) long — packed position of the logit that PREDICTS response token j of
            sequence i (the token's own position minus one); 0 on padding.
        response_ids: (S, R) long — the response tokens (the targets); 0 on padding.
        response_mask: (S, R) bool — True for tokens that enter the loss (sampled, not forced, not
            padding; for SFT, the assistant tokens).
        response_lengths: (S,) long — real response tokens per sequence (forced ones included);
            entries at j >= response_lengths[i] are padding.
        old_logprobs: (S, R) float32 — behaviour-policy log-probabilities; 0 on padding (SFT: 0).
        advantages: (S, R) float32 — per-token advantages; 0 on padding (SFT: 1 on real tokens).
        rewards: (S,) float32 — scalar reward per sequence (SFT: 1).
        is_correct: (S,) bool — the verifier judged the response correct (SFT: True).
        returns: (S, R) float32 value targets, or None when no critic is trained.
        old_values: (S, R) float32 critic values at sampling time, or None.
        ref_logprobs: (S, R) float32 reference-policy log-probabilities, or None when there is no KL.
        behaviour_logprobs: (S, R) float32 log-probabilities of the policy that sampled the tokens (the engine's),
            when ``old_logprobs`` holds the proximal policy's instead (decoupled PPO); else None.
        token_versions: (S, R) long weight version that produced each response token (0 on padding).

    Frozen: derive a changed batch with ``dataclasses.replace(batch, advantages=...)``.
    """

    input_ids: Tensor
    position_ids: Tensor
    cu_seqlens: Tensor
    max_seqlen: int
    response_index: Tensor
    response_ids: Tensor
    response_mask: Tensor
    response_lengths: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    rewards: Tensor
    is_correct: Tensor
    returns: Tensor | None = None
    old_values: Tensor | None = None
    ref_logprobs: Tensor | None = None
    behaviour_logprobs: Tensor | None = None
    token_versions: Tensor | None = None

    def __post_init__(self) -> None:
        num_seqs, width = self.response_ids.shape
        if self.cu_seqlens.shape != (num_seqs + 1,):
            raise ValueError(f"cu_seqlens has shape {tuple(self.cu_seqlens.shape)}, expected ({num_seqs + 1},)")
        if self.input_ids.shape != self.position_ids.shape or self.input_ids.dim() != 1:
            raise ValueError("input_ids and position_ids must both have shape (N,)")
        for name in ("response_index", "response_mask", "old_logprobs", "advantages",
                     "returns", "old_values", "ref_logprobs", "behaviour_logprobs", "token_versions"):
            value = getattr(self, name)
            if value is not None and value.shape != (num_seqs, width):
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected ({num_seqs}, {width})")
        for name in ("response_lengths", "rewards", "is_correct"):
            if getattr(self, name).shape != (num_seqs,):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected ({num_seqs},)")

    @property
    def num_sequences(self) -> int:
        """S, the number of packed sequences."""
        return self.response_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        """Response tokens that enter the loss (True entries of response_mask)."""
        return int(self.response_mask.sum())

    @property
    def seq_lengths(self) -> list[int]:
        """Length of every packed sequence (prompt + response), in tokens."""
        return (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).tolist()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PackedBatch:
        """A copy with every tensor on ``device``."""
        moved: dict[str, Any] = {f.name: value.to(device, non_blocking=non_blocking) for f in dataclasses.fields(self)
                                 if isinstance(value := getattr(self, f.name), Tensor)}
        return dataclasses.replace(self, **moved)

    def select(self, indices: Sequence[int]) -> PackedBatch:
        """A batch of the sequences at ``indices`` (in that order), repacked; R shrinks to fit them."""
        if len(indices) == 0:
            raise ValueError("select needs at least one sequence index")
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.cu_seqlens.device)
        if idx.min() < 0 or idx.max() >= self.num_sequences:
            raise ValueError(f"indices must lie in [0, {self.num_sequences}), got {list(indices)}")
        cu = self.cu_seqlens.long()
        starts, ends = cu[:-1][idx], cu[1:][idx]
        lengths = ends - starts
        input_ids = torch.cat([self.input_ids[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
        position_ids = torch.cat([self.position_ids[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
        new_cu = torch.zeros(len(idx) + 1, dtype=torch.long, device=cu.device)
        new_cu[1:] = torch.cumsum(lengths, 0)
        resp_lengths = self.response_lengths[idx]
        width = int(resp_lengths.max())
        valid = torch.arange(width, device=cu.device)[None, :] < resp_lengths[:, None]  # (S', R')
        shift = (new_cu[:-1] - starts)[:, None]  # (S', 1)
        response_index = torch.where(valid, self.response_index[idx, :width] + shift, 0)

        def rows(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[idx, :width]

        return PackedBatch(
            input_ids=input_ids, position_ids=position_ids, cu_seqlens=new_cu.to(torch.int32),
            max_seqlen=int(lengths.max()), response_index=response_index,
            response_ids=self.response_ids[idx, :width], response_mask=self.response_mask[idx, :width],
            response_lengths=resp_lengths, old_logprobs=self.old_logprobs[idx, :width],
            advantages=self.advantages[idx, :width], rewards=self.rewards[idx], is_correct=self.is_correct[idx],
            returns=rows(self.returns), old_values=rows(self.old_values), ref_logprobs=rows(self.ref_logprobs),
            behaviour_logprobs=rows(self.behaviour_logprobs), token_versions=rows(self.token_versions),
        )


class _PackedTokens(TypedDict):
    """The token fields of a `PackedBatch` (see there), as `_pack_tokens` lays them out."""

    input_ids: Tensor
    position_ids: Tensor
    cu_seqlens: Tensor
    max_seqlen: int
    response_index: Tensor
    response_ids: Tensor
    response_lengths: Tensor


def _pack_tokens(sequences: list[list[int]], response_starts: list[int]) -> _PackedTokens:
    """Pack token lists; the response of sequence i is ``sequences[i][response_starts[i]:]``."""
    lengths = [len(seq) for seq in sequences]
    offsets = [0, *itertools.accumulate(lengths)]
    resp_lengths = [length - start for length, start in zip(lengths, response_starts, strict=True)]
    width = max(resp_lengths)
    response_index = torch.zeros(len(sequences), width, dtype=torch.long)
    response_ids = torch.zeros(len(sequences), width, dtype=torch.long)
    for i, (seq, start) in enumerate(zip(sequences, response_starts, strict=True)):
        n = resp_lengths[i]
        response_index[i, :n] = torch.arange(offsets[i] + start - 1, offsets[i] + start - 1 + n)
        response_ids[i, :n] = torch.tensor(seq[start:], dtype=torch.long)
    return _PackedTokens(
        input_ids=torch.tensor([tok for seq in sequences for tok in seq], dtype=torch.long),
        position_ids=torch.cat([torch.arange(n, dtype=torch.long) for n in lengths]),
        cu_seqlens=torch.tensor(offsets, dtype=torch.int32),
        max_seqlen=max(lengths),
        response_index=response_index,
        response_ids=response_ids,
        response_lengths=torch.tensor(resp_lengths, dtype=torch.long),
    )


@overload
def _token_matrix(values: None, lengths: list[int], width: int, name: str) -> None: ...
@overload
def _token_matrix(values: Tensor | Sequence[Tensor | Sequence[float]], lengths: list[int], width: int,
                  name: str) -> Tensor: ...
@overload
def _token_matrix(values: TokenValues, lengths: list[int], width: int, name: str) -> Tensor | None: ...


def _token_matrix(values: TokenValues, lengths: list[int], width: int, name: str) -> Tensor | None:
    """Lay per-token values out as (S, width) float32, zero on padding (see `TokenValues`)."""
    if values is None:
        return None
    out = torch.zeros(len(lengths), width, dtype=torch.float32)
    valid = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # (S, R)
    if isinstance(values, Tensor):
        values = values.detach().to("cpu", torch.float32)
        if values.dim() == 1 and values.shape[0] == len(lengths):
            return torch.where(valid, values[:, None], 0.0)
        if values.dim() != 2 or values.shape[0] != len(lengths) or values.shape[1] < width:
            raise ValueError(
                f"{name} has shape {tuple(values.shape)}; expected ({len(lengths)},) or ({len(lengths)}, >= {width})"
            )
        return torch.where(valid, values[:, :width], 0.0)
    if len(values) != len(lengths):
        raise ValueError(f"{name} has {len(values)} entries but there are {len(lengths)} sequences")
    for i, row in enumerate(values):
        if len(row) != lengths[i]:
            raise ValueError(f"{name}[{i}] has {len(row)} values but sequence {i} has {lengths[i]} response tokens")
        out[i, : lengths[i]] = torch.as_tensor(row, dtype=torch.float32)
    return out


def pack_trajectories(
    trajs: list[Trajectory],
    advantages: TokenValues = None,
    *,
    returns: TokenValues = None,
    old_values: TokenValues = None,
    ref_logprobs: TokenValues = None,
    is_correct: Sequence[bool] | None = None,
) -> PackedBatch:
    """Pack scored trajectories into a `PackedBatch`.

    Args:
        trajs: S trajectories, each with a non-empty prompt and a reward.
        advantages: (S,) per-sequence (broadcast over its tokens), (S, R') padded per-token,
            or a list of S per-token sequences of length R_i; None gives zeros (compute them on the
            packed tensors, then ``dataclasses.replace``).
        returns, old_values, ref_logprobs: same forms as ``advantages``; None leaves the field None.
        is_correct: per trajectory; default ``Trajectory.correct`` where judged, else ``reward > 0``.
    """
    if not trajs:
        raise ValueError("pack_trajectories needs at least one trajectory")
    reward_values: list[float] = []
    for i, traj in enumerate(trajs):
        if not traj.prompt_ids:
            raise ValueError(f"trajectory {i} has an empty prompt; nothing would predict its first token")
        if traj.reward is None:
            raise ValueError(f"trajectory {i} has no reward; score trajectories before packing")
        reward_values.append(float(traj.reward))
    if is_correct is not None and len(is_correct) != len(trajs):
        raise ValueError(f"is_correct has {len(is_correct)} entries but there are {len(trajs)} trajectories")
    packed = _pack_tokens([t.prompt_ids + t.response_ids for t in trajs], [len(t.prompt_ids) for t in trajs])
    lengths = [len(t.response_ids) for t in trajs]
    width = packed["response_ids"].shape[1]
    mask = torch.zeros(len(trajs), width, dtype=torch.bool)
    for i, traj in enumerate(trajs):
        mask[i, : lengths[i]] = torch.tensor(traj.response_mask, dtype=torch.bool)
    rewards = torch.tensor(reward_values, dtype=torch.float32)
    if is_correct is None:
        is_correct = [t.correct if t.correct is not None else r > 0 for t, r in zip(trajs, reward_values, strict=True)]
    correct = torch.tensor(list(is_correct), dtype=torch.bool)
    token_advantages = _token_matrix(advantages, lengths, width, "advantages")
    return PackedBatch(
        **packed,
        response_mask=mask,
        old_logprobs=_token_matrix([t.logprobs for t in trajs], lengths, width, "logprobs"),
        advantages=torch.zeros(len(trajs), width) if token_advantages is None else token_advantages,
        rewards=rewards,
        is_correct=correct,
        returns=_token_matrix(returns, lengths, width, "returns"),
        old_values=_token_matrix(old_values, lengths, width, "old_values"),
        ref_logprobs=_token_matrix(ref_logprobs, lengths, width, "ref_logprobs"),
        token_versions=_token_matrix([t.token_versions for t in trajs], lengths, width, "token_versions").long(),
    )


def pack_sft_examples(examples: list[tuple[list[int], list[bool]]]) -> PackedBatch:
    """Pack SFT examples ``(token_ids, loss_mask)`` (loss_mask True on assistant tokens).

    Every token after the first is a "response" token (R_i = len - 1); ``response_mask`` is
    ``loss_mask[1:]`` (the first token has nothing predicting it). ``advantages`` is 1 on real
    tokens, ``old_logprobs`` 0, ``rewards`` 1 and ``is_correct`` True, so the loss is the NLL
    of the masked tokens (the same NLL as VAPO's positive-example LM loss).
    """
    if not examples:
        raise ValueError("pack_sft_examples needs at least one example")
    for i, (ids, loss_mask) in enumerate(examples):
        if len(ids) < 2:
            raise ValueError(f"example {i} has {len(ids)} tokens; at least 2 are needed")
        if len(loss_mask) != len(ids):
            raise ValueError(f"example {i} has {len(ids)} tokens but {len(loss_mask)} loss-mask entries")
    packed = _pack_tokens([list(ids) for ids, _ in examples], [1] * len(examples))
    lengths = [len(ids) - 1 for ids, _ in examples]
    width = packed["response_ids"].shape[1]
    mask = torch.zeros(len(examples), width, dtype=torch.bool)
    for i, (_, loss_mask) in enumerate(examples):
        mask[i, : lengths[i]] = torch.tensor(list(loss_mask[1:]), dtype=torch.bool)
    num = len(examples)
    return PackedBatch(
        **packed,
        response_mask=mask,
        old_logprobs=torch.zeros(num, width),
        advantages=_token_matrix(torch.ones(num), lengths, width, "advantages"),
        rewards=torch.ones(num),
        is_correct=torch.ones(num, dtype=torch.bool),
    )


def split_micro_batches(lengths: Sequence[int], max_tokens: int, *, a: float = 24576.0) -> list[list[int]]:
    """Group sequence indices into the fewest micro-batches of at most ``max_tokens`` tokens each.

    Starts from ``ceil(sum(lengths) / max_tokens)`` micro-batches and adds one until the
    Karmarkar-Karp partition of the attention workloads fits the budget. A sequence longer
    than ``max_tokens`` gets a micro-batch of its own (with a warning). Every index appears
    exactly once; micro-batches are never empty.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens ({max_tokens}) must be >= 1")
    if not lengths:
        return []
    oversize = [i for i, n in enumerate(lengths) if n > max_tokens]
    if oversize:
        logger.warning(
            "%d sequences are longer than the micro-batch budget of %d tokens (longest %d); each goes "
            "into a micro-batch of its own - raise trainer.micro_batch_tokens to avoid it",
            len(oversize), max_tokens, max(lengths[i] for i in oversize),
        )
    rest = [i for i, n in enumerate(lengths) if n <= max_tokens]
    groups = [[i] for i in oversize]
    if rest:
        workloads = [attention_workload(lengths[i], a) for i in rest]
        num_parts = max(1, math.ceil(sum(lengths[i] for i in rest) / max_tokens))
        while True:
            parts = [[rest[j] for j in part] for part in karmarkar_karp(workloads, num_parts) if part]
            if all(sum(lengths[i] for i in part) <= max_tokens for part in parts):
                break
            num_parts += 1
        groups.extend(parts)
    return groups
