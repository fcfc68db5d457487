"""Models that fail on purpose, for tests of engine failures across a process boundary.

A top-level module of ``tests/`` (on pytest's ``pythonpath``), so a rollout process started by spawn can unpickle
them: test modules themselves are imported by path (``--import-mode=importlib``) and have no importable name.
"""

from __future__ import annotations

import torch

from thinkrl.model import CausalLM


class FailingForward(CausalLM):
    """A decoder whose cached forward fails: an engine failure (every request of the step), not one request's."""

    def forward_cached(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise IndexError("index out of range in self (the test's failing forward)")


def failing_copy(model: CausalLM) -> CausalLM:
    """``model``'s weights in a `FailingForward`."""
    import copy

    failing = copy.deepcopy(model)
    failing.__class__ = FailingForward
    return failing
