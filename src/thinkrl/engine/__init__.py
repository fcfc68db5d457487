"""Generation: KV-cache sampling with continuous batching. Imports model (and duck-types the tokenizer)."""

from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.sampling import apply_top_k_top_p, sample_tokens
from thinkrl.engine.scheduler import Scheduler, SequenceState
from thinkrl.engine.types import Request, SamplingParams, SequenceController, TokenEvent

__all__ = [
    "LLMEngine",
    "Request",
    "SamplingParams",
    "Scheduler",
    "SequenceController",
    "SequenceState",
    "TokenEvent",
    "apply_top_k_top_p",
    "sample_tokens",
]
