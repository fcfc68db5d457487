"""The one record type for a sampled response.

Every layer passes `Trajectory`: the engine fills the generation fields (tokens, behaviour log-probs, the
weight version of every token), the rollout stage fills what it knows about the prompt (problem, group,
thinking budget and the thinking tokens counted while sampling) and the verdict (correctness, reward and its
parts), and `train/` collates them into tensors. Plain Python lists keep it cheap to move between processes;
tensors are made only when a batch is packed for training.

Everything thinkrl reads is a typed field. ``metadata`` carries the caller's own data from the request to the
trajectory untouched; no thinkrl code reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from thinkrl.tasks import Problem

FinishReason = Literal["stop", "length", "budget", "abort", "error"]


@dataclass(frozen=True)
class RewardParts:
    """The terms a scalar reward is the sum of.

    Fields:
        outcome: the verifier's reward (e.g. +1 correct, -1 wrong).
        overlong: DAPO's soft overlong punishment (<= 0; 0 when off).
        budget: the thinking-budget shaping (<= 0; 0 when off).
    """

    outcome: float
    overlong: float = 0.0
    budget: float = 0.0

    @property
    def total(self) -> float:
        return self.outcome + self.overlong + self.budget


@dataclass
class Trajectory:
    """One sampled response to one prompt.

    Generation fields (set by the engine):
        prompt_ids: token ids of the rendered prompt (P,).
        response_ids: generated token ids (R,), stop token included when sampled.
        logprobs: behaviour-policy log-probability of each response token (R,); 0 for forced tokens.
        response_mask: per response token, True if it was sampled by the policy (enters the loss) and False if it
            was forced (e.g. inserted by the thinking-budget controller) (R,); left empty: every token sampled.
        token_versions: per response token, the version of the engine's weights that produced it (R,). A
            response sampled across a weight update carries two versions. Left empty: version 0 throughout.
        finish_reason: "stop" (stop token/string), "length" (max new tokens), "budget" (forced end of thinking),
            "abort" (aborted), "error" (the request failed; see ``error``).
        text: decoded response text.
        error: why the request failed (finish reason "error"), else None.

    Rollout fields (set by `thinkrl.rollout`):
        problem: the task problem the prompt was rendered from, or None for a raw prompt.
        group_id: responses to the same prompt share it (GRPO/DAPO groups).
        thinking_budget: budget the prompt was rendered with (-1 unlimited).
        thinking_tokens: thinking tokens counted while sampling (the engine controller's rule), or None.
        kept_budget: the response closed thinking within its budget (`ThinkingBudgetController.kept_budget`),
            or None when not counted.
        correct: the verifier's verdict once judged, else None.
        reward: scalar reward once scored, else None.
        reward_parts: the terms of ``reward`` once scored, else None.
        reward_reason: why the verifier gave that verdict ("correct", "wrong value"...).
        metadata: the request's metadata, copied; the caller's own data, never read by thinkrl.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason = "stop"
    response_mask: list[bool] = field(default_factory=list)
    token_versions: list[int] = field(default_factory=list)
    text: str = ""
    error: str | None = None
    problem: Problem | None = None
    group_id: int = 0
    thinking_budget: int = -1
    thinking_tokens: int | None = None
    kept_budget: bool | None = None
    correct: bool | None = None
    reward: float | None = None
    reward_parts: RewardParts | None = None
    reward_reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.response_ids)
        if len(self.logprobs) != n:
            raise ValueError(f"logprobs has {len(self.logprobs)} entries but response_ids has {n}")
        if not self.response_mask:
            self.response_mask = [True] * n
        elif len(self.response_mask) != n:
            raise ValueError(f"response_mask has {len(self.response_mask)} entries but response_ids has {n}")
        if not self.token_versions:
            self.token_versions = [0] * n
        elif len(self.token_versions) != n:
            raise ValueError(f"token_versions has {len(self.token_versions)} entries but response_ids has {n}")

    @property
    def num_response_tokens(self) -> int:
        return len(self.response_ids)

    @property
    def policy_version(self) -> int:
        """The oldest weight version that produced a token of this response (0 for an empty response): what
        staleness is measured from."""
        return min(self.token_versions) if self.token_versions else 0
