"""Maze: a shortest path from S to G on a grid with walls, as a string of moves.

Prompt::

    Find a shortest path from S to G in this maze. # is a wall, . is open floor.
    Each move goes one cell up (U), down (D), left (L) or right (R); never into a
    wall or off the grid.
    #.#..
    S..#G
    ...
    Answer with the moves as one string of the letters U, D, L and R, for example RRDDL.

Generation: each cell is a wall with probability ``wall_density``; S and G are
distinct open cells whose breadth-first-search distance is at least
``min_distance``.

Verification walks the answer (spaces and commas are ignored; lower case is
accepted): a step into a wall or off the grid is "illegal numbers"; a path
that does not end on G, or is longer than the BFS distance, is "wrong value".
Any shortest path is accepted.

Trace: the BFS distance, then the path as straight runs with the cell each run
ends on, e.g. ``RRR -> r2c4``. A noisy trace miscounts one run by one step.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.puzzle import ILLEGAL, AnswerFormatError, cell_name, check_length, require_strings, unparseable
from thinkrl.tasks.registry import TASKS

MAX_TRIES = 2000
MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


def find(maze: list[str], char: str) -> tuple[int, int]:
    """(row, col) of the only ``char`` in ``maze``; ValueError if it is not there exactly once."""
    spots = [(r, c) for r, row in enumerate(maze) for c, ch in enumerate(row) if ch == char]
    if len(spots) != 1:
        raise ValueError(f"maze must hold exactly one {char!r}, found {len(spots)}")
    return spots[0]


def bfs_path(maze: list[str], start: tuple[int, int], goal: tuple[int, int]) -> str | None:
    """A shortest move string from ``start`` to ``goal`` (moves tried in the order U D L R), or None."""
    rows, cols = len(maze), len(maze[0])
    parent: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            path: list[str] = []
            step = parent[here]
            while step is not None:
                here, move = step
                path.append(move)
                step = parent[here]
            return "".join(reversed(path))
        for move, (dr, dc) in MOVES.items():
            r, c = here[0] + dr, here[1] + dc
            if 0 <= r < rows and 0 <= c < cols and maze[r][c] != "#" and (r, c) not in parent:
                parent[(r, c)] = (here, move)
                queue.append((r, c))
    return None


def parse_moves(answer: str) -> str:
    """The move letters of ``answer`` (upper-cased; spaces and commas dropped); AnswerFormatError otherwise."""
    check_length(answer)
    moves = "".join(answer.split()).replace(",", "").upper()
    bad = sorted(set(moves) - set(MOVES))
    if bad:
        raise AnswerFormatError(f"unexpected character(s) {''.join(bad)!r}; use only U, D, L, R")
    return moves


def runs(moves: str) -> list[str]:
    """``"RRDL"`` -> ``["RR", "D", "L"]``."""
    out: list[str] = []
    for move in moves:
        if out and out[-1][0] == move:
            out[-1] += move
        else:
            out.append(move)
    return out


@TASKS.register("maze")
class MazeTask(Task):
    """Give a shortest path through a grid maze as a U/D/L/R string."""

    name = "maze"
    difficulty_knobs = (
        Knob("rows", int, 6, 2, 40, "maze height"),
        Knob("cols", int, 6, 2, 40, "maze width"),
        Knob("wall_density", float, 0.3, 0.0, 0.6, "chance that a cell is a wall"),
        Knob("min_distance", int, 4, 1, 200, "the shortest path has at least this many moves"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """min_distance must be below the number of cells."""
        if difficulty["min_distance"] > difficulty["rows"] * difficulty["cols"] - 1:
            raise ValueError(
                f"min_distance ({difficulty['min_distance']}) must be < rows*cols "
                f"({difficulty['rows'] * difficulty['cols']})"
            )

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Random walls, random S and G, retried until G is reachable and far enough."""
        rows, cols = difficulty["rows"], difficulty["cols"]
        for _ in range(MAX_TRIES):
            cells = [
                ["#" if rng.random() < difficulty["wall_density"] else "." for _ in range(cols)] for _ in range(rows)
            ]
            open_cells = [(r, c) for r in range(rows) for c in range(cols) if cells[r][c] == "."]
            if len(open_cells) < 2:
                continue
            start, goal = rng.sample(open_cells, 2)
            path = bfs_path(["".join(row) for row in cells], start, goal)
            if path is None or len(path) < difficulty["min_distance"]:
                continue
            cells[start[0]][start[1]], cells[goal[0]][goal[1]] = "S", "G"
            maze = ["".join(row) for row in cells]
            prompt = (
                "Find a shortest path from S to G in this maze. # is a wall, . is open floor. Each move goes one "
                "cell up (U), down (D), left (L) or right (R); never into a wall or off the grid.\n"
                + "\n".join(maze)
                + "\nAnswer with the moves as one string of the letters U, D, L and R, for example RRDDL."
            )
            return prompt, {"maze": maze, "distance": len(path), "solution": path}
        raise ValueError(f"could not generate a maze with difficulty {difficulty}; widen it")

    def _maze(self, ground_truth: Mapping[str, Any]) -> list[str]:
        maze = require_strings(ground_truth, "maze")
        if any(len(row) != len(maze[0]) for row in maze) or set("".join(maze)) - set("#.SG"):
            raise ValueError(f"maze rows must be equally long strings of '#.SG', got {maze!r}")
        return maze

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """The maze rows."""
        return "/".join(self._maze(ground_truth))

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Walk the moves: legal steps only, end on G, no longer than the BFS distance."""
        maze = self._maze(ground_truth)
        distance = require(ground_truth, "distance", int)
        try:
            moves = parse_moves(answer)
        except AnswerFormatError as error:
            return unparseable(error)
        r, c = find(maze, "S")
        for number, move in enumerate(moves, start=1):
            dr, dc = MOVES[move]
            r, c = r + dr, c + dc
            if not (0 <= r < len(maze) and 0 <= c < len(maze[0])):
                return Verdict.wrong(ILLEGAL, f"move {number} ({move}) leaves the grid")
            if maze[r][c] == "#":
                return Verdict.wrong(ILLEGAL, f"move {number} ({move}) walks into the wall at {cell_name(r, c)}")
        if (r, c) != find(maze, "G"):
            return Verdict.wrong("wrong value", f"the path ends at {cell_name(r, c)}, not at G")
        if len(moves) != distance:
            return Verdict.wrong("wrong value", f"{len(moves)} moves; the shortest path has {distance}")
        return Verdict.right(f"shortest path of {distance} moves")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """BFS distance, then each straight run and where it ends; noise miscounts one run."""
        noise = check_noise(noise)
        maze = self._maze(problem.ground_truth)
        start, goal = find(maze, "S"), find(maze, "G")
        path = bfs_path(maze, start, goal)
        if path is None:
            raise ValueError(f"maze {problem.id} has no path from S to G")
        pieces = runs(path)
        if rng.random() < noise:
            pieces = self._miscount(pieces, rng)
        lines = [f"S is at {cell_name(*start)}, G at {cell_name(*goal)}. BFS from S reaches G in {len(path)} moves."]
        r, c = start
        for piece in pieces:
            dr, dc = MOVES[piece[0]]
            r, c = r + dr * len(piece), c + dc * len(piece)
            lines.append(f"{piece} -> {cell_name(r, c)}")
        return Trace("\n".join(lines), "".join(pieces))

    @staticmethod
    def _miscount(pieces: list[str], rng: random.Random) -> list[str]:
        """One run one step too long or (if longer than 1) too short: the path ends elsewhere or hits a wall."""
        index = rng.randrange(len(pieces))
        piece = pieces[index]
        changed = piece[:-1] if len(piece) > 1 and rng.random() < 0.5 else piece + piece[0]
        return [*pieces[:index], changed, *pieces[index + 1 :]]
