"""bench_rl_step_streaming's TRL long-tail hook (forced EOS at each row's drawn length) and its argument checks.
The speed comparison itself is the benchmark's job (docs/results/rl_step.md)."""

from __future__ import annotations

import json
import random

import pytest
import torch


@pytest.fixture(scope="module")
def bench():
    import bench_rl_step_streaming  # benchmarks/ is on pytest's pythonpath

    return bench_rl_step_streaming


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
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--group-size", "1"], "--group-size must be at least 2, got 1"),
    (["--short-len", "1"], "--short-len must be at least 2, got 1"),
    (["--warmup", "-1"], "--warmup must be at least 0, got -1"),  # (was accepted, and ran as 0)
])
def test_bad_arguments_exit_2_naming_the_problem(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_side_recipes_differ_only_in_rollout_mode_and_loss(bench, tmp_path):
    args = bench.parse_args(["--short-len", "8", "--prompts", "4", "--group-size", "2"])
    sync = bench.side_recipe(tmp_path, str(tmp_path / "a"), "sync", 0, args)
    stream = bench.side_recipe(tmp_path, str(tmp_path / "b"), "streaming", 1, args)
    sync_decoupled = bench.side_recipe(tmp_path, str(tmp_path / "c"), "sync", 0, args, "decoupled")
    assert sync.algorithm.off_policy == "none"  # the on-policy loss, as TRL's num_iterations=1
    assert stream.algorithm.off_policy == "decoupled"  # the streaming default
    assert sync_decoupled.algorithm.off_policy == "decoupled" and sync_decoupled.rollout.mode == "sync"
    assert stream.rollout.max_staleness == 1 and stream.rollout.mode == "streaming"
    for recipe in (sync, stream, sync_decoupled):  # the long tail's cap, EOS not ignored, one round
        assert recipe.sampling.max_new_tokens == 64 and recipe.reward.max_response_len == 64
        assert recipe.rollout.dynamic_sampling is False and recipe.sampling.num_slots == 8


def test_thinkrl_sides_train_every_sample_after_their_pipeline_fill(bench, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert bench.main(["--steps", "1", "--rounds", "1", "--with-process", "--skip-trl", "--prompts", "2",
                       "--group-size", "2", "--short-len", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    sides = ("sync", "stream_eta1", "stream_eta1@process")
    assert set(record["results"]) == set(sides)
    assert record["thinkrl_warmup_steps"] == {"sync": 1, "stream_eta1": 2, "stream_eta1@process": 2}
    for side in sides:  # one measured step of 2 prompts x 2 samples each, nothing dropped
        assert record["results"][side]["samples"] == 4 and record["results"][side]["steps"] == 1
