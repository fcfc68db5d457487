"""`thinkrl eval`: held-out accuracy of a model on a built-in task (or a JSONL file of problems)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF-format model folder")
    parser.add_argument("--task", help="built-in task (see `thinkrl data --list`)")
    parser.add_argument("--data", help="JSONL file of problems (from `thinkrl data`); overrides --task generation")
    parser.add_argument("--n", type=int, default=200, help="held-out problems to generate")
    parser.add_argument("--seed", type=int, default=1_000_003)
    parser.add_argument("--difficulty", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem (accuracy = avg@k)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--thinking-budget", type=int, default=-1)
    parser.add_argument("--budgets", default=None, help="comma-separated thinking budgets to sweep, e.g. 0,16,32,-1: "
                        "accuracy and adherence per budget, without and with enforcement")
    parser.add_argument("--out", default=None, help="folder for the sweep's table (budget_sweep.md) and PNG")
    parser.add_argument("--num-slots", type=int, default=64)
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from thinkrl.engine import LLMEngine
    from thinkrl.eval.evaluate import evaluate
    from thinkrl.model import load_pretrained
    from thinkrl.tasks import get_task
    from thinkrl.tasks.cli import parse_difficulty
    from thinkrl.tasks.dataset import generate_dataset, read_jsonl
    from thinkrl.tokenizer import load_tokenizer

    if args.data:
        problems = read_jsonl(args.data)
    elif args.task:
        task = get_task(args.task)
        problems = generate_dataset(task, args.n, args.seed, "test", parse_difficulty(task, args.difficulty))
    else:
        raise SystemExit("give --task or --data")
    tokenizer = load_tokenizer(args.model)
    model = load_pretrained(args.model, device=args.device)
    engine = LLMEngine(model, tokenizer, num_slots=args.num_slots, max_seq_len=256 + args.max_new_tokens)
    if args.budgets:
        return _run_sweep(args, engine, tokenizer, problems)
    result = evaluate(engine, tokenizer, problems, samples=args.samples, temperature=args.temperature,
                      max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget)
    print(json.dumps(result.to_dict()))
    return 0


def _run_sweep(args: argparse.Namespace, engine, tokenizer, problems) -> int:
    from pathlib import Path

    from thinkrl.eval.budget_sweep import plot_budget_curves, points_table, sweep_budgets

    budgets = [int(b) for b in args.budgets.split(",")]
    kwargs = dict(samples=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens)
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
