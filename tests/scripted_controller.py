"""A controller that makes a tiny random model say a fixed text, for server tests.

A top-level module of ``tests/`` (on pytest's ``pythonpath``): test modules are imported by path
(``--import-mode=importlib``) and cannot import each other.
"""

from __future__ import annotations


class Script:
    """Says ``ids`` instead of the first sampled token (give them an end-of-turn token last to end the response)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def banned_tokens(self, response_ids: list[int]) -> list[int]:
        return []

    def forced_tokens(self, response_ids: list[int]) -> list[int]:
        return []

    def replacement_tokens(self, response_ids: list[int], token: int) -> list[int]:
        return self.ids if not response_ids else []
