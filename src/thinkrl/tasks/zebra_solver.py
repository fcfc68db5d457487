"""The zebra-puzzle solver: house domains as bitmasks, clue propagation, branching.

A state holds, for every category ``a`` and value ``v``, the bitmask of houses
the value may still be in. `propagate` applies every clue and the
one-value-per-house rule until nothing changes; `solve` branches on the
smallest open domain and counts solutions (up to a limit). With ``guide`` (the
known solution) it follows the guide instead of branching, which gives the
trace its guesses.
"""

from __future__ import annotations

from typing import Any

CLUE_KINDS = ("at", "not_at", "same", "not_same", "left_of", "next_to", "before")
# (category, value, house, reason) for each value that got fixed; reason is "clue N", "elimination" (the
# other houses are taken), "hidden" (no other value of the category fits that house) or "guess".
Log = list[tuple[int, int, int, str]]


def clue_holds(clue: list[Any], houses: list[list[int]]) -> bool:
    """Truth of ``clue`` when ``houses[a][v]`` is the house of value ``v`` of category ``a``."""
    kind, a, v, b, w = clue
    x = houses[a][v]
    if kind == "at":
        return x == b
    if kind == "not_at":
        return x != b
    y = houses[b][w]
    return {
        "same": x == y,
        "not_same": x != y,
        "left_of": x + 1 == y,
        "next_to": abs(x - y) == 1,
        "before": x < y,
    }[kind]


def _single(mask: int) -> bool:
    return mask != 0 and mask & (mask - 1) == 0


class _State:
    """Domains plus the optional log; `narrow` is the only place domains shrink."""

    def __init__(self, domains: list[list[int]], log: Log | None) -> None:
        self.domains, self.log, self.changed = domains, log, False

    def narrow(self, a: int, v: int, mask: int, reason: str) -> bool:
        """Intersect the domain of (a, v) with ``mask``; False if it becomes empty."""
        old = self.domains[a][v]
        new = old & mask
        if new != old:
            self.domains[a][v] = new
            self.changed = True
            if self.log is not None and _single(new):
                self.log.append((a, v, new.bit_length() - 1, reason))
        return new != 0


def _apply(state: _State, clue: list[Any], reason: str, full: int) -> bool:
    kind, a, v, b, w = clue
    x = state.domains[a][v]
    if kind == "at":
        return state.narrow(a, v, 1 << b, reason)
    if kind == "not_at":
        return state.narrow(a, v, ~(1 << b), reason)
    y = state.domains[b][w]
    if kind == "same":
        return state.narrow(a, v, y, reason) and state.narrow(b, w, x, reason)
    if kind == "not_same":
        ok = state.narrow(b, w, ~x, reason) if _single(x) else True
        return ok and (state.narrow(a, v, ~y, reason) if _single(y) else True)
    if kind == "left_of":
        return state.narrow(a, v, y >> 1, reason) and state.narrow(b, w, (x << 1) & full, reason)
    if kind == "next_to":
        return state.narrow(a, v, (y << 1 | y >> 1) & full, reason) and state.narrow(
            b, w, (x << 1 | x >> 1) & full, reason
        )
    # before: x < y
    highest_y, lowest_x = y.bit_length() - 1, (x & -x).bit_length() - 1
    return state.narrow(a, v, (1 << highest_y) - 1, reason) and state.narrow(
        b, w, full & ~((2 << lowest_x) - 1), reason
    )


def _one_per_house(state: _State, a: int, n: int) -> bool:
    domains = state.domains[a]
    for v in range(n):
        if _single(domains[v]):
            for u in range(n):
                if u != v and not state.narrow(a, u, ~domains[v], "elimination"):
                    return False
    for house in range(n):
        holders = [v for v in range(n) if domains[v] >> house & 1]
        if not holders:
            return False
        if len(holders) == 1 and not state.narrow(a, holders[0], 1 << house, "hidden"):
            return False
    return True


def propagate(domains: list[list[int]], clues: list[list[Any]], log: Log | None = None) -> bool:
    """Narrow ``domains`` in place until nothing changes; False on a contradiction."""
    n = len(domains[0])
    full = (1 << n) - 1
    state = _State(domains, log)
    state.changed = True
    while state.changed:
        state.changed = False
        for number, clue in enumerate(clues, start=1):
            if not _apply(state, clue, f"clue {number}", full):
                return False
        for a in range(len(domains)):
            if not _one_per_house(state, a, n):
                return False
    return True


def solve(
    n: int, k: int, clues: list[list[Any]], limit: int = 2, log: Log | None = None, guide: list[list[int]] | None = None
) -> tuple[int, list[list[int]] | None]:
    """(number of solutions up to ``limit``, the first) for ``n`` houses and ``k`` categories.

    With ``guide``, open choices take the guide's house (logged as "guess")
    instead of branching, and the count is 1 or 0.
    """
    domains = [[(1 << n) - 1] * n for _ in range(k)]
    return _search(domains, clues, limit, log, guide)


def _search(
    domains: list[list[int]], clues: list[list[Any]], limit: int, log: Log | None, guide: list[list[int]] | None
) -> tuple[int, list[list[int]] | None]:
    if not propagate(domains, clues, log):
        return 0, None
    open_cells = [
        (bin(m).count("1"), a, v) for a, row in enumerate(domains) for v, m in enumerate(row) if not _single(m)
    ]
    if not open_cells:
        houses = [[m.bit_length() - 1 for m in row] for row in domains]
        return (1, houses) if all(clue_holds(c, houses) for c in clues) else (0, None)
    _, a, v = min(open_cells)
    if guide is not None:
        domains[a][v] = 1 << guide[a][v]
        if log is not None:
            log.append((a, v, guide[a][v], "guess"))
        return _search(domains, clues, limit, log, guide)
    total, first = 0, None
    for house in range(len(domains[0])):
        if domains[a][v] >> house & 1:
            trial = [list(row) for row in domains]
            trial[a][v] = 1 << house
            count, found = _search(trial, clues, limit - total, None, None)
            total += count
            first = first or found
            if total >= limit:
                break
    return total, first
