"""A difficulty curriculum: fresh problems per task at a difficulty kept inside a target pass-rate band.

After every ``window`` groups of a task, `Curriculum` steps one integer knob (round-robin) up when the window's pass
rate is above the target band and down when below, within the knob's range (Seed-Thinking adjusts each logic
task's difficulty during training). Problems are train-split only (`thinkrl.tasks.dataset.split_of`) and never in
``exclude_ids`` (the held-out set). It is a prompt source (`thinkrl.rollout.sources.PromptSource`); its state is a
JSON dict, so a checkpoint resumes the exact prompt stream.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from thinkrl.rollout.specs import CurriculumSpec
from thinkrl.tasks import Problem, Task, get_task
from thinkrl.tasks.dataset import split_of

logger = logging.getLogger(__name__)


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
                spec = self.tasks[name].knob(knob)
                if spec.kind is not int or spec.low is None or spec.high is None:
                    raise ValueError(f"curriculum knob {knob!r} of task {name!r} is not an int knob with a range")
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
            assert target is not None  # curriculum knobs have a range (checked in __init__)
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
