"""Where RL prompts come from, and which ones are worth sampling: pass-rate filters and a difficulty curriculum.

Seed-Thinking drops prompts whose scores have no variance (always or never solved) and adjusts
each logic task's difficulty during training. Here:

- `filter_by_pass_rate`: offline, keep the prompts whose pass rate (under the initial policy,
  estimated by `thinkrl.rollout.estimate_pass_rates`) is inside ``(low, high)`` with
  variance ``p(1 - p) >= min_variance``.
- prompt sources, all with ``take(n)``, ``observe(problem, correct)``, ``state()``, ``metrics()``
  (`PromptSource`); the rollout takes prompts from one and reports every sampled group's outcomes
  back to it:
  - `PromptCursor`: a fixed problem set in a seeded shuffle per epoch (learns nothing);
  - `OnlineFilter`: a cursor that skips prompts whose last ``window`` groups were all solved (or all
    failed), retrying each after ``retry_after`` skips;
  - `Curriculum` (`thinkrl.rollout.curriculum`): fresh problems of each task at a difficulty kept in a
    target pass-rate band.

Every state is a JSON dict, so a checkpoint resumes the exact prompt stream.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thinkrl.rollout.curriculum import Curriculum
from thinkrl.rollout.specs import DataSpec
from thinkrl.tasks import Problem
from thinkrl.tasks.dataset import generate_dataset, read_jsonl

logger = logging.getLogger(__name__)

SKIPPED_TOTAL = "data/prompts_skipped_total"


class PromptSource(Protocol):
    """Gives the rollout its prompts and learns from the outcomes of each sampled group."""

    def take(self, n: int) -> list[Problem]:
        """The next ``n`` problems."""
        ...

    def observe(self, problem: Problem, correct: Sequence[bool]) -> None:
        """Record the correctness of one group of responses to ``problem``."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state from which the source resumes."""
        ...

    def metrics(self) -> dict[str, float]:
        """Numbers to log (names prefixed ``data/`` or ``curriculum/``)."""
        ...


# --- offline filter ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterResult:
    """What `filter_by_pass_rate` kept and why it dropped the rest.

    Fields:
        kept: problems with ``low < rate < high`` and ``rate * (1 - rate) >= min_variance``, in input order.
        num_too_hard: dropped with ``rate <= low``.
        num_too_easy: dropped with ``rate >= high``.
        num_low_variance: inside the band but with variance below ``min_variance``.
        mean_pass_rate: mean rate over all input problems (0 when there are none).
    """

    kept: list[Problem]
    num_too_hard: int
    num_too_easy: int
    num_low_variance: int
    mean_pass_rate: float

    def metrics(self) -> dict[str, float]:
        """Counts to log, prefixed ``prefilter/``."""
        return {"prefilter/kept": len(self.kept), "prefilter/too_hard": self.num_too_hard,
                "prefilter/too_easy": self.num_too_easy, "prefilter/low_variance": self.num_low_variance,
                "prefilter/mean_pass_rate": self.mean_pass_rate}


def filter_by_pass_rate(problems: Sequence[Problem], rates: Mapping[str, float], low: float = 0.0,
                        high: float = 1.0, min_variance: float = 0.0) -> FilterResult:
    """Keep the problems whose pass rate is strictly inside ``(low, high)`` with enough score variance.

    ``rates`` maps problem id to pass rate in [0, 1]; the variance of a pass/fail score with pass
    rate p is p(1 - p). The defaults drop exactly the never-solved and always-solved problems.
    Raises ValueError for a problem without a rate, a rate outside [0, 1] or ``low >= high``.
    """
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
    if not 0.0 <= min_variance <= 0.25:
        raise ValueError(f"min_variance must be in [0, 0.25] (the most p(1-p) can be), got {min_variance}")
    kept, too_hard, too_easy, flat, total = [], 0, 0, 0, 0.0
    for problem in problems:
        if problem.id not in rates:
            raise ValueError(f"no pass rate for problem {problem.id!r}")
        rate = rates[problem.id]
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"pass rate of problem {problem.id!r} must be in [0, 1], got {rate}")
        total += rate
        if rate <= low:
            too_hard += 1
        elif rate >= high:
            too_easy += 1
        elif rate * (1.0 - rate) < min_variance:
            flat += 1
        else:
            kept.append(problem)
    return FilterResult(kept, too_hard, too_easy, flat, total / len(problems) if problems else 0.0)


# --- fixed set, online filter --------------------------------------------------------------------------------


class PromptCursor:
    """Walks the training problems in a fresh seeded shuffle each epoch; its state is two ints."""

    def __init__(self, problems: list[Problem], seed: int, epoch: int = 0, index: int = 0) -> None:
        if not problems:
            raise ValueError("no training problems")
        self.problems, self.seed, self.epoch, self.index = problems, seed, epoch, index
        self._order = self._shuffled(epoch)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, n: int) -> list[Problem]:
        """The next ``n`` problems (a new epoch reshuffles)."""
        out = []
        for _ in range(n):
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self.problems[self._order[self.index]])
            self.index += 1
        return out

    def observe(self, problem: Problem, correct: Sequence[bool]) -> None:
        """A fixed set learns nothing from outcomes."""

    def state(self) -> dict[str, int]:
        """``{"epoch", "index"}``: pass them back as keyword arguments to resume."""
        return {"epoch": self.epoch, "index": self.index}

    def metrics(self) -> dict[str, float]:
        """The epoch, so progress through the data is visible."""
        return {"data/epoch": self.epoch}


