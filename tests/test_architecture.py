"""The layering of docs/architecture.md holds: which package may import which, no cycle between packages, and no
module over 400 lines. Checked on the source (every import statement, lazy ones inside functions included)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "thinkrl"
SHARED = {"registry", "records", "spec"}
"""Leaf modules anyone may import: the registry, the record types, the config-section base."""
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "tokenizer": set(),
    "tasks": set(),
    "rl": set(),
    "engine": {"model", "tokenizer"},
    "rewards": {"tasks", "engine", "model", "tokenizer"},
    "rollout": {"engine", "model", "tasks", "rewards", "tokenizer", "rl"},
    "eval": {"rollout", "engine", "model", "rewards", "tasks", "tokenizer"},
    "train": {"rollout", "rl", "model", "tokenizer", "tasks", "eval", "tune"},
    "serve": {"engine", "model", "tokenizer"},
    "tune": {"model"},
    "launch": {"train", "rollout", "engine", "model", "tokenizer", "tasks", "rl", "eval"},
    "experiments": {"train", "eval", "rollout", "engine", "model", "tokenizer", "tasks", "rl"},
    "records": {"tasks"},
    "spec": set(),
    "registry": set(),
}
"""Package -> the thinkrl packages it may import (besides SHARED). cli.py and bench.py may import anything."""


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        package = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "thinkrl" and len(parts) > 1 and parts[1] != package:
                    edges[package][parts[1]].append(str(rel))
    return edges


def test_every_package_imports_only_what_the_layering_allows() -> None:
    edges = _package_imports()
    assert set(edges) - {"cli", "bench"} <= set(ALLOWED), f"packages missing from the table: {set(edges)}"
    bad = [f"{package} imports {target} ({', '.join(sorted(set(files)))})"
           for package, targets in edges.items() if package not in ("cli", "bench")
           for target, files in targets.items() if target not in ALLOWED[package] | SHARED - {package}]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_packages() -> None:
    edges = {p: set(t) for p, t in _package_imports().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*path, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for package in sorted(edges):
        if package not in state:
            visit(package, [])


def test_train_talks_to_the_engine_only_through_the_rollout_client() -> None:
    assert "engine" not in _package_imports()["train"]


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, long
