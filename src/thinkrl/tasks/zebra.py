"""Zebra puzzle: people in a row of houses, attributes and clues; say who lives where.

Prompt::

    There are 3 houses in a row, numbered 1 to 3 from left to right. One person
    lives in each house, and the people differ in every attribute:
    - name: Alice, Bob, Carol
    - house colour: blue, green, red
    - pet: cat, dog, fish
    Clues:
    1. The dog owner lives directly left of Carol.
    2. Bob and the person in the red house are the same person.
    ...
    Which house does each person live in? Answer with every name and its house
    number, for example Alice=1, Bob=2, Carol=3.

Ground truth: ``attributes`` (category names, the first is ``name``), ``values``
(per category), ``houses`` (per category, the house index of each value) and
``clues`` as ``[kind, a, v, b, w]``: value ``v`` of category ``a`` and value ``w``
of category ``b``; for ``at`` / ``not_at`` ``b`` is a house index and ``w`` is -1.
Kinds: at, not_at, same, not_same, left_of (directly), next_to, before
(somewhere left).

Generation adds random true clues until `solve` (domain propagation plus
branching, counting up to 2) finds exactly one solution, then drops every
clue that is not needed for uniqueness.

Verification: one ``Name=house`` per person (``Name: 2`` also parses); unknown,
missing or repeated names or a non-number are "unparseable"; a house outside
1..n or two people in one house is "illegal numbers"; any other placement than
the unique solution is "wrong value".

Trace: the propagation log, one line per fact found (``clue 2: Bob in house 3``,
``no other drink fits house 1: the tea drinker in house 1``), with a guess from the solution
when propagation stalls. A noisy trace misplaces one person, swapping two.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.knights_knaves import NAMES
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, parse_pairs, unparseable
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.zebra_solver import CLUE_KINDS, clue_holds, solve

CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # category -> (phrase for a value, values)
    "house colour": ("the person in the {} house", ("red", "green", "blue", "white", "yellow", "black")),
    "pet": ("the {} owner", ("cat", "dog", "bird", "fish", "horse", "rabbit")),
    "drink": ("the {} drinker", ("tea", "coffee", "milk", "water", "juice", "cocoa")),
    "job": ("the {}", ("baker", "doctor", "pilot", "farmer", "teacher", "singer")),
}
KIND_WEIGHTS = {"at": 1.0, "not_at": 1.0, "same": 3.0, "not_same": 1.0, "left_of": 1.5, "next_to": 1.5, "before": 1.0}
MAX_CLUES = 200


def phrase(category: str, value: str) -> str:
    """How a clue names the person with ``value``."""
    return value if category == "name" else CATEGORIES[category][0].format(value)


def clue_text(clue: list[Any], attributes: list[str], values: list[list[str]]) -> str:
    """The clue as an English sentence."""
    kind, a, v, b, w = clue
    x = phrase(attributes[a], values[a][v])
    y = phrase(attributes[b], values[b][w]) if kind not in ("at", "not_at") else ""
    text = {
        "at": f"{x} lives in house {b + 1}.",
        "not_at": f"{x} does not live in house {b + 1}.",
        "same": f"{x} and {y} are the same person.",
        "not_same": f"{x} and {y} are different people.",
        "left_of": f"{x} lives directly left of {y}.",
        "next_to": f"{x} and {y} live next to each other.",
        "before": f"{x} lives somewhere left of {y}.",
    }[kind]
    return text[0].upper() + text[1:]


def random_clue(houses: list[list[int]], rng: random.Random) -> list[Any]:
    """A random clue that is true for ``houses`` (per category, the house of each value)."""
    n, k = len(houses[0]), len(houses)
    while True:
        kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
        a, v = rng.randrange(k), rng.randrange(n)
        if kind in ("at", "not_at"):
            house = houses[a][v] if kind == "at" else rng.choice([h for h in range(n) if h != houses[a][v]])
            return [kind, a, v, house, -1]
        b = rng.choice([c for c in range(k) if c != a]) if kind in ("same", "not_same") else rng.randrange(k)
        w = rng.randrange(n)
        clue = [kind, a, v, b, w]
        if (a, v) != (b, w) and clue_holds(clue, houses):
            return clue


@TASKS.register("zebra_puzzle")
class ZebraPuzzleTask(Task):
    """Place people in houses from clues (unique solution); answer each name's house."""

    name = "zebra_puzzle"
    difficulty_knobs = (
        Knob("num_houses", int, 3, 2, 6, "houses (and people)"),
        Knob("num_attributes", int, 3, 2, 5, "categories, the name included"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random solution, random true clues until unique, then redundant clues removed."""
        n = difficulty["num_houses"]
        attributes = ["name", *rng.sample(sorted(CATEGORIES), difficulty["num_attributes"] - 1)]
        values = [sorted(rng.sample(NAMES, n))] + [sorted(rng.sample(CATEGORIES[c][1], n)) for c in attributes[1:]]
        houses = [rng.sample(range(n), n) for _ in attributes]
        clues: list[list[Any]] = []
        while solve(n, len(attributes), clues)[0] != 1:
            if len(clues) >= MAX_CLUES:  # pragma: no cover - uniqueness comes long before
                raise ValueError(f"could not make a unique zebra puzzle with difficulty {difficulty}")
            clues.append(random_clue(houses, rng))
        for clue in rng.sample(clues, len(clues)):
            rest = [c for c in clues if c is not clue]
            if solve(n, len(attributes), rest)[0] == 1:
                clues = rest
        listed = "\n".join(f"- {a}: {', '.join(v)}" for a, v in zip(attributes, values, strict=True))
        shown = "\n".join(f"{i}. {clue_text(c, attributes, values)}" for i, c in enumerate(clues, start=1))
        example = ", ".join(f"{name}={i % n + 1}" for i, name in enumerate(values[0]))
        prompt = (
            f"There are {n} houses in a row, numbered 1 to {n} from left to right. One person lives in each house, "
            f"and the people differ in every attribute:\n{listed}\nClues:\n{shown}\n"
            "Which house does each person live in? Answer with every name and its house number, for example "
            f"{example}."
        )
        solution = ", ".join(f"{name}={houses[0][i] + 1}" for i, name in enumerate(values[0]))
        truth = {"attributes": attributes, "values": values, "houses": houses, "clues": clues, "solution": solution}
        return prompt, truth

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[str], list[list[str]], list[list[int]], list]:
        attributes, values = require(ground_truth, "attributes", list), require(ground_truth, "values", list)
        houses, clues = require(ground_truth, "houses", list), require(ground_truth, "clues", list)
        n = len(values[0]) if values else 0
        shapes_ok = len(attributes) == len(values) == len(houses) and all(
            len(v) == n and sorted(h) == list(range(n)) for v, h in zip(values, houses, strict=True)
        )
        if not n or not shapes_ok:
            raise ValueError("zebra_puzzle ground truth needs equally long attributes, values and houses")
        for clue in clues:
            if not (isinstance(clue, list) and len(clue) == 5 and clue[0] in CLUE_KINDS):
                raise ValueError(f"zebra_puzzle clues must be [kind, a, v, b, w], got {clue!r}")
        return attributes, values, houses, clues

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Categories, values and clues."""
        attributes, values, _, clues = self._parts(ground_truth)
        return f"{attributes}|{values}|{clues}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Every person in a distinct house 1..n, matching the unique solution."""
        attributes, values, houses, _ = self._parts(ground_truth)
        names, n = values[0], len(values[0])
        try:
            pairs = parse_pairs(answer, names)
        except AnswerFormatError as error:
            return unparseable(error)
        bad = [f"{k}={v}" for k, v in pairs.items() if not (v.isdigit() and len(v) <= 3)]
        if bad:
            return Verdict.wrong("unparseable", f"house numbers must be integers, got {', '.join(bad)}")
        given = {name: int(pairs[name]) for name in names}
        outside = [f"{k}={v}" for k, v in given.items() if not 1 <= v <= n]
        if outside:
            return Verdict.wrong(ILLEGAL, f"houses are numbered 1 to {n}: {', '.join(outside)}")
        if len(set(given.values())) < n:
            return Verdict.wrong(ILLEGAL, "two people are placed in the same house")
        wrong = [name for i, name in enumerate(names) if given[name] != houses[0][i] + 1]
        if wrong:
            return Verdict.wrong("wrong value", f"{len(wrong)} people are in the wrong house")
        return Verdict.right("every person placed")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """The propagation log; noise swaps two people and writes one of them in the wrong house."""
        noise = check_noise(noise)
        attributes, values, houses, clues = self._parts(problem.ground_truth)
        n = len(values[0])
        log: list[tuple[int, int, int, str]] = []
        count, found = solve(n, len(attributes), clues, log=log, guide=houses)
        if count < 1 or found != houses:
            raise ValueError(f"zebra_puzzle {problem.id}: the clues do not lead to the stored solution")
        placed = list(houses[0])
        if rng.random() < noise:
            i, j = rng.sample(range(n), 2)
            placed[i], placed[j] = placed[j], placed[i]
            last = max(k for k, entry in enumerate(log) if entry[:2] == (0, i))
            log[last] = (0, i, placed[i], log[last][3])
        lines = []
        for a, v, h, reason in log:
            why = f"no other {attributes[a]} fits house {h + 1}" if reason == "hidden" else reason
            lines.append(f"{why}: {phrase(attributes[a], values[a][v])} in house {h + 1}")
        answer = ", ".join(f"{name}={placed[i] + 1}" for i, name in enumerate(values[0]))
        return Trace("\n".join(lines), answer)
