"""Search puzzles (maze, n-queens, Hanoi, graph colouring, SAT, knights and knaves, zebra): verdicts, brute force."""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest

from thinkrl.tasks import get_task
from thinkrl.tasks.hanoi import hanoi_moves

# ---------------------------------------------------------------- maze

MAZE = {"maze": ["S.#", "#..", "##G"], "distance": 4, "solution": "RDRD"}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("RDRD", "correct"),
        ("r d r d", "correct"),
        ("Answer: R,D,R,D", "correct"),
        ("DRRD", "illegal numbers"),  # D from S walks into a wall
        ("L", "illegal numbers"),  # off the grid
        ("RDRDD", "illegal numbers"),  # one step past G, off the grid
        ("RD", "wrong value"),  # does not reach G
        ("RDRDUD", "wrong value"),  # reaches G in 6 moves; 4 is shortest
        ("RDRDX", "unparseable"),
        ("right down right down", "unparseable"),
        ("4", "unparseable"),  # a step count is not a path
    ],
)
def test_maze_verdicts(answer: str, reason: str) -> None:
    assert get_task("maze").verify(MAZE, answer).reason == reason


def bfs_distance(maze: list[str]) -> int | None:
    start = next((r, c) for r, row in enumerate(maze) for c, ch in enumerate(row) if ch == "S")
    seen, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        if maze[r][c] == "G":
            return seen[(r, c)]
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < len(maze) and 0 <= nc < len(maze[0]) and maze[nr][nc] != "#" and (nr, nc) not in seen:
                seen[(nr, nc)] = seen[(r, c)] + 1
                queue.append((nr, nc))
    return None


def test_maze_distance_matches_an_independent_bfs_and_knobs_hold() -> None:
    task = get_task("maze")
    for seed in range(30):
        problem = task.generate(random.Random(seed), rows=7, cols=9, min_distance=6, wall_density=0.35)
        maze = problem.ground_truth["maze"]
        assert len(maze) == 7 and all(len(row) == 9 for row in maze)
        assert bfs_distance(maze) == problem.ground_truth["distance"] >= 6
        assert "\n".join(maze) in problem.prompt


# ---------------------------------------------------------------- n-queens


def attacked(columns: list[int]) -> bool:
    return any(a == b or abs(a - b) == abs(i - j) for (i, a), (j, b) in itertools.combinations(enumerate(columns), 2))


def test_n_queens_verdicts() -> None:
    task = get_task("n_queens")
    truth = {"n": 4, "given": [[0, 1]], "solution": "2 4 1 3"}
    assert task.verify(truth, "2 4 1 3").correct
    assert task.verify(truth, "2, 4, 1, 3").correct
    assert task.verify({"n": 4, "given": []}, "3 1 4 2").correct  # any valid placement when nothing is given
    assert task.verify(truth, "3 1 4 2").reason == "illegal numbers"  # moves the given queen
    assert task.verify(truth, "2 4 1 5").reason == "illegal numbers"  # column 5 is off the board
    assert task.verify(truth, "2 4 3 1").reason == "wrong value"  # rows 2 and 3 on a diagonal
    assert task.verify(truth, "2 2 1 3").reason == "wrong value"  # same column
    assert task.verify(truth, "2 4 1").reason == "unparseable"
    assert task.verify(truth, "b4 d2").reason == "unparseable"


def test_n_queens_solutions_and_givens() -> None:
    task = get_task("n_queens")
    for seed in range(10):
        problem = task.generate(random.Random(seed), n=8, num_given=3)
        columns = [int(c) - 1 for c in problem.ground_truth["solution"].split()]
        assert sorted(columns) == list(range(8)) and not attacked(columns)
        assert len(problem.ground_truth["given"]) == 3
        assert all(columns[r] == c for r, c in problem.ground_truth["given"])
        assert problem.prompt.count("Q") == 3 + 1  # three queens and the "Q is a queen" legend


# ---------------------------------------------------------------- tower of Hanoi


def hanoi_bfs(start: tuple[str, ...], target: str) -> int:
    """Fewest moves by breadth-first search over positions (peg of each disk, smallest first)."""
    goal = (target,) * len(start)
    seen, queue = {start: 0}, deque([start])
    while queue:
        state = queue.popleft()
        if state == goal:
            return seen[state]
        tops: dict[str, int] = {}
        for disk, peg in enumerate(state):
            tops.setdefault(peg, disk)
        for peg, disk in tops.items():
            for other in "ABC":
                if other != peg and (other not in tops or tops[other] > disk):
                    moved = state[:disk] + (other,) + state[disk + 1 :]
                    if moved not in seen:
                        seen[moved] = seen[state] + 1
                        queue.append(moved)
    raise AssertionError("unreachable")


def test_hanoi_moves_are_optimal_from_every_position() -> None:
    for disks in range(1, 5):
        for start in itertools.product("ABC", repeat=disks):
            for target in "ABC":
                assert len(hanoi_moves(list(start), target)) == hanoi_bfs(start, target), (start, target)
    assert len(hanoi_moves(["A"] * 7, "C")) == 2**7 - 1


