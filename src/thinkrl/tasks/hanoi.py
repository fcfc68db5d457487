"""Tower of Hanoi: gather disks on one peg, one disk at a time, never a larger disk on a smaller one.

Prompt (``random_start`` on; off, every disk starts on one peg)::

    Tower of Hanoi with 4 disks (1 is the smallest) on pegs A, B and C. Now
    peg A holds 4 1, peg B holds 3 2 and peg C is empty (bottom to top). Move
    all disks to peg C, one disk at a time, never putting a disk on a smaller
    one. Use the fewest moves possible.
    Answer with the moves in order, separated by spaces, each written as the
    source peg then the target peg, for example AC AB CB.

Ground truth ``start`` gives the peg of each disk, smallest first. The fewest
moves from any legal position to a full stack on the target come from
`hanoi_moves`: if the largest disk is on the target, deal with the rest;
otherwise stack the smaller disks on the third peg, move the largest, and
stack the smaller disks on top of it (2^(k-1) - 1 moves for k-1 disks). The
tests check this against breadth-first search.

Verification simulates the moves (``A->C`` and ``A-C`` are accepted as well as
``AC``; spaces or commas separate moves; anything else is "unparseable"):
moving from an empty peg, onto a smaller disk, or to the same peg is "illegal
numbers"; not ending with every disk on the target peg is "wrong value", as
is using more moves than the minimum when ``require_optimal`` is set (the
prompt then asks for the fewest moves). Any legal move list that solves the
puzzle (in the fewest moves, if required) is accepted.

Trace: the plan for the largest disks (``disk 4: B->C, first 3 smaller disks to
A``), then the moves and their count. A noisy trace sends one move to the
wrong peg.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, check_length, unparseable
from thinkrl.tasks.registry import TASKS

PEGS = "ABC"
_MOVE = re.compile(r"([ABC])\s*(?:->|-|>|to)?\s*([ABC])", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,;]*")
MAX_MOVES = 10_000


def hanoi_moves(start: list[str], target: str, plan: list[str] | None = None) -> list[str]:
    """The fewest moves (``"AC"`` = top disk of A to C) taking disks at pegs ``start`` (smallest first) to ``target``.

    ``plan`` (a list) receives one line per decision about the largest disks.
    """
    pegs = list(start)
    moves: list[str] = []

    def gather(disks: int, onto: str, depth: int) -> None:
        if disks == 0:
            return
        here = pegs[disks - 1]
        log = plan if depth < 3 else None
        if here == onto:
            if log is not None:
                log.append(f"disk {disks} is already on {onto}")
            gather(disks - 1, onto, depth + 1)
            return
        spare = next(p for p in PEGS if p not in (here, onto))
        if log is not None:
            smaller = f"{disks - 1} smaller disk{'s' if disks != 2 else ''}"
            log.append(f"disk {disks}: {here}->{onto}, first {smaller} to {spare}" if disks > 1 else
                        f"disk 1: {here}->{onto}")  # fmt: skip
        gather(disks - 1, spare, depth + 1)
        moves.append(here + onto)
        pegs[disks - 1] = onto
        gather(disks - 1, onto, depth + 1)

    gather(len(pegs), target, 0)
    return moves


def describe_pegs(start: list[str]) -> str:
    """``peg A holds 4 1, peg B holds 3 2 and peg C is empty`` (bottom to top)."""
    parts = []
    for peg in PEGS:
        disks = [str(d) for d in range(len(start), 0, -1) if start[d - 1] == peg]
        parts.append(f"peg {peg} holds {' '.join(disks)}" if disks else f"peg {peg} is empty")
    return f"{parts[0]}, {parts[1]} and {parts[2]}"


def parse_hanoi(answer: str) -> list[str]:
    """Moves as two-letter strings; AnswerFormatError on anything that is not a move or a separator."""
    check_length(answer)
    moves: list[str] = []
    position = 0
    for match in _MOVE.finditer(answer):
        if _SEPARATORS.fullmatch(answer[position : match.start()]) is None:
            raise AnswerFormatError(f"unexpected text {answer[position : match.start()][:30]!r}")
        moves.append((match[1] + match[2]).upper())
        position = match.end()
    if _SEPARATORS.fullmatch(answer[position:]) is None:
        raise AnswerFormatError(f"unexpected text {answer[position:][:30]!r}")
    if not moves:
        raise AnswerFormatError("no moves found; write moves like AC AB CB")
    if len(moves) > MAX_MOVES:
        raise AnswerFormatError(f"{len(moves)} moves is more than {MAX_MOVES}")
    return moves


def simulate(start: list[str], moves: list[str]) -> tuple[dict[str, list[int]], str | None]:
    """Pegs after the moves (bottom first), and the first illegal move described (or None)."""
    pegs: dict[str, list[int]] = {p: [d for d in range(len(start), 0, -1) if start[d - 1] == p] for p in PEGS}
    for number, move in enumerate(moves, start=1):
        source, target = move[0], move[1]
        if source == target:
            return pegs, f"move {number} ({move}) does not change peg"
        if not pegs[source]:
            return pegs, f"move {number} ({move}) takes from empty peg {source}"
        disk = pegs[source][-1]
        if pegs[target] and pegs[target][-1] < disk:
            return pegs, f"move {number} ({move}) puts disk {disk} on disk {pegs[target][-1]}"
        pegs[target].append(pegs[source].pop())
    return pegs, None


@TASKS.register("tower_of_hanoi")
class TowerOfHanoiTask(Task):
    """Gather all disks on the target peg; the move list is simulated."""

    name = "tower_of_hanoi"
    difficulty_knobs = (
        Knob("min_disks", int, 3, 1, 10, "fewest disks"),
        Knob("max_disks", int, 5, 1, 10, "most disks"),
        Knob("random_start", bool, True, help="disks start on random pegs (else all on one peg: 2^n - 1 moves)"),
        Knob("require_optimal", bool, True, help="ask for, and only accept, the fewest moves"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """min_disks <= max_disks."""
        if difficulty["min_disks"] > difficulty["max_disks"]:
            raise ValueError(f"min_disks ({difficulty['min_disks']}) must be <= max_disks ({difficulty['max_disks']})")

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random disk count, start position and target peg (a start that is already solved is redrawn)."""
        disks = rng.randint(difficulty["min_disks"], difficulty["max_disks"])
        while True:
            if difficulty["random_start"]:
                start, target = [rng.choice(PEGS) for _ in range(disks)], rng.choice(PEGS)
            else:
                source, target = rng.sample(PEGS, 2)
                start = [source] * disks
            if any(peg != target for peg in start):
                break
        optimal = difficulty["require_optimal"]
        prompt = (
            f"Tower of Hanoi with {disks} disk{'s' if disks > 1 else ''} (1 is the smallest) on pegs A, B and C. "
            f"Now {describe_pegs(start)} (bottom to top). Move all disks to peg {target}, one disk at a time, "
            f"never putting a disk on a smaller one.{' Use the fewest moves possible.' if optimal else ''}\n"
            "Answer with the moves in order, separated by spaces, each written as the source peg then the "
            "target peg, for example AC AB CB."
        )
        solution = " ".join(hanoi_moves(start, target))
        return prompt, {"start": start, "target": target, "optimal": optimal, "solution": solution}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[str], str, bool]:
        start, target = require(ground_truth, "start", list), require(ground_truth, "target", str)
        if not (1 <= len(start) <= 20 and all(p in PEGS for p in start) and target in PEGS):
            raise ValueError(f"bad tower_of_hanoi ground truth {dict(ground_truth)!r}")
        return start, target, require(ground_truth, "optimal", bool)

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Start position, target and whether optimal play is required."""
        return repr(self._parts(ground_truth))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Simulate: every move legal, all disks on the target at the end, fewest moves if required."""
        start, target, optimal = self._parts(ground_truth)
        try:
            moves = parse_hanoi(answer)
        except AnswerFormatError as error:
            return unparseable(error)
        pegs, illegal = simulate(start, moves)
        if illegal:
            return Verdict.wrong(ILLEGAL, illegal)
        if len(pegs[target]) != len(start):
            return Verdict.wrong(
                "wrong value", f"after {len(moves)} moves peg {target} holds {len(pegs[target])} disks"
            )
        fewest = len(hanoi_moves(start, target))
        if optimal and len(moves) > fewest:
            return Verdict.wrong("wrong value", f"{len(moves)} moves; the fewest is {fewest}")
        return Verdict.right(f"solved in {len(moves)} moves")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Plan for the largest disks, then the moves; noise sends one move to the wrong peg."""
        noise = check_noise(noise)
        start, target, _ = self._parts(problem.ground_truth)
        plan: list[str] = []
        moves = hanoi_moves(start, target, plan)
        if rng.random() < noise:
            index = rng.randrange(len(moves))
            source, wrong = moves[index][0], moves[index][1]
            moves[index] = source + next(p for p in PEGS if p not in (source, wrong))
        plan.append(f"Moves ({len(moves)}): " + " ".join(moves))
        return Trace("\n".join(plan), " ".join(moves))
