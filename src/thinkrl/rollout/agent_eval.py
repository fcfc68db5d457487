"""Held-out evaluation of a tool-use policy, with and without its tools (the figures of docs/results/agents.md).

    python -m thinkrl.rollout.agent_eval --model runs/agent-dapo/final --recipe recipes/agents/tool_dapo.yaml \\
        --samples 4 --out result.json

For the recipe's environment and held-out problems it runs four evaluations: with tools and without (no tools in
the prompt; a call the model makes anyway gets an "unknown tool" observation), each greedy and avg@k at the
recipe's sampling temperature, and prints one JSON object (also written to ``--out``). ``--split validation``
evaluates instead on problems of the test split drawn with another seed, the held-out test problems removed: for
choosing checkpoints without looking at the test set. ``--greedy-only`` runs just the greedy evaluation with tools
(the cold start's chunk-by-chunk stopping rule reads only that figure; a quarter or less of the time).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import load_pretrained
from thinkrl.rollout.agent_rollout import evaluate_agent_policy, render_episode_prompt
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.environments import build_environment
from thinkrl.rollout.sources import load_problems
from thinkrl.rollout.specs import DataSpec, SamplingSpec
from thinkrl.spec import read_yaml
from thinkrl.tasks import Problem
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

VALIDATION_SEED_OFFSET = 2_000_003
"""Validation problems are generated from ``data.seed`` plus this (the held-out test split uses 1_000_003)."""


def validation_problems(data: DataSpec, n: int) -> list[Problem]:
    """``n`` problems of the test split drawn from another seed, none of them a held-out test problem (same id)."""
    held_out = {problem.id for problem in load_problems(data, "test")}
    drawn = generate_dataset(data.task, n + len(held_out), data.seed + VALIDATION_SEED_OFFSET, "test",
                             data.difficulty)
    problems = [problem for problem in drawn if problem.id not in held_out][:n]
    if len(problems) < n:
        raise ValueError(f"only {len(problems)} validation problems of {data.task} apart from the test set")
    return problems


def evaluate_model(model_dir: str | Path, agent: AgentSpec, data: DataSpec, sampling: SamplingSpec,
                   samples: int, device: str = "cpu", validation: int = 0, greedy_only: bool = False) -> dict[str, Any]:
    """``{"tools": {"greedy": ..., "sampled": ...}, "no_tools": {...}}`` of the model in ``model_dir``, on the
    held-out test problems, or on ``validation`` validation problems when > 0; ``greedy_only``: just
    ``{"tools": {"greedy": ...}}``."""
    tokenizer = load_tokenizer(model_dir)
    model = load_pretrained(model_dir, device=device).eval().requires_grad_(False)
    problems = validation_problems(data, validation) if validation else load_problems(data, "test")
    env = build_environment(agent.environment, agent.options)
    longest = max(len(render_episode_prompt(tokenizer, env, p)[0]) for p in problems)
    engine = LLMEngine(model, tokenizer, num_slots=sampling.num_slots, admit_batch=sampling.admit_batch,
                       compile_decode=sampling.compile_decode, max_seq_len=longest + 16 + agent.max_total_tokens)
    out: dict[str, Any] = {"model": str(model_dir), "split": "validation" if validation else "test",
                           "num_problems": len(problems), "samples": samples}
    with EngineLoop(engine) as client:
        for use_tools in (True,) if greedy_only else (True, False):
            row = {}
            modes = [("greedy", 0.0, 1), ("sampled", sampling.temperature, samples)]
            for name, temperature, k in modes[:1] if greedy_only else modes:
                result = evaluate_agent_policy(agent, client, tokenizer, problems, samples=k, temperature=temperature,
                                               max_new_tokens=sampling.max_new_tokens, seed=12345,
                                               use_tools=use_tools)
                row[name] = asdict(result)
            out["tools" if use_tools else "no_tools"] = row
    return out


def read_sections(path: str | Path) -> tuple[AgentSpec, DataSpec, SamplingSpec, str]:
    """The ``agent``, ``data`` and ``sampling`` sections and ``model.device`` of a recipe YAML (the rest is not
    read; validation errors name the section)."""
    raw = read_yaml(Path(path).read_text(encoding="utf-8"), f"recipe {path}") or {}
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
    parser.add_argument("--validation", type=int, default=0, metavar="N",
                        help="evaluate on N validation problems (not the test set) instead")
    parser.add_argument("--greedy-only", action="store_true", help="only the greedy evaluation with tools")
    args = parser.parse_args(argv)
    try:
        agent, data, sampling, device = read_sections(args.recipe)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = evaluate_model(args.model, agent, data, sampling, args.samples, device, args.validation,
                                args.greedy_only)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
