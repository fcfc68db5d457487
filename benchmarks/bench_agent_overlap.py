"""Tool calls do not stall decoding: the other sequences' tokens/s while tools take 200 ms, vs instant tools.

Workload (the same in every run): ``--episodes`` multi-turn episodes that each make 3 calculator calls
(`thinkrl.rollout.multiturn`, greedy), sharing the engine with ``--plain`` plain requests that each decode
``--plain-tokens`` tokens without tools. The calculator is wrapped to sleep ``--tool-ms`` before answering. The
figure is the decode rate of the plain sequences (their tokens / the time until the last one finished) with slow
tools, and its ratio to the same rate with instant tools (the peer, measured in the same run). A loop that ran
tools inline would stop every sequence for each call (8 episodes x 3 calls x 200 ms = 4.8 s of stall); here the
tools run in the rollout's thread pool while the engine keeps stepping, so the ratio stays near 1.

The model: ``--model DIR`` (e.g. a cold-start SFT of recipes/agents/tool_sft.yaml), or by default a tiny model
fitted here in seconds to one calculator transcript (it reproduces the calls greedily). Prints one JSON line; a
progress line goes to stderr as each run (instant or slow tools) ends.

    thinkrl bench agent-overlap [--tool-ms 200] [--episodes 8] [--plain 8] [--plain-tokens 256] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from dataclasses import replace

import torch

from _cli import progress  # siblings: benchmarks/ is on sys.path
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import CausalLM, ModelConfig, build_model, load_pretrained
from thinkrl.rollout.agent_rollout import render_episode_prompt
from thinkrl.rollout.agent_sft import build_agent_sft_examples
from thinkrl.rollout.environments import Environment, build_environment
from thinkrl.rollout.multiturn import AgentLimits, Episode, EpisodeRequest, MultiTurnRunner
from thinkrl.rollout.tools import Tool, build_tool, function_tool
from thinkrl.tasks.base import Problem
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import TextTokenizer, load_tokenizer
from thinkrl.train.batching import pack_sft_examples
from thinkrl.train.common import forward_responses


def fitted_model(tok: TextTokenizer, env: Environment, problem: Problem) -> CausalLM:
    """A 2-layer model fitted to the problem's transcript until greedy decoding reproduces it."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048)
    model = build_model(config, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = pack_sft_examples(build_agent_sft_examples(tok, env, [problem], seed=0))
    for _ in range(400):
        logprobs = forward_responses(model, batch).logprobs[batch.response_mask]
        if logprobs.min() > -0.3:
            break
        optimizer.zero_grad()
        (-logprobs.mean()).backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


def slow_calculator(delay_s: float) -> Tool:
    calculator = build_tool("calculator")

    def calculator_fn(expression: str) -> str:
        time.sleep(delay_s)
        return calculator.function(expression)

    return replace(function_tool(calculator_fn, name="calculator"), parameters=calculator.parameters)


def run_once(model: CausalLM, tok: TextTokenizer, env: Environment, problem: Problem, args: argparse.Namespace,
             delay_s: float) -> dict:
    """One run of the workload; the plain sequences' decode rate and what the episodes did."""
    prompt, thinking_open = render_episode_prompt(tok, env, problem)
    engine = LLMEngine(model, tok, num_slots=args.episodes + args.plain, max_seq_len=len(prompt) + 512)
    plain_prompt = tok.encode_chat([{"role": "user", "content": problem.prompt}])
    plain = [Request(plain_prompt, SamplingParams(max_new_tokens=args.plain_tokens, temperature=1.0, seed=i,
                                                  stop_token_ids=()), request_id=("plain", i))
             for i in range(args.plain)]
    items = [EpisodeRequest(prompt, SamplingParams(max_new_tokens=64, temperature=0.0), -1, thinking_open,
                            request_id=k) for k in range(args.episodes)]
    with EngineLoop(engine) as loop:
        runner = MultiTurnRunner(loop, tok, [slow_calculator(delay_s)], AgentLimits(max_total_tokens=300),
                                 max_workers=args.episodes)
        done = threading.Event()
        box: dict[str, list[Episode]] = {}

        def episodes() -> None:
            box["episodes"] = runner.run(items)
            done.set()

        start = time.perf_counter()
        thread = threading.Thread(target=episodes)
        thread.start()
        plain_trajs = loop.generate(plain)
        plain_s = time.perf_counter() - start
        thread.join()
        total_s = time.perf_counter() - start
    calls = [c for e in box["episodes"] for c in e.calls]
    tokens = sum(len(t.response_ids) for t in plain_trajs)
    return {"tool_ms": round(1000 * delay_s), "plain_tokens_per_s": tokens / plain_s, "plain_seconds": plain_s,
            "total_seconds": total_s, "tool_calls": len(calls), "tool_calls_ok": sum(c.result.ok for c in calls),
            "episode_tokens": sum(len(e.trajectory.response_ids) for e in box["episodes"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-ms", type=float, default=200.0)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--plain", type=int, default=8)
    parser.add_argument("--plain-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting; the median rate is reported")
    parser.add_argument("--model", help="HF-format model folder (default: fit a tiny model here)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    env = build_environment("big_arithmetic")
    problem = generate_dataset("big_arithmetic", 1, 0, "test", {"digits": 3})[0]
    tok = load_tokenizer(args.model or "builtin")
    model = load_pretrained(args.model).eval() if args.model else fitted_model(tok, env, problem)
    runs: dict[str, list[dict]] = {"instant": [], "slow": []}
    for r in range(args.repeats):  # interleaved, so a change of machine load hits both settings alike
        for setting, delay_s in (("instant", 0.0), ("slow", args.tool_ms / 1000)):
            runs[setting].append(run_once(model, tok, env, problem, args, delay_s))
            progress("agent-overlap", f"repeat {r + 1}/{args.repeats} {setting} tools ({1000 * delay_s:g} ms): "
                                      f"{runs[setting][-1]['plain_tokens_per_s']:.1f} plain tokens/s")

    def median_rate(rows: list[dict]) -> float:
        return sorted(r["plain_tokens_per_s"] for r in rows)[len(rows) // 2]

    slow, instant = median_rate(runs["slow"]), median_rate(runs["instant"])
    print(json.dumps({
        "benchmark": "agent-overlap", "figure": "decode tokens/s of the plain sequences while tools take "
        f"{args.tool_ms:g} ms", "plain_tokens_per_s_slow_tools": round(slow, 1),
        "peer": "the same workload with instant tools", "plain_tokens_per_s_instant_tools": round(instant, 1),
        "ratio": round(slow / instant, 3), "target_ratio": 0.8,
        "stall_if_inline_s": args.episodes * 3 * args.tool_ms / 1000, "runs": runs,
        "settings": vars(args), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
