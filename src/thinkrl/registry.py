"""A small name -> object registry shared by every pluggable family.

Tasks, advantage estimators, policy losses and reward functions each own one
`Registry`. Recipes pick members by name; users add their own with
``@REGISTRY.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase snake-case names to members of one family.

    Registering a name twice is an error; looking up an unknown name raises a
    `KeyError` whose message lists the registered names.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._members: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` and returns it unchanged."""
        if not name or name != name.lower() or " " in name:
            raise ValueError(f"{self.family} name {name!r} must be lowercase snake case")

        def decorator(obj: T) -> T:
            if name in self._members:
                raise ValueError(f"{self.family} {name!r} is already registered")
            self._members[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the member registered under ``name``."""
        try:
            return self._members[name]
        except KeyError:
            known = ", ".join(sorted(self._members)) or "(none)"
            raise KeyError(f"unknown {self.family} {name!r}; registered: {known}") from None

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its member (e.g. a test's temporary member); KeyError lists the known ones."""
        member = self.get(name)
        del self._members[name]
        return member

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)
