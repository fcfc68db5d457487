"""Environments for multi-turn tool use: a problem, the tools the model may call, and the reward.

An `Environment` takes its problems from a registered task (``task``: the recipe's ``data.task`` must name
it), gives the tools (`thinkrl.rollout.tools.Tool`) the model may call on them, renders the opening messages,
scores the finished episode and, for cold-start SFT, writes a worked tool-use transcript. `ENVIRONMENTS`
registers them by name; a recipe's ``agent.environment`` picks one, with ``agent.options`` passed to its
constructor. Add your own::

    @ENVIRONMENTS.register("my_env")
    class MyEnv(Environment):
        name, task = "my_env", "arithmetic"
        def tools(self): return [build_tool("calculator")]

Built in: ``big_arithmetic`` (a sum of products of multi-digit numbers with a calculator that does one operation
per call, so an episode needs several calls) and ``python_arithmetic`` (the same problems with the sandboxed
Python tool).
"""

from __future__ import annotations

import random
from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar

from thinkrl.registry import Registry
from thinkrl.rewards import score_response
from thinkrl.rollout.tools import Tool, build_tool
from thinkrl.tasks import Problem, get_task
from thinkrl.tasks.arithmetic import SLIPS
from thinkrl.tasks.big_arithmetic import product_terms
from thinkrl.tokenizer import ThinkTags

Message = dict[str, Any]


@dataclass(frozen=True)
class EpisodeVerdict:
    """An environment's judgement of a finished episode.

    Fields:
        correct: the task was solved.
        reason: why (a verifier reason: "correct", "wrong value", "truncated"...).
    """

    correct: bool
    reason: str


class Environment(ABC):
    """A tool-use environment. Subclasses set ``name`` and ``task`` and override `tools`; the other methods
    have working defaults (the task's prompt as the user turn; the task's verifier on the final turn)."""

    name: ClassVar[str]
    task: ClassVar[str]
    """The registered task whose problems this environment poses."""

    def tools(self) -> list[Tool]:
        """The tools of every episode (names unique)."""
        return []

    def messages(self, problem: Problem) -> list[Message]:
        """The opening conversation (tool definitions are added by the chat template from `tools`)."""
        return [{"role": "user", "content": problem.prompt}]

    def judge(self, problem: Problem, final_turn: str, tags: ThinkTags, finished: bool) -> EpisodeVerdict:
        """Score the last assistant turn (decoded with special tokens) with the task's verifier; ``finished``
        False (cut off by a limit) is wrong."""
        score = score_response(get_task(self.task), problem, final_turn, tags, finished=finished)
        return EpisodeVerdict(score.correct, score.reason)

    def write_transcript(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> list[Message]:
        """Assistant and tool turns that solve ``problem`` with the tools (cold-start SFT data); ``noise`` is the
        chance of a realistic mistake. Environments without transcripts raise NotImplementedError."""
        raise NotImplementedError(f"environment {self.name!r} writes no SFT transcripts")

    def tool_schemas(self) -> list[dict[str, Any]]:
        """`Tool.schema` of every tool (the chat template's ``tools``)."""
        return [tool.schema() for tool in self.tools()]


ENVIRONMENTS: Registry[type[Environment]] = Registry("environment")


def build_environment(name: str, options: dict[str, Any] | None = None) -> Environment:
    """The environment registered as ``name``, constructed with ``options`` (TypeError names a bad option)."""
    cls = ENVIRONMENTS.get(name)
    try:
        env = cls(**(options or {}))
    except TypeError as error:
        raise TypeError(f"environment {name!r} does not take these options {sorted(options or {})}: {error}") from None
    tools = [tool.name for tool in env.tools()]
    if len(set(tools)) != len(tools):
        raise ValueError(f"environment {name!r} has duplicate tool names: {tools}")
    return env


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _slip(value: int, rng: random.Random) -> int:
    """``value`` with one digit changed (a copying mistake), never equal to it."""
    digits = list(str(value))
    i = rng.randrange(len(digits))
    choices = [d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0")]
    digits[i] = rng.choice(choices)
    return int("".join(digits)) if digits else value + rng.choice(SLIPS)


@ENVIRONMENTS.register("big_arithmetic")
class BigArithmeticEnv(Environment):
    """``big_arithmetic`` problems with a calculator limited to ``max_operations`` per call (default 1): one
    call per product, then one per addition, then the answer. The transcript's mistakes (``noise``) are
    copying slips: a factor or an intermediate result written with one digit wrong.

    ``describe_tools`` False leaves the calculator out of the system turn (no tool block in the prompt: ~20
    prompt tokens instead of ~310) while it stays callable: the first, short-context stage of a cold-start
    curriculum, where a small model learns to copy operands into its calls before it sees the long prompt."""

    name = "big_arithmetic"
    task = "big_arithmetic"

    def __init__(self, max_operations: int = 1, describe_tools: bool = True) -> None:
        self.max_operations = max_operations
        self.describe_tools = describe_tools
        self._tools = [build_tool("calculator", max_operations=max_operations)]

    def tools(self) -> list[Tool]:
        return list(self._tools)

    def tool_schemas(self) -> list[dict[str, Any]]:
        return super().tool_schemas() if self.describe_tools else []

    def expression_calls(self, problem: Problem) -> list[tuple[str, int]]:
        """``(expression, value)`` of each calculator call of the worked solution, in order."""
        products = [(f"{a}*{b}", a * b) for a, b in product_terms(problem.ground_truth["expression"])]
        steps, total = list(products), products[0][1] if products else 0
        for _, product in products[1:]:
            steps.append((f"{total}+{product}", total + product))
            total += product
        return steps

    def write_transcript(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> list[Message]:
        calls = self.expression_calls(problem)
        slip_at = rng.randrange(len(calls) + 1) if rng.random() < noise else -1
        messages: list[Message] = []
        results: dict[int, int] = {}  # true value -> value the transcript carries after a slip
        for i, (expression, value) in enumerate(calls):
            left, op, right = expression.partition("*") if "*" in expression else expression.partition("+")
            left_v, right_v = (results.get(int(left), int(left)), results.get(int(right), int(right)))
            if i == slip_at:
                left_v = _slip(left_v, rng)
            text = f"{left_v}{op}{right_v}"
            got = left_v * right_v if op == "*" else left_v + right_v
            results[value] = got
            messages += [{"role": "assistant", "content": None, "tool_calls": [_call("calculator", expression=text)]},
                         {"role": "tool", "content": str(got)}]
        answer = results[calls[-1][1]] if calls else 0
        if slip_at == len(calls):
            answer = _slip(answer, rng)
        messages.append({"role": "assistant", "content": f"Answer: {answer}"})
        return messages


@ENVIRONMENTS.register("python_arithmetic")
class PythonArithmeticEnv(Environment):
    """``big_arithmetic`` problems with the sandboxed ``python`` tool (options: `thinkrl.rollout.tools.python_tool`)."""

    name = "python_arithmetic"
    task = "big_arithmetic"

    def __init__(self, **python_options: Any) -> None:
        self._tools = [build_tool("python", **python_options)]

    def tools(self) -> list[Tool]:
        return list(self._tools)

    def write_transcript(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> list[Message]:
        expression = problem.ground_truth["expression"]
        answer = problem.ground_truth["answer"]
        if rng.random() < noise:
            answer = _slip(answer, rng)
        return [{"role": "assistant", "content": None, "tool_calls": [_call("python", code=f"print({expression})")]},
                {"role": "tool", "content": f"{problem.ground_truth['answer']}\n"},
                {"role": "assistant", "content": f"Answer: {answer}"}]
