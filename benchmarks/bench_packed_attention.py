"""The packed training forward + backward on RL-like batches with a long tail of response lengths: attention in
groups of similar-length sequences (the default) against one buffer padded to the longest sequence, in one run.

Each batch: ``--seqs`` sequences of ``--prompt-len`` prompt tokens plus a response of 90% uniform in [L/2, L] and
10% uniform in (L, 8L] tokens (``--short-len`` L, the long tail of `thinkrl bench streaming`). The two layouts
alternate, best of ``--repeats`` passes over the batches. Prints JSON: ms per forward + backward for each, the
ratio, the groups per batch, and the largest difference between the two sides' outputs.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

import thinkrl.model.packed_attention as packed
from _cli import check_at_least
from _model_shapes import ModelShape
from thinkrl.model import ModelConfig, build_model
from thinkrl.model.packed_attention import PackedLayout

MODELS: dict[str, ModelShape] = {  # the benchmarks' micro policy and the "small" model of `thinkrl bench engine-cpu`
    "micro": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2},
    "small": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 8,
              "num_key_value_heads": 4},
}


def make_batches(count: int, seqs: int, prompt_len: int, short: int, vocab: int, seed: int = 0) -> list[tuple]:
    """``count`` packed batches (input ids, positions, cu_seqlens) with long-tail response lengths."""
    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        lengths = [prompt_len + (rng.randint(short // 2, short) if rng.random() < 0.9 else rng.randint(short + 1,
                                                                                                        8 * short))
                   for _ in range(seqs)]
        ids = torch.tensor([rng.randrange(vocab) for _ in range(sum(lengths))])
        positions = torch.tensor([i for n in lengths for i in range(n)])
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
        batches.append((ids, positions, cu))
    return batches


def time_side(model: torch.nn.Module, batches: list[tuple], call_cost: float) -> float:
    """Seconds of one pass of forward + backward over ``batches`` with ``call_cost`` for the layout."""
    packed.ATTENTION_CALL_COST = call_cost
    start = time.perf_counter()
    for ids, positions, cu in batches:
        model(ids, positions, cu).hidden.sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="micro")
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=30)
    parser.add_argument("--short-len", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    check_at_least(parser, args, seqs=1, prompt_len=1, short_len=2, batches=1, repeats=1, threads=1)
    torch.set_num_threads(args.threads)
    config = ModelConfig(vocab_size=544, tie_word_embeddings=True, **MODELS[args.model])
    model = build_model(config, seed=0)
    batches = make_batches(args.batches, args.seqs, args.prompt_len, args.short_len, config.vocab_size)
    default = packed.ATTENTION_CALL_COST
    sides = {"grouped": default, "one_buffer": float("inf")}
    with torch.no_grad():  # the two layouts compute the same attention
        ids, positions, cu = batches[0]
        outs = {}
        for name, cost in sides.items():
            packed.ATTENTION_CALL_COST = cost
            outs[name] = model(ids, positions, cu).hidden
    best = dict.fromkeys(sides, float("inf"))
    for cost in sides.values():  # warm-up
        time_side(model, batches[:1], cost)
    for _ in range(args.repeats):
        for name, cost in sides.items():
            best[name] = min(best[name], time_side(model, batches, cost) / len(batches))
    packed.ATTENTION_CALL_COST = default
    groups = [len(PackedLayout.build(cu).groups) for _, _, cu in batches]
    print(json.dumps({
        "benchmark": "packed-attention", "model": args.model, "seqs": args.seqs, "prompt_len": args.prompt_len,
        "short_len": args.short_len, "threads": args.threads,
        "ms_per_forward_backward": {name: round(v * 1e3, 2) for name, v in best.items()},
        "ratio_one_buffer_over_grouped": round(best["one_buffer"] / best["grouped"], 3),
        "groups_per_batch": groups, "max_abs_diff": float((outs["grouped"] - outs["one_buffer"]).abs().max()),
    }))


if __name__ == "__main__":
    main()
