"""bench_rl_step_streaming's TRL long-tail hook (forced EOS at each row's drawn length) and its argument checks.
The speed comparison itself is the benchmark's job (docs/results/rl_step.md)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_rl_step_streaming.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rl_step_streaming", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_force_eos_at_the_drawn_length(bench):
    eos, short, rows, vocab, width = 3, 4, 64, 10, 5
    force = bench.ForceEosAt(eos, short, seed=7)
    rng = random.Random(7)  # the same draws, made independently
    expected = [bench.STREAMING.draw_length(rng.getrandbits(32), short) for _ in range(rows)]
    assert min(expected) >= 2 and max(expected) <= 8 * short and max(expected) > short  # the tail is drawn
    forced_at: dict[int, int] = {}
    for generated in range(8 * short):  # the processor sees prompt + ``generated`` tokens
        scores = torch.zeros(rows, vocab)
        out = force(torch.zeros(rows, width + generated, dtype=torch.long), scores)
        assert torch.equal(scores, torch.zeros(rows, vocab))  # the caller's scores are not changed in place
        for row in range(rows):
            if out[row, 0] == float("-inf"):
                assert out[row, eos] == 0.0 and row not in forced_at
                forced_at[row] = generated + 1  # EOS is the response's (generated + 1)-th token
            else:
                assert torch.equal(out[row], torch.zeros(vocab))
    assert [forced_at[r] for r in range(rows)] == expected
    force.reset()  # a new generate call draws new limits from the same stream
    force(torch.zeros(rows, width, dtype=torch.long), torch.zeros(rows, vocab))
    assert force.limits.tolist() == [bench.STREAMING.draw_length(rng.getrandbits(32), short) for _ in range(rows)]


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--group-size", "1"], "--group-size must be >= 2"),
    (["--short-len", "1"], "--short-len must be >= 2"),
])
def test_bad_arguments_exit_2_naming_the_problem(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
