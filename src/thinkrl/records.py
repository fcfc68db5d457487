"""The one record type for a sampled response.

Every layer passes `Trajectory`: the engine fills the generation fields, the
reward functions fill `reward`/`reward_reason`, `rl/` reads them as tensors
after `train/` collates them. Plain Python lists keep it cheap to move between
processes; tensors are made only when a batch is packed for training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "budget", "abort"]


@dataclass
class Trajectory:
    """One sampled response to one prompt.

    Fields:
        prompt_ids: token ids of the rendered prompt (P,).
        response_ids: generated token ids (R,), stop token included when sampled.
        logprobs: behaviour-policy log-probability of each response token (R,).
        response_mask: per response token, True if it was sampled by the policy
            (enters the loss) and False if it was forced (e.g. inserted by the
            thinking-budget controller) (R,).
        finish_reason: "stop" (stop token/string), "length" (max new tokens),
            "budget" (forced end of thinking), "abort".
        policy_version: version of the weights that sampled it (for staleness).
        group_id: responses to the same prompt share it (GRPO/DAPO groups).
        text: decoded response text.
        reward: scalar reward once scored, else None.
        reward_reason: why the verifier gave that reward ("correct", "wrong value"...).
        thinking_budget: budget the prompt was rendered with (-1 unlimited).
        metadata: task name, ground truth, difficulty and anything else the
            task needs to verify the answer.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason = "stop"
    response_mask: list[bool] | None = None
    policy_version: int = 0
    group_id: int = 0
    text: str = ""
    reward: float | None = None
    reward_reason: str = ""
    thinking_budget: int = -1
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.response_ids):
            raise ValueError(
                f"logprobs has {len(self.logprobs)} entries but response_ids has {len(self.response_ids)}"
            )
        if self.response_mask is None:
            self.response_mask = [True] * len(self.response_ids)
        elif len(self.response_mask) != len(self.response_ids):
            raise ValueError(
                f"response_mask has {len(self.response_mask)} entries but response_ids has "
                f"{len(self.response_ids)}"
            )

    @property
    def num_response_tokens(self) -> int:
        return len(self.response_ids)
