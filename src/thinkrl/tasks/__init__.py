"""Procedural reasoning tasks: generators, exact verifiers and solution traces.

Importing this package registers the built-in tasks (``countdown``, ``game24``,
``arithmetic``) in `TASKS`. Nothing here imports torch: tasks map text to
rewards.
"""

# The task modules register themselves on import.
from thinkrl.tasks import arithmetic as _arithmetic  # noqa: F401
from thinkrl.tasks import countdown as _countdown  # noqa: F401
from thinkrl.tasks import game24 as _game24  # noqa: F401
from thinkrl.tasks.base import REASONS, Knob, Problem, Task, Trace, Verdict, extract_answer
from thinkrl.tasks.registry import TASKS, get_task

__all__ = ["REASONS", "TASKS", "Knob", "Problem", "Task", "Trace", "Verdict", "extract_answer", "get_task"]
