"""Fixtures of the reward tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from thinkrl.rewards.sandbox import SandboxLimits, resolve_isolation

WITHOUT_BWRAP = "THINKRL_TESTS_WITHOUT_BWRAP"


@pytest.fixture(scope="session")
def require_bwrap() -> Callable[[SandboxLimits], None]:
    """A check for the tests of what only the bubblewrap sandbox guarantees. `make setup` installs bubblewrap, so a
    missing or non-working one fails them; a host that cannot run it at all (no unprivileged user namespaces) skips
    them only when it says so with ``THINKRL_TESTS_WITHOUT_BWRAP=1``."""

    def check(limits: SandboxLimits) -> None:
        assert shutil.which(limits.bwrap) is not None, "bubblewrap is missing: run `make setup`"
        try:
            resolve_isolation(limits.model_copy(update={"isolation": "bwrap"}))
        except RuntimeError as exc:
            if os.environ.get(WITHOUT_BWRAP) == "1":
                pytest.skip(f"bubblewrap does not run here ({WITHOUT_BWRAP}=1): {exc}")
            pytest.fail(f"bubblewrap is installed but does not run here: {exc} (set {WITHOUT_BWRAP}=1 to skip the "
                        "tests of its isolation on a host without user namespaces)")

    return check
