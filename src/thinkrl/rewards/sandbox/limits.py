"""What a sandboxed program may use (`SandboxLimits`) and how its run ended (`Status`)."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(enum.StrEnum):
    """How a program run, or one test of it, ended.

    ``OK`` is only for a program (it exited 0); a test ends ``PASSED`` or with one of the failures.
    """

    OK = "ok"
    PASSED = "passed"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"


class SandboxLimits(BaseModel):
    """Resource limits and isolation settings for one sandboxed program.

    Fields:
        timeout_s: wall-clock seconds for one step: a whole stdin/stdout or script program, or, for
            function-call tests, loading the solution and then each call. The process group is killed
            past it. The CPU-time rlimit is the wall budget rounded up, plus one second.
        memory_mb: address-space rlimit (RLIMIT_AS) of every process in the sandbox.
        max_output_bytes: cap on each of stdout, stderr and the result channel; past it the program is
            killed and reported ``output_limit``.
        max_file_mb: largest file the program may write (RLIMIT_FSIZE).
        max_open_files: RLIMIT_NOFILE.
        max_processes: RLIMIT_NPROC; under bubblewrap it counts the processes of the sandbox's user
            namespace, in the fallback those of the sandbox's dedicated uid (when run as root).
        tmpfs_mb: size of the private writable ``/tmp`` (and ``/dev/shm``) under bubblewrap.
        isolation: ``"bwrap"`` (bubblewrap; error if unusable), ``"rlimits"`` (the weaker fallback, chosen
            explicitly) or ``"auto"`` (bubblewrap when it works here; else an error, or the fallback with a
            warning when ``allow_unisolated`` is set).
        allow_unisolated: opt in to running untrusted code with rlimits only (network, files and secrets
            reachable; see docs/sandbox.md) when ``isolation="auto"`` finds no working bubblewrap. Off by
            default: without it, a missing bubblewrap is a RuntimeError naming this option. The environment
            variable ``THINKRL_SANDBOX_ALLOW_UNISOLATED=1`` opts in as well (for CLI runs).
        bwrap: the bubblewrap executable (a name looked up on PATH, or a path).
        python: interpreter that runs the program; None picks the first of this interpreter,
            ``python3`` on PATH and ``/usr/bin/python3`` that starts inside the sandbox.
        uid_base: when the parent runs as root, programs run under dedicated uids
            ``uid_base .. uid_base + num_uids - 1`` (one per concurrent program); any process left under
            them is killed.
        num_uids: how many dedicated uids (the most programs that may run at once as root).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=5.0, gt=0, le=3600)
    memory_mb: int = Field(default=1024, ge=64)
    max_output_bytes: int = Field(default=8 << 20, ge=1024)
    max_file_mb: int = Field(default=16, ge=1)
    max_open_files: int = Field(default=64, ge=16)
    max_processes: int = Field(default=32, ge=4)
    tmpfs_mb: int = Field(default=64, ge=1)
    isolation: Literal["auto", "bwrap", "rlimits"] = "auto"
    allow_unisolated: bool = False
    bwrap: str = Field(default="bwrap", min_length=1)
    python: str | None = None
    uid_base: int = Field(default=2_000_000_000, ge=1000, le=4_000_000_000)
    num_uids: int = Field(default=64, ge=1, le=4096)

    def rlimits(self, steps: int = 1) -> dict[str, int]:
        """The rlimits the in-sandbox runner applies to itself before running untrusted code.

        ``steps`` is how many ``timeout_s`` budgets the process may use (1 + calls for function tests).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        cpu = int(self.timeout_s * steps) + 1
        return {
            "RLIMIT_CPU": cpu,
            "RLIMIT_AS": self.memory_mb << 20,
            "RLIMIT_FSIZE": self.max_file_mb << 20,
            "RLIMIT_NOFILE": self.max_open_files,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_CORE": 0,
        }
