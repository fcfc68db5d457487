"""Continuous-batching bookkeeping: waiting queue, slots, per-sequence state. Pure CPU, no model.

A sequence holds one KV-cache slot from admission until it finishes; the moment it
finishes, its slot goes back to the free pool and the next waiting request can take
it on the next step. Free slots are handed out lowest-first so the used slots stay
packed at the front of the cache (the decode fast path reads ``cache[:num_used]``).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from thinkrl.engine.types import Request
from thinkrl.model.length_groups import length_groups


@dataclass
class SequenceState:
    """A request while it runs.

    Fields:
        request: the request.
        slot: KV-cache slot.
        num_cached: tokens already written to the cache for this slot.
        pending: tokens to feed on the next forward (the prompt at first, then the last
            sampled token plus any forced tokens).
        response_ids / logprobs / response_mask / token_versions: the growing response (token_versions: the
            engine's weight version when each token was appended).
        finish_reason: set when done.
        text_checked: characters of decoded text already scanned for stop strings.
    """

    request: Request
    slot: int
    num_cached: int = 0
    pending: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    response_mask: list[bool] = field(default_factory=list)
    token_versions: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    text_checked: int = 0

    @property
    def prompt_len(self) -> int:
        return len(self.request.prompt_ids)


class Scheduler:
    """Assigns waiting requests to free slots and tracks the running ones.

    Admission batching (``admit_batch`` > 1): while sequences are running, waiting requests are held until
    ``admit_batch`` slots are free, so one prefill forward admits several of them instead of one forward per slot
    that frees up (each a full pass over the weights for a row or two); they go in at once when nothing is running
    or after ``admit_wait_steps`` held steps, so nothing waits long. TGI's router batches waiting requests the same
    way (``waiting_served_ratio``, ``max_waiting_tokens``). ``admit_batch = 1`` admits as soon as a slot is free.
    """

    def __init__(self, num_slots: int, max_seq_len: int, max_prefill_tokens: int = 16384, admit_batch: int = 1,
                 admit_wait_steps: int = 16) -> None:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if not 1 <= admit_batch <= num_slots:
            raise ValueError(f"admit_batch must be between 1 and num_slots ({num_slots}), got {admit_batch}")
        if admit_wait_steps < 0:
            raise ValueError(f"admit_wait_steps must be >= 0, got {admit_wait_steps}")
        self.num_slots, self.max_seq_len, self.max_prefill_tokens = num_slots, max_seq_len, max_prefill_tokens
        self.admit_batch, self.admit_wait_steps = admit_batch, admit_wait_steps
        self._held_steps = 0
        self.waiting: deque[Request] = deque()
        self.running: dict[int, SequenceState] = {}  # slot -> state
        self._free: list[int] = list(range(num_slots))
        heapq.heapify(self._free)

    def add(self, request: Request) -> None:
        """Queue a request; rejects prompts that cannot fit in a cache slot."""
        if len(request.prompt_ids) >= self.max_seq_len:
            raise ValueError(
                f"request {request.request_id}: prompt has {len(request.prompt_ids)} tokens but the engine's "
                f"max_seq_len is {self.max_seq_len}"
            )
        self.waiting.append(request)

    def admit(self) -> list[SequenceState]:
        """Move waiting requests into free slots (bounded by the prefill token budget)."""
        admitted: list[SequenceState] = []
        if not self._may_admit():
            return admitted
        budget = self.max_prefill_tokens
        while self.waiting and self._free:
            prompt_len = len(self.waiting[0].prompt_ids)
            if admitted and prompt_len > budget:
                break
            request = self.waiting.popleft()
            state = SequenceState(request, heapq.heappop(self._free), pending=list(request.prompt_ids))
            self.running[state.slot] = state
            admitted.append(state)
            budget -= prompt_len
        return admitted

    def _may_admit(self) -> bool:
        """Admit now, or hold the queue for a fuller prefill (``admit_batch`` free slots)?"""
        if not self.waiting:
            self._held_steps = 0
            return False
        if not self._free:
            return False
        if (len(self._free) >= self.admit_batch or not self.running
                or self._held_steps >= self.admit_wait_steps):
            self._held_steps = 0
            return True
        self._held_steps += 1
        return False

    def release(self, state: SequenceState) -> None:
        """Free the slot of a finished sequence."""
        del self.running[state.slot]
        heapq.heappush(self._free, state.slot)

    def decode_batch(self, exclude: set[int]) -> list[SequenceState]:
        """Running sequences to decode this step, in slot order (excluding just-prefilled slots)."""
        return [self.running[s] for s in sorted(self.running) if s not in exclude]

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_free_slots(self) -> int:
        return len(self._free)


def reads_slot_prefix(num_sequences: int, highest_slot: int) -> bool:
    """Whether a step of ``num_sequences`` sequences, the highest in slot ``highest_slot``, should read the cache as
    a view over slots ``0..highest_slot`` (free slots become padding rows) rather than gather its slots: when the
    holes waste little compute. Used by the eager step and the compiled CPU step alike."""
    return num_sequences * 2 >= highest_slot + 1


def prefill_forward_cost(device_type: str) -> int:
    """What one more prefill forward costs on ``device_type``, in padded tokens' worth of work (`prefill_groups`).

    CPU: ~1 ms a forward against ~5 us a token, measured with the 64-wide micro policy on the 2-core box
    (docs/engine.md); a larger model makes a token dearer, so this splits less than it could there. Elsewhere
    (CUDA): a padded token costs far less than a forward's launches; not measured, so only extreme padding splits.
    """
    return 200 if device_type == "cpu" else 4096


def prefill_groups(lengths: list[int], forward_cost_tokens: int) -> list[list[int]]:
    """Rows to prefill in one forward each, as lists of indices into ``lengths`` (every index once).

    A forward pads every row to its longest, so one long continuation among short prompts multiplies the work of
    all of them; a further forward costs about ``forward_cost_tokens`` tokens' worth of fixed overhead. Rows are
    bucketed by length (powers of two: at most 2x padding inside a bucket) and adjacent buckets merged where that
    is cheaper: an exact minimum over the buckets of sum(forward_cost_tokens + rows x longest) (`length_groups`).
    """
    return length_groups(lengths, forward_cost_tokens)
