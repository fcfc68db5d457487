"""Test cases for code problems, their loaders (APPS/TACO, LiveCodeBench, HumanEval) and output matching.

Three kinds of `CodeTests`:

- ``stdio``: each case feeds ``input`` (text) on stdin; passes when stdout matches ``expected`` (text).
- ``call``: each case calls ``fn_name(*input)`` (a top-level function, or a method of ``class Solution``);
  passes when the return value matches ``expected`` (JSON-like).
- ``script``: one case; ``harness`` (e.g. HumanEval's ``check`` plus its call) runs after the solution
  in the same program; passes when the program ends normally after the harness.

Expected outputs never enter the sandbox: matching happens in the parent.
"""

from __future__ import annotations

import base64
import json
import math
import pickletools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["stdio", "call", "script"]


@dataclass(frozen=True)
class TestCase:
    """One test: ``input`` is stdin text (stdio) or the positional arguments (call); ``expected`` likewise."""

    __test__ = False  # not a pytest class

    input: Any
    expected: Any


@dataclass(frozen=True)
class CodeTests:
    """The tests of one code problem.

    Fields:
        kind: ``"stdio"``, ``"call"`` or ``"script"`` (see the module docstring).
        cases: the test cases (empty for ``script``).
        fn_name: the function to call (``call`` only).
        harness: code appended to the solution (``script`` only).
    """

    __test__ = False

    kind: Kind
    cases: tuple[TestCase, ...] = ()
    fn_name: str | None = None
    harness: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("stdio", "call", "script"):
            raise ValueError(f"kind must be 'stdio', 'call' or 'script', got {self.kind!r}")
        if self.kind == "script":
            if not self.harness or self.cases:
                raise ValueError("script tests need a non-empty harness and no cases")
            return
        if not self.cases:
            raise ValueError(f"{self.kind} tests need at least one case")
        if (self.kind == "call") != bool(self.fn_name):
            raise ValueError(f"fn_name must be set exactly for call tests "
                             f"(kind={self.kind!r}, fn_name={self.fn_name!r})")
        for i, case in enumerate(self.cases):
            if self.kind == "stdio" and not (isinstance(case.input, str) and isinstance(case.expected, str)):
                raise TypeError(f"stdio case {i}: input and expected must be str")
            if self.kind == "call" and not isinstance(case.input, list):
                raise TypeError(f"call case {i}: input must be a list of arguments, got {type(case.input).__name__}")

    @property
    def total(self) -> int:
        """How many tests count towards the pass fraction (1 for a script)."""
        return 1 if self.kind == "script" else len(self.cases)


# --- output matching ----------------------------------------------------------------------------------------


