"""`thinkrl eval`: held-out accuracy of a model on a built-in task or a benchmark file.

Three paths: ``--base-url`` (any OpenAI-compatible endpoint) or ``--out`` without ``--budgets`` (a local model)
run the resumable harness (`thinkrl.eval.harness`: samples.jsonl, report.json/md/png, see docs/eval.md); a local
model with ``--budgets`` runs the adherence sweep (`thinkrl.eval.budget_sweep`); a local model without ``--out``
prints the `EvalResult` JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thinkrl.engine import LLMEngine
    from thinkrl.eval.benchmark import BenchmarkSpec
    from thinkrl.eval.endpoint import EndpointSpec
    from thinkrl.eval.samplers import Sampler, SampleSettings
    from thinkrl.tasks import Problem
    from thinkrl.tokenizer import TextTokenizer

ENDPOINT_FLAGS = {"concurrency": "concurrency", "retries": "max_retries", "timeout": "timeout_s"}
"""Flags that only an endpoint uses (argparse dest -> `EndpointSpec` field). They default to None, so that one given
for a local model is refused rather than ignored; not given, the field keeps `EndpointSpec`'s default."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF-format model folder, or with --base-url the served name")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="bearer token for --base-url "
                        "(default: $OPENAI_API_KEY)")
    parser.add_argument("--concurrency", type=int, default=None, help="endpoint requests in flight (default 8)")
    parser.add_argument("--retries", type=int, default=None, help="retries of a request after 429/5xx/connection "
                        "errors (default 4)")
    parser.add_argument("--timeout", default=None, help="seconds one endpoint request may take, from connecting to "
                        "the last byte of the answer (default 600)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished problems")
    parser.add_argument("--data-format", default="auto", choices=["auto", "problems", "math", "code"])
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--sample-seed", type=int, default=0, help="base of the per-sample seeds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--task", help="built-in task (see `thinkrl data --list`)")
    parser.add_argument("--data", help="JSONL file of problems (from `thinkrl data`); overrides --task generation")
    parser.add_argument("--n", type=int, default=200, help="held-out problems to generate")
    parser.add_argument("--seed", type=int, default=1_000_003)
    parser.add_argument("--difficulty", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem (accuracy = avg@k)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", "--max-tokens", dest="max_new_tokens", type=int, default=128)
    parser.add_argument("--thinking-budget", type=int, default=-1)
    parser.add_argument("--budgets", default=None, help="comma-separated thinking budgets to sweep, e.g. 0,16,32,-1: "
                        "accuracy and adherence per budget, without and with enforcement")
    parser.add_argument("--out", default=None, help="folder of the harness run (samples.jsonl, report.*); with a "
                        "local --model and --budgets: the sweep's table (budget_sweep.md) and PNG")
    parser.add_argument("--num-slots", type=int, default=64)
    parser.add_argument("--compile-decode", action="store_true", help="CPU: decode steps through torch.compile "
                        "(faster for small models; compiled when the engine starts, ~15-40 s)")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from thinkrl.engine import LLMEngine
    from thinkrl.eval.benchmark import BenchmarkSpec, load_benchmark
    from thinkrl.eval.evaluate import evaluate
    from thinkrl.model import load_pretrained
    from thinkrl.tokenizer import load_tokenizer

    if not args.data and not args.task:
        raise ValueError("give a benchmark: --task NAME or --data FILE")
    if args.resume and not args.out:
        raise ValueError("--resume needs --out DIR (the harness run to continue)")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be a number >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.sample_seed < 0:
        raise ValueError(f"--sample-seed must be >= 0, got {args.sample_seed}")
    budgets = _parse_budgets(args.budgets) if args.budgets else [args.thinking_budget]  # before any loading
    endpoint = _endpoint_spec(args)
    spec = BenchmarkSpec(data=args.data, data_format=args.data_format, task=None if args.data else args.task,
                         n=args.n, seed=args.seed, difficulty=list(args.difficulty))
    problems = load_benchmark(spec)
    if endpoint is not None:
        from thinkrl.eval.endpoint import EndpointSampler

        return _run_harness(args, spec, problems, lambda settings: EndpointSampler(endpoint, settings),
                            f"endpoint:{args.base_url}#{args.model}")
    model_dir = Path(args.model)  # the built-in tokenizer when the folder has none (as `thinkrl serve`)
    tokenizer = load_tokenizer(model_dir if (model_dir / "tokenizer.json").exists() else "builtin")
    model = load_pretrained(args.model, device=args.device)
    max_prompt = max(len(tokenizer.encode_chat([{"role": "user", "content": p.prompt}], thinking_budget=b))
                     for p in problems for b in budgets)
    engine = LLMEngine(model, tokenizer, num_slots=args.num_slots, compile_decode=args.compile_decode,
                       max_seq_len=max(256, max_prompt + 16) + args.max_new_tokens)
    if args.budgets:
        return _run_sweep(args, engine, tokenizer, problems)
    if args.out:
        from thinkrl.eval.samplers import LocalSampler

        chunk = max(1, args.num_slots // max(1, args.samples))
        return _run_harness(args, spec, problems, lambda settings: LocalSampler(engine, tokenizer, settings,
                                                                                 chunk=chunk),
                            f"model:{Path(args.model).resolve()}")
    result = evaluate(engine, tokenizer, problems, samples=args.samples, temperature=args.temperature,
                      max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget,
                      seed=args.sample_seed, top_p=args.top_p)
    print(json.dumps(result.to_dict()))
    return 0


def _endpoint_spec(args: argparse.Namespace) -> EndpointSpec | None:
    """The `EndpointSpec` of ``--base-url`` with the `ENDPOINT_FLAGS` given (None without an endpoint); ValueError
    for such a flag given without ``--base-url``, where it would be silently ignored, or for a bad ``--timeout``."""
    given = {dest: getattr(args, dest) for dest in ENDPOINT_FLAGS if getattr(args, dest) is not None}
    if not args.base_url:
        if given:
            flags = ", ".join(f"--{dest}" for dest in given)
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{flags} {verb} only with --base-url (requests to an endpoint); a local --model "
                             "samples in this process")
        return None
    from thinkrl.eval.endpoint import EndpointSpec

    if "timeout" in given:
        given["timeout"] = _parse_timeout(given["timeout"])
    fields: dict[str, Any] = {ENDPOINT_FLAGS[dest]: value for dest, value in given.items()}
    return EndpointSpec(args.base_url, args.model, api_key=args.api_key, **fields)


def _parse_timeout(text: str) -> float:
    """``--timeout`` as seconds, finite and > 0; ValueError naming the flag (also for text that is no number)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--timeout must be a number of seconds > 0, got {text!r}")
    return seconds


def _parse_budgets(text: str) -> list[int]:
    """``--budgets 0,16,-1`` as ints; ValueError naming the flag (not int()'s bare "invalid literal")."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"--budgets must be comma-separated integers (-1 unlimited, 0, or a token count), got "
                         f"{text!r}") from None


def _run_sweep(args: argparse.Namespace, engine: LLMEngine, tokenizer: TextTokenizer, problems: list[Problem]) -> int:
    from thinkrl.eval.budget_sweep import plot_budget_curves, points_table, sweep_budgets

    budgets = _parse_budgets(args.budgets)
    kwargs = dict(samples=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                  seed=args.sample_seed, top_p=args.top_p)
    free = sweep_budgets(engine, tokenizer, problems, budgets, enforce=False, **kwargs)
    enforced = sweep_budgets(engine, tokenizer, problems, budgets, enforce=True, **kwargs)
    name = args.task or Path(args.data).stem
    table = points_table(name, free, enforced)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "budget_sweep.md").write_text(table + "\n")
        print(plot_budget_curves({name: free, f"{name} (enforced)": enforced}, out / "budget_sweep.png"))
    return 0


def _run_harness(args: argparse.Namespace, spec: BenchmarkSpec, problems: list[Problem],
                 make_sampler: Callable[[SampleSettings], Sampler], source: str) -> int:
    """The resumable harness (`thinkrl.eval.harness.run_eval`) with ``make_sampler(settings)`` (the endpoint's or
    the local model's), whose run config names ``source``."""
    from thinkrl.eval.harness import run_config, run_eval
    from thinkrl.eval.report import markdown_table
    from thinkrl.eval.samplers import SampleSettings

    if not args.out:
        raise ValueError("--base-url needs --out DIR (where samples.jsonl and the report go)")
    settings = SampleSettings(samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                              max_tokens=args.max_new_tokens, seed=args.sample_seed)
    budgets = _parse_budgets(args.budgets) if args.budgets else [args.thinking_budget]
    sampler = make_sampler(settings)
    config = run_config(source, spec, problems, settings, budgets)
    try:
        report = run_eval(sampler, problems, config, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"thinkrl eval: interrupted; finished problems are kept in {Path(args.out) / 'samples.jsonl'}: rerun "
              "with --resume", file=sys.stderr)  # (stdout is the report's)
        return 130
    print(markdown_table(report))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
