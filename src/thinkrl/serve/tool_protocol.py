"""Pydantic models of the tool fields of chat requests: ``tools``, ``tool_choice`` and history ``tool_calls``.

A function's ``parameters`` is checked where the chat templates read it (``properties``: an object of JSON
schemas, ``required``: property names, a property's ``description``: a string), so a schema the template cannot
render is a 400 naming ``tools.N.function.parameters``; every other JSON-schema keyword passes as given.
``tool_choice`` is read by its JSON type: a string is one of the modes, an object names a function, so a broken
object is reported inside it (``tool_choice.function is required``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from thinkrl.serve.strict import StrictModel

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""Function names: OpenAI's characters and length."""


class FunctionCall(StrictModel):
    """``{"name", "arguments"}`` of an assistant's tool call; ``arguments`` is a JSON object as a string."""

    name: str = Field(pattern=TOOL_NAME.pattern)
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _check_arguments(cls, value: str) -> str:
        try:
            decoded = json.loads(value) if value.strip() else {}
        except (json.JSONDecodeError, RecursionError) as error:
            raise ValueError(f"arguments must be a JSON object as a string: {error}") from None
        if not isinstance(decoded, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(decoded).__name__}")
        return value


class MessageToolCall(StrictModel):
    """One ``tool_calls`` entry of an assistant message in the history."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def check_parameters(schema: dict[str, Any]) -> None:
    """Raise ValueError when the JSON schema ``schema`` has a keyword the chat templates read in a wrong shape."""
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ValueError(f"properties must be an object (property name -> JSON schema), got {_json_type(properties)}")
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            raise ValueError(f"properties.{name} must be an object (a JSON schema), got {_json_type(spec)}")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise ValueError(f"properties.{name}.description must be a string, got {_json_type(description)}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise ValueError(f"required must be an array of property names, got {json.dumps(required)[:80]}")


class FunctionDefinition(StrictModel):
    """A function the model may call: its name, description and JSON-schema parameters."""

    name: str = Field(pattern=TOOL_NAME.pattern)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_parameters(value)
        return value


class ToolDefinition(StrictModel):
    """One entry of ``tools``."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(StrictModel):
    name: str


class NamedToolChoice(StrictModel):
    """``tool_choice`` naming one function: the model must call it."""

    type: Literal["function"]
    function: NamedFunction


def _choice_kind(value: Any) -> str | None:
    return "str" if isinstance(value, str) else "object" if isinstance(value, dict) else None


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("str")] | Annotated[NamedToolChoice, Tag("object")],
    Discriminator(_choice_kind, custom_error_type="tool_choice_type",
                  custom_error_message="tool_choice must be 'none', 'auto', 'required' or "
                                       '{"type": "function", "function": {"name": ...}}'),
]
"""``tool_choice``, chosen by its JSON type so that each form's own error is the one reported."""
