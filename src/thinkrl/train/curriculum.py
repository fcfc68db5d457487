"""Where RL prompts come from, and which ones are worth sampling: pass-rate filters and a difficulty curriculum.

Seed-Thinking drops prompts whose scores have no variance (always or never solved) and adjusts
each logic task's difficulty during training. Here:

- `filter_by_pass_rate`: offline, keep the prompts whose pass rate (under the initial policy,
  estimated by ``thinkrl.train.rl_rollout.estimate_pass_rates``) is inside ``(low, high)`` with
  variance ``p(1 - p) >= min_variance``.
- prompt sources, all with ``take(n)``, ``observe(problem, correct)``, ``state()``, ``metrics()``
  (`PromptSource`); the rollout takes prompts from one and reports every sampled group's outcomes
  back to it:
  - `PromptCursor`: a fixed problem set in a seeded shuffle per epoch (learns nothing);
  - `OnlineFilter`: a cursor that skips prompts whose last ``window`` groups were all solved (or all
    failed), retrying each after ``retry_after`` skips;
  - `Curriculum`: fresh problems of each task at a current difficulty; after every ``window``
    groups of a task it steps one integer knob (round-robin) up when the window's pass rate is
    above the target band and down when below, within the knob's range. Problems are train-split
    only (`thinkrl.tasks.dataset.split_of`) and never in ``exclude_ids`` (the held-out set).

Every state is a JSON dict, so a checkpoint resumes the exact prompt stream.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from thinkrl.tasks import Problem, Task, get_task
from thinkrl.tasks.dataset import split_of
from thinkrl.train.config import CurriculumSpec, DataSpec

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


# --- curriculum ----------------------------------------------------------------------------------------------


@dataclass
class TaskLevel:
    """The curriculum's state for one task.

    Fields:
        difficulty: the current, validated difficulty.
        pointer: round-robin position: the next knob to make harder (easier steps use the one before).
        outcomes: pass rates of the groups seen in the open window.
        last_pass_rate: mean pass rate of the last full window (None before the first).
        changes: how many times the difficulty moved.
    """

    difficulty: dict[str, Any]
    pointer: int = 0
    outcomes: list[float] = field(default_factory=list)
    last_pass_rate: float | None = None
    changes: int = 0


def _can_generate(task: Task, difficulty: Mapping[str, Any], draws: int = 8) -> bool:
    """Whether ``task`` makes a problem at ``difficulty`` in at most ``draws`` seeded tries."""
    rng = random.Random(0)
    for _ in range(draws):
        try:
            task.generate(rng, **difficulty)
            return True
        except ValueError:
            continue
    return False


class Curriculum:
    """Fresh problems per task at a difficulty that keeps each task's pass rate inside a target band.

    Args:
        rules: task name -> `CurriculumSpec` (knobs and their steps, target band, window).
        start: task name -> starting difficulty (unset knobs take their defaults).
        seed: seed of the generator stream (each ``take`` call has its own derived seed).
        exclude_ids: ids never to produce (the held-out problems).
        test_percent: the split rule's percentage; only ``split_of(id) == "train"`` problems are made.
        state: a `state()` dict to resume from.
    """

    def __init__(self, rules: Mapping[str, CurriculumSpec], start: Mapping[str, Mapping[str, Any]] | None = None,
                 seed: int = 0, exclude_ids: Iterable[str] = (), test_percent: int = 10,
                 state: Mapping[str, Any] | None = None) -> None:
        if not rules:
            raise ValueError("a curriculum needs at least one task")
        self.rules, self.seed, self.test_percent = dict(rules), seed, test_percent
        self.exclude_ids = frozenset(exclude_ids)
        self.tasks = {name: get_task(name) for name in sorted(self.rules)}
        for name, rule in self.rules.items():
            for knob in rule.knobs:
                if self.tasks[name].knob(knob).kind is not int:
                    raise ValueError(f"curriculum knob {knob!r} of task {name!r} is not an int knob")
        state = state or {}
        self.num_takes = int(state.get("num_takes", 0))
        saved = state.get("levels", {})
        self.levels = {name: TaskLevel(**saved[name]) if name in saved
                       else TaskLevel(task.resolve_difficulty((start or {}).get(name)))
                       for name, task in self.tasks.items()}

    def take(self, n: int) -> list[Problem]:
        """``n`` new train-split problems, each of a uniformly drawn task at its current difficulty."""
        rng = random.Random(self.seed * 1_000_003 + self.num_takes)
        self.num_takes += 1
        names = sorted(self.tasks)
        return [self._generate(rng.choice(names), rng) for _ in range(n)]

    def _generate(self, name: str, rng: random.Random, max_draws: int = 1000) -> Problem:
        difficulty = self.levels[name].difficulty
        for _ in range(max_draws):
            try:
                problem = self.tasks[name].generate(rng, **difficulty)
            except ValueError:  # a generator may give up on one draw at extreme difficulties (e.g. a result cap)
                continue
            if problem.id not in self.exclude_ids and split_of(problem.id, self.test_percent) == "train":
                return problem
        raise ValueError(f"no train-split problem of {name!r} outside the held-out set in {max_draws} draws "
                         f"at difficulty {difficulty}")

    def observe(self, problem: Problem, correct: Sequence[bool]) -> None:
        """Count the group towards its task's window (only if made at the current difficulty); adjust when full."""
        level = self.levels.get(problem.task)
        if level is None or not correct or problem.difficulty != level.difficulty:
            return
        level.outcomes.append(sum(map(bool, correct)) / len(correct))
        rule = self.rules[problem.task]
        if len(level.outcomes) < rule.window:
            return
        rate = sum(level.outcomes) / len(level.outcomes)
        level.outcomes, level.last_pass_rate = [], rate
        if rate > rule.target_high or rate < rule.target_low:
            moved = self._step(problem.task, harder=rate > rule.target_high)
            logger.info("curriculum %s: window pass rate %.2f -> %s", problem.task, rate,
                        level.difficulty if moved else "at the limit of its knobs")

    def _step(self, name: str, harder: bool) -> bool:
        """Move one knob one step (round-robin; easier undoes the most recent harder step first)."""
        level, rule, task = self.levels[name], self.rules[name], self.tasks[name]
        knobs = list(rule.knobs)
        for offset in range(len(knobs)):
            j = (level.pointer + offset) % len(knobs) if harder else (level.pointer - 1 - offset) % len(knobs)
            candidate = dict(level.difficulty)
            candidate[knobs[j]] += rule.knobs[knobs[j]] if harder else -rule.knobs[knobs[j]]
            try:
                resolved = task.resolve_difficulty(candidate)
            except ValueError:  # out of the knob's range, or breaks a constraint between knobs
                continue
            if not _can_generate(task, resolved):  # valid knobs, but the generator cannot make such problems
                continue
            level.difficulty, level.pointer = resolved, (j + 1) % len(knobs) if harder else j
            level.changes += 1
            return True
        return False

    def hardest_difficulty(self, task: str) -> dict[str, Any]:
        """The hardest difficulty the curriculum can reach for ``task``: each of its knobs moved, one after
        the other, to the end of its range in the harder direction (as far as the task's checks allow)."""
        level, rule, spec = self.levels[task], self.rules[task], self.tasks[task]
        difficulty = dict(level.difficulty)
        for name, step in rule.knobs.items():
            knob = spec.knob(name)
            target = knob.high if step > 0 else knob.low
            for value in range(int(target), int(difficulty[name]), -1 if step > 0 else 1):
                try:
                    candidate = spec.resolve_difficulty({**difficulty, name: value})
                except ValueError:
                    continue
                if _can_generate(spec, candidate):
                    difficulty = candidate
                    break
        return difficulty

    def hardest_problems(self, n: int, seed: int = 0) -> list[Problem]:
        """``n`` problems per task at `hardest_difficulty` (e.g. to size the engine for the longest prompts)."""
        rng = random.Random(seed)
        out = []
        for name in self.tasks:
            hardest, made = self.hardest_difficulty(name), 0
            for _ in range(100 * n):
                if made == n:
                    break
                try:
                    out.append(self.tasks[name].generate(rng, **hardest))
                    made += 1
                except ValueError:  # the generator gave up on one draw (e.g. a result cap): draw again
                    continue
            if made < n:
                raise ValueError(f"could make only {made} of {n} {name!r} problems at difficulty {hardest}")
        return out

    def state(self) -> dict[str, Any]:
        """The take counter and every task's `TaskLevel` as a dict."""
        return {"num_takes": self.num_takes, "levels": {name: asdict(level) for name, level in self.levels.items()}}

    def metrics(self) -> dict[str, float]:
        """``curriculum/<task>/<knob>`` values, the last full window's pass rate and the number of changes."""
        out: dict[str, float] = {}
        for name, level in self.levels.items():
            for knob in self.rules[name].knobs:
                out[f"curriculum/{name}/{knob}"] = level.difficulty[knob]
            if level.last_pass_rate is not None:
                out[f"curriculum/{name}/window_pass_rate"] = level.last_pass_rate
            out[f"curriculum/{name}/changes"] = level.changes
        return out


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
