"""Prompts in, sampled trajectories out: the one place that renders a problem, builds its engine requests and
fills the rollout fields of what comes back. RL, evaluation and the budget sweep all sample through `sample`.

Every request carries a `ThinkingBudgetController` for its prompt's budget: counting only (``enforce=False``,
which never changes what is sampled) unless the caller enforces the budget. So every trajectory reports the
thinking tokens it used and whether it kept its budget, by the engine's counting rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thinkrl.engine import Request, SamplingParams
from thinkrl.engine.budget import ThinkingBudgetController, budget_vocab
from thinkrl.records import Trajectory
from thinkrl.rollout.specs import SamplingSpec
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


class GenerateClient(Protocol):
    """What the rollout stage needs of an engine: `thinkrl.engine.LLMEngine` (in the caller's thread) or the
    engine client `thinkrl.engine.loop.EngineLoop` (another thread owns the engine)."""

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]: ...


@dataclass(frozen=True)
class RolloutPrompt:
    """A problem rendered for the policy.

    Fields:
        problem: the task problem.
        thinking_budget: the budget rendered in the prompt (-1 unlimited, 0 answer at once).
        prompt_ids: (P,) token ids of the chat prompt with the generation prompt.
        thinking_open: the generation prompt ends inside an open thinking block.
    """

    problem: Problem
    thinking_budget: int
    prompt_ids: tuple[int, ...]
    thinking_open: bool


@dataclass(frozen=True)
class SampleRequest:
    """One response to sample: a rendered prompt, how to sample it, and its group (responses to one prompt)."""

    prompt: RolloutPrompt
    params: SamplingParams
    group_id: int = 0
    request_id: Any = None


def render_prompt(tokenizer: TextTokenizer, problem: Problem, thinking_budget: int = -1) -> RolloutPrompt:
    """The user turn of ``problem`` in the chat template, with the budget and the generation prompt."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": problem.prompt}], add_generation_prompt=True,
                                         thinking_budget=thinking_budget)
    return RolloutPrompt(problem, thinking_budget, tuple(tokenizer.encode(text)),
                         tokenizer.think_tags.ends_inside_thinking(text))


def sampling_params(spec: SamplingSpec, seed: int | None, **changes: Any) -> SamplingParams:
    """`SamplingParams` of a ``sampling`` section, with a per-request seed (``changes`` override fields)."""
    fields = {"max_new_tokens": spec.max_new_tokens, "temperature": spec.temperature, "top_p": spec.top_p,
              "top_k": spec.top_k, "seed": seed, **changes}
    return SamplingParams(**fields)


def build_request(tokenizer: TextTokenizer, item: SampleRequest, request_id: Any,
                  enforce_budget: bool = False) -> Request:
    """The engine request of ``item``, with its thinking-budget controller (counting, or enforcing a finite
    budget when ``enforce_budget``)."""
    prompt = item.prompt
    controller = ThinkingBudgetController(budget_vocab(tokenizer), prompt.thinking_budget,
                                          enforce=enforce_budget and prompt.thinking_budget >= 0,
                                          thinking_open=prompt.thinking_open)
    return Request(list(prompt.prompt_ids), item.params, request_id=request_id, controller=controller)


def sample(client: GenerateClient, tokenizer: TextTokenizer, items: Sequence[SampleRequest], *,
           enforce_budget: bool = False) -> list[Trajectory]:
    """Sample every item (in one engine batch); trajectories in the order of ``items`` with ``problem``,
    ``group_id``, ``thinking_budget``, ``thinking_tokens`` and ``kept_budget`` set.

    A request that failed in the engine (finish reason "error") raises: a rollout must not train on, or an
    evaluation score, a response that was never completed.
    """
    requests = [build_request(tokenizer, item, item.request_id if item.request_id is not None else i, enforce_budget)
                for i, item in enumerate(items)]
    trajs = client.generate(requests)
    for item, request, traj in zip(items, requests, trajs, strict=True):
        fill_rollout_fields(traj, item, request.controller, request.request_id)  # type: ignore[arg-type]
    return trajs


def fill_rollout_fields(traj: Trajectory, item: SampleRequest, controller: ThinkingBudgetController,
                        request_id: Any) -> None:
    """Set ``traj``'s rollout fields from its item and its budget controller; raise if it failed in the engine."""
    if traj.finish_reason == "error":
        raise RuntimeError(f"request {request_id} failed in the engine: {traj.error}")
    traj.problem = item.prompt.problem
    traj.group_id = item.group_id
    traj.thinking_budget = item.prompt.thinking_budget
    traj.thinking_tokens = controller.thinking_tokens
    traj.kept_budget = controller.kept_budget
