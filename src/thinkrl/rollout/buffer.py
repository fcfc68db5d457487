"""The streaming rollout's buffer of finished groups, and its staleness rule.

Versions: the engine's weights have version v after the trainer's v-th update (the trainer pushes them with
``version=step``). At step s the trainer's weights are version s - 1, so a token sampled with version v lags
``(s - 1) - v`` versions when trained on (`version_lag`); a group lags as much as its oldest token. The bound eta
(``rollout.max_staleness``) is enforced when the trainer takes a batch: a group that would lag more is not trained
on (`GroupBuffer.take` returns it as stale; the driver samples its prompt again).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from thinkrl.records import Trajectory
from thinkrl.tasks import Problem


def oldest_version(trajs: list[Trajectory]) -> int | None:
    """The oldest weight version of any token of ``trajs`` (None when they have no tokens)."""
    versions = [min(t.token_versions) for t in trajs if t.token_versions]
    return min(versions, default=None)


def version_lag(oldest: int | None, trainer_version: int) -> int:
    """Versions between the trainer's weights (``trainer_version`` = step - 1) and a group's oldest token; 0 for a
    group without tokens."""
    return 0 if oldest is None else trainer_version - oldest


def _take_order(oldest: int | None) -> int:
    return -1 if oldest is None else oldest  # as `GroupBuffer.take` orders the usable groups


def take_strands_a_group(buffered: list[int | None], in_flight: list[int], trainer_version: int,
                         max_staleness: int, batch: int) -> bool:
    """Whether the trainer should wait for groups in flight before taking ``batch`` groups now, because taking the
    oldest buffered ones would leave a group that no later batch can train within the bound.

    A group whose oldest token has version o may be trained by the batches taken at versions up to o + eta (its
    deadline), and each version takes one batch of ``batch`` groups, oldest first (earliest deadline first). The
    groups left after this batch can all be trained in time only if, for every k >= 1, at most k x ``batch`` of them
    have deadlines at or before ``trainer_version + k``. When taking now would break that for some k, while a group
    in flight with such a deadline could finish and be taken instead of a buffered one with a later deadline, the
    trainer waits for it. A group in flight with deadline ``trainer_version`` (only this batch may still train it)
    is always waited for.

    Args:
        buffered: the buffered groups' oldest versions (None: no tokens), in buffer order.
        in_flight: the groups in flight's start versions (no token of theirs is older).
        trainer_version, max_staleness, batch: the take's version, eta, and ``prompts_per_step``.
    """
    eta, now = max_staleness, trainer_version
    if any(start + eta <= now for start in in_flight):
        return True
    usable = sorted((o for o in buffered if version_lag(o, now) <= eta), key=_take_order)
    taken, rest = usable[:batch], usable[batch:]
    taken_deadlines = [o + eta for o in taken if o is not None]
    later = [o + eta for o in rest if o is not None] + [start + eta for start in in_flight]
    for horizon in sorted({d for d in later if now < d < now + eta}):  # (the counts change only at deadlines)
        if (sum(d <= horizon for d in later) > (horizon - now) * batch and any(d > horizon for d in taken_deadlines)
                and any(start + eta <= horizon for start in in_flight)):
            return True
    return False


@dataclass
class FinishedGroup:
    """A group whose responses all finished, scored.

    Fields:
        problem: the prompt's problem.
        trajectories: its G responses (rollout fields and rewards set).
        oldest: the oldest weight version of its tokens (None: no tokens).
    """

    problem: Problem
    trajectories: list[Trajectory]
    oldest: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.oldest = oldest_version(self.trajectories)

    def is_fresh(self, trainer_version: int) -> bool:
        """Every token was sampled by the trainer's current weights."""
        return all(v == trainer_version for t in self.trajectories for v in t.token_versions)


@dataclass
class Taken:
    """What `GroupBuffer.take` hands the trainer: the groups to train on, and the stale ones it removed."""

    groups: list[FinishedGroup]
    stale: list[FinishedGroup]


class GroupBuffer:
    """FIFO of finished groups (not thread-safe: the driver guards it with its lock).

    The driver's admission control bounds how many groups exist at once (in flight + here), so this needs no
    capacity of its own.
    """

    def __init__(self) -> None:
        self._groups: deque[FinishedGroup] = deque()

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[FinishedGroup]:
        """The buffered groups, first finished first (a checkpoint saves them)."""
        return iter(list(self._groups))

    def put(self, group: FinishedGroup) -> None:
        self._groups.append(group)

    def num_usable(self, trainer_version: int, max_staleness: int) -> int:
        """Groups that the trainer at ``trainer_version`` may train on."""
        return sum(version_lag(g.oldest, trainer_version) <= max_staleness for g in self._groups)

    def take(self, n: int, trainer_version: int, max_staleness: int) -> Taken:
        """Remove every group that lags more than ``max_staleness`` behind ``trainer_version``, then the first
        ``n`` others (oldest first: they are the next to go stale)."""
        stale = [g for g in self._groups if version_lag(g.oldest, trainer_version) > max_staleness]
        usable = [g for g in self._groups if version_lag(g.oldest, trainer_version) <= max_staleness]
        usable.sort(key=lambda g: -1 if g.oldest is None else g.oldest)  # stable: first finished first among equals
        self._groups = deque(usable[n:])
        return Taken(usable[:n], stale)
