"""The task registry: ``TASKS`` maps a name to a `Task` subclass.

Built-in tasks register themselves when `thinkrl.tasks` is imported. Add your
own with::

    from thinkrl.tasks import TASKS, Task

    @TASKS.register("my_task")
    class MyTask(Task):
        name = "my_task"
        ...
"""

from __future__ import annotations

from thinkrl.registry import Registry
from thinkrl.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task")


def get_task(name: str) -> Task:
    """A fresh instance of the task registered as ``name`` (KeyError listing the known names)."""
    task = TASKS.get(name)()
    if task.name != name:
        raise ValueError(f"task class {type(task).__name__} is registered as {name!r} but names itself {task.name!r}")
    return task
