"""Syllogisms: does a conclusion follow from two categorical premises?

Prompt::

    Judge only by logic, not by what is true in the real world, and assume that
    there is at least one of each kind of thing named.
    Premise 1: All poets are sailors.
    Premise 2: Some sailors are not kings.
    Does it follow that some poets are not kings? Answer Yes or No.

Statements are ``[form, x, y]`` with form ``all`` (All x are y), ``no`` (No x are
y), ``some`` (Some x are y) or ``some_not`` (Some x are not y). Premise 1 links
the middle term M with P, premise 2 links S with M (either order), and the
conclusion links S and P (either order).

Validity is decided by brute force over Venn diagrams (`follows`): each of
the 8 regions of three sets is empty or not, and the conclusion follows if it
holds in every diagram where the premises hold and (with
``existential_import``) no term is empty. Premises that no diagram satisfies
are never generated.

Verification: "yes" or "no" (any case; "Yes." is fine); anything else is
"unparseable". Trace: the premises as facts about regions (``SMp`` = in S, in
M, not in P), then the regions the conclusion needs, and either the premise that
guarantees it or a counterexample diagram. A noisy trace converts a premise
illegitimately and flips the answer.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.registry import TASKS
from thinkrl.tasks.words import PLURALS

FORMS = ("all", "no", "some", "some_not")
TERMS = "SMP"
REGIONS = tuple(itertools.product((True, False), repeat=3))  # membership in (S, M, P)
MAX_TRIES = 1000


def sentence(statement: list[str], names: Mapping[str, str]) -> str:
    """``All poets are sailors`` for ``["all", "S", "M"]``."""
    form, x, y = statement
    a, b = names[x], names[y]
    return {"all": f"All {a} are {b}", "no": f"No {a} are {b}", "some": f"Some {a} are {b}",
            "some_not": f"Some {a} are not {b}"}[form]  # fmt: skip


def _in(region: tuple[bool, ...], term: str) -> bool:
    return region[TERMS.index(term)]


def needs(statement: list[str]) -> tuple[str, set[tuple[bool, ...]]]:
    """(``"empty"`` or ``"some"``, regions): the statement says those regions are all empty / not all empty."""
    form, x, y = statement
    if form == "all":
        return "empty", {r for r in REGIONS if _in(r, x) and not _in(r, y)}
    if form == "no":
        return "empty", {r for r in REGIONS if _in(r, x) and _in(r, y)}
    if form == "some":
        return "some", {r for r in REGIONS if _in(r, x) and _in(r, y)}
    return "some", {r for r in REGIONS if _in(r, x) and not _in(r, y)}


def holds(statement: list[str], filled: frozenset[tuple[bool, ...]]) -> bool:
    """Truth of ``statement`` in the diagram whose non-empty regions are ``filled``."""
    kind, regions = needs(statement)
    return not (regions & filled) if kind == "empty" else bool(regions & filled)


def diagrams(premises: list[list[str]], existential_import: bool) -> list[frozenset[tuple[bool, ...]]]:
    """Every diagram (set of non-empty regions) where the premises hold (and no term is empty)."""
    return list(_diagrams(tuple(map(tuple, premises)), existential_import))


@lru_cache(maxsize=1024)
def _diagrams(premises: tuple[tuple[str, ...], ...], existential_import: bool) -> tuple[frozenset, ...]:
    out = []
    for mask in range(256):
        filled = frozenset(r for i, r in enumerate(REGIONS) if mask >> i & 1)
        if existential_import and not all(any(_in(r, t) for r in filled) for t in TERMS):
            continue
        if all(holds(list(p), filled) for p in premises):
            out.append(filled)
    return tuple(out)


def follows(premises: list[list[str]], conclusion: list[str], existential_import: bool) -> bool:
    """True if the conclusion holds in every diagram of the premises (brute force over 256 diagrams)."""
    return all(holds(conclusion, d) for d in _diagrams(tuple(map(tuple, premises)), existential_import))


def region_name(region: tuple[bool, ...]) -> str:
    """``SMp``: upper case = inside the set, lower case = outside."""
    return "".join(t if inside else t.lower() for t, inside in zip(TERMS, region, strict=True))


def regions_text(regions: set[tuple[bool, ...]]) -> str:
    """Sorted region names joined by commas."""
    return ", ".join(sorted(region_name(r) for r in regions))


@TASKS.register("syllogism")
class SyllogismTask(Task):
    """Decide whether a categorical conclusion follows from two premises."""

    name = "syllogism"
    difficulty_knobs = (
        Knob("valid_share", float, 0.5, 0.0, 1.0, "chance that the conclusion follows (the answer is Yes)"),
        Knob("existential_import", bool, True, help="assume every term names at least one thing"),
    )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random premises and conclusion, drawn until validity matches a coin with ``valid_share``."""
        want = rng.random() < difficulty["valid_share"]
        imports = difficulty["existential_import"]
        for _ in range(MAX_TRIES):
            premises = [self._statement(rng, "M", "P"), self._statement(rng, "S", "M")]
            conclusion = self._statement(rng, "S", "P")
            if _diagrams(tuple(map(tuple, premises)), imports) and follows(premises, conclusion, imports) == want:
                break
        else:  # pragma: no cover - about a third of random syllogisms are valid
            raise ValueError(f"could not generate a syllogism with difficulty {difficulty}")
        names = dict(zip(TERMS, rng.sample(PLURALS, 3), strict=True))
        assumption = ", and assume that there is at least one of each kind of thing named" if imports else ""
        conclusion_text = sentence(conclusion, names)
        prompt = (
            f"Judge only by logic, not by what is true in the real world{assumption}.\n"
            f"Premise 1: {sentence(premises[0], names)}.\nPremise 2: {sentence(premises[1], names)}.\n"
            f"Does it follow that {conclusion_text[0].lower()}{conclusion_text[1:]}? Answer Yes or No."
        )
        truth = {"names": names, "premises": premises, "conclusion": conclusion,
                 "existential_import": imports, "answer": "Yes" if want else "No"}  # fmt: skip
        return prompt, truth

    @staticmethod
    def _statement(rng: random.Random, a: str, b: str) -> list[str]:
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        return [rng.choice(FORMS), x, y]

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[list[list[str]], list[str], bool]:
        premises = require(ground_truth, "premises", list)
        conclusion = require(ground_truth, "conclusion", list)
        for statement in [*premises, conclusion]:
            if not (isinstance(statement, list) and len(statement) == 3 and statement[0] in FORMS
                    and statement[1] in TERMS and statement[2] in TERMS):  # fmt: skip
                raise ValueError(f"syllogism statements must be [form, term, term], got {statement!r}")
        return premises, conclusion, require(ground_truth, "existential_import", bool)

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Premises, conclusion, the import assumption and the names."""
        premises, conclusion, imports = self._parts(ground_truth)
        names = require(ground_truth, "names", dict)
        return f"{premises}|{conclusion}|{imports}|{sorted(names.items())}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Yes or No, compared with the brute-force validity."""
        premises, conclusion, imports = self._parts(ground_truth)
        text = answer.strip().lower()
        if text not in ("yes", "no"):
            return Verdict.wrong("unparseable", f"expected Yes or No, got {answer[:40]!r}")
        expected = "yes" if follows(premises, conclusion, imports) else "no"
        if text != expected:
            return Verdict.wrong("wrong value", f"the answer is {expected.capitalize()}")
        return Verdict.right(expected.capitalize())

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Region reasoning; noise converts a premise the illegal way and flips the answer."""
        noise = check_noise(noise)
        premises, conclusion, imports = self._parts(problem.ground_truth)
        names = require(problem.ground_truth, "names", dict)
        lines = [f"S = {names['S']}, M = {names['M']}, P = {names['P']}; SMp = in S, in M, not in P."]
        empty: set[tuple[bool, ...]] = set()
        for premise in premises:
            kind, regions = needs(premise)
            if kind == "empty":
                empty |= regions
        musts = [(f"premise {i}", needs(p)[1] - empty) for i, p in enumerate(premises, 1) if needs(p)[0] == "some"]
        if imports:
            musts += [(f"{t} is not empty", {r for r in REGIONS if _in(r, t)} - empty) for t in TERMS]
        for number, premise in enumerate(premises, start=1):
            kind, regions = needs(premise)
            fact = "empty" if kind == "empty" else "not all empty"
            lines.append(f"Premise {number}: {regions_text(regions)} {fact}.")
        valid = follows(premises, conclusion, imports)
        lines.append(self._conclusion_line(conclusion, empty, musts, valid))
        if rng.random() < noise:
            form, x, y = premises[0]
            lines.insert(1, f"Premise 1 also means {sentence([form, y, x], names).lower()}.")
            valid = not valid
        return Trace("\n".join(lines), "Yes" if valid else "No")

    @staticmethod
    def _conclusion_line(conclusion: list[str], empty: set, musts: list, valid: bool) -> str:
        kind, regions = needs(conclusion)
        if kind == "empty":
            head = f"Conclusion needs {regions_text(regions)} empty"
            if valid:
                return f"{head}: the premises empty all of them. Yes."
            counter = {min(regions - empty)} | {min(allowed) for _, allowed in musts}
            return f"{head}; counterexample: only {regions_text(counter)} filled. No."
        head = f"Conclusion needs something in {regions_text(regions)}"
        if valid:
            source = next(name for name, allowed in musts if allowed <= regions)
            return f"{head}; {source} puts something in {regions_text(next(a for n, a in musts if n == source))}. Yes."
        filled = [next(iter(sorted(allowed - regions))) for _, allowed in musts if allowed - regions]
        return f"{head}; counterexample: only {regions_text(set(filled)) or 'nothing'} filled. No."
