"""Dotted keys over nested config dicts: flatten, get, set, and a trial's overrides applied to a copy."""

from __future__ import annotations

import copy
from typing import Any


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def get_dotted(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of nested dicts or of the typed config (its sections are dataclasses)."""
    node: Any = tree
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif not isinstance(node, dict) and hasattr(node, "__dataclass_fields__") and part in node.__dataclass_fields__:
            node = getattr(node, part)
        else:
            raise KeyError(dotted)
    return node


def apply_overrides(config: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of config with dotted keys (a trial's sampled params) set."""
    out = copy.deepcopy(config)
    for key, value in flat.items():
        set_dotted(out, key, value)
    return out
