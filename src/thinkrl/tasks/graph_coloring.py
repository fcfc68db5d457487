"""Graph colouring: colour the vertices with at most k colours so that no edge joins two of the same colour.

Prompt::

    Colour the vertices 0 to 5 of this graph with the colours 1 to 3 so that the
    two ends of every edge get different colours.
    Edges: 0-3 0-4 1-2 2-5 3-5
    Answer with the colour of each vertex in order 0 to 5, separated by spaces,
    for example 1 2 3 1 2 3.

Generation plants a colouring: every vertex gets a random colour (each of the
k colours used at least once) and each pair of differently coloured vertices
is joined with probability ``edge_density``, so a k-colouring always exists.
The planted colouring is the reference solution.

Verification: n integers ("unparseable" otherwise); a colour outside 1..k is
"illegal numbers"; an edge whose ends share a colour is "wrong value". Any
proper colouring with colours 1..k is accepted.

Trace: vertices in DSATUR order (most distinct neighbour colours first), one
line each with the neighbours' colours and the colour chosen, the colours coming
from a backtracking solver (or the planted colouring if its search budget runs
out). A noisy trace overlooks one neighbour and repeats its colour.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, parse_int_list, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 1000


def neighbours(n: int, edges: list[list[int]]) -> list[set[int]]:
    """Adjacency sets of the graph on vertices 0..n-1."""
    adjacent: list[set[int]] = [set() for _ in range(n)]
    for u, v in edges:
        adjacent[u].add(v)
        adjacent[v].add(u)
    return adjacent


def color_graph(adjacent: list[set[int]], k: int, max_nodes: int = 100_000) -> list[int] | None:
    """A proper colouring with colours 1..k (backtracking, most constrained vertex first).

    Returns None if there is none or the search visits more than ``max_nodes`` nodes.
    """
    colors = [0] * len(adjacent)
    budget = [max_nodes]

    def extend() -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        open_vertices = [v for v, c in enumerate(colors) if not c]
        if not open_vertices:
            return True
        vertex = max(open_vertices, key=lambda v: (len({colors[u] for u in adjacent[v]} - {0}), len(adjacent[v])))
        used = {colors[u] for u in adjacent[vertex]}
        for color in range(1, k + 1):
            if color not in used:
                colors[vertex] = color
                if extend():
                    return True
        colors[vertex] = 0
        return False

    return colors if extend() else None


@TASKS.register("graph_coloring")
class GraphColoringTask(Task):
    """Properly colour a graph with at most k colours (any proper colouring counts)."""

    name = "graph_coloring"
    difficulty_knobs = (
        Knob("num_vertices", int, 6, 2, 40, "number of vertices"),
        Knob("num_colors", int, 3, 2, 9, "colours allowed"),
        Knob("edge_density", float, 0.5, 0.05, 1.0, "chance of an edge between two differently planted vertices"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """num_colors <= num_vertices."""
        if difficulty["num_colors"] > difficulty["num_vertices"]:
            raise ValueError(
                f"num_colors ({difficulty['num_colors']}) must be <= num_vertices ({difficulty['num_vertices']})"
            )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Plant a k-colouring and add random edges between different colours."""
        n, k = difficulty["num_vertices"], difficulty["num_colors"]
        for _ in range(MAX_TRIES):
            planted = list(range(1, k + 1)) + [rng.randint(1, k) for _ in range(n - k)]
            rng.shuffle(planted)
            edges = [
                [u, v]
                for u in range(n)
                for v in range(u + 1, n)
                if planted[u] != planted[v] and rng.random() < difficulty["edge_density"]
            ]
            if edges:
                break
        else:
            raise ValueError(f"could not generate a graph with edges for difficulty {difficulty}; widen it")
        example = " ".join(str(v % k + 1) for v in range(n))
        prompt = (
            f"Colour the vertices 0 to {n - 1} of this graph with the colours 1 to {k} so that the two ends of "
            f"every edge get different colours.\nEdges: {' '.join(f'{u}-{v}' for u, v in edges)}\n"
            f"Answer with the colour of each vertex in order 0 to {n - 1}, separated by spaces, for example "
            f"{example}."
        )
        return prompt, {"num_vertices": n, "num_colors": k, "edges": edges, "solution": " ".join(map(str, planted))}

    def _parts(self, ground_truth: Mapping[str, Any]) -> tuple[int, int, list[list[int]]]:
        n, k = require(ground_truth, "num_vertices", int), require(ground_truth, "num_colors", int)
        edges = require(ground_truth, "edges", list)
        if not all(isinstance(e, list) and len(e) == 2 and all(0 <= v < n for v in e) and e[0] != e[1] for e in edges):
            raise ValueError(f"graph_coloring edges must be [u, v] pairs of distinct vertices in 0..{n - 1}")
        return n, k, edges

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Vertex count, colour count and the sorted edges."""
        n, k, edges = self._parts(ground_truth)
        return f"{n}:{k}:{sorted(sorted(e) for e in edges)}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """n colours in 1..k and no edge with equal colours at both ends."""
        n, k, edges = self._parts(ground_truth)
        try:
            colors = parse_int_list(answer, n, 0, 10**6)
        except AnswerFormatError as error:
            return unparseable(error)
        for vertex, color in enumerate(colors):
            if not 1 <= color <= k:
                return Verdict.wrong(ILLEGAL, f"vertex {vertex} has colour {color}; allowed are 1..{k}")
        for u, v in edges:
            if colors[u] == colors[v]:
                return Verdict.wrong("wrong value", f"edge {u}-{v} joins two vertices of colour {colors[u]}")
        return Verdict.right(f"proper colouring with {len(set(colors))} colours")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Vertices in solver order with their neighbours' colours; noise repeats a neighbour's colour."""
        noise = check_noise(noise)
        n, k, edges = self._parts(problem.ground_truth)
        adjacent = neighbours(n, edges)
        colors = color_graph(adjacent, k)
        if colors is None:  # search budget spent: fall back on the planted colouring
            colors = [int(c) for c in require(problem.ground_truth, "solution", str).split()]
        order = self._order(adjacent, colors)
        if rng.random() < noise:
            vertex = rng.choice([v for v in range(n) if adjacent[v]])
            colors = list(colors)
            colors[vertex] = colors[rng.choice(sorted(adjacent[vertex]))]
        lines, done = [], set()
        for vertex in order:
            seen = ", ".join(f"{u}={colors[u]}" for u in sorted(adjacent[vertex]) if u in done) or "none coloured"
            lines.append(f"{vertex}: neighbours {seen} -> {colors[vertex]}")
            done.add(vertex)
        return Trace("\n".join(lines), " ".join(map(str, colors)))

    @staticmethod
    def _order(adjacent: list[set[int]], colors: list[int]) -> list[int]:
        """DSATUR order: next the vertex seeing the most distinct colours among coloured neighbours."""
        done: list[int] = []
        left = set(range(len(adjacent)))
        while left:
            vertex = max(sorted(left), key=lambda v: (len({colors[u] for u in adjacent[v] if u not in left}),
                                                      len(adjacent[v])))  # fmt: skip
            done.append(vertex)
            left.remove(vertex)
        return done
