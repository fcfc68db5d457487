"""The rollout engine of a training run: a frozen copy of the policy's weights in an engine, behind its client.

The trainer gets back the client (`EngineLoop`: submit / stream / generate / abort / update_weights / version) and
nothing else; it never holds the engine's tensors, and the engine never holds the trainer's.
"""

from __future__ import annotations

import copy

from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import CausalLM
from thinkrl.rollout.specs import SamplingSpec
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer

EngineClient = EngineLoop
"""The engine client the trainer talks to."""


def start_engine(policy: CausalLM, tokenizer: TextTokenizer, sampling: SamplingSpec, sized: list[Problem],
                 seed: int) -> EngineLoop:
    """A started engine client over a frozen copy of ``policy``'s weights (version 0), with ``sampling.num_slots``
    slots long enough for the longest of the ``sized`` problems' prompts (at any of the sampling budgets) plus
    ``sampling.max_new_tokens``. Stop it with ``client.stop()``."""
    max_prompt = max(len(tokenizer.encode_chat([{"role": "user", "content": p.prompt}], thinking_budget=b))
                     for p in sized for b in sampling.thinking_budgets)
    weights = copy.deepcopy(policy).eval().requires_grad_(False)
    engine = LLMEngine(weights, tokenizer, num_slots=sampling.num_slots,
                       max_seq_len=max_prompt + 16 + sampling.max_new_tokens, seed=seed)
    return EngineLoop(engine).start()
