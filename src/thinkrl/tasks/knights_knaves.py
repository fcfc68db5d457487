"""Knights and knaves: knights always tell the truth, knaves always lie; who is which?

Prompt::

    On an island, knights always tell the truth and knaves always lie. You meet
    3 people: Alice, Bob and Carol.
    Alice says: "Bob is a knave."
    Bob says: "Alice and Carol are both knights."
    Carol says: "Exactly one of Alice and Bob is a knight."
    Answer with each person's type, for example: Alice=knight, Bob=knave, Carol=knight

Each statement is ``[kind, a, b]`` over people indices (`STATEMENTS` lists the
kinds and their wording). The generator draws a random world and random
statements until exactly one world (of the 2^n) makes every knight's statement
true and every knave's false.

Verification: one ``Name=knight`` / ``Name=knave`` per person (``Name: knave`` and
``Name is a knave`` also parse; names are case-insensitive); a missing, unknown
or repeated name or a type other than knight/knave is "unparseable"; any
other assignment than the unique consistent one is "wrong value".

Trace: depth-first over the people in order, rejecting a partial world as
soon as a statement whose people are all decided fails; one line per
rejection. A noisy trace misjudges one statement and answers a world that is
not consistent.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import AnswerFormatError, parse_pairs, require_strings, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 2000
NAMES = (
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar",
    "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Wendy", "Xavier", "Yvonne", "Zoe", "Quentin", "Uma", "Nina",
)  # fmt: skip

# kind -> (truth function of (is_knight[a], is_knight[b]), wording, uses b). In the wording, {a_is} / {b_is}
# become "Bob is" (or "I am" for the speaker), {pair} "Bob and Carol" (or "Carol and I"), {pair_of} the same
# after "of" ("Carol and me").
STATEMENTS: dict[str, tuple[Callable[[bool, bool], bool], str, bool]] = {
    "knight": (lambda a, b: a, "{a_is} a knight.", False),
    "knave": (lambda a, b: not a, "{a_is} a knave.", False),
    "both": (lambda a, b: a and b, "{pair} are both knights.", True),
    "neither": (lambda a, b: not a and not b, "{pair} are both knaves.", True),
    "either": (lambda a, b: a or b, "At least one of {pair_of} is a knight.", True),
    "one_knave": (lambda a, b: not a or not b, "At least one of {pair_of} is a knave.", True),
    "exactly_one": (lambda a, b: a != b, "Exactly one of {pair_of} is a knight.", True),
    "same": (lambda a, b: a == b, "{pair} are the same kind.", True),
    "implies": (lambda a, b: not a or b, "If {a_is} a knight, then {b_is} a knight.", True),
}


def statement_holds(statement: list[Any], world: tuple[bool, ...]) -> bool:
    """Truth of ``[kind, a, b]`` in ``world`` (True = knight)."""
    kind, a, b = statement
    return STATEMENTS[kind][0](world[a], world[b])


def consistent(statements: list[list[Any]], world: tuple[bool, ...]) -> bool:
    """Every speaker's statement is true exactly when the speaker is a knight."""
    return all(statement_holds(s, world) == world[speaker] for speaker, s in enumerate(statements))


def worlds(statements: list[list[Any]]) -> list[tuple[bool, ...]]:
    """Every consistent world (brute force over 2^n)."""
    n = len(statements)
    return [w for w in itertools.product((True, False), repeat=n) if consistent(statements, w)]


def wording(statement: list[Any], names: list[str], speaker: int) -> str:
    """The statement in words; the speaker refers to themself as "I" / "me"."""
    kind, a, b = statement

    def subject(person: int) -> str:
        return "I am" if person == speaker else f"{names[person]} is"

    if speaker in (a, b):
        other = names[b] if speaker == a else names[a]
        pair, pair_of = f"{other} and I", f"{other} and me"
    else:
        pair = pair_of = f"{names[a]} and {names[b]}"
    text = STATEMENTS[kind][1].format(a_is=subject(a), b_is=subject(b), pair=pair, pair_of=pair_of)
    return text[0].upper() + text[1:]


def describe(world: tuple[bool, ...], names: list[str]) -> str:
    """``Alice=knight, Bob=knave``."""
    return ", ".join(f"{name}={'knight' if knight else 'knave'}" for name, knight in zip(names, world, strict=True))


