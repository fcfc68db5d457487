"""External datasets: JSONL/Parquet loaders for math and code problems, their errors, and their checkers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from thinkrl.tasks import TASKS, Verdict
from thinkrl.tasks.dataset import read_jsonl, write_jsonl
from thinkrl.tasks.external import (
    DATASET_TASKS,
    MathTask,
    load_code_dataset,
    load_math_dataset,
    read_rows,
)

pytestmark = pytest.mark.filterwarnings("ignore:sandbox:RuntimeWarning")

MATH_ROWS = [
    {"problem": "Find $x$ if $x + 3 = 20$.", "answer": 17, "id": "a1"},
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$? Use {braces} freely.", "answer": "\\frac{3}{4}", "id": "a2"},
    {"problem": "Find $x$ if $x + 3 = 20$.", "answer": 17, "id": "a3"},  # duplicate of the first
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_math_jsonl_and_parquet_give_the_same_problems(tmp_path: Path) -> None:
    from_jsonl = load_math_dataset(_jsonl(tmp_path / "m.jsonl", MATH_ROWS))
    rows = [dict(r, answer=str(r["answer"])) for r in MATH_ROWS]  # Parquet columns have one type
    from_parquet = load_math_dataset(_parquet(tmp_path / "m.parquet", rows))
    assert from_jsonl == from_parquet and len(from_jsonl) == 2  # the duplicate is dropped
    first, second = from_jsonl
    assert first.task == "math" and first.ground_truth == {"answer": "17"} and first.difficulty == {}
    assert first.prompt == "Find $x$ if $x + 3 = 20$.\n\nPut your final answer within \\boxed{}."
    assert "{braces}" in second.prompt and first.id != second.id and len(first.id) == 16
    write_jsonl(from_jsonl, tmp_path / "problems.jsonl")
    assert read_jsonl(tmp_path / "problems.jsonl") == from_jsonl


def test_math_options_keys_ids_and_template(tmp_path: Path) -> None:
    rows = [{"Problem": "2+2?", "Answer": "4", "ID": "2024-I-1"}]
    path = _jsonl(tmp_path / "aime.jsonl", rows)
    (problem,) = load_math_dataset(path, problem_key="Problem", answer_key="Answer", id_key="ID",
                                   prompt_template="Q: {problem} A:")
    assert problem.prompt == "Q: 2+2? A:" and problem.ground_truth == {"answer": "4", "source_id": "2024-I-1"}
    with pytest.raises(ValueError, match=r"aime.jsonl:line 1: missing field 'answer' .*did you mean 'Answer'"):
        load_math_dataset(path, problem_key="Problem")
    with pytest.raises(ValueError, match="prompt_template"):
        load_math_dataset(path, prompt_template="no placeholder")


@pytest.mark.parametrize(("lines", "message"), [
    (['{"problem": "p", "answer": 1}', '{"problem": "q"}'], r"bad.jsonl:line 2: missing field 'answer'"),
    (['{"problem": "p", "answer": 1}', "{not json"], r"bad.jsonl:line 2: invalid JSON"),
    (["[1, 2]"], r"bad.jsonl:line 1: expected a JSON object, got list"),
    (['{"problem": "", "answer": 1}'], r"line 1: field 'problem' must be a non-empty string"),
    (['{"problem": "p", "answer": true}'], r"line 1: field 'answer' must be a string or a number, got bool"),
    (['{"problem": "p", "answer": null}'], r"line 1: field 'answer' is null"),
    (['{"problem": "p", "answer": "  "}'], r"line 1: field 'answer' is empty"),
])
def test_malformed_math_rows_name_file_line_and_field(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_math_dataset(path)


def test_parquet_errors_name_the_row_and_files_are_checked(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "bad.parquet", [{"problem": "p", "answer": "1"}, {"problem": "q", "answer": None}])
    with pytest.raises(ValueError, match=r"bad.parquet:row 2: field 'answer' is null"):
        load_math_dataset(path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_math_dataset(tmp_path / "missing.jsonl")
    (tmp_path / "data.csv").write_text("problem,answer\n")
    with pytest.raises(ValueError, match=r"\.jsonl, \.parquet, got '\.csv'"):
        list(read_rows(tmp_path / "data.csv"))


def test_parquet_without_pyarrow_is_a_clear_import_error(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "m.parquet", [{"problem": "p", "answer": "1"}])
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
            "from thinkrl.tasks.external import load_math_dataset\n"
            f"try:\n    load_math_dataset({str(path)!r})\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs pyarrow (pip install pyarrow)" in out


def test_external_module_imports_neither_torch_nor_rewards() -> None:
    code = ("import sys, thinkrl.tasks.external\n"
            "print([m for m in sys.modules if m == 'torch' or m.startswith(('thinkrl.rewards', 'pyarrow'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dataset_tasks_are_separate_from_procedural_tasks() -> None:
    assert set(DATASET_TASKS.names()) == {"code", "math"} and not set(DATASET_TASKS.names()) & set(TASKS.names())
    calls = []

    def checker(ground_truth, answer):
        calls.append((ground_truth, answer))
        return Verdict.right("by the injected checker")

    task = MathTask(checker)
    assert task.verify({"answer": "1"}, "\\boxed{1}").detail == "by the injected checker"
    assert calls == [({"answer": "1"}, "\\boxed{1}")]
    assert task.verify({"answer": "1"}, "   ").reason == "no answer" and len(calls) == 1
    with pytest.raises(ValueError, match="no generator"):
        task.generate(__import__("random").Random(0))
    with pytest.raises(ValueError, match="no solution traces"):
        task.write_trace(None, None)
    with pytest.raises(TypeError, match="checker must be callable"):
        MathTask("not a function")


# --- code ----------------------------------------------------------------------------------------------------

APPS_STDIO = {"question": "Read two integers and print their sum.",
              "input_output": json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})}
APPS_CALL = {"question": "Return the square of n.", "starter_code": "def square(n):\n",
             "input_output": {"inputs": [[3], [4]], "outputs": [[9], [16]], "fn_name": "square"}}
LCB = {"question_content": "Print n doubled.",
       "public_test_cases": json.dumps([{"input": "4\n", "output": "8\n", "testtype": "stdin"}]),
       "private_test_cases": json.dumps([{"input": "0\n", "output": "0\n", "testtype": "stdin"}]),
       "metadata": "{}"}
HUMANEVAL = {"prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n", "entry_point": "add",
             "test": "def check(f):\n    assert f(1, 2) == 3\n"}


def test_code_rows_of_every_format(tmp_path: Path) -> None:
    from thinkrl.rewards.external import code_tests

    path = _jsonl(tmp_path / "code.jsonl", [APPS_STDIO, APPS_CALL, LCB, HUMANEVAL])
    stdio, call, lcb, humaneval = load_code_dataset(path, check_tests=code_tests)
    assert all(p.task == "code" for p in (stdio, call, lcb, humaneval))
    assert stdio.ground_truth == {"format": "apps", "input_output": {"inputs": ["1 2\n", "5 7\n"],
                                                                      "outputs": ["3\n", "12\n"]}}
    assert "standard input" in stdio.prompt and "```python" in stdio.prompt
    assert "Implement `square`" in call.prompt and "def square(n):" in call.prompt
    assert lcb.ground_truth["format"] == "livecodebench" and lcb.ground_truth["public_test_cases"][0]["output"] == "8\n"
    assert "Complete the function `add`" in humaneval.prompt
    assert code_tests(lcb.ground_truth).total == 2 and code_tests(call.ground_truth).fn_name == "square"
    parquet_rows = [APPS_STDIO, {"question": "q2", "input_output": APPS_STDIO["input_output"]}]
    assert load_code_dataset(_parquet(tmp_path / "c.parquet", parquet_rows))[0] == stdio


@pytest.mark.parametrize(("row", "message"), [
    ({"question": "q"}, r"line 1: cannot tell the test format; expected 'input_output'"),
    ({"input_output": "{}", "question": "q"}, r"line 1: field 'input_output.inputs' must be a list"),
    ({"input_output": {"inputs": ["1"], "outputs": []}, "question": "q"}, r"as many outputs as inputs"),
    ({"input_output": "{oops", "question": "q"}, r"line 1: field 'input_output' is not valid JSON"),
    ({"input_output": {"inputs": ["1"], "outputs": ["1"]}}, r"line 1: missing field 'question'"),
    ({"question_content": "q", "public_test_cases": "[]"}, r"'public_test_cases' must be a non-empty list"),
    ({"question_content": "q", "public_test_cases": [{"input": "1"}]}, r"'public_test_cases\[0\]' needs string"),
    ({"prompt": "p", "test": "t", "entry_point": "not valid"}, r"'entry_point' must be an identifier"),
])
def test_malformed_code_rows(tmp_path: Path, row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_code_dataset(_jsonl(tmp_path / "c.jsonl", [row]))


def test_check_tests_catches_what_the_structure_check_cannot(tmp_path: Path) -> None:
    from thinkrl.rewards.external import code_tests

    functional = {"question_content": "q", "public_test_cases": [{"input": "1", "output": "2",
                                                                  "testtype": "functional"}]}
    path = _jsonl(tmp_path / "c.jsonl", [APPS_STDIO, functional])
    assert len(load_code_dataset(path)) == 2  # structurally fine...
    with pytest.raises(ValueError, match=r"c.jsonl:line 2: bad tests: .*func_name"):
        load_code_dataset(path, check_tests=code_tests)  # ...but has no function name to call


# --- checkers (thinkrl.rewards.external) ----------------------------------------------------------------------


def test_math_task_verifies_with_the_math_verifier(tmp_path: Path) -> None:
    from thinkrl.rewards.external import task_for

    first, second = load_math_dataset(_jsonl(tmp_path / "m.jsonl", MATH_ROWS))
    task = task_for("math")
    assert task is task_for("math") and isinstance(task, MathTask)
    assert task.verify(first, "x = 20 - 3, so the answer is \\boxed{17}.").correct
    assert task.verify(second, "\\boxed{0.75}").correct  # LaTeX-aware: 3/4 == 0.75
    wrong = task.verify(second, "\\boxed{0.7}")
    assert (wrong.reason, wrong.detail) == ("wrong value", "wrong: value: 0.7")
    assert task.verify(first, "I am not sure.").reason in ("no answer", "wrong value")
    assert task_for("countdown").name == "countdown"
    with pytest.raises(KeyError, match="unknown task 'chess'; registered: .*code.*math"):
        task_for("chess")


def test_code_task_runs_the_tests_in_the_sandbox(tmp_path: Path) -> None:
    from thinkrl.rewards import score_response
    from thinkrl.rewards.external import task_for
    from thinkrl.tokenizer import SEED_TAGS

    stdio, call = load_code_dataset(_jsonl(tmp_path / "code.jsonl", [APPS_STDIO, APPS_CALL]))
    task = task_for("code")
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert task.verify(stdio, right).correct
    wrong = task.verify(stdio, "```python\nprint(3)\n```")
    assert wrong.reason == "wrong value" and wrong.detail.startswith("test 1: wrong_answer")
    assert task.verify(call, "```python\ndef square(n):\n    return n * n\n```").correct
    text = "<seed:think>add them</seed:think>" + right
    assert score_response(task, stdio, text, SEED_TAGS, finished=True).correct
