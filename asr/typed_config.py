"""Plain dicts (from Hydra/YAML/JSON) -> frozen config dataclasses, strictly.

Every config dataclass in the library is built through `from_dict`, so a typo in a recipe or an
override (`trainer.max_epoch=5`) fails at once with the field's full path, instead of silently
training with the default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], values: Any, where: str | None = None) -> T:
    """Build dataclass `cls` from a mapping: unknown keys are errors, nested dataclasses are built
    recursively, and lists become tuples where the field is a tuple (YAML has no tuples)."""
    where = where or cls.__name__
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in values if key not in fields]
    if unknown:
        keys = f"key {unknown[0]!r}" if len(unknown) == 1 else f"keys {unknown}"
        raise ValueError(f"{where}: unknown {keys}; valid keys are {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:  # a missing required field
        raise ValueError(f"{where}: {error}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate) and isinstance(value, Mapping):
            return from_dict(candidate, value, where)
        if (candidate is tuple or typing.get_origin(candidate) is tuple) and isinstance(value, list):
            return tuple(value)
    return value
