"""FSDP2 data parallelism: a real 2-rank torchrun (gloo, CPU) trains exactly like one process; rank planning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from thinkrl.train.balance import attention_workload
from thinkrl.train.distributed import init_data_parallel, rank_micro_batches

sys.path.insert(0, str(Path(__file__).parent))
import distributed_actor_run as script  # noqa: E402

SCRIPT = Path(script.__file__)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """Every case of the script, trained on 2 ranks by torchrun (gloo)."""
    out = tmp_path_factory.mktemp("dist") / "two_ranks.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return torch.load(out, weights_only=False)


@pytest.fixture
def one_thread():
    """One intra-op thread, as each torchrun rank has (OMP_NUM_THREADS=1): tiny ops on a busy 2-core box are
    many times slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", list(script.CASES))
def test_two_ranks_train_like_one(two_ranks: dict, case: str, one_thread: None) -> None:
    """Same losses, statistics and final weights (within 1e-5) as one process on the same global batch."""
    sharded, single = two_ranks[case], script.run(script.CASES[case], None)
    for rank in sharded["per_rank"]:  # every parameter is really split between the ranks
        assert all(rank["sharded"]) and len(rank["sharded"]) == len(single["weights"])
    forwarded = [rank["forwarded"] for rank in sharded["per_rank"]]
    algo = script.CASES[case]
    assert single["forwarded"] == script.STEPS * algo.ppo_epochs * single["batch_tokens"]
    if algo.num_mini_batches == 16:  # one sequence per step: the rank without it runs it at zero weight
        assert forwarded == [single["forwarded"]] * 2
    else:  # each rank forwarded part of the batch; together, all of it
        assert all(0 < tokens < single["forwarded"] for tokens in forwarded)
        assert sum(forwarded) == single["forwarded"]
    for one, two in zip(single["stats"], sharded["stats"], strict=True):
        assert two["num_tokens"] == one["num_tokens"]
        for key in ("loss", "grad_norm", "clip_frac", "approx_kl", "entropy"):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    assert single["weights"].keys() == sharded["weights"].keys()
    moved = max(float((single["weights"][k] - single["initial"][k]).abs().max()) for k in single["weights"])
    assert moved > 1e-3  # the weights did train (equal is not "both unchanged")
    for name, weight in single["weights"].items():
        torch.testing.assert_close(sharded["weights"][name], weight, rtol=0, atol=1e-5, msg=name)


def _close_run(case: str, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           str(SCRIPT.parent / "distributed_close_run.py"), "--case", case, "--dir", str(folder)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_finished_run_closes_its_process_group_on_every_rank_together(tmp_path: Path) -> None:
    """Rank 1 closes at once, rank 0 seconds later (after its last files): rank 1's close returns only then."""
    proc = _close_run("together", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "prompt.json").read_text()) == {"late_done_when_closed": True}


def test_a_synchronized_close_gives_up_on_a_rank_that_never_comes(tmp_path: Path) -> None:
    """Rank 1 never closes: rank 0's close waits its timeout (1 s, rank 1 is busy for 5), warns, and returns."""
    proc = _close_run("missing", tmp_path)
    assert json.loads((tmp_path / "prompt.json").read_text()) == {"late_done_when_closed": False}
    assert "not every rank reached the end of the run" in proc.stderr, proc.stderr[-3000:]


def test_rank_micro_batches_same_count_every_rank() -> None:
    # a = 0 balances len**2. Differencing 44^2=1936, 40^2=1600, 900, 81, 64, 49, 36, 25, 9 leaves 300:
    # {44, 9, 8, 7, 6, 5, 3} = 2200 (82 tokens: 2 micro-batches) vs {40, 30} = 2500 (70 tokens: 2).
    lengths = [40, 5, 6, 7, 30, 8, 9, 44, 3]
    plans = rank_micro_batches(lengths, 2, 48, a=0.0)
    assert [len(plan) for plan in plans] == [2, 2]
    assert sorted(i for plan in plans for part in plan for i in part) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in part) <= 48 for plan in plans for part in plan)
    assert sorted(sum(attention_workload(lengths[i], 0.0) for part in plan for i in part) for plan in plans) == [
        2200, 2500]
    # 1225 + 100 (45 tokens, one micro-batch) vs 841 + 256 + 225 (60 tokens, two): the first rank re-splits
    assert rank_micro_batches([15, 16, 10, 35, 29], 2, 48, a=0.0) == [[[3], [2]], [[4], [0, 1]]]
    # one sequence over two ranks: the other rank gets an empty (zero-weight) micro-batch
    assert rank_micro_batches([7], 2, 48) == [[[0]], [[]]]


def test_init_outside_torchrun_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="not started by torchrun: .*RANK"):
        init_data_parallel()


def test_a_two_rank_resume_reads_crcs_on_rank_0_and_every_rank_raises_its_error(tmp_path: Path) -> None:
    """Rank 0 alone reads every file's CRC-32 (rank 1 checks sizes); a flipped bit in rank 1's shard and a
    ``latest`` naming a missing step end both ranks with rank 0's message (no rank left waiting in dcp.load)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           str(SCRIPT.parent / "distributed_resume_check_run.py"), "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["intact"] is None and ranks[1]["intact"] is None
    files = json.loads((tmp_path / "ckpt" / "step-00000001" / "trainer_state.json").read_text())["crc32"]
    assert sorted(ranks[0]["crc_files"]) == sorted(files) and "__1_0.distcp" in files
    assert ranks[1]["crc_files"] == []
    for rank in ranks:
        kind, message = rank["flipped_bit"]
        assert kind == "ValueError" and "__1_0.distcp does not match its recorded CRC-32" in message
        kind, message = rank["missing_step"]
        assert kind == "FileNotFoundError" and "step-00000009" in message
    assert ranks[0]["flipped_bit"] == ranks[1]["flipped_bit"]
