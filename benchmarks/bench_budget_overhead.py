"""Thinking-budget controller overhead: unbudgeted vs budgeted batches, and unbudgeted requests beside budgeted ones.

The demo model (random weights, ``MODELS["demo"]`` of bench_generate.py), the built-in
tokenizer, one engine with one slot per request. Every response is exactly
``--new-tokens`` long (no stop tokens; forced tokens count toward ``max_new_tokens``), so
the runs generate the same number of tokens. Runs:

* ``unbudgeted``: ``--prompts`` requests without a controller;
* ``budgeted``: the same requests with an enforce + reflect controller (``--budget``,
  thinking opened by the prompt);
* ``neighbours``: half the requests unbudgeted, the other half (interleaved) either
  unbudgeted (``plain_neighbours``) or budgeted (``budgeted_neighbours``); the unbudgeted
  half's tokens/s is its tokens over the time until its last request finished, and its
  outputs are compared (same per-request seeds);
* ``long_tail``: continuous batching with more requests than slots and staggered lengths, no request
  budgeted vs every other one budgeted, so forced tokens arrive at scattered steps;
* ``controller_us_per_token``: the controller's own cost, driven without a model.

Tokens/s are reported as the best and the median of ``--repeats`` interleaved runs, by wall clock and
(``per_cpu_second``, for a shared CPU machine; use ``--threads 1`` there) by the process's CPU time.
``outputs_identical`` is false when the batch composition changes the unbudgeted rows' numerics (bf16 on
GPU: a step that feeds forced tokens runs eagerly, not from the CUDA graph).

Prints one JSON line; a progress line goes to stderr as each run (a configuration in a repeat) ends.

    thinkrl bench budget-overhead [--device cpu] [--prompts 64] [--new-tokens 384] [--budget 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from typing import Any

import torch

import bench_generate  # a sibling: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from _cli import check_at_least, progress
from thinkrl.engine import LLMEngine, Request, SamplingParams, make_budget_controller
from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.tokenizer import TextTokenizer, load_tokenizer

_GEN = bench_generate  # the sibling benchmark: its model configs and CUDA sync
_sync = _GEN._sync


def _demo_config() -> ModelConfig:
    return _GEN.MODELS["demo"]


def _prompts(tok: TextTokenizer, n: int, seed: int) -> list[list[int]]:
    """Random prompts of 16-64 ids that end with the thinking open tag (the model thinks from there)."""
    rng = random.Random(seed)
    open_id = tok.token_to_id(tok.think_tags.open)
    if open_id is None:
        raise ValueError(f"the tokenizer has no id for the thinking open tag {tok.think_tags.open!r}")
    return [[rng.randrange(16, tok.vocab_size) for _ in range(rng.randint(16, 64))] + [open_id] for _ in range(n)]


def _requests(tok: TextTokenizer, prompts: list[list[int]], new_tokens: int, budgeted: list[bool],
              budget: int) -> list[Request]:
    reqs = []
    for i, (prompt, with_budget) in enumerate(zip(prompts, budgeted, strict=True)):
        controller = make_budget_controller(tok, budget, reflect=True, thinking_open=True) if with_budget else None
        reqs.append(Request(prompt, SamplingParams(max_new_tokens=new_tokens, seed=i, stop_token_ids=()),
                            request_id=i, controller=controller))
    return reqs


def _run(model: CausalLM, tok: TextTokenizer, reqs: list[Request], max_len: int, device: str,
         watch: set[int]) -> dict[str, Any]:
    """Generate ``reqs``; tokens/s of all of them and of the ``watch`` ids (until the last of those finished)."""
    engine = LLMEngine(model, tok, num_slots=len(reqs), max_seq_len=max_len)
    engine.generate([Request([5, 6, 7], SamplingParams(max_new_tokens=4, stop_token_ids=()))])  # warm-up
    _sync(device)
    outputs: dict[int, Any] = {}
    watch_done = watch_cpu = 0.0
    start, start_cpu = time.perf_counter(), time.process_time()
    for event in engine.stream(reqs):
        if event.finished:
            outputs[event.request_id] = event.trajectory
            if event.request_id in watch:
                watch_done, watch_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    _sync(device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    total = sum(len(t.response_ids) for t in outputs.values())
    watched = sum(len(outputs[i].response_ids) for i in watch)
    graphs = engine.decode_graphs
    return {"tokens_per_s": total / elapsed, "watch_tokens_per_s": watched / watch_done if watch else None,
            "tokens_per_cpu_s": total / cpu, "watch_tokens_per_cpu_s": watched / watch_cpu if watch else None,
            "sampled_fraction": sum(sum(t.response_mask) for t in outputs.values()) / total,
            "eager_decode_steps": None if graphs is None else graphs.stats.eager_steps,
            "outputs": {i: outputs[i].response_ids for i in watch}}


def bench_long_tail(model: CausalLM, tok: TextTokenizer, device: str, repeats: int, seed: int,
                    num_requests: int = 96, slots: int = 32) -> dict[str, Any]:
    """Continuous batching with staggered requests (lengths 64-384, more requests than slots): no request
    budgeted vs every other one budgeted (budgets 96-288, enforce + reflect), so forced tokens arrive at
    scattered steps. Reports tokens/s and the unbudgeted requests' mean completion time (best of ``repeats``)."""
    rng = random.Random(seed + 1)
    prompts = _prompts(tok, num_requests, seed + 2)
    lengths = [rng.randint(64, 384) for _ in prompts]
    budgets = [rng.choice([96, 160, 224, 288]) for _ in prompts]
    plain_ids = set(range(0, num_requests, 2))
    max_len = max(map(len, prompts)) + max(lengths) + 1

    def run(mixed: bool) -> tuple[float, float, dict[int, list[int]], float]:
        reqs = [Request(p, SamplingParams(max_new_tokens=n, seed=i, stop_token_ids=()), request_id=i,
                        controller=None if i in plain_ids or not mixed else
                        make_budget_controller(tok, b, reflect=True, thinking_open=True))
                for i, (p, n, b) in enumerate(zip(prompts, lengths, budgets, strict=True))]
        engine = LLMEngine(model, tok, num_slots=slots, max_seq_len=max_len)
        _sync(device)
        done: dict[int, float] = {}
        outputs: dict[int, list[int]] = {}
        start, start_cpu = time.perf_counter(), time.process_time()
        for event in engine.stream(reqs):
            if event.finished:
                done[event.request_id] = time.perf_counter() - start
                outputs[event.request_id] = event.trajectory.response_ids
        _sync(device)
        tokens = sum(map(len, outputs.values()))
        latency = statistics.mean(done[i] for i in plain_ids)
        cpu = time.process_time() - start_cpu
        return tokens / (time.perf_counter() - start), latency, {i: outputs[i] for i in plain_ids}, tokens / cpu

    runs: dict[bool, list[tuple[float, float, dict[int, list[int]], float]]] = {False: [], True: []}
    for r in range(repeats):
        for mixed in (False, True):
            runs[mixed].append(run(mixed))
            progress("budget-overhead", f"repeat {r + 1}/{repeats} long tail, "
                                        f"{'half budgeted' if mixed else 'no budgets'}: {runs[mixed][-1][0]:.1f} "
                                        f"tokens/s, unbudgeted mean latency {runs[mixed][-1][1]:.3f} s")
    best = {mixed: (max(r[0] for r in rs), min(r[1] for r in rs), max(r[3] for r in rs))
            for mixed, rs in runs.items()}
    return {"num_requests": num_requests, "slots": slots,
            "tokens_per_s_no_budgets": round(best[False][0], 1), "tokens_per_s_half_budgeted": round(best[True][0], 1),
            "unbudgeted_mean_latency_s_no_budgets": round(best[False][1], 3),
            "unbudgeted_mean_latency_s_half_budgeted": round(best[True][1], 3),
            "latency_ratio": round(best[True][1] / best[False][1], 3),
            "tokens_per_cpu_s_no_budgets": round(best[False][2], 1),
            "tokens_per_cpu_s_half_budgeted": round(best[True][2], 1),
            "outputs_identical": all(a[2] == b[2] for a, b in zip(runs[False], runs[True], strict=True))}


