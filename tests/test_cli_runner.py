"""`cli_runner.run_thinkrl` (commands forked from a warm interpreter) gives what ``python -m thinkrl.cli`` gives:
the same stdout, stderr and exit status, in the folder and environment asked for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cli_runner import run_plain, run_thinkrl

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny_dapo.yaml"


@pytest.mark.parametrize("args", [
    ("train", str(RECIPE), "algorithm.eps_hihg=0.3"),  # refused: one line, exit 2
    ("--help",),
    ("data", "arithmetic", "--n", "3", "--seed", "4"),  # JSONL on stdout
    ("generate", "--model", "no-such-folder", "--prompt", "hi"),
], ids=["refusal", "help", "stdout", "missing-model"])
def test_a_forked_command_prints_and_exits_as_a_plain_one(args: tuple[str, ...], tmp_path: Path) -> None:
    forked, plain = run_thinkrl(*args, cwd=tmp_path), run_plain(*args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert forked.stdout or forked.stderr  # (each case says something)


def test_a_forked_command_runs_in_its_folder_and_environment(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    env = {**os.environ, "THINKRL_TEST_MARKER": "1"}
    forked = run_thinkrl("data", "arithmetic", "--n", "2", "--out", "rel.jsonl", cwd=tmp_path / "a", env=env)
    plain = run_plain("data", "arithmetic", "--n", "2", "--out", "plain.jsonl", cwd=tmp_path / "a", env=env)
    assert forked.returncode == plain.returncode == 0, forked.stderr
    assert (tmp_path / "a" / "rel.jsonl").read_text() == (tmp_path / "a" / "plain.jsonl").read_text() != ""


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    def written() -> int:
        return sum(f.stat().st_size for f in tmp_path.iterdir())

    # `data` of ten million problems writes for far longer than 0.5 s
    with pytest.raises(subprocess.TimeoutExpired):
        run_thinkrl("data", "arithmetic", "--n", "10000000", "--out", "big.jsonl", cwd=tmp_path, timeout=0.5)
    size = written()
    assert run_thinkrl("--help", cwd=tmp_path).returncode == 0  # the zygote still serves ...
    assert written() == size  # ... and the command is gone: nothing more was written meanwhile
