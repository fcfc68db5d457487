"""Held-out evaluation of a tool-use policy, with and without its tools (the figures of docs/results/agents.md).

    python -m thinkrl.rollout.agent_eval --model runs/agent-dapo/final --recipe recipes/agents/tool_dapo.yaml \\
        --samples 4 --out result.json

For the recipe's environment and held-out problems it runs four evaluations: with tools and without (no tools in
the prompt; a call the model makes anyway gets an "unknown tool" observation), each greedy and avg@k at the
recipe's sampling temperature, and prints one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import load_pretrained
from thinkrl.rollout.agent_rollout import evaluate_agent_policy, render_episode_prompt
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.environments import build_environment
from thinkrl.rollout.sources import load_problems
from thinkrl.rollout.specs import DataSpec, SamplingSpec
from thinkrl.tokenizer import load_tokenizer


def evaluate_model(model_dir: str | Path, agent: AgentSpec, data: DataSpec, sampling: SamplingSpec,
                   samples: int, device: str = "cpu") -> dict[str, Any]:
    """``{"tools": {"greedy": ..., "sampled": ...}, "no_tools": {...}}`` of the model in ``model_dir``."""
    tokenizer = load_tokenizer(model_dir)
    model = load_pretrained(model_dir, device=device).eval().requires_grad_(False)
    problems = load_problems(data, "test")
    env = build_environment(agent.environment, agent.options)
    longest = max(len(render_episode_prompt(tokenizer, env, p)[0]) for p in problems)
    engine = LLMEngine(model, tokenizer, num_slots=sampling.num_slots,
                       max_seq_len=longest + 16 + agent.max_total_tokens)
    out: dict[str, Any] = {"model": str(model_dir), "num_problems": len(problems), "samples": samples}
    with EngineLoop(engine) as client:
        for use_tools in (True, False):
            row = {}
            for name, temperature, k in (("greedy", 0.0, 1), ("sampled", sampling.temperature, samples)):
                result = evaluate_agent_policy(agent, client, tokenizer, problems, samples=k, temperature=temperature,
                                               max_new_tokens=sampling.max_new_tokens, seed=12345,
                                               use_tools=use_tools)
                row[name] = asdict(result)
            out["tools" if use_tools else "no_tools"] = row
    return out


def read_sections(path: str | Path) -> tuple[AgentSpec, DataSpec, SamplingSpec, str]:
    """The ``agent``, ``data`` and ``sampling`` sections and ``model.device`` of a recipe YAML (the rest is not
    read; validation errors name the section)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("agent"), dict):
        raise ValueError(f"recipe {path} has no agent section")
    device = (raw.get("model") or {}).get("device", "cpu")
    return (AgentSpec.model_validate(raw["agent"]), DataSpec.model_validate(raw["data"]),
            SamplingSpec.model_validate(raw.get("sampling") or {}), device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF-format model folder")
    parser.add_argument("--recipe", required=True, help="RL recipe with an agent section (environment, data, sampling)")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem for avg@k")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    try:
        agent, data, sampling, device = read_sections(args.recipe)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(evaluate_model(args.model, agent, data, sampling, args.samples, device))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
