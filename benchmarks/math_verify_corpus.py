r"""Build an outside labelled corpus for the math verifier from math-verify's own test-suite.

The sdist of ``math-verify`` 0.9.0 on PyPI (Apache-2.0, HuggingFace) ships its regression tests:
``@pytest.mark.parametrize`` lists of ``(gold, pred, expected)`` triples written and labelled by
math-verify's authors, many taken from real model outputs (``test_numina_cases.py``: NuminaMath;
``test_open_thoughts.py``: OpenThoughts). thinkrl's authors wrote none of them. This script reads the
test files with `ast` (nothing is imported or executed) and keeps the triples whose test runs with
math-verify's default comparison settings (precision 6, strict, no set/relation comparison), so one
label means one thing for both verifiers. Rows from tests that change those settings are left out.

    pip download --no-deps --no-binary :all: math-verify==0.9.0 && tar xzf math_verify-0.9.0.tar.gz
    python benchmarks/math_verify_corpus.py math_verify-0.9.0/tests   # writes the file below

Each row: ``{"id", "source": "file::test", "reference": gold, "response": pred, "label": bool,
"match_types"}``; ``match_types`` are the extraction targets the test gives math-verify (``latex``,
``expr``): a label can depend on them (``Answer $ \n 9 \n $`` is 0 for LaTeX extraction alone), so
the benchmark runs math-verify with them.

The suite has few unequal pairs, so it is followed by *shuffled* rows: each model output of the
NuminaMath / OpenThoughts cases paired with the gold answer of the next case of the same file
(``source`` ends in ``::shuffled``). Different problems have different answers, so these are labelled
unequal by construction; every shuffled pair that either verifier accepted was then read by hand
(the list and the judgement are in docs/results/math_verify.md).
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "math_verify_tests.jsonl"
FILES = ("test_all.py", "test_boxed.py", "test_numina_cases.py", "test_open_thoughts.py", "test_yujianll.py")
# Keyword arguments of compare_strings that change math-verify's verdict policy (their defaults are kept).
_POLICY_DEFAULTS = {"precision": 6, "strict": True, "allow_set_relation_comp": False}


def _uses_defaults(func: ast.FunctionDef) -> bool:
    """True if every call in the test body passes only default policy settings (or none)."""
    for node in ast.walk(func):
        for kw in node.keywords if isinstance(node, ast.Call) else ():
            if kw.arg in _POLICY_DEFAULTS and (
                    not isinstance(kw.value, ast.Constant) or kw.value.value != _POLICY_DEFAULTS[kw.arg]):
                return False
    return True


def _match_types(func: ast.FunctionDef) -> list[str]:
    """The extraction targets the test gives math-verify (compare_strings' default: latex and expr)."""
    for node in ast.walk(func):
        for kw in node.keywords if isinstance(node, ast.Call) else ():
            if kw.arg == "match_types":
                return list(ast.literal_eval(kw.value))
    return ["latex", "expr"]


def _triples(func: ast.FunctionDef) -> list[tuple[str, str, int]]:
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize":
            names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
            if names[:2] != ["gold", "pred"] or len(names) != 3:
                return []
            rows = deco.args[1]
            assert isinstance(rows, ast.List | ast.Tuple), "parametrize rows: a list or tuple literal"
            return [tuple(ast.literal_eval(row)) for row in rows.elts]
    return []


def extract_rows(tests_dir: Path) -> list[dict]:
    """Every default-policy ``(gold, pred, expected)`` triple of the test files, in file order."""
    rows: list[dict] = []
    for name in FILES:
        tree = ast.parse((tests_dir / name).read_text(encoding="utf-8"))
        for func in tree.body:
            if not isinstance(func, ast.FunctionDef) or not _uses_defaults(func):
                continue
            for gold, pred, expected in _triples(func):
                rows.append({"id": len(rows), "source": f"{name}::{func.name}", "reference": gold,
                             "response": pred, "label": bool(expected), "match_types": _match_types(func)})
    return rows + shuffled_rows(rows, len(rows))


def shuffled_rows(rows: list[dict], first_id: int) -> list[dict]:
    """Model outputs of real problems paired with the gold answer of the next problem (labelled unequal)."""
    out: list[dict] = []
    for name in ("test_numina_cases.py", "test_open_thoughts.py"):
        group = [r for r in rows if r["source"].startswith(name) and r["label"]]
        for row, other in zip(group, group[1:] + group[:1], strict=True):
            if other["reference"] != row["reference"]:
                out.append({"id": first_id + len(out), "source": f"{name}::shuffled", "reference": other["reference"],
                            "response": row["response"], "label": False, "match_types": ["latex", "expr"]})
    for row in out:
        if (row["reference"], row["response"]) in HAND_LABELS:
            row["label"], row["note"] = HAND_LABELS[row["reference"], row["response"]]
    return out


# Shuffled pairs read by hand after a verifier accepted them: (gold, output) -> (label, why).
HAND_LABELS = {
    ("$$A:B=1$$", "$$1$$"): (True, "the two problems' answers are both 1: equal after all"),
    ("$$f(x)=1$$", "$$1$$"): (True, "the two problems' answers are both 1: equal after all"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tests_dir", type=Path, help="the tests/ folder of the unpacked math-verify sdist")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = extract_rows(args.tests_dir)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(json.dumps({"wrote": str(args.out), "rows": len(rows), "equal": sum(r["label"] for r in rows)}))


if __name__ == "__main__":
    main()
