"""Procedural reasoning tasks: generators, exact verifiers and solution traces.

Importing this package registers the built-in tasks (``countdown``, ``game24``,
``arithmetic``) in `TASKS`. Nothing here imports torch: tasks map text to
rewards.
"""

# The task modules register themselves on import.
from thinkrl.tasks import arithmetic as _arithmetic  # noqa: F401
from thinkrl.tasks import big_arithmetic as _big_arithmetic  # noqa: F401
from thinkrl.tasks import binary_matrix as _binary_matrix  # noqa: F401
from thinkrl.tasks import bit_manipulation as _bit_manipulation  # noqa: F401
from thinkrl.tasks import calendar_arithmetic as _calendar_arithmetic  # noqa: F401
from thinkrl.tasks import countdown as _countdown  # noqa: F401
from thinkrl.tasks import cryptarithm as _cryptarithm  # noqa: F401
from thinkrl.tasks import futoshiki as _futoshiki  # noqa: F401
from thinkrl.tasks import game24 as _game24  # noqa: F401
from thinkrl.tasks import graph_coloring as _graph_coloring  # noqa: F401
from thinkrl.tasks import hanoi as _hanoi  # noqa: F401
from thinkrl.tasks import kakurasu as _kakurasu  # noqa: F401
from thinkrl.tasks import knights_knaves as _knights_knaves  # noqa: F401
from thinkrl.tasks import maze as _maze  # noqa: F401
from thinkrl.tasks import nonogram as _nonogram  # noqa: F401
from thinkrl.tasks import nqueens as _nqueens  # noqa: F401
from thinkrl.tasks import sat as _sat  # noqa: F401
from thinkrl.tasks import sudoku as _sudoku  # noqa: F401
from thinkrl.tasks import syllogism as _syllogism  # noqa: F401
from thinkrl.tasks import word_sorting as _word_sorting  # noqa: F401
from thinkrl.tasks import zebra as _zebra  # noqa: F401
from thinkrl.tasks.base import REASONS, Knob, Problem, Task, Trace, Verdict, extract_answer
from thinkrl.tasks.registry import TASKS, get_task

__all__ = ["REASONS", "TASKS", "Knob", "Problem", "Task", "Trace", "Verdict", "extract_answer", "get_task"]
