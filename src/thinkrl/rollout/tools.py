"""Tools a model may call during a rollout: typed Python functions with a JSON schema (OpenAI function format).

A `Tool` is a name, a description, the JSON schema of its parameters and a callable that returns the text the
model sees. `function_tool` builds one from a typed function (the schema comes from its type hints, the
description from its docstring); `TOOLS` registers tool factories by name, so an environment or a recipe picks
them and users add their own::

    @TOOLS.register("lookup")
    def lookup_tool() -> Tool:
        def lookup(key: str) -> str:
            "Look a key up in the table."
            return TABLE.get(key, "not found")
        return function_tool(lookup)

Built in: ``calculator`` (exact arithmetic on the safe expression parser `thinkrl.tasks.expr`: no eval) and
``python`` (runs a program in the sandbox of `thinkrl.rewards.sandbox` and returns its output).

Model output never raises here: `Tool.run` turns unknown arguments, wrong types (a non-finite number too), missing
ones and anything the function raises into an error observation (`ToolResult` with ``ok`` False) the model reads
as its tool turn. Model-written text quoted in an error (a tool or argument name, a value) is cut to
`MAX_QUOTED_CHARS` (`clip`), so a 1 MB name cannot push the rest of the error (what is allowed) out of the
observation; the rollout then cuts a call's output and error alike to ``max_tool_output_chars`` (`ToolResult.cut`).
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from thinkrl.registry import Registry
from thinkrl.rewards.sandbox import SandboxLimits, run_program
from thinkrl.tasks.expr import BinOp, ExpressionError, Neg, Node, evaluate, parse

_JSON_TYPE_OF: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array",
                                 dict: "object"}
_PY_TYPE_OF: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                            "boolean": (bool,), "array": (list,), "object": (dict,)}

MAX_QUOTED_CHARS = 100
"""Most characters of model-written text (a tool or argument name, an argument's value) quoted in an error."""


def clip(text: str, max_chars: int = MAX_QUOTED_CHARS) -> str:
    """``text`` when it has at most ``max_chars`` characters, else its first ``max_chars`` and how many were cut."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}... ({len(text) - max_chars} more characters)"


class ToolError(Exception):
    """A tool's own refusal (bad input it can explain); the message becomes the model's observation."""


@dataclass(frozen=True)
class ToolResult:
    """What one call gave back.

    Fields:
        output: the text the model sees in its ``tool`` turn (an ``error: ...`` line when not ok).
        ok: the call ran and returned normally.
        error: why it did not ("unknown tool", "bad arguments", "timeout", the exception...), else None.
    """

    output: str
    ok: bool = True
    error: str | None = None

    @classmethod
    def failure(cls, error: str) -> ToolResult:
        """A failed call: the model reads ``error: <error>``."""
        return cls(f"error: {error}", ok=False, error=error)

    def cut(self, max_chars: int) -> ToolResult:
        """This result with its output and its error cut to ``max_chars`` characters each."""
        error = None if self.error is None else self.error[:max_chars]
        return ToolResult(self.output[:max_chars], self.ok, error)


@dataclass(frozen=True)
class Tool:
    """One callable tool.

    Fields:
        name: the function name the model calls.
        description: one paragraph for the model (rendered into the system turn by the chat template).
        parameters: JSON schema of the arguments (``{"type": "object", "properties": {...}, "required": [...]}``).
        function: called with the checked arguments as keywords; returns the observation text (or raises
            `ToolError` with a message for the model).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., str]

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool definition (``tools=[...]`` of a chat template or a chat request)."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def check_arguments(self, arguments: Mapping[str, Any]) -> str | None:
        """Why ``arguments`` do not fit the schema (unknown, missing, wrong JSON type), or None when they do."""
        properties = self.parameters.get("properties", {})
        unknown = sorted(set(arguments) - set(properties))
        if unknown:
            return f"unknown argument(s) {clip(', '.join(unknown))} for {self.name}; allowed: {', '.join(properties)}"
        missing = [k for k in self.parameters.get("required", []) if k not in arguments]
        if missing:
            return f"missing argument(s) {', '.join(missing)} for {self.name}"
        for key, value in arguments.items():
            allowed = _PY_TYPE_OF.get(properties[key].get("type", ""))
            if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
                return f"argument {key} of {self.name} must be {properties[key]['type']}, got {clip(repr(value))}"
            if isinstance(value, float) and not math.isfinite(value):  # JSON calls may write NaN / Infinity
                return f"argument {key} of {self.name} must be a finite number, got {value!r}"
        return None

    def run(self, arguments: Mapping[str, Any]) -> ToolResult:
        """Check the arguments and call the function; never raises (errors become a failed `ToolResult`)."""
        problem = self.check_arguments(arguments)
        if problem is not None:
            return ToolResult.failure(problem)
        try:
            output = self.function(**arguments)
        except ToolError as error:
            return ToolResult.failure(str(error))
        except Exception as error:  # the tool's bug or a hostile input: the model sees it, the rollout goes on
            return ToolResult.failure(f"{type(error).__name__}: {error}")
        return ToolResult(str(output))


