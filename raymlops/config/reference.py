"""The config reference, generated from the schema: `python -m raymlops.config.reference` writes
docs/config-reference.md (a test fails when the file and the schema differ)."""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any

from raymlops.config.schema import Config

HEADER = """# Config reference

Generated from the schema (`raymlops/config/schema.py`) by `python -m raymlops.config.reference`; do not edit by hand.
Set any key on the command line (`python -m raymlops.tune +experiment=quickstart optim.lr=0.01`), in an experiment
(`conf/experiment/NAME.yaml`) or swap a whole group (`data=cifar10`, `model=resnet18`, `scheduler=hyperband`).
A group file (`conf/data/cifar10.yaml`) sets only what differs from the defaults below.
"""


def markdown() -> str:
    """The whole reference: one table per section (and per nested section), a row per key."""
    top = [f for f in dataclasses.fields(Config) if not _dataclass_in(Config, f)]
    parts = [HEADER, _table("Top level", "", Config, top)]
    for f in dataclasses.fields(Config):
        section = _dataclass_in(Config, f)
        if section is not None:
            parts.append(_table(f"`{f.name}`", f"{f.name}.", section, dataclasses.fields(section)))
            for inner in dataclasses.fields(section):
                nested = _dataclass_in(section, inner)
                if nested is not None:
                    key = f"{f.name}.{inner.name}"
                    parts.append(_table(f"`{key}`", f"{key}.", nested, dataclasses.fields(nested)))
    return "\n".join(parts)


def _dataclass_in(owner: type, f: dataclasses.Field[Any]) -> type | None:
    """The dataclass a field holds (also when Optional), else None."""
    hint = typing.get_type_hints(owner)[f.name]
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _table(title: str, prefix: str, owner: type, fields: Any) -> str:
    doc = (owner.__doc__ or "").strip() if owner is not Config else ""
    rows = [f"## {title}\n", *([doc, ""] if doc else []), "| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    hints = typing.get_type_hints(owner)
    for f in fields:
        rows.append(f"| `{prefix}{f.name}` | {_type(hints[f.name], f)} | {_default(f)} | {_cell(f.metadata['help'])} |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(hint: Any, f: dataclasses.Field[Any]) -> str:
    if "choices" in f.metadata:
        return " \\| ".join(f"`{str(c).lower()}`" for c in f.metadata["choices"])
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    shown = []
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            shown.append(" \\| ".join(f"`{m.value}`" for m in arg))
        else:
            shown.append(str(arg).replace("typing.", "") if typing.get_origin(arg) else arg.__name__)
    nullable = " or null" if union and type(None) in typing.get_args(hint) else ""
    return " \\| ".join(shown) + nullable


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "see below"
    else:
        return "required"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f"`{value}`".replace("|", "\\|")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
    out.write_text(markdown())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
