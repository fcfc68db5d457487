"""Cross-check against reasoning-gym: our verifiers accept its reference answers and reject corrupted ones.

For every task that also exists in reasoning-gym (rg), items are generated
with rg, converted to a thinkrl `Problem` (ground truth from rg's metadata),
and checked three ways: our verifier accepts rg's reference answer (converted
to our answer format where they differ), rejects a corrupted answer, and our
trace writer solves the converted problem. Skipped when reasoning_gym is not
installed.

Answer conversions (rg format -> ours):

- sudoku, mini_sudoku, binary_matrix, kakurasu: rg writes a grid on several
  lines; we wrap it in ``\\boxed{...}`` (our grid parser reads newlines there).
- futoshiki: rg's answer grid with ``<``/``>`` and arrows -> its digits only.
- n_queens: rg's board of ``Q``/``_`` -> the column of each row's queen.
- tower_of_hanoi: ``Move disk 1 from Peg 2 to Peg 3`` lines -> ``BC`` (pegs 1-3 = A-C).
- maze: rg asks for the number of steps; we find a path of that length by
  our own BFS here and check rg's count equals our ground-truth distance.
- graph_coloring: rg's metadata colouring (rg has no answer string) -> ``1 2 1 ...``.
- knights_knaves: rg's role words (e.g. hero/villain) -> knight/knave. rg
  statements are formula trees; each is converted by its truth table to one of
  our statement kinds (items with a statement we cannot express are skipped).
- syllogism: the three terms are named S, M, P; rg's ``is_valid`` must equal our
  brute-force validity (with existential import, as rg assumes).
- calendar_arithmetic: only rg's ``weekday_of_date`` questions map to ours.
- word_sorting: items with words that are not plain ASCII letters are skipped.
- arithmetic (rg ``basic_arithmetic``): same format, but rg evaluates ``/`` as
  floor division, so items whose exact value differs from rg's answer (about
  2%) are skipped; for the rest our exact parser must agree with rg's value.
- cryptarithm: same format; rg puzzles may have several solutions, and ours
  accepts any, so the corruption gives two letters one digit.
- countdown, game24 (rg ``puzzle24``): same answer formats.

Not cross-checked: rg ``bitwise_arithmetic`` (signed, unbounded, with + - *;
ours is fixed-width unsigned and bitwise only) and ``zebra_puzzles`` (rg's
metadata holds no solution).
"""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from thinkrl.tasks import Problem, get_task
from thinkrl.tasks.base import problem_id
from thinkrl.tasks.expr import evaluate, parse
from thinkrl.tasks.knights_knaves import STATEMENTS

rg = pytest.importorskip("reasoning_gym")

Converted = tuple[dict[str, Any], str, str]  # (our ground truth, rg's answer in our format, a corrupted answer)


def lines_of(text: str) -> list[str]:
    return [line for line in text.strip().split("\n") if line.strip()]


def boxed(text: str) -> str:
    return "\\boxed{" + text + "}"


def bump_cell(grid: list[list[int]], avoid: list[list[int]] | None, top: int) -> list[list[int]]:
    """A copy of ``grid`` with one cell (not a given of ``avoid``) changed to another value in 1..top (or 0..top)."""
    out = [list(row) for row in grid]
    r, c = next((r, c) for r in range(len(grid)) for c in range(len(grid[0])) if not avoid or not avoid[r][c])
    out[r][c] = out[r][c] % top + 1
    return out


def grid_lines(grid: list[list[int]]) -> str:
    return "\n".join(" ".join(map(str, row)) for row in grid)


def convert_sudoku(item: dict) -> Converted:
    meta = item["metadata"]
    size = len(meta["puzzle"])
    solution = "/".join("".join(map(str, row)) for row in meta["solution"])
    corrupt = grid_lines(bump_cell(meta["solution"], meta["puzzle"], size))
    return {"puzzle": meta["puzzle"], "solution": solution}, boxed(item["answer"]), boxed(corrupt)


def convert_futoshiki(item: dict) -> Converted:
    meta = item["metadata"]
    less = [[r1, c1, r2, c2] if op == "<" else [r2, c2, r1, c1] for r1, c1, r2, c2, op in meta["constraints"]]
    digits = "/".join(re.sub(r"\D", "", line) for line in lines_of(item["answer"]) if re.search(r"\d", line))
    corrupt = "/".join(
        "".join(map(str, row)) for row in bump_cell(meta["solution"], meta["puzzle"], len(meta["puzzle"]))
    )
    truth = {
        "puzzle": meta["puzzle"],
        "less": less,
        "solution": "/".join("".join(map(str, r)) for r in meta["solution"]),
    }
    return truth, digits, corrupt


