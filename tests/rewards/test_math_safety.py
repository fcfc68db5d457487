"""Model text never reaches an evaluator: no sympify / parse_expr / eval / exec / lambdify in the sources.

The check walks each module's syntax tree (names, attributes and imports), so prose in
docstrings that mentions these names does not count, and an aliased call would still be seen.
"""

import ast
from pathlib import Path

import thinkrl.rewards.math as math_pkg

FORBIDDEN = {"sympify", "_sympify", "parse_expr", "parse_latex", "lambdify", "eval", "exec",
             "S", "pickle", "literal_eval", "latex2sympy", "__import__"}
BUILTINS = {"compile"}  # forbidden as bare names only (``re.compile`` is fine)


def forbidden_uses(source: str) -> list[str]:
    """Names, attributes and imported modules/names in ``source`` that are in `FORBIDDEN`."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN | BUILTINS:
            hits.append(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            hits.append(node.attr)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            hits += [name for name in names if name.split(".")[-1] in FORBIDDEN or name.startswith("pickle")]
    return hits


def test_no_text_evaluators_in_sources() -> None:
    sources = sorted(Path(math_pkg.__file__).parent.glob("*.py"))
    assert len(sources) >= 8
    found = {path.name: forbidden_uses(path.read_text()) for path in sources}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_check_catches_what_it_should() -> None:
    for bad in ["sympy.sympify(text)", "x = eval(s)", "exec(code)", "from sympy.parsing.sympy_parser import parse_expr",
                "sympy.S(t)", "import pickle", "f = sympy.lambdify(x, e)", "from sympy import S",
                "compile(src, 'f', 'eval')"]:
        assert forbidden_uses(bad), bad
    for fine in ["expr.evalf(30)", "x.evaluate()", "'do not eval text'", "sympy.Rational(1, 2)", "re.compile('a')"]:
        assert not forbidden_uses(fine), fine