def _json_type(annotation: Any) -> str:
    if annotation in _JSON_TYPE_OF:
        return _JSON_TYPE_OF[annotation]
    origin = typing.get_origin(annotation)
    if origin in _JSON_TYPE_OF:
        return _JSON_TYPE_OF[origin]
    raise TypeError(f"tool parameter type {annotation!r} has no JSON-schema type; use str, int, float, bool, "
                    "list or dict")


def function_tool(function: Callable[..., Any], name: str | None = None, description: str | None = None,
                  parameter_descriptions: Mapping[str, str] | None = None) -> Tool:
    """A `Tool` from a typed function: every parameter needs a type hint (str, int, float, bool, list, dict);
    parameters without a default are required; the description defaults to the docstring.

    Raises:
        TypeError: a parameter has no hint, an unsupported one, or is ``*args`` / ``**kwargs``.
    """
    hints = typing.get_type_hints(function)
    properties, required = {}, []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__}: *args / **kwargs have no schema")
        if param.name not in hints:
            raise TypeError(f"tool {function.__name__}: parameter {param.name!r} needs a type hint")
        spec: dict[str, Any] = {"type": _json_type(hints[param.name])}
        if parameter_descriptions and param.name in parameter_descriptions:
            spec["description"] = parameter_descriptions[param.name]
        properties[param.name] = spec
        if param.default is param.empty:
            required.append(param.name)
    doc = description if description is not None else inspect.getdoc(function) or ""
    return Tool(name or function.__name__, doc.strip(), {"type": "object", "properties": properties,
                                                         "required": required}, function)


ToolFactory = Callable[..., Tool]
TOOLS: Registry[ToolFactory] = Registry("tool")
"""Tool factories by name: ``TOOLS.get("calculator")(max_operations=1)`` builds a configured tool."""


def build_tool(name: str, **options: Any) -> Tool:
    """The tool registered as ``name`` built with ``options`` (KeyError lists the registered names)."""
    return TOOLS.get(name)(**options)


def count_operations(node: Node) -> int:
    """Binary operations in an expression tree."""
    if isinstance(node, BinOp):
        return 1 + count_operations(node.left) + count_operations(node.right)
    return count_operations(node.operand) if isinstance(node, Neg) else 0


def _format_value(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


@TOOLS.register("calculator")
def calculator_tool(max_operations: int | None = None) -> Tool:
    """Exact arithmetic (integers, ``+ - * /``, parentheses) on `thinkrl.tasks.expr`; results are integers or
    exact fractions (``8/3``). ``max_operations`` limits the operations of one call (1: one per call)."""
    if max_operations is not None and max_operations < 1:
        raise ValueError(f"max_operations must be >= 1 or None, got {max_operations}")

    def calculator(expression: str) -> str:
        try:
            node = parse(expression)
            if max_operations is not None and count_operations(node) > max_operations:
                raise ToolError(f"at most {max_operations} operation(s) per call, got {count_operations(node)}")
            return _format_value(evaluate(node))
        except ExpressionError as error:
            raise ToolError(str(error)) from None

    limit = "" if max_operations is None else f" At most {max_operations} operation(s) per call."
    return function_tool(calculator, description="Evaluate an arithmetic expression exactly." + limit,
                         parameter_descriptions={"expression": "integers with + - * / and parentheses"})


@TOOLS.register("python")
def python_tool(timeout_s: float = 5.0, memory_mb: int = 512, max_output_chars: int = 2000,
                allow_unisolated: bool = False) -> Tool:
    """Run a Python program in the sandbox (`thinkrl.rewards.sandbox.run_program`, bubblewrap isolation) and
    return what it printed; a failure returns its reason and stderr's last line."""
    limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated)

    def python(code: str) -> str:
        result = run_program(code, limits=limits)
        if result.status != "ok":
            tail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
            raise ToolError(f"{result.status}: {result.reason}" + (f" ({tail[0]})" if tail else ""))
        return result.stdout[:max_output_chars]

    return function_tool(python, description="Run a Python program and return what it prints to stdout.",
                         parameter_descriptions={"code": "the program's source; print the result"})