def convert_binary_matrix(item: dict) -> Converted:
    meta = item["metadata"]
    corrupt = [list(row) for row in meta["solution"]]
    corrupt[0][0] += 1
    return {"matrix": meta["matrix"]}, boxed(item["answer"]), boxed(grid_lines(corrupt))


def convert_kakurasu(item: dict) -> Converted:
    meta = item["metadata"]
    corrupt = [list(row) for row in meta["solution"]]
    corrupt[0][0] = 1 - corrupt[0][0]
    truth = {"row_sums": meta["row_sums"], "col_sums": meta["col_sums"]}
    return truth, boxed(item["answer"]), boxed(grid_lines(corrupt))


def queen_columns(board: str) -> list[int]:
    return [row.split().index("Q") + 1 for row in lines_of(board)]


def convert_n_queens(item: dict) -> Converted:
    meta = item["metadata"]
    n = len(meta["puzzle"])
    given = [[r, c] for r, row in enumerate(meta["puzzle"]) for c, cell in enumerate(row) if cell == "Q"]
    columns = queen_columns(item["answer"])
    free = next(r for r in range(n) if all(g[0] != r for g in given))
    corrupt = list(columns)
    corrupt[free] = columns[(free + 1) % n]  # two queens in one column
    return {"n": n, "given": given}, " ".join(map(str, columns)), " ".join(map(str, corrupt))


def convert_hanoi(item: dict) -> Converted:
    meta = item["metadata"]
    pegs = " ABC"
    moves = [pegs[int(a)] + pegs[int(b)] for a, b in re.findall(r"from Peg (\d) to Peg (\d)", item["answer"])]
    truth = {
        "start": [pegs[meta["start_peg"]]] * meta["num_disks"],
        "target": pegs[meta["target_peg"]],
        "optimal": True,
    }
    return truth, " ".join(moves), " ".join([moves[1], moves[0], *moves[2:]])


def convert_maze(item: dict) -> Converted:
    meta = item["metadata"]
    table = {meta["wall"]: "#", meta["path"]: ".", meta["start"]: "S", meta["goal"]: "G"}
    maze = ["".join(table[ch] for ch in row) for row in meta["grid"]]
    path = bfs_path(maze)
    assert len(path) == meta["shortest_path_length"] == int(item["answer"])
    truth = {"maze": maze, "distance": meta["shortest_path_length"]}
    return truth, path, path + "UD"


def bfs_path(maze: list[str]) -> str:
    start = next((r, c) for r, row in enumerate(maze) for c, ch in enumerate(row) if ch == "S")
    parent: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        if maze[r][c] == "G":
            path, here = "", (r, c)
            while parent[here] is not None:
                here, move = parent[here]  # type: ignore[misc]
                path = move + path
            return path
        for move, (dr, dc) in {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}.items():
            nxt = (r + dr, c + dc)
            inside = 0 <= nxt[0] < len(maze) and 0 <= nxt[1] < len(maze[0])
            if inside and maze[nxt[0]][nxt[1]] != "#" and nxt not in parent:
                parent[nxt] = ((r, c), move)
                queue.append(nxt)
    raise AssertionError("no path")


def convert_graph(item: dict) -> Converted | None:
    meta = item["metadata"]
    puzzle = meta["puzzle"]
    n, edges = len(puzzle["vertices"]), [list(e) for e in puzzle["edges"]]
    if not edges:
        return None
    colors = [meta["possible_answer"][v] for v in range(n)]
    corrupt = list(colors)
    corrupt[edges[0][0]] = corrupt[edges[0][1]]
    truth = {"num_vertices": n, "num_colors": puzzle["num_colors"], "edges": edges}
    return truth, " ".join(map(str, colors)), " ".join(map(str, corrupt))


def rg_truth(statement: tuple, world: tuple[bool, ...]) -> bool:
    """Evaluate one of rg's knights-and-knaves formula trees."""
    head = statement[0]
    if head == "telling-truth":
        return world[statement[1]]
    if head == "lying":
        return not world[statement[1]]
    args = [rg_truth(s, world) for s in statement[1:]]
    ops = {"not": lambda: not args[0], "and": lambda: all(args), "or": lambda: any(args),
           "->": lambda: not args[0] or args[1], "<=>": lambda: args[0] == args[1]}  # fmt: skip
    return ops[head]()


def people_in(statement: tuple) -> list[int]:
    if statement[0] in ("telling-truth", "lying"):
        return [statement[1]]
    return sorted({p for s in statement[1:] for p in people_in(s)})


def our_statement(statement: tuple, n: int) -> list | None:
    """Our [kind, a, b] with the same truth table as rg's statement, or None."""
    people = people_in(statement)
    pairs = [(a, b) for a in people for b in people] + [(a, b) for a in people for b in range(n) if b != a]
    for kind, (truth, _, _) in STATEMENTS.items():
        for a, b in pairs:
            worlds = itertools.product((True, False), repeat=n)
            if all(truth(w[a], w[b]) == rg_truth(statement, w) for w in worlds):
                return [kind, a, b]
    return None


