"""The base of every request model (`StrictModel`) and the error a refused request raises (`RequestError`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class RequestError(ValueError):
    """A request the server refuses; becomes an OpenAI error body.

    Args:
        message: what is wrong and what is allowed.
        param: the request field at fault.
        status: HTTP status (400 bad request, 404 unknown model, 413 too large, 503 engine down).
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


class StrictModel(BaseModel):
    """No unknown fields, and no type coercion: ``"2"`` or ``true`` is not an integer, ``"no"`` or ``0`` not a
    boolean (an integer is still a valid float); floats are finite (NaN and Infinity, which Python's JSON reads,
    are "Input should be a finite number" before any range check). ``null`` in an optional field is the same as
    leaving it out."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # OpenAI's schema types optional fields as "X or null" and SDKs send null for "not given"
        # ("temperature": null); refusing it would break them. Required fields and unknown keys keep their null,
        # so those are still refused by name.
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].is_required()}
