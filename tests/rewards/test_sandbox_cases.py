"""Test-case loaders (APPS/TACO, LiveCodeBench, HumanEval) and output matching: pure, no sandbox."""

import base64
import json
import pickle
import zlib

import pytest

from thinkrl.rewards.sandbox import (
    CodeTests,
    TestCase,
    call_matches,
    stdout_matches,
    tests_from_apps,
    tests_from_humaneval,
    tests_from_livecodebench,
    values_match,
)

# --- matching -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("got", "want", "ok"), [
    ("3\n", "3", True),
    ("1 2 \n3\n\n\n", "1 2\n3\n", True),        # trailing spaces and blank lines
    ("1 2\n3\n", "1 2 3", True),                # same tokens, other line breaks
    ("0.3333333\n", "0.33333333", True),        # within 1e-6
    ("0.334\n", "0.333", False),
    ("1\n", "1.0", True),                       # int vs float literal: numeric
    ("100000000000000000001", "100000000000000000000", False),  # big ints exact
    ("YES", "yes", False),                      # case matters
    ("", "0", False),
    ("nan", "nan", True),
    ("inf", "1e308", False),
])
def test_stdout_matches(got, want, ok):
    assert stdout_matches(got, want) is ok


@pytest.mark.parametrize(("got", "want", "ok"), [
    ([1, 2], [1, 2], True),
    ([1, 2], (1, 2), True),
    ([[1.0000000001]], [[1.0]], True),
    (True, 1, False),                           # bool is not a number
    (1, True, False),
    ({"a": [1]}, {"a": [1]}, True),
    ({"a": 1}, {"b": 1}, False),
    ("x", "x", True),
    (None, None, True),
    (None, [], False),
])
def test_values_match(got, want, ok):
    assert values_match(got, want) is ok


def test_call_matches_unwraps_apps_single_element_lists():
    assert call_matches(7, [7])
    assert call_matches([7], [7])
    assert not call_matches(7, [7, 7])
    assert not call_matches(8, [7])


# --- APPS / TACO --------------------------------------------------------------------------------------------


def test_apps_stdio_from_json_string_joins_line_lists():
    row = {"input_output": json.dumps({"inputs": ["1 2\n", ["3 4", "5"]], "outputs": ["3\n", ["7", "5"]]})}
    tests = tests_from_apps(row)
    assert tests.kind == "stdio" and tests.total == 2
    assert tests.cases[1] == TestCase("3 4\n5", "7\n5")


def test_apps_call_based_wraps_scalar_inputs():
    tests = tests_from_apps({"inputs": [[1, 2], 5], "outputs": [[3], [5]], "fn_name": "f"})
    assert tests.kind == "call" and tests.fn_name == "f"
    assert tests.cases == (TestCase([1, 2], [3]), TestCase([5], [5]))


@pytest.mark.parametrize(("row", "message"), [
    ({"input_output": "{not json"}, "not valid JSON"),
    ({"inputs": ["1"]}, "need 'inputs' and 'outputs'"),
    ({"inputs": ["1", "2"], "outputs": ["1"]}, "equal length"),
    ({"inputs": [], "outputs": []}, "no cases"),
    ({"inputs": [1], "outputs": ["1"]}, "inputs\\[0\\] must be a string"),
    ({"inputs": [[1]], "outputs": [1], "fn_name": 3}, "'fn_name' must be a string"),
])
def test_apps_bad_rows_name_the_problem(row, message):
    with pytest.raises(ValueError, match=message):
        tests_from_apps(row)


def test_apps_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        tests_from_apps(["inputs"])


# --- LiveCodeBench ------------------------------------------------------------------------------------------


def _lcb_compress(tests):
    """LiveCodeBench's own encoding of private tests: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_livecodebench_stdin_public_and_compressed_private():
    public = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    private = [{"input": "5\n", "output": "6\n", "testtype": "stdin"}] * 2
    row = {"public_test_cases": json.dumps(public), "private_test_cases": _lcb_compress(private),
           "metadata": "{}"}
    tests = tests_from_livecodebench(row)
    assert tests.kind == "stdio"
    assert [c.input for c in tests.cases] == ["1\n", "5\n", "5\n"]
    assert tests_from_livecodebench(row, private=False).total == 1


def test_livecodebench_functional_parses_one_json_argument_per_line():
    public = [{"input": '[2, 7, 11]\n9', "output": "[0, 1]", "testtype": "functional"}]
    row = {"public_test_cases": public, "metadata": json.dumps({"func_name": "twoSum"})}
    tests = tests_from_livecodebench(row)
    assert tests.kind == "call" and tests.fn_name == "twoSum"
    assert tests.cases == (TestCase([[2, 7, 11], 9], [0, 1]),)


def test_livecodebench_private_pickle_with_code_is_refused_not_unpickled():
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    blob = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    row = {"public_test_cases": "[]", "private_test_cases": blob}
    with pytest.raises(ValueError, match="more than a string"):
        tests_from_livecodebench(row)


@pytest.mark.parametrize(("row", "message"), [
    ({}, "needs 'public_test_cases'"),
    ({"public_test_cases": "[]"}, "no tests"),
    ({"public_test_cases": "[{"}, "neither JSON|not valid JSON"),
    ({"public_test_cases": [{"input": "1", "output": "1", "testtype": "stdin"},
                            {"input": "1", "output": "1", "testtype": "functional"}]}, "one testtype"),
    ({"public_test_cases": [{"input": "1", "output": "1", "testtype": "functional"}]}, "func_name"),
    ({"public_test_cases": [{"input": "x", "output": "1", "testtype": "functional"}],
      "metadata": {"func_name": "f"}}, "must be JSON values"),
    ({"public_test_cases": [{"input": 1, "output": "1", "testtype": "stdin"}]}, "string 'input' and 'output'"),
])
def test_livecodebench_bad_rows_name_the_problem(row, message):
    with pytest.raises(ValueError, match=message):
        tests_from_livecodebench(row)


# --- HumanEval and CodeTests --------------------------------------------------------------------------------


def test_humaneval_harness_calls_check_on_entry_point():
    tests = tests_from_humaneval({"test": "def check(f):\n    assert f(1) == 2\n", "entry_point": "inc"})
    assert tests.kind == "script" and tests.total == 1
    assert tests.harness.rstrip().endswith("check(inc)")


@pytest.mark.parametrize("problem", [{"test": "x"}, {"test": "x", "entry_point": "a b"}])
def test_humaneval_bad_problems(problem):
    with pytest.raises(ValueError):
        tests_from_humaneval(problem)


def test_code_tests_validation():
    with pytest.raises(ValueError, match="fn_name"):
        CodeTests("stdio", (TestCase("", ""),), fn_name="f")
    with pytest.raises(ValueError, match="fn_name"):
        CodeTests("call", (TestCase([], 1),))
    with pytest.raises(ValueError, match="kind"):
        CodeTests("docker", (TestCase("", ""),))
    with pytest.raises(ValueError, match="at least one case"):
        CodeTests("stdio")
    with pytest.raises(TypeError, match="list of arguments"):
        CodeTests("call", (TestCase(3, 1),), fn_name="f")
    with pytest.raises(ValueError, match="harness"):
        CodeTests("script")