def convert_knights(item: dict) -> Converted | None:
    meta = item["metadata"]
    names, n = [str(name) for name in meta["names"]], len(meta["names"])
    statements = [our_statement(s, n) for s in meta["statements"]]
    if None in statements:
        return None
    terms = meta["knight_knave_terms"]
    answer = item["answer"]
    for rg_word, ours in ((terms["knight"], "knight"), (terms["knave"], "knave")):
        answer = re.sub(rf"\b{rg_word}\b", ours, answer, flags=re.IGNORECASE)
    flipped = ", ".join(
        f"{name}={'knave' if good else 'knight'}" for name, good in zip(names, meta["solution"], strict=True)
    )
    return {"names": names, "statements": statements}, answer, flipped


SYLLOGISM = re.compile(r"(All|No|Some) (\w+) are (not )?(\w+)")


def statement_of(text: str, letters: dict[str, str]) -> list[str]:
    quantifier, x, negated, y = SYLLOGISM.fullmatch(text).groups()
    form = {"All": "all", "No": "no", "Some": "some_not" if negated else "some"}[quantifier]
    return [form, letters[x], letters[y]]


def syllogism_truth(item: dict) -> dict[str, Any] | None:
    """Our ground truth for an rg syllogism (terms named S, M, P in alphabetical order), or None."""
    meta = item["metadata"]
    texts = [meta["premise1"], meta["premise2"], meta["conclusion"]]
    terms = sorted({t for text in texts for t in SYLLOGISM.fullmatch(text).group(2, 4)})
    if len(terms) != 3:
        return None
    letters = dict(zip(terms, "SMP", strict=True))
    premises = [statement_of(texts[0], letters), statement_of(texts[1], letters)]
    return {"names": {v: k for k, v in letters.items()}, "premises": premises,
            "conclusion": statement_of(texts[2], letters), "existential_import": True}  # fmt: skip


def convert_weekday(item: dict) -> Converted:
    import datetime as dt

    day = dt.date.fromisoformat(item["metadata"]["target_date"])
    truth = {"kind": "weekday", "date": day.isoformat(), "answer": day.strftime("%A")}
    other = (day + dt.timedelta(days=1)).strftime("%A")
    return truth, item["answer"], other


def convert_words(item: dict) -> Converted | None:
    meta = item["metadata"]
    words = meta["transformed_words"]
    if not all(w.isascii() and w.isalpha() for w in words) or len(set(words)) < 2:
        return None
    swapped = list(meta["sorted_words"])
    swapped[0], swapped[-1] = swapped[-1], swapped[0]
    truth = {"words": words, "descending": meta["direction"] == "descending"}
    return truth, item["answer"], ", ".join(swapped)


def convert_countdown(item: dict) -> Converted:
    meta = item["metadata"]
    truth = {"numbers": meta["numbers"], "target": meta["target"], "solution": meta["expression"]}
    return truth, item["answer"], f"({item['answer']})+{max(meta['numbers'])}"


def convert_game24(item: dict) -> Converted:
    numbers = item["metadata"]["numbers"]
    return {"numbers": numbers, "target": 24}, item["answer"], f"{numbers[0]}*{numbers[1]}"


def convert_arithmetic(item: dict) -> Converted | None:
    expression = item["metadata"]["expression"]
    if evaluate(parse(expression)) != Fraction(item["answer"]):  # rg's / is floor division: a few items differ
        assert "/" in expression, expression
        return None
    return {"expression": expression, "answer": int(item["answer"])}, item["answer"], str(int(item["answer"]) + 1)


def convert_cryptarithm(item: dict) -> Converted:
    meta = item["metadata"]
    digits = dict(meta["letter_to_digit"])
    a, b = sorted(digits)[:2]
    digits[a] = digits[b]  # two letters with one digit (a swap could be another valid solution)
    corrupt = ",".join(f"{k}={v}" for k, v in sorted(digits.items()))
    solution = ", ".join(f"{k}={v}" for k, v in sorted(meta["letter_to_digit"].items()))
    truth = {"addends": meta["words_letters"], "result": meta["result_letters"], "solution": solution}
    return truth, item["answer"], corrupt