def _stats(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Best and median of ``key`` over the repeats (tokens/s)."""
    values = [r[key] for r in runs]
    return {"best": round(max(values), 1), "median": round(statistics.median(values), 1)}


def _ratio(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(a[k] / b[k], 3) for k in ("best", "median")}


def controller_cost(tok: TextTokenizer, budget: int, tokens: int) -> float:
    """Microseconds per sampled token spent in an enforce + reflect controller's three calls (no model)."""
    x = tok.encode("x")[0]
    start = time.perf_counter()
    controller = make_budget_controller(tok, budget, thinking_open=True, reflect=True)
    if controller is None:
        raise ValueError(f"thinking budget {budget} gives no controller to time")
    ids: list[int] = []
    for _ in range(tokens):
        controller.banned_tokens(ids)
        if not controller.replacement_tokens(ids, x):
            ids.append(x)
            ids += controller.forced_tokens(ids)
    return (time.perf_counter() - start) / tokens * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=384)
    parser.add_argument("--budget", type=int, default=256, help="thinking budget of the budgeted requests")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (interleaved); best and median")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    check_at_least(parser, args, budget=0)  # -1 (unlimited) makes no controller: nothing budgeted to measure
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype_name = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    tok = load_tokenizer("builtin")
    model = build_model(_demo_config(), seed=args.seed).to(device=args.device, dtype=getattr(torch, dtype_name))
    model.eval()
    prompts = _prompts(tok, args.prompts, args.seed)
    max_len = max(map(len, prompts)) + args.new_tokens + 1
    n, half = args.prompts, set(range(0, args.prompts, 2))

    configs = {  # name: (which requests are budgeted, which are watched, the key to maximise)
        "plain": ([False] * n, set(), "tokens_per_s"),
        "budgeted": ([True] * n, set(), "tokens_per_s"),
        "beside_plain": ([False] * n, half, "watch_tokens_per_s"),
        "beside_budgeted": ([i not in half for i in range(n)], half, "watch_tokens_per_s"),
    }

    def run(name: str) -> dict[str, Any]:
        budgeted, watch, _ = configs[name]
        return _run(model, tok, _requests(tok, prompts, args.new_tokens, budgeted, args.budget), max_len,
                    args.device, watch)

    run("plain")  # untimed warm-up (first-call allocations)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for r in range(args.repeats):  # interleaved, so a load change on the machine hits every configuration
        for name, (_, watch, key) in configs.items():
            runs[name].append(run(name))
            progress("budget-overhead", f"repeat {r + 1}/{args.repeats} {name}: {runs[name][-1][key]:.1f} tokens/s"
                                        + (" (the unbudgeted half)" if watch else ""))
    plain, budgeted, beside_plain, beside_budgeted = (_stats(runs[name], configs[name][2]) for name in configs)
    identical = all(a["outputs"] == b["outputs"] for a, b in zip(runs["beside_plain"], runs["beside_budgeted"],
                                                                   strict=True))
    results = {
        "unbudgeted_tokens_per_s": plain,
        "budgeted_tokens_per_s": budgeted,
        "budgeted_vs_unbudgeted": _ratio(budgeted, plain),
        "per_cpu_second": {name: _stats(runs[name], key.replace("_per_s", "_per_cpu_s"))
                           for name, (_, _, key) in configs.items()},
        "budgeted_sampled_fraction": round(runs["budgeted"][0]["sampled_fraction"], 4),
        "budgeted_eager_decode_steps": runs["budgeted"][0]["eager_decode_steps"],
        "neighbours": {
            "unbudgeted_half_tokens_per_s_plain_neighbours": beside_plain,
            "unbudgeted_half_tokens_per_s_budgeted_neighbours": beside_budgeted,
            "ratio": _ratio(beside_budgeted, beside_plain),
            "outputs_identical": identical,
        },
        "long_tail": bench_long_tail(model, tok, args.device, args.repeats, args.seed),
        "controller_us_per_token": round(controller_cost(tok, args.budget, 100_000), 3),
    }
    print(json.dumps({
        "benchmark": "budget_overhead", "model": "demo", "prompts": n, "new_tokens": args.new_tokens,
        "budget": args.budget, "mode": "enforce+reflect", "device": args.device, "dtype": dtype_name,
        "repeats": args.repeats, "results": results, "torch": torch.__version__,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
    }))


if __name__ == "__main__":
    main()