HANOI = {"start": ["A", "A"], "target": "C", "optimal": True, "solution": "AB AC BC"}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("AB AC BC", "correct"),
        ("A->B, A->C, B->C", "correct"),
        ("ab ac bc", "correct"),
        ("AC AC", "illegal numbers"),  # disk 2 onto disk 1
        ("BC", "illegal numbers"),  # empty peg
        ("AA", "illegal numbers"),
        ("AB AC", "wrong value"),  # not finished
        ("AC CB AC BC", "wrong value"),  # solved in 4 moves, 3 is the fewest
        ("AB then AC then BC", "unparseable"),
        ("Move disk 1 from A to B", "unparseable"),
    ],
)
def test_hanoi_verdicts(answer: str, reason: str) -> None:
    assert get_task("tower_of_hanoi").verify(HANOI, answer).reason == reason


def test_hanoi_without_optimality_accepts_longer_solutions() -> None:
    truth = {**HANOI, "optimal": False}
    assert get_task("tower_of_hanoi").verify(truth, "AC CB AC BC").correct
    problem = get_task("tower_of_hanoi").generate(random.Random(0), require_optimal=False)
    assert "fewest" not in problem.prompt


def test_hanoi_classic_start() -> None:
    problem = get_task("tower_of_hanoi").generate(random.Random(1), random_start=False, min_disks=4, max_disks=4)
    start = problem.ground_truth["start"]
    assert len(set(start)) == 1 and start[0] != problem.ground_truth["target"]
    assert len(problem.ground_truth["solution"].split()) == 15


# ---------------------------------------------------------------- graph colouring


def test_graph_coloring_verdicts() -> None:
    task = get_task("graph_coloring")
    truth = {"num_vertices": 4, "num_colors": 2, "edges": [[0, 1], [1, 2], [2, 3]]}
    assert task.verify(truth, "1 2 1 2").correct
    assert task.verify(truth, "2 1 2 1").correct  # any proper colouring
    assert task.verify(truth, "1 2 1 3").reason == "illegal numbers"  # only colours 1..2
    assert task.verify(truth, "0 1 0 1").reason == "illegal numbers"
    assert task.verify(truth, "1 1 2 1").reason == "wrong value"
    assert task.verify(truth, "1 2 1").reason == "unparseable"
    assert task.verify(truth, '{"0": 1, "1": 2, "2": 1, "3": 2}').reason == "unparseable"


def test_graph_coloring_planted_colouring_is_proper() -> None:
    task = get_task("graph_coloring")
    for seed in range(20):
        truth = task.generate(random.Random(seed), num_vertices=12, num_colors=4).ground_truth
        colors = [int(c) for c in truth["solution"].split()]
        assert all(colors[u] != colors[v] for u, v in truth["edges"]) and set(colors) == {1, 2, 3, 4}


# ---------------------------------------------------------------- SAT

SAT = {"num_vars": 3, "clauses": [[1, 2], [-1, 3], [-2, -3]]}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("x1=1, x2=0, x3=1", "correct"),
        ("x1=0, x2=1, x3=0", "correct"),  # another satisfying assignment
        ("x3=true x1=true x2=false", "correct"),
        ("X1: 1; X2: 0; X3: 1", "correct"),
        ("x1=1, x2=1, x3=1", "wrong value"),  # clause 3 false
        ("x1=1, x2=0", "unparseable"),  # x3 missing
        ("x1=1, x2=0, x3=1, x4=0", "unparseable"),
        ("x1=1, x2=0, x3=maybe", "unparseable"),
        ("101", "unparseable"),
    ],
)
def test_sat_verdicts(answer: str, reason: str) -> None:
    assert get_task("sat").verify(SAT, answer).reason == reason


def test_sat_verifier_agrees_with_brute_force() -> None:
    task = get_task("sat")
    for seed in range(5):
        truth = task.generate(random.Random(seed), num_vars=4, num_clauses=10).ground_truth
        for bits in itertools.product((0, 1), repeat=4):
            satisfied = all(any((lit > 0) == bool(bits[abs(lit) - 1]) for lit in c) for c in truth["clauses"])
            answer = ", ".join(f"x{i + 1}={b}" for i, b in enumerate(bits))
            assert task.verify(truth, answer).correct == satisfied


# ---------------------------------------------------------------- knights and knaves

SEMANTICS = {  # independent re-statement of every statement kind
    "knight": lambda a, b: a,
    "knave": lambda a, b: not a,
    "both": lambda a, b: a and b,
    "neither": lambda a, b: not (a or b),
    "either": lambda a, b: a or b,
    "one_knave": lambda a, b: not (a and b),
    "exactly_one": lambda a, b: a ^ b,
    "same": lambda a, b: a == b,
    "implies": lambda a, b: b or not a,
}


