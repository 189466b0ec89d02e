"""The typed config as plain values and back: for MLflow params, checkpoints, and a trial's sampled overrides."""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from typing import Any, TypeVar

from raymlops.config.dotted import apply_overrides
from raymlops.config.schema import Config

T = TypeVar("T")


def to_dict(node: Any) -> Any:
    """A config (or one section) as nested plain dicts, lists, str, numbers and None (enums as their names)."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: to_dict(getattr(node, f.name)) for f in dataclasses.fields(node)}
    if isinstance(node, enum.Enum):
        return node.value
    if isinstance(node, dict):
        return {str(k): to_dict(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_dict(v) for v in node]
    return node


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """The dataclass `cls` filled from plain values (what to_dict wrote); a key cls lacks is a TypeError."""
    hints = _hints(typing.cast(Any, cls))
    unknown = set(values) - set(hints)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    kwargs = {key: _build(hints[key], value) for key, value in values.items()}
    return cls(**kwargs)


def with_overrides(config: Config, flat: dict[str, Any]) -> Config:
    """A new Config with dotted keys (a trial's sampled params) set; config itself is unchanged."""
    if not flat:
        return config
    return from_dict(Config, apply_overrides(to_dict(config), flat))


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    for kind in (hint, *typing.get_args(hint)):  # X, or X | None
        if isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, dict):
            return from_dict(kind, value)
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return kind(value)
    return value
