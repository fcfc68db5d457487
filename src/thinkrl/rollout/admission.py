"""When the streaming rollout starts new groups (``rollout.admission``): a pure rule over the driver's counts.

Admission does not make the staleness bound hold (the driver enforces it where groups are trained or dropped); it
decides how much work is started, and when. Two rules:

* ``"batch"``: groups in flight or buffered stay below ``prompts_per_step x (eta + 1 - pending)`` (``pending``: a
  batch was taken and its weights are not pushed yet), capped by ``max_buffered_groups``. The same count as AReaL's
  staleness manager (``(eta + version + 1) x batch - (accepted + running)``, with accepted counting trained samples
  too). With eta = 0 the rollout samples exactly one batch per weight version: synchronous.
* ``"slots"``: the same, and a group is started only when the engine has a free slot for each of its G requests
  (requests of this driver in the engine, or held for the next push, count as taken). Past ``eta = 1`` the batch
  rule admits more requests than the engine has slots; the engine queues them first come first served, so after a
  push the continuations of older groups (the ones that go stale first) waited behind new groups. With this rule
  they never do. When nothing is in flight one group is admitted even if G exceeds the slots (no deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass

from thinkrl.rollout.specs import RolloutSpec


@dataclass(frozen=True)
class AdmissionCounts:
    """The driver's counts when it considers starting groups.

    Fields:
        groups: groups in flight (not finished) plus groups buffered (finished, not yet taken).
        requests: this driver's requests in the engine or on their way to it, plus partial responses held until
            the next push (each will take a slot again).
        pending: a batch was taken and its weight push has not happened yet.
        slots: the engine's decode slots (``sampling.num_slots``).
    """

    groups: int
    requests: int
    pending: bool
    slots: int


def staleness_capacity(rollout: RolloutSpec, pending: bool) -> int:
    """Groups that may exist at once (in flight + buffered) under the batch rule."""
    allowed = rollout.prompts_per_step * (rollout.max_staleness + 1 - int(pending))
    if rollout.max_buffered_groups is not None:
        allowed = min(allowed, rollout.max_buffered_groups)
    return allowed


def groups_to_admit(rollout: RolloutSpec, counts: AdmissionCounts) -> int:
    """How many new groups the rollout may start now (0 or more) under ``rollout.admission``."""
    free = staleness_capacity(rollout, counts.pending) - counts.groups
    if rollout.admission == "slots" and free > 0:
        fit = (counts.slots - counts.requests) // rollout.group_size
        free = min(free, fit if counts.requests else max(1, fit))
    return max(0, free)
