"""Thinking-budget vocabulary shared by the chat templates, the engine and the parser.

Seed-OSS lets the user set a thinking budget in tokens (-1 unlimited, 0 answer at
once). While it thinks, the model reports its use inside reflection tags, at an
interval set by the budget, e.g.::

    <seed:cot_budget_reflect>I have used 129 tokens, and there are 383 tokens remaining
    for use.</seed:cot_budget_reflect>

and when the budget runs out it writes `BUDGET_EXHAUSTED_TEXT` and closes its
thinking. The sentences here are the exact ones of the Seed-OSS chat template
and model card; the templates in ``templates/`` spell the same sentences, and
the tests check that both agree.

Out of scope: counting tokens or forcing tags, which is the engine's budget
controller. This module only names the strings and the interval rule.
"""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED_BUDGET = -1
"""Budget value meaning "think as long as needed" (the default)."""

BUDGET_EXHAUSTED_TEXT = "I have exhausted my token budget, and now I will start answering the question."
"""Reflection the model writes when its thinking budget is spent."""

BUDGET_ZERO_TEXT = "The current thinking budget is 0, so I will directly start answering the question."
"""Reflection that the budget-0 generation prompt puts in an (already closed) thinking block."""

# (largest budget of the tier, reflection interval), as in Seed-OSS's `budget_reflections_v05` table.
_INTERVAL_TIERS: tuple[tuple[int, int], ...] = ((0, 0), (512, 128), (1024, 256), (4096, 512))
_TOP_INTERVAL = 1024


def check_thinking_budget(budget: object) -> int:
    """Return ``budget`` if it is a valid thinking budget (an int >= -1), else raise.

    Raises:
        TypeError: ``budget`` is not an int (bools are refused too).
        ValueError: ``budget`` is below -1.
    """
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"thinking_budget must be an int (-1 unlimited, 0 none, > 0 tokens), got {budget!r}")
    if budget < UNLIMITED_BUDGET:
        raise ValueError(f"thinking_budget must be -1 (unlimited), 0 or a positive token count, got {budget}")
    return budget


def reflection_interval(budget: int) -> int:
    """Tokens between two budget reflections for a thinking budget.

    0 (no reflections) for an unlimited (-1) or zero budget; 128 up to 512;
    256 up to 1024; 512 up to 4096; 1024 above (the Seed-OSS table).

    Raises:
        TypeError / ValueError: ``budget`` is not an int >= -1.
    """
    budget = check_thinking_budget(budget)
    for largest, interval in _INTERVAL_TIERS:
        if budget <= largest:
            return interval
    return _TOP_INTERVAL


def reflection_text(used: int, remaining: int) -> str:
    """The periodic reflection sentence, e.g. ``reflection_text(129, 383)``.

    Returns:
        ``"I have used {used} tokens, and there are {remaining} tokens remaining for use."``

    Raises:
        TypeError / ValueError: either count is not a non-negative int.
    """
    for name, value in (("used", used), ("remaining", remaining)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    return f"I have used {used} tokens, and there are {remaining} tokens remaining for use."


def budget_system_prompt(budget: int) -> str | None:
    """The system-turn text the Seed-OSS template adds for ``budget`` (None for unlimited).

    Budget 0 gets the direct-answer instruction; a positive budget gets the
    reflective instruction naming the budget and `reflection_interval(budget)`.
    """
    budget = check_thinking_budget(budget)
    if budget == UNLIMITED_BUDGET:
        return None
    if budget == 0:
        return (
            "You are an intelligent assistant that can answer questions in one step without the need for "
            "reasoning and thinking, that is, your thinking budget is 0. Next, please skip the thinking "
            "process and directly start answering the user's questions."
        )
    return (
        "You are an intelligent assistant with reflective ability. In the process of thinking and "
        f"reasoning, you need to strictly follow the thinking budget, which is {budget}. That is, you need "
        f"to complete your thinking within {budget} tokens and start answering the user's questions. You "
        f"will reflect on your thinking process every {reflection_interval(budget)} tokens, stating how many "
        "tokens have been used and how many are left."
    )


@dataclass(frozen=True)
class ThinkTags:
    """The tag strings of one thinking format.

    Fields:
        open: opens the thinking block (``<seed:think>`` / ``<think>``).
        close: closes it.
        reflect_open: opens a budget reflection inside the thinking block.
        reflect_close: closes a budget reflection.
        tool_open: opens a tool call in the answer.
        tool_close: closes a tool call.
    """

    open: str
    close: str
    reflect_open: str
    reflect_close: str
    tool_open: str = "<seed:tool_call>"
    tool_close: str = "</seed:tool_call>"

    def ends_inside_thinking(self, prompt_text: str) -> bool:
        """Whether ``prompt_text`` leaves a thinking block open (its last open tag comes after its last close
        tag, e.g. a Qwen3-style generation prompt ending in ``<think>``), so generation starts inside it."""
        return prompt_text.rfind(self.open) > prompt_text.rfind(self.close)

    def wrap_reflection(self, text: str) -> str:
        """``text`` between the reflection tags, e.g. ``wrap_reflection(reflection_text(128, 384))``."""
        return f"{self.reflect_open}{text}{self.reflect_close}"


SEED_TAGS = ThinkTags(
    open="<seed:think>",
    close="</seed:think>",
    reflect_open="<seed:cot_budget_reflect>",
    reflect_close="</seed:cot_budget_reflect>",
)
"""Seed-OSS tags: thinking, budget reflections and tool calls all use ``seed:`` tokens."""

THINK_TAGS = ThinkTags(
    open="<think>",
    close="</think>",
    reflect_open="<seed:cot_budget_reflect>",
    reflect_close="</seed:cot_budget_reflect>",
    tool_open="<tool_call>",
    tool_close="</tool_call>",
)
"""Qwen3 / DeepSeek-R1 tags. That format has no reflection tag of its own, so thinkrl reuses
Seed's (a special token of the built-in vocabulary, plain text in others); tool calls are
Qwen-style JSON in ``<tool_call>`` tags."""


def tags_for_format(think_format: str) -> ThinkTags:
    """`SEED_TAGS` for ``"seed"``, `THINK_TAGS` for ``"think"``.

    Raises:
        ValueError: any other name.
    """
    if think_format == "seed":
        return SEED_TAGS
    if think_format == "think":
        return THINK_TAGS
    raise ValueError(f"unknown think format {think_format!r}; allowed: 'seed', 'think'")
