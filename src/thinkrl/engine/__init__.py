"""Generation: KV-cache sampling with continuous batching, thinking-budget control. Imports model and the
tokenizer's budget vocabulary (and duck-types the tokenizer)."""

from thinkrl.engine.budget import (
    WAIT_TEXT,
    BudgetVocab,
    ThinkingBudgetController,
    budget_vocab,
    make_budget_controller,
)
from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.loop import EngineError, EngineLoop
from thinkrl.engine.sampling import apply_top_k_top_p, sample_tokens
from thinkrl.engine.scheduler import Scheduler, SequenceState
from thinkrl.engine.types import Request, SamplingParams, SequenceController, TokenEvent

__all__ = [
    "WAIT_TEXT",
    "BudgetVocab",
    "EngineError",
    "EngineLoop",
    "LLMEngine",
    "Request",
    "SamplingParams",
    "Scheduler",
    "SequenceController",
    "SequenceState",
    "ThinkingBudgetController",
    "TokenEvent",
    "apply_top_k_top_p",
    "budget_vocab",
    "make_budget_controller",
    "sample_tokens",
]