@TASKS.register("knights_knaves")
class KnightsKnavesTask(Task):
    """Decide who is a knight and who is a knave from their statements (unique solution)."""

    name = "knights_knaves"
    difficulty_knobs = (Knob("num_people", int, 3, 2, 8, "how many people speak (one statement each)"),)

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random statements about random people until exactly one world is consistent."""
        n = difficulty["num_people"]
        for _ in range(MAX_TRIES):
            statements = []
            for _speaker in range(n):
                kind = rng.choice(list(STATEMENTS))
                a, b = rng.sample(range(n), 2)
                statements.append([kind, a, b])
            found = worlds(statements)
            if len(found) == 1:
                break
        else:
            raise ValueError(f"could not generate a knights and knaves puzzle with difficulty {difficulty}")
        names = rng.sample(NAMES, n)
        said = "\n".join(f'{names[i]} says: "{wording(s, names, i)}"' for i, s in enumerate(statements))
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        example = ", ".join(f"{name}={'knight' if i % 2 == 0 else 'knave'}" for i, name in enumerate(names))
        prompt = (
            "On an island, knights always tell the truth and knaves always lie. "
            f"You meet {n} people: {listed}.\n{said}\n"
            f"Answer with each person's type, for example: {example}"
        )
        truth = {"names": names, "statements": statements, "solution": describe(found[0], names)}
        return prompt, truth

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
        names = require_strings(ground_truth, "names")
        statements = require(ground_truth, "statements", list)
        n = len(names)
        for s in statements:
            if not (isinstance(s, list) and len(s) == 3 and s[0] in STATEMENTS and all(0 <= v < n for v in s[1:])):
                raise ValueError(f"knights_knaves statements must be [kind, a, b], got {s!r}")
        if len(statements) != n:
            raise ValueError(f"knights_knaves needs one statement per person, got {len(statements)} for {n}")
        return names, statements

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The statements (names are decoration)."""
        return repr(self._parts(ground_truth)[1])

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Every person typed; the world must be consistent (it is then the unique solution)."""
        names, statements = self._parts(ground_truth)
        try:
            pairs = parse_pairs(answer, names)
        except AnswerFormatError as error:
            return unparseable(error)
        bad = [f"{name}={kind}" for name, kind in pairs.items() if kind not in ("knight", "knave")]
        if bad:
            return Verdict.wrong("unparseable", f"types must be knight or knave, got {', '.join(bad)}")
        world = tuple(pairs[name] == "knight" for name in names)
        for speaker, statement in enumerate(statements):
            if statement_holds(statement, world) != world[speaker]:
                role = "knight" if world[speaker] else "knave"
                return Verdict.wrong("wrong value", f"{names[speaker]} would be a {role} making a statement that fails")
        return Verdict.right(describe(world, names))

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Depth-first search over knight/knave, one line per rejected partial world."""
        noise = check_noise(noise)
        names, statements = self._parts(problem.ground_truth)
        lines: list[str] = []
        solution = self._search(names, statements, (), lines)
        if solution is None:
            raise ValueError(f"knights_knaves {problem.id} has no consistent world")
        if rng.random() < noise:
            wrong = tuple(w for w in itertools.product((True, False), repeat=len(names)) if w != solution)
            world = rng.choice(wrong)
            speaker = next(i for i, s in enumerate(statements) if statement_holds(s, world) != world[i])
            lines = lines[: rng.randint(0, len(lines))]
            lines.append(f"{describe(world, names)}: {names[speaker]}'s statement checks out. Consistent.")
            return Trace("\n".join(lines), describe(world, names))
        lines.append(f"{describe(solution, names)}: every statement checks out. Consistent.")
        return Trace("\n".join(lines), describe(solution, names))

    def _search(
        self, names: list[str], statements: list[list[Any]], world: tuple[bool, ...], lines: list[str]
    ) -> tuple[bool, ...] | None:
        n = len(names)
        for speaker, statement in enumerate(statements):
            people = {speaker, statement[1]} | ({statement[2]} if STATEMENTS[statement[0]][2] else set())
            if (
                max(people) < len(world)
                and statement_holds(statement, world + (True,) * (n - len(world))) != world[speaker]
            ):
                said = wording(statement, names, speaker).rstrip(".")
                truth = "true" if not world[speaker] else "false"
                role = "knight" if world[speaker] else "knave"
                lines.append(f"{describe(world, names[: len(world)])}: {names[speaker]} ({role}) says '{said}', "
                             f"which is {truth}. No.")  # fmt: skip
                return None
        if len(world) == n:
            return world
        for knight in (True, False):
            found = self._search(names, statements, (*world, knight), lines)
            if found is not None:
                return found
        return None