def _is_int(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def _tokens_match(got: str, want: str, tol: float) -> bool:
    if got == want:
        return True
    if _is_int(got) and _is_int(want):
        return int(got) == int(want)
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def stdout_matches(got: str, expected: str, tol: float = 1e-6) -> bool:
    """Whether program output ``got`` answers ``expected``.

    Lines are compared after stripping surrounding whitespace, ignoring blank lines at the end; if that
    fails, whitespace-separated tokens are compared, numbers (with a decimal point or exponent) within
    ``tol`` relative or absolute. Integers must match exactly.
    """
    got_lines = [ln.strip() for ln in got.strip().splitlines()]
    want_lines = [ln.strip() for ln in expected.strip().splitlines()]
    if got_lines == want_lines:
        return True
    got_tokens, want_tokens = got.split(), expected.split()
    return len(got_tokens) == len(want_tokens) and all(
        _tokens_match(g, w, tol) for g, w in zip(got_tokens, want_tokens, strict=True))


def values_match(got: Any, expected: Any, tol: float = 1e-6) -> bool:
    """Whether a returned value (JSON-decoded) equals ``expected``: lists/tuples elementwise, floats within
    ``tol``, dicts by key; bools are not numbers (``True != 1``)."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, int | float) and isinstance(expected, int | float):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return math.isclose(got, expected, rel_tol=tol, abs_tol=tol) or got == expected
    if isinstance(got, list | tuple) and isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(values_match(g, e, tol) for g, e in zip(got, expected, strict=True))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(values_match(got[k], expected[k], tol) for k in got)
    return got == expected


def call_matches(got: Any, expected: Any) -> bool:
    """APPS/TACO call-based rule: the value matches ``expected``, or its only element when ``expected``
    is a one-element list (APPS wraps many outputs as ``[answer]``)."""
    if values_match(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and values_match(got, expected[0])


# --- loaders ---------------------------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)  # APPS sometimes stores a stdin or stdout as a list of lines
    raise ValueError(f"{what} must be a string or a list of strings, got {type(value).__name__}")


def _json_field(row: Mapping[str, Any], key: str) -> Any:
    value = row[key]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"field {key!r} is not valid JSON: {exc}") from None
    return value


def tests_from_apps(row: Mapping[str, Any]) -> CodeTests:
    """Tests from an APPS/TACO row: ``{"input_output": '{"inputs": [...], "outputs": [...], "fn_name"?: ...}'}``
    (a JSON string or a dict), or that inner dict itself.

    With ``fn_name`` each input is the list of arguments and each output the return value (often wrapped
    as ``[value]``); without it inputs and outputs are stdin and stdout text.
    """
    if not isinstance(row, Mapping):
        raise TypeError(f"row must be a mapping, got {type(row).__name__}")
    spec = _json_field(row, "input_output") if "input_output" in row else row
    if not isinstance(spec, Mapping) or "inputs" not in spec or "outputs" not in spec:
        raise ValueError("APPS tests need 'inputs' and 'outputs' (in 'input_output' or at the top level)")
    inputs, outputs = spec["inputs"], spec["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise ValueError(f"'inputs' and 'outputs' must be lists of equal length, got "
                         f"{type(inputs).__name__}/{type(outputs).__name__}")
    if not inputs:
        raise ValueError("APPS tests have no cases")
    fn_name = spec.get("fn_name")
    if fn_name:
        if not isinstance(fn_name, str):
            raise ValueError(f"'fn_name' must be a string, got {type(fn_name).__name__}")
        cases = tuple(TestCase(x if isinstance(x, list) else [x], y) for x, y in zip(inputs, outputs, strict=True))
        return CodeTests("call", cases, fn_name=fn_name)
    cases = tuple(TestCase(_text(x, f"inputs[{i}]"), _text(y, f"outputs[{i}]"))
                  for i, (x, y) in enumerate(zip(inputs, outputs, strict=True)))
    return CodeTests("stdio", cases)


def _unpickle_string(data: bytes) -> str:
    """The one string in a pickle of a ``str`` (LiveCodeBench's private tests), read without unpickling."""
    strings = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("PROTO", "FRAME", "MEMOIZE", "STOP", "PUT", "BINPUT", "LONG_BINPUT"):
            continue
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE") and isinstance(arg, str):
            strings.append(arg)
            continue
        raise ValueError(f"private tests pickle holds more than a string (opcode {opcode.name})")
    if len(strings) != 1:
        raise ValueError("private tests pickle must hold exactly one string")
    return strings[0]


def _lcb_cases(value: Any, key: str) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):  # LiveCodeBench ships private tests as base64(zlib(pickle(json)))
            try:
                text = _unpickle_string(zlib.decompress(base64.b64decode(text, validate=True)))
            except (ValueError, zlib.error) as exc:
                raise ValueError(f"field {key!r} is neither JSON nor LiveCodeBench's compressed form: {exc}") from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"field {key!r} is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise ValueError(f"field {key!r} must be a list of tests, got {type(value).__name__}")
    return value


def _lcb_args(text: str, i: int) -> list[Any]:
    try:
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    except ValueError as exc:
        raise ValueError(f"functional test {i}: input lines must be JSON values: {exc}") from None


def tests_from_livecodebench(row: Mapping[str, Any], private: bool = True) -> CodeTests:
    """Tests from a LiveCodeBench row: ``public_test_cases`` (and ``private_test_cases`` when ``private``),
    each a list of ``{"input", "output", "testtype": "stdin" | "functional"}`` as JSON text (private tests
    may be in LiveCodeBench's compressed form); functional tests take ``func_name`` from ``metadata``.
    Functional inputs are one JSON value per line (the arguments); outputs are one JSON value.
    """
    if not isinstance(row, Mapping):
        raise TypeError(f"row must be a mapping, got {type(row).__name__}")
    if "public_test_cases" not in row:
        raise ValueError("LiveCodeBench row needs 'public_test_cases'")
    raw = _lcb_cases(row["public_test_cases"], "public_test_cases")
    if private and row.get("private_test_cases"):
        raw = [*raw, *_lcb_cases(row["private_test_cases"], "private_test_cases")]  # never extend the caller's list
    if not raw:
        raise ValueError("LiveCodeBench row has no tests")
    types = {t.get("testtype") if isinstance(t, Mapping) else None for t in raw}
    if len(types) != 1 or not types <= {"stdin", "functional"}:
        raise ValueError(f"tests must all have one testtype, 'stdin' or 'functional', got {sorted(map(str, types))}")
    for i, t in enumerate(raw):
        if not isinstance(t.get("input"), str) or not isinstance(t.get("output"), str):
            raise ValueError(f"test {i} needs string 'input' and 'output'")
    if types == {"stdin"}:
        return CodeTests("stdio", tuple(TestCase(t["input"], t["output"]) for t in raw))
    meta = _json_field(row, "metadata") if "metadata" in row else {}
    fn_name = meta.get("func_name") if isinstance(meta, Mapping) else None
    if not isinstance(fn_name, str) or not fn_name:
        raise ValueError("functional LiveCodeBench tests need metadata['func_name']")
    cases = []
    for i, t in enumerate(raw):
        try:
            expected = json.loads(t["output"])
        except ValueError as exc:
            raise ValueError(f"functional test {i}: output must be a JSON value: {exc}") from None
        cases.append(TestCase(_lcb_args(t["input"], i), expected))
    return CodeTests("call", tuple(cases), fn_name=fn_name)


def tests_from_humaneval(problem: Mapping[str, Any]) -> CodeTests:
    """A script test from a HumanEval problem: its ``test`` code, then ``check(entry_point)``."""
    for key in ("test", "entry_point"):
        if not isinstance(problem.get(key), str) or not problem[key]:
            raise ValueError(f"HumanEval problem needs a non-empty string {key!r}")
    if not problem["entry_point"].isidentifier():
        raise ValueError(f"entry_point must be an identifier, got {problem['entry_point']!r}")
    return CodeTests("script", harness=f"\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n")



# pytest collects module-level callables named ``test*``; these loaders are not tests (mypy cannot type an
# attribute set on a function, hence the ignores).
tests_from_apps.__test__ = False  # type: ignore[attr-defined]
tests_from_livecodebench.__test__ = False  # type: ignore[attr-defined]
tests_from_humaneval.__test__ = False  # type: ignore[attr-defined]