def test_knights_knaves_unique_by_brute_force() -> None:
    task = get_task("knights_knaves")
    for seed in range(20):
        truth = task.generate(random.Random(seed), num_people=4).ground_truth
        worlds = [
            world
            for world in itertools.product((True, False), repeat=4)
            if all(SEMANTICS[k](world[a], world[b]) == world[i] for i, (k, a, b) in enumerate(truth["statements"]))
        ]
        assert len(worlds) == 1
        expected = ", ".join(
            f"{n}={'knight' if w else 'knave'}" for n, w in zip(truth["names"], worlds[0], strict=True)
        )
        assert truth["solution"] == expected


def test_knights_knaves_verdicts() -> None:
    task = get_task("knights_knaves")
    truth = {"names": ["Alice", "Bob"], "statements": [["knave", 1, 0], ["same", 0, 1]]}
    # Alice: "Bob is a knave"; Bob: "Alice and I are the same kind" -> Alice knight, Bob knave.
    assert task.verify(truth, "Alice=knight, Bob=knave").correct
    assert task.verify(truth, "Bob is a knave and Alice is a knight").correct
    assert task.verify(truth, "alice: Knight; bob: KNAVE").correct
    assert task.verify(truth, "Alice=knave, Bob=knight").reason == "wrong value"
    assert task.verify(truth, "Alice=knight").reason == "unparseable"
    assert task.verify(truth, "Alice=knight, Bob=knave, Carol=knight").reason == "unparseable"
    assert task.verify(truth, "Alice=hero, Bob=villain").reason == "unparseable"
    assert task.verify(truth, "Alice=knight, Alice=knave, Bob=knave").reason == "unparseable"
    assert task.verify(truth, "I think Alice=knight, Bob=knave").reason == "unparseable"


def test_knights_knaves_self_reference_reads_naturally() -> None:
    task = get_task("knights_knaves")
    prompts = [task.generate(random.Random(seed), num_people=3).prompt for seed in range(40)]
    text = "\n".join(prompts)
    assert " I " in text or "I am" in text
    assert " of I " not in text and "and I is" not in text


# ---------------------------------------------------------------- zebra


def zebra_brute_force(truth: dict) -> list[list[list[int]]]:
    """Every assignment (a permutation per category) satisfying the clues, with independent clue semantics."""
    n, k = len(truth["values"][0]), len(truth["attributes"])
    relations = {
        "same": lambda x, y: x == y,
        "not_same": lambda x, y: x != y,
        "left_of": lambda x, y: y - x == 1,
        "next_to": lambda x, y: abs(x - y) == 1,
        "before": lambda x, y: x < y,
    }
    out = []
    for combo in itertools.product(itertools.permutations(range(n)), repeat=k):
        ok = True
        for kind, a, v, b, w in truth["clues"]:
            if kind == "at":
                ok = combo[a][v] == b
            elif kind == "not_at":
                ok = combo[a][v] != b
            else:
                ok = relations[kind](combo[a][v], combo[b][w])
            if not ok:
                break
        if ok:
            out.append([list(p) for p in combo])
    return out


def test_zebra_is_unique_by_brute_force() -> None:
    task = get_task("zebra_puzzle")
    for seed, (houses, attributes) in enumerate([(3, 3)] * 6 + [(4, 3)] * 2 + [(2, 4)] * 2):
        truth = task.generate(random.Random(seed), num_houses=houses, num_attributes=attributes).ground_truth
        assert zebra_brute_force(truth) == [truth["houses"]]
        for index in range(len(truth["clues"])):  # every clue is needed for uniqueness
            rest = {**truth, "clues": truth["clues"][:index] + truth["clues"][index + 1 :]}
            assert len(zebra_brute_force(rest)) > 1


def test_zebra_verdicts() -> None:
    task = get_task("zebra_puzzle")
    truth = task.generate(random.Random(0), num_houses=3, num_attributes=2).ground_truth
    names = truth["values"][0]
    houses = [h + 1 for h in truth["houses"][0]]
    right = ", ".join(f"{n}={h}" for n, h in zip(names, houses, strict=True))
    assert task.verify(truth, right).correct
    assert task.verify(truth, "; ".join(f"{n.lower()}: {h}" for n, h in zip(names, houses, strict=True))).correct
    swapped = ", ".join(f"{n}={h}" for n, h in zip(names, [houses[1], houses[0], houses[2]], strict=True))
    assert task.verify(truth, swapped).reason == "wrong value"
    assert task.verify(truth, ", ".join(f"{n}=1" for n in names)).reason == "illegal numbers"
    assert (
        task.verify(truth, ", ".join(f"{n}={h + 3}" for n, h in zip(names, houses, strict=True))).reason
        == "illegal numbers"
    )
    assert task.verify(truth, ", ".join(f"{n}=first" for n in names)).reason == "unparseable"
    assert task.verify(truth, f"{names[0]}={houses[0]}").reason == "unparseable"
    assert task.verify(truth, names[0]).reason == "unparseable"
