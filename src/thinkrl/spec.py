"""The base of every config section: a pydantic model that forbids unknown keys.

Each component declares its own section beside its code (`thinkrl.rollout.specs`, `thinkrl.train.specs`); only
the recipe classes in `thinkrl.train.config` combine them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from thinkrl.registry import Registry


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; field docstrings are the documentation."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def registered(registry: Registry[Any], name: str) -> str:
    """``name`` if ``registry`` has it, else ValueError listing the registered names."""
    if name not in registry:
        raise ValueError(f"unknown {registry.family} {name!r}; registered: {', '.join(registry.names())}")
    return name
