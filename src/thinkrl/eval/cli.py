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
    result = evaluate(engine, tokenizer, problems, samples=args.samples, temperature=args.temperature,
                      max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget)
    print(json.dumps(result.to_dict()))
    return 0
