"""A few `Actor.update` calls on a fixed global batch, sharded with FSDP2 when started by torchrun.

``python -m torch.distributed.run --nproc-per-node 2 --standalone tests/train/distributed_actor_run.py --out F``
runs every case of ``CASES`` on 2 ranks (gloo, CPU) and rank 0 saves per case the update statistics, the full final
weights and the tokens each rank forwarded. `test_distributed.py` imports `run` for the same cases on one process.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict, replace
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.train.actor import Actor, batch_logprobs
from thinkrl.train.batching import PackedBatch, pack_trajectories
from thinkrl.train.distributed import DataParallel, close_data_parallel, init_data_parallel, shard_model
from thinkrl.train.rl_step import compute_advantages
from thinkrl.train.schedule import build_optimizer, build_scheduler
from thinkrl.train.specs import AlgorithmSpec, OptimSpec

CONFIG = ModelConfig(architecture="SeedOssForCausalLM", vocab_size=64, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
CASES = {  # DAPO's token-level loss; GRPO's per-sequence mean with clip-higher off (2 epochs x 2 mini-batches);
    # mini-batches of one sequence, so every step one rank has nothing and runs a zero-weight micro-batch.
    "token-mean": AlgorithmSpec(loss_agg_mode="token-mean", num_mini_batches=2, ppo_epochs=2),
    "seq-mean-token-mean": AlgorithmSpec(loss_agg_mode="seq-mean-token-mean", eps_high=0.2, num_mini_batches=2,
                                         ppo_epochs=2),
    "one-sequence-mini-batches": AlgorithmSpec(loss_agg_mode="token-mean", num_mini_batches=16),
}
STEPS, MICRO_BATCH_TOKENS = 3, 48


def global_batch(model: CausalLM, algo: AlgorithmSpec) -> PackedBatch:
    """16 hand-made trajectories (4 groups of 4 with mixed rewards, 1-24 response tokens, some forced), their
    behaviour log-probs the initial policy's plus noise (so some ratios clip), advantages from the estimator."""
    rng = random.Random(0)
    trajs = []
    for group in range(4):
        prompt = [rng.randrange(1, 64) for _ in range(rng.randint(2, 6))]
        for k in range(4):
            n = rng.randint(1, 24)
            trajs.append(Trajectory(prompt_ids=prompt, response_ids=[rng.randrange(1, 64) for _ in range(n)],
                                    logprobs=[0.0] * n, response_mask=[j == 0 or rng.random() > 0.1 for j in range(n)],
                                    reward=1.0 if (group + k) % 3 == 0 else -1.0, group_id=group))
    batch = pack_trajectories(trajs)
    valid = torch.arange(batch.response_ids.shape[1])[None, :] < batch.response_lengths[:, None]  # (S, R)
    noise = torch.randn(batch.old_logprobs.shape, generator=torch.Generator().manual_seed(1)) * 0.2
    old = batch_logprobs(model, batch, 10**6, 1.0) + noise
    batch = replace(batch, old_logprobs=torch.where(valid, old, 0.0))
    return compute_advantages(batch, torch.tensor([t.group_id for t in trajs]), algo)


def run(algo: AlgorithmSpec, data_parallel: DataParallel | None) -> dict[str, Any]:
    """``STEPS`` updates from the seed-0 model; returns stats per update, full final weights, tokens forwarded."""
    model = build_model(CONFIG, seed=0)
    initial = {name: param.detach().clone() for name, param in model.named_parameters()}
    batch = global_batch(model, algo)
    if data_parallel is not None:
        shard_model(model, data_parallel)
    forwarded = [0]
    model.register_forward_pre_hook(lambda _module, args: forwarded.__setitem__(0, forwarded[0] + args[0].numel()))
    optim = OptimSpec(lr=3e-3, schedule="linear", min_lr_ratio=0.5, grad_clip=0.5)
    optimizer = build_optimizer(model.parameters(), optim)
    actor = Actor(model, optimizer, build_scheduler(optimizer, optim, STEPS), algo, MICRO_BATCH_TOKENS,
                  optim.grad_clip, temperature=1.0, max_response_len=24, data_parallel=data_parallel)
    stats = [asdict(actor.update(batch, random.Random(step))) for step in range(STEPS)]
    sharded = [isinstance(param, DTensor) and param.to_local().numel() < param.numel()
               for param in model.parameters()]
    return {"stats": stats, "weights": dict(actor.weights()), "initial": initial, "forwarded": forwarded[0],
            "batch_tokens": sum(batch.seq_lengths), "sharded": sharded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    data_parallel = init_data_parallel("gloo")
    results = {}
    for name, algo in CASES.items():
        result = run(algo, data_parallel)
        per_rank: list[Any] = [None] * data_parallel.world_size
        dist.all_gather_object(per_rank, {"forwarded": result["forwarded"], "sharded": result["sharded"]})
        results[name] = {**result, "per_rank": per_rank}
    if data_parallel.is_main:
        torch.save(results, args.out)
    close_data_parallel(synchronize=True)


if __name__ == "__main__":
    main()
