"""Dataset generation (disjoint splits, dedup), JSONL I/O and the real `thinkrl data` command."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from cli_runner import run_thinkrl
from thinkrl.tasks import TASKS, get_task
from thinkrl.tasks.dataset import generate_dataset, read_jsonl, split_of, write_jsonl


def test_split_of_follows_the_hash_bucket() -> None:
    assert split_of("0000000000000000") == "test"  # bucket 0
    assert split_of(f"{9:016x}") == "test" and split_of(f"{10:016x}") == "train"
    assert split_of(f"{10:016x}", test_percent=11) == "test"
    assert split_of(f"{99:016x}", test_percent=100) == "test"
    assert split_of("0000000000000000", test_percent=0) == "train"
    with pytest.raises(ValueError, match="hex"):
        split_of("not-hex")
    with pytest.raises(ValueError, match="test_percent"):
        split_of("00", test_percent=101)


@pytest.mark.parametrize("name", ["countdown", "game24", "arithmetic"])
def test_splits_never_overlap_whatever_the_seeds(name: str) -> None:
    task = get_task(name)
    train = generate_dataset(name, 200, seed=1, split="train", test_percent=20)
    test = generate_dataset(name, 40, seed=1, split="test", test_percent=20)  # same seed on purpose
    more_test = generate_dataset(name, 40, seed=2, split="test", test_percent=20)
    assert len(train) == 200 and len({p.id for p in train}) == 200  # deduplicated
    keys = {split: {task.canonical_key(p.ground_truth) for p in ps} for split, ps in [("train", train), ("test", test)]}
    assert not keys["train"] & keys["test"]  # disjoint by content, not only by id
    assert not keys["train"] & {task.canonical_key(p.ground_truth) for p in more_test}
    for problem in test + more_test:  # the id is the content hash, the split is its bucket
        expected = hashlib.sha256(f"{name}\n{task.canonical_key(problem.ground_truth)}".encode()).hexdigest()[:16]
        assert problem.id == expected and int(expected, 16) % 100 < 20


def test_same_problem_in_another_order_gets_the_same_id() -> None:
    task = get_task("countdown")
    a = {"numbers": [25, 4, 3, 7], "target": 97, "solution": "25*4-3"}
    b = {"numbers": [7, 3, 25, 4], "target": 97, "solution": "4*25-3"}
    assert task.canonical_key(a) == task.canonical_key(b)


def test_generate_dataset_is_deterministic_and_validates() -> None:
    first = generate_dataset("countdown", 20, seed=3, split="train", difficulty={"num_numbers": 5})
    assert first == generate_dataset("countdown", 20, seed=3, split="train", difficulty={"num_numbers": 5})
    assert all(len(p.ground_truth["numbers"]) == 5 for p in first)
    with pytest.raises(ValueError, match="split"):
        generate_dataset("countdown", 5, seed=0, split="dev")
    with pytest.raises(ValueError, match="'bogus'"):
        generate_dataset("countdown", 5, seed=0, split="train", difficulty={"bogus": 1})
    with pytest.raises(ValueError, match="leaves no problems"):
        generate_dataset("countdown", 5, seed=0, split="test", test_percent=0)


def test_asking_for_more_problems_than_exist_fails_clearly() -> None:
    # game24 with numbers 1..4 has only a handful of distinct solvable hands.
    with pytest.raises(ValueError, match="found only"):
        generate_dataset("game24", 50, seed=0, split="train", difficulty={"max_number": 4})


def test_a_used_up_problem_space_fails_without_drawing_50_per_problem_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    task, calls = get_task("arithmetic"), []
    generate = task.generate
    monkeypatch.setattr(task, "generate", lambda rng, **knobs: calls.append(1) or generate(rng, **knobs))
    with pytest.raises(ValueError) as error:  # 9 distinct train problems, 10_000 asked: 501_000 draws before
        generate_dataset(task, 10_000, seed=0, split="train", difficulty={"num_terms": 2, "max_number": 2})
    assert str(error.value).startswith(f"found only 9 distinct train problems of 'arithmetic' in {len(calls)} draws "
                                       "(asked for 10000)")
    assert len(calls) < 2000  # 50 x (9 + 1) + 1000 draws in a row brought nothing new


def test_a_problem_of_an_unknown_task_is_refused_at_load(tmp_path: Path) -> None:
    good = generate_dataset("arithmetic", 1, seed=0, split="train")[0].to_dict()
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "task": "chess"}) + "\n")
    with pytest.raises(ValueError) as error:
        read_jsonl(path)
    assert str(error.value).startswith(f"{path}:line 2: unknown task 'chess'; registered: arithmetic, ")
    assert "code" in str(error.value) and "math" in str(error.value)  # the file-loaded dataset tasks too


def test_jsonl_round_trip(tmp_path: Path) -> None:
    problems = generate_dataset("game24", 10, seed=0, split="train")
    path = tmp_path / "g.jsonl"
    assert write_jsonl(problems, path) == 10
    assert read_jsonl(path) == problems
    assert all(line.isascii() for line in path.read_text().splitlines())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"task": "game24", "id": "ab", "ground_truth": {}, "difficulty": {}}', "missing field 'prompt'"),
        (
            '{"task": "game24", "id": "ab", "prompt": "p", "ground_truth": [], "difficulty": {}}',
            "'ground_truth' must be dict",
        ),
        ('{"task": 3, "id": "ab", "prompt": "p", "ground_truth": {}, "difficulty": {}}', "'task' must be str"),
        ('{"task": "t", "id": "ab", "prompt": "p", "ground_truth": {}, "difficulty": {}, "x": 1}', "unknown field"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps(generate_dataset("arithmetic", 1, seed=0, split="train")[0].to_dict())
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        read_jsonl(path)
    assert f"{path}:line 3:" in str(error.value)


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    # before: UnicodeDecodeError's own message, naming neither the file nor the line
    good = json.dumps(generate_dataset("arithmetic", 1, seed=0, split="train")[0].to_dict())
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(f"{good}\n".encode() + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=f"{path}:line 2: not UTF-8 text \\(invalid continuation byte at byte 15\\)"):
        read_jsonl(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_thinkrl("data", *args, timeout=60)


def test_cli_writes_valid_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = run_cli(
        "countdown",
        "--n",
        "7",
        "--seed",
        "5",
        "--split",
        "test",
        "--difficulty",
        "num_numbers=3",
        "max_target=50",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    problems = read_jsonl(out)
    assert len(problems) == 7 and all(split_of(p.id) == "test" for p in problems)
    assert all(len(p.ground_truth["numbers"]) == 3 and p.ground_truth["target"] <= 50 for p in problems)
    assert problems == generate_dataset("countdown", 7, 5, "test", {"num_numbers": 3, "max_target": 50})
    task = get_task("countdown")
    assert all(task.verify(p, p.ground_truth["solution"]).correct for p in problems)


def test_cli_stdout_and_list() -> None:
    result = run_cli("arithmetic", "--n", "3")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["task"] for line in result.stdout.splitlines()] == ["arithmetic"] * 3
    listing = run_cli("--list")
    assert listing.returncode == 0
    for text in ("countdown", "game24", "arithmetic", "num_numbers (int, 3..6, default 4)", "integer_steps"):
        assert text in listing.stdout
    # one line per task, its whole summary even where the docstring wraps it, without reST markup
    summaries = [line for line in listing.stdout.splitlines() if not line.startswith(" ")]
    assert len(summaries) == len(TASKS.names()) and "``" not in listing.stdout
    assert ("big_arithmetic: Sum of num_products products of two digits-digit numbers; verdicts and plain traces "
            "(one reduction per line, no tools; with noise one slip) are arithmetic's.") in summaries


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["countdown", "--difficulty", "bogus=1"], "'bogus'"),
        (["countdown", "--difficulty", "num_numbers=9"], "num_numbers"),
        (["countdown", "--difficulty", "num_numbers"], "key=value"),
        (["no_such_task"], "unknown task 'no_such_task'"),
        ([], "give a task name"),
    ],
)
def test_cli_errors_are_clear(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""
    # one line, prefixed as every command's errors are
    [line] = result.stderr.splitlines()
    assert line.startswith("thinkrl data: error: ") and line.endswith(" (--traceback for details)")
