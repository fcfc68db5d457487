"""A thinking-budget controller's final counts come back over the Ray rollout workers (no Ray needed: the workers
are called in this process), also when a continuation's `ContinuedController` wraps it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from thinkrl.engine import Request, SamplingParams, make_budget_controller
from thinkrl.engine.budget import ThinkingBudgetController
from thinkrl.launch import ray_placement
from thinkrl.launch.ray_actors import RolloutWorker
from thinkrl.launch.ray_placement import RayEngineClient
from thinkrl.records import Trajectory
from thinkrl.rollout.partial import ContinuedController
from thinkrl.rollout.process_wire import budget_controller
from thinkrl.tokenizer import load_tokenizer


class _CountingEngine:
    """Counts 5 thinking tokens on each request's budget controller, as a real engine's sampling would."""

    def generate(self, requests: list[Request]) -> list[Trajectory]:
        out = []
        for request in requests:
            controller = budget_controller(request.controller)
            if controller is not None:
                controller.thinking_tokens += 5
                controller.phase = "thinking"
            out.append(Trajectory(prompt_ids=request.prompt_ids, response_ids=[7], logprobs=[-0.1]))
        return out


def _client(tokenizer) -> RayEngineClient:
    worker = RolloutWorker.__new__(RolloutWorker)  # its engine and tokenizer only; no model is built
    worker.tokenizer, worker.engine = tokenizer, _CountingEngine()
    return RayEngineClient([SimpleNamespace(generate=SimpleNamespace(remote=worker.generate))])


@pytest.mark.parametrize("continued", [False, True])
def test_budget_counts_come_back_to_the_callers_controller(monkeypatch, continued):
    monkeypatch.setattr(ray_placement, "import_ray", lambda: SimpleNamespace(get=lambda calls: calls))
    tokenizer = load_tokenizer()
    inner = make_budget_controller(tokenizer, 16)
    assert isinstance(inner, ThinkingBudgetController)
    inner.thinking_tokens, inner.phase = 3, "thinking"  # counted by an earlier piece
    controller = ContinuedController(inner, [11, 12, 13]) if continued else inner
    request = Request([1, 2, 3], SamplingParams(max_new_tokens=4), request_id=0, controller=controller)
    (traj,) = _client(tokenizer).generate([request])
    assert traj.response_ids == [7]
    assert request.controller is controller
    if continued:
        assert controller.inner is inner and controller.prefix == [11, 12, 13]
    assert inner.thinking_tokens == 8 and inner.phase == "thinking"
    assert inner.vocab.encode is not None  # the caller's controller keeps its own tokenizer-bound vocabulary
