"""Profile of the CPU decode run of ``bench generate``: ``torch.profiler`` ops by self CPU time, plus phase times.

One engine (a model of bench_generate.MODELS, random weights) generates ``--new-tokens`` tokens for each of
``--prompts`` prompts once untimed (warm-up), once timed, and once under the profiler. Prints one JSON line
(tokens/s, the phase split, the table as text); ``--out FILE`` also writes the table.

    thinkrl bench generate-profile [--model small] [--prompts 64] [--new-tokens 128] [--unpacked] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import bench_generate  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from thinkrl.engine import LLMEngine, SamplingParams
from thinkrl.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--unpacked", action="store_true", help="LLMEngine(packed_linears=False)")
    parser.add_argument("--rows", type=int, default=30, help="table rows")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = bench_generate
    if args.model not in gen.MODELS:
        parser.error(f"--model {args.model!r} is not one of {sorted(gen.MODELS)}")
    model = build_model(gen.MODELS[args.model], seed=0).eval()
    prompts = gen._prompts(args.prompts, 0)
    engine = LLMEngine(model, gen._IdTokenizer(), num_slots=args.prompts,
                       max_seq_len=max(map(len, prompts)) + args.new_tokens, packed_linears=not args.unpacked)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, stop_token_ids=())
    engine.generate_from_ids(prompts, params)  # warm-up
    start = time.perf_counter()
    engine.generate_from_ids(prompts, params)
    elapsed = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.generate_from_ids(prompts, params)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    if args.out:
        Path(args.out).write_text(table + "\n")
    print(json.dumps({"benchmark": "generate-profile", "model": args.model, "packed_linears": engine.packed_linears,
                      "prompts": args.prompts, "new_tokens": args.new_tokens,
                      "tokens_per_s": round(args.prompts * args.new_tokens / elapsed, 1),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__, "table": table}))


if __name__ == "__main__":
    main()