# our task -> (rg dataset, rg config, items, converter)
CASES: dict[str, tuple[str, dict, int, Callable[[dict], Converted | None]]] = {
    "sudoku": ("sudoku", {}, 100, convert_sudoku),
    "mini_sudoku": ("mini_sudoku", {}, 100, convert_sudoku),
    "futoshiki": ("futoshiki", {"min_board_size": 4, "max_board_size": 5, "max_difficulty": 1}, 100, convert_futoshiki),
    "binary_matrix": ("binary_matrix", {}, 100, convert_binary_matrix),
    "kakurasu": ("kakurasu", {}, 100, convert_kakurasu),
    "n_queens": ("n_queens", {}, 100, convert_n_queens),
    "tower_of_hanoi": ("tower_of_hanoi", {"min_pegs": 3, "max_pegs": 3, "max_disks": 6}, 100, convert_hanoi),
    "maze": ("maze", {}, 100, convert_maze),
    "graph_coloring": ("graph_color", {}, 100, convert_graph),
    "knights_knaves": ("knights_knaves", {}, 100, convert_knights),
    "calendar_arithmetic": ("calendar_arithmetic", {"tasks": ["weekday_of_date"]}, 100, convert_weekday),
    "word_sorting": ("word_sorting", {}, 100, convert_words),
    "countdown": ("countdown", {}, 100, convert_countdown),
    "game24": ("puzzle24", {}, 25, convert_game24),  # rg builds these with sympy: about 0.1 s each
    "arithmetic": ("basic_arithmetic", {}, 100, convert_arithmetic),
    "cryptarithm": ("cryptarithm", {}, 100, convert_cryptarithm),
}
MIN_CONVERTED = {"knights_knaves": 85, "word_sorting": 80, "graph_coloring": 90, "arithmetic": 95}


def rg_items(dataset: str, config: dict, count: int) -> list[dict]:
    if dataset == "calendar_arithmetic":  # rg fixes the year per dataset: spread 100 items over 4 years
        per_year = count // 4
        years = (1911, 1987, 2000, 2036)
        return [item for y in years for item in rg.create_dataset(dataset, size=per_year, seed=y, year=y, **config)]
    return list(rg.create_dataset(dataset, size=count, seed=42, **config))


@pytest.mark.parametrize("name", sorted(CASES))
def test_reasoning_gym_reference_answers_verify(name: str) -> None:
    dataset, config, count, convert = CASES[name]
    task = get_task(name)
    converted = 0
    for item in rg_items(dataset, config, count):
        result = convert(item)
        if result is None:
            continue
        truth, answer, corrupt = result
        problem = Problem(name, problem_id(name, task.canonical_key(truth)), item["question"], truth)
        verdict = task.verify(problem, answer)
        assert verdict.correct, (item["question"], answer, verdict)
        assert not task.verify(problem, corrupt).correct, (item["question"], corrupt)
        if name != "arithmetic":  # its trace writer handles only its own expressions (no unary minus)
            trace = task.write_trace(problem, random.Random(0))
            assert task.verify(problem, trace.answer).correct, (item["question"], trace)
        converted += 1
    assert converted >= MIN_CONVERTED.get(name, count), f"only {converted} of {count} {dataset} items converted"


def test_reasoning_gym_syllogisms_agree_except_where_we_exhibit_a_counterexample() -> None:
    """rg labels some fallacies valid (e.g. All A are B, Some B are C, so Some A are C).

    Where rg says No we must say No; where rg says Yes and we say No, our trace
    must name a diagram that makes both premises true and the conclusion false,
    checked here with independent region semantics.
    """
    task = get_task("syllogism")
    agree = disagree = 0
    for item in rg.create_dataset("syllogism", size=200, seed=42):
        truth = syllogism_truth(item)
        assert truth is not None
        problem = Problem("syllogism", problem_id("syllogism", task.canonical_key(truth)), item["question"], truth)
        verdict = task.verify(problem, item["answer"])
        flipped = "No" if item["answer"] == "Yes" else "Yes"
        if verdict.correct:
            agree += 1
            assert not task.verify(problem, flipped).correct
            continue
        assert item["answer"] == "Yes" and task.verify(problem, "No").correct, item["question"]
        disagree += 1
        trace = task.write_trace(problem, random.Random(0))
        names = re.search(r"only (.*) filled", trace.thinking)[1].split(", ")
        filled = [tuple(ch.isupper() for ch in name) for name in names]  # (in S, in M, in P)
        assert all(region_holds(p, filled) for p in truth["premises"]), (item["question"], trace)
        assert not region_holds(truth["conclusion"], filled), (item["question"], trace)
        assert all(any(region[i] for region in filled) for i in range(3))
    assert agree >= 150 and agree + disagree == 200


def region_holds(statement: list[str], filled: list[tuple[bool, ...]]) -> bool:
    """A categorical statement in a diagram whose non-empty regions are ``filled``."""
    form, x, y = statement
    i, j = "SMP".index(x), "SMP".index(y)
    if form == "all":
        return not any(r[i] and not r[j] for r in filled)
    if form == "no":
        return not any(r[i] and r[j] for r in filled)
    if form == "some":
        return any(r[i] and r[j] for r in filled)
    return any(r[i] and not r[j] for r in filled)
