"""The base of every config section: a pydantic model that forbids unknown keys.

Each component declares its own section beside its code (`thinkrl.rollout.specs`, `thinkrl.train.specs`); only
the recipe classes in `thinkrl.train.config` combine them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from thinkrl.registry import Registry


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, numbers are finite (``.inf`` and ``.nan`` are
    refused, whatever the field's bounds); field docstrings are the documentation."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


def describe_errors(err: ValidationError) -> str:
    """``field.path: problem`` for each error of ``err``, joined by "; " (one line, for the command line)."""
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'value'}: {item['msg'].removeprefix('Value error, ')}"
                     for item in err.errors())


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of the file ``path``; a missing path, a folder or bytes that are not UTF-8 are one-line errors
    naming ``what`` and the path (FileNotFoundError, IsADirectoryError, ValueError)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # (its own message names no file)
        raise ValueError(f"{what} {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None


def run_name(text: str) -> str:
    """A ``--name`` that names one folder under ``runs/``: not empty, no path separator, not ``.`` or ``..`` (else
    ``runs/<name>`` is ``runs/`` itself or a folder outside it). Returns ``text``; ValueError otherwise."""
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise ValueError(f"--name must name one folder under runs/ (no '/', not '.' or '..'), got {text!r}")
    return text


def read_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``; a syntax error is a one-line ValueError naming ``what`` and where it is."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{what} is not valid YAML: {where}{problem}") from None


def registered(registry: Registry[Any], name: str) -> str:
    """``name`` if ``registry`` has it, else ValueError listing the registered names."""
    if name not in registry:
        raise ValueError(f"unknown {registry.family} {name!r}; registered: {', '.join(registry.names())}")
    return name
