"""``thinkrl data``: write a JSONL dataset of a built-in task, or list the tasks.

Examples::

    thinkrl data --list
    thinkrl data countdown --n 1000 --seed 0 --split train --out train.jsonl
    thinkrl data game24 --n 100 --split test --difficulty min_solutions=5 max_number=10
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from thinkrl.tasks.base import Task
from thinkrl.tasks.dataset import SPLITS, generate_dataset, write_jsonl
from thinkrl.tasks.registry import TASKS, get_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``data`` subcommand's arguments on ``parser``."""
    parser.add_argument("task", nargs="?", help=f"task name ({', '.join(TASKS.names())})")
    parser.add_argument("--list", action="store_true", help="list the tasks and their difficulty knobs")
    parser.add_argument("--n", type=int, default=100, help="number of problems (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="which split to emit (default train)")
    parser.add_argument(
        "--test-percent", type=int, default=10, help="share of the problem space held out as test (default 10)"
    )
    parser.add_argument(
        "--difficulty",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="difficulty knobs, e.g. num_numbers=5 (see --list)",
    )
    parser.add_argument("--out", default="-", help="output file (default: stdout)")


def parse_difficulty(task: Task, items: list[str]) -> dict[str, Any]:
    """Turn ``["key=value", ...]`` into a typed difficulty dict (ValueError naming a bad item)."""
    difficulty: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"difficulty {item!r} must look like key=value")
        difficulty[key.strip()] = task.knob(key.strip()).parse(value)
    return difficulty


def describe_tasks() -> str:
    """Every registered task with its knobs, one knob per line."""
    lines = []
    for name in TASKS.names():
        task = get_task(name)
        paragraph = (type(task).__doc__ or "").strip().split("\n\n")[0]  # the summary, however it is wrapped
        lines.append(f"{name}: {' '.join(paragraph.split()).replace('``', '')}")
        lines += [f"    {knob.describe()}" for knob in task.difficulty_knobs]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``thinkrl data``; returns the exit code (2 on bad arguments)."""
    if args.list:
        print(describe_tasks())
        return 0
    if not args.task:  # (raised, as every bad input: `thinkrl data: error: ...`, exit status 2)
        raise ValueError("give a task name or --list")
    try:
        task = get_task(args.task)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    difficulty = parse_difficulty(task, args.difficulty)
    problems = generate_dataset(task, args.n, args.seed, args.split, difficulty, args.test_percent)
    if args.out == "-":
        write_jsonl(problems, sys.stdout)
    else:
        count = write_jsonl(problems, args.out)
        print(f"wrote {count} {args.split} problems of {task.name} to {args.out}", file=sys.stderr)
    return 0
