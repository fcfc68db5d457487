"""`thinkrl generate`: sample from a model and print its reasoning and answer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thinkrl.engine.budget import make_budget_controller
from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.types import Request, SamplingParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF-format model folder (config.json + safetensors)")
    parser.add_argument("--prompt", required=True, action="append", help="user message; repeat for a batch")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder if it has "
                        "tokenizer.json, else the built-in tokenizer)")
    parser.add_argument("--thinking-budget", type=int, default=-1,
                        help="-1 unlimited, 0 answer at once, N: the thinking is ended after N tokens")
    parser.add_argument("--no-budget-enforce", action="store_true",
                        help="state the thinking budget in the prompt only; do not force the end of thinking")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", action="store_true", help="print one JSON object per prompt")


def check_arguments(args: argparse.Namespace) -> None:
    """ValueError naming the first sampling option that cannot work, before the model is loaded."""
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in 0..2**63-1, got {args.seed}")
    if not 0 <= args.top_k < 2**31:
        raise ValueError(f"--top-k must be in 0..2**31-1 (0: off), got {args.top_k}")
    SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                   top_k=args.top_k)  # its own checks: temperature finite >= 0, top-p in (0, 1] ...


def run(args: argparse.Namespace) -> int:
    from thinkrl.model import load_pretrained
    from thinkrl.tokenizer import load_tokenizer, parse_completion

    check_arguments(args)
    model_dir = Path(args.model)
    tok_dir = args.tokenizer or (model_dir if (model_dir / "tokenizer.json").exists() else "builtin")
    tokenizer = load_tokenizer(tok_dir)
    model = load_pretrained(model_dir, device=args.device, dtype=args.dtype)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, seed=args.seed)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           thinking_budget=args.thinking_budget) for p in args.prompt]
    thinking_open = [tokenizer.think_tags.ends_inside_thinking(t) for t in texts]
    requests = [  # a controller per request (it counts that request's thinking), as `thinkrl serve` does
        Request(tokenizer.encode(text), params, controller=make_budget_controller(
            tokenizer, args.thinking_budget, enforce=not args.no_budget_enforce, thinking_open=opened))
        for text, opened in zip(texts, thinking_open, strict=True)
    ]
    max_len = max(len(r.prompt_ids) for r in requests) + args.max_new_tokens + 1
    if max_len > model.config.max_position_embeddings:  # the KV cache is allocated for it: refuse, do not try
        raise ValueError(f"--max-new-tokens {args.max_new_tokens} with a {max_len - args.max_new_tokens - 1}-token "
                         f"prompt exceeds the model's context of {model.config.max_position_embeddings} tokens")
    engine = LLMEngine(model, tokenizer, num_slots=min(len(requests), 64), max_seq_len=max_len)
    results = engine.generate(requests)
    for prompt, traj, opened in zip(args.prompt, results, thinking_open, strict=True):
        parsed = parse_completion(traj.text, tokenizer.think_tags, thinking_open=opened)
        if args.json:
            print(json.dumps({"prompt": prompt, "reasoning_content": parsed.reasoning_content,
                              "content": parsed.content, "finish_reason": traj.finish_reason,
                              "num_tokens": len(traj.response_ids)}))
            continue
        print(f"### prompt\n{prompt}\n### reasoning\n{parsed.reasoning_content}\n### answer\n{parsed.content}\n"
              f"### finish: {traj.finish_reason}, {len(traj.response_ids)} tokens\n")
    return 0
