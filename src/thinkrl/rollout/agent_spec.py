"""The ``agent`` config section: multi-turn tool use in RL, SFT and evaluation (see docs/agents.md).

Present in a recipe, it switches rollouts to `thinkrl.rollout.multiturn` episodes in the named environment, in
``rollout.mode`` sync or streaming (`thinkrl.rollout.agent_streaming`); the recipe's ``data.task`` must be the
environment's task. Every default lives here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from thinkrl.rollout.environments import ENVIRONMENTS
from thinkrl.rollout.multiturn import AgentLimits
from thinkrl.spec import Section, registered


class AgentSpec(Section):
    """Multi-turn tool use: the environment and the limits of an episode."""

    environment: str
    """Registered environment name (see `thinkrl.rollout.environments.ENVIRONMENTS`)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the environment's constructor (e.g. ``max_operations`` of big_arithmetic)."""
    max_turns: int = Field(8, ge=1)
    """Assistant turns per episode; a tool call in the last one ends the episode (logged: agent/limit_max_turns)."""
    max_tokens_per_turn: int = Field(128, ge=1)
    """New tokens of one assistant turn (also capped by sampling.max_new_tokens)."""
    max_total_tokens: int = Field(512, ge=1)
    """Response tokens of a whole episode, tool tokens included (logged: agent/limit_max_total_tokens)."""
    tool_timeout_s: float = Field(10.0, gt=0)
    """Wall-clock seconds of one tool call; past it the model sees a timeout error (logged: agent/tool_timeouts)."""
    max_tool_output_chars: int = Field(2000, ge=1)
    """A tool's output is cut to this many characters."""
    max_calls_per_turn: int = Field(4, ge=1)
    """Tool calls run per turn; more get an error observation."""
    tool_workers: int = Field(8, ge=1)
    """Threads running tool calls at once (streaming: turns whose calls run at once); the engine keeps decoding
    other episodes meanwhile."""
    sft_without_tools: float = Field(0.0, ge=0.0, le=1.0)
    """SFT: share of examples rendered without tools, with the task's own trace (so one model can be evaluated
    with and without tools)."""

    @field_validator("environment")
    @classmethod
    def _known(cls, value: str) -> str:
        return registered(ENVIRONMENTS, value)

    def limits(self) -> AgentLimits:
        """The `AgentLimits` of this section."""
        return AgentLimits(max_turns=self.max_turns, max_tokens_per_turn=self.max_tokens_per_turn,
                           max_total_tokens=self.max_total_tokens, tool_timeout_s=self.tool_timeout_s,
                           max_tool_output_chars=self.max_tool_output_chars,
                           max_calls_per_turn=self.max_calls_per_turn)
