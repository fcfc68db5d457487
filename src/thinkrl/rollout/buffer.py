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
    versions = [min(t.token_versions) for t in trajs if t.token_versions]  # type: ignore[type-var]
    return min(versions, default=None)


def version_lag(oldest: int | None, trainer_version: int) -> int:
    """Versions between the trainer's weights (``trainer_version`` = step - 1) and a group's oldest token; 0 for a
    group without tokens."""
    return 0 if oldest is None else trainer_version - oldest


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
        return all(v == trainer_version for t in self.trajectories for v in t.token_versions or [])


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
