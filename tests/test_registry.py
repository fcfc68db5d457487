"""The registry: names are unique and lowercase, unknown names list the known ones, members can be removed."""

from __future__ import annotations

import pytest

from thinkrl.registry import Registry


def test_register_get_unregister() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("small_one")(1)
    reg.register("big_one")(2)
    assert reg.get("small_one") == 1 and reg.names() == ["big_one", "small_one"] and len(reg) == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.register("small_one")(3)
    with pytest.raises(ValueError, match="lowercase snake case"):
        reg.register("Big One")
    assert reg.unregister("small_one") == 1
    assert "small_one" not in reg and reg.names() == ["big_one"]
    with pytest.raises(KeyError, match="unknown widget 'small_one'; registered: big_one"):
        reg.unregister("small_one")
    reg.register("small_one")(4)  # the name is free again
    assert reg.get("small_one") == 4