class OnlineFilter:
    """A `PromptCursor` that skips prompts whose last ``window`` groups were all solved (or all failed).

    A skipped prompt is sampled again once it has been skipped ``retry_after`` times (the policy
    may have changed); its history then decides again. Consecutive skips are capped at one pass
    over the problem set: when every prompt is skip-worthy the cursor's prompts are taken anyway
    (with a warning) rather than looping forever.
    """

    def __init__(self, cursor: PromptCursor, window: int = 2, retry_after: int = 4, skip_solved: bool = True,
                 skip_unsolved: bool = True, state: Mapping[str, Any] | None = None) -> None:
        if window < 1 or retry_after < 1:
            raise ValueError(f"window ({window}) and retry_after ({retry_after}) must be >= 1")
        self.cursor, self.window, self.retry_after = cursor, window, retry_after
        self.skip_solved, self.skip_unsolved = skip_solved, skip_unsolved
        state = state or {}
        self.history: dict[str, list[float]] = {k: list(v) for k, v in state.get("history", {}).items()}
        self.skips: dict[str, int] = dict(state.get("skips", {}))
        self.skipped = {"solved": int(state.get("skipped_solved", 0)),
                        "unsolved": int(state.get("skipped_unsolved", 0))}
        self._warned = False

    def skip_reason(self, problem_id: str) -> str | None:
        """``"solved"`` / ``"unsolved"`` if the prompt should be skipped now, else None."""
        history = self.history.get(problem_id, [])
        if len(history) < self.window or self.skips.get(problem_id, 0) >= self.retry_after:
            return None
        if self.skip_solved and all(rate == 1.0 for rate in history):
            return "solved"
        if self.skip_unsolved and all(rate == 0.0 for rate in history):
            return "unsolved"
        return None

    def take(self, n: int) -> list[Problem]:
        """The next ``n`` problems of the cursor that are not skipped."""
        out: list[Problem] = []
        consecutive = 0
        while len(out) < n:
            problem = self.cursor.take(1)[0]
            reason = self.skip_reason(problem.id)
            if reason is not None and consecutive < len(self.cursor.problems):
                self.skips[problem.id] = self.skips.get(problem.id, 0) + 1
                self.skipped[reason] += 1
                consecutive += 1
                continue
            if reason is not None and not self._warned:
                logger.warning("online filter: every prompt was recently all solved or all failed; taking them anyway")
                self._warned = True
            self.skips.pop(problem.id, None)
            out.append(problem)
            consecutive = 0
        return out

    def observe(self, problem: Problem, correct: Sequence[bool]) -> None:
        """Append the group's pass rate to the prompt's history (the last ``window`` are kept)."""
        if not correct:
            return
        rate = sum(map(bool, correct)) / len(correct)
        self.history[problem.id] = ([*self.history.get(problem.id, []), rate])[-self.window :]

    def state(self) -> dict[str, Any]:
        """Cursor position, per-prompt histories and skip counts."""
        return {"cursor": self.cursor.state(), "history": self.history, "skips": self.skips,
                "skipped_solved": self.skipped["solved"], "skipped_unsolved": self.skipped["unsolved"]}

    def metrics(self) -> dict[str, float]:
        """Skip counts since the start, prompts tracked, and the cursor's epoch."""
        return {**self.cursor.metrics(), SKIPPED_TOTAL: sum(self.skipped.values()),
                "data/skipped_solved_total": self.skipped["solved"],
                "data/skipped_unsolved_total": self.skipped["unsolved"], "data/tracked_prompts": len(self.history)}


def build_prompt_source(data: DataSpec, train_problems: list[Problem], exclude_ids: Iterable[str] = (),
                        state: Mapping[str, Any] | None = None) -> PromptSource:
    """The source a recipe's ``data`` section asks for: a `Curriculum`, an `OnlineFilter` or a `PromptCursor`.

    ``exclude_ids`` are the held-out problem ids (a curriculum never generates them); ``state`` is
    the source's `state()` from a checkpoint (for a plain cursor, ``{"epoch", "index"}``).
    """
    state = dict(state or {})
    if data.curriculum is not None:
        return Curriculum({data.task: data.curriculum}, {data.task: data.difficulty}, seed=data.seed,
                          exclude_ids=exclude_ids, state=state)
    if data.online_filter is not None:
        spec = data.online_filter
        cursor = PromptCursor(train_problems, data.seed, **state.get("cursor", {}))
        return OnlineFilter(cursor, spec.window, spec.retry_after, spec.skip_solved, spec.skip_unsolved, state)
    return PromptCursor(train_problems, data.seed, **state)


def training_problems(spec: DataSpec, exclude_ids: Iterable[str] = ()) -> list[Problem]:
    """The fixed training set (`load_problems`), or with a curriculum, which generates its training prompts as it
    goes, the first ``min(num_train, 200)`` it would generate (a separate instance; they size the engine and feed
    value pretraining), so a narrow starting level need not hold ``num_train`` distinct problems."""
    if spec.curriculum is None:
        return load_problems(spec, "train")
    return build_prompt_source(spec, [], exclude_ids=exclude_ids).take(min(spec.num_train, 200))


def load_problems(spec: DataSpec, split: str) -> list[Problem]:
    """The train or test problems: from ``train_file``/``test_file`` when set, else generated (disjoint splits)."""
    path = spec.train_file if split == "train" else spec.test_file
    if path is not None:
        problems = read_jsonl(path)
        if not problems:  # (else a run fails later with "no training problems", naming no file)
            raise ValueError(f"data.{split}_file {path} holds no problems")
        return problems
    n = spec.num_train if split == "train" else spec.num_test
    seed = spec.seed if split == "train" else spec.seed + 1_000_003
    return generate_dataset(spec.task, n, seed, split, spec.difficulty)
