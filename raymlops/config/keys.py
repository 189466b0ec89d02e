"""Where the config lives (conf/), which keys the schema has, and the one-paragraph message for a key it lacks."""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raymlops.config.schema import Config

CONF_DIR_ENV = "RAYMLOPS_CONF_DIR"


def conf_dir() -> Path:
    """The conf/ folder: $RAYMLOPS_CONF_DIR, ./conf, or the one beside the package."""
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV]).resolve()
    here = Path.cwd() / "conf"
    if (here / "config.yaml").is_file():
        return here.resolve()
    return (Path(__file__).resolve().parents[2] / "conf").resolve()


def experiments() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def close_key(bad: str) -> str | None:
    """The known dotted key nearest to `bad` (whole key first, then its last part), if any is close."""
    known = sorted(known_keys())
    close = difflib.get_close_matches(bad, known, n=1, cutoff=0.6)
    if not close:
        leaf = bad.rsplit(".", 1)[-1]
        leaves = [k for k in known if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], n=1, cutoff=0.8)]
        same_section = [k for k in leaves if k.split(".")[0] == bad.split(".")[0]]
        close = same_section or leaves
    return close[0] if close else None


def unknown_key_message(key: str) -> str:
    """One paragraph for a key the config does not have: the nearest valid key, or the valid ones."""
    if key.rsplit(".", 1)[-1] == "_target_":
        return (
            f"Unknown config key '{key}': raymlops never instantiates objects named in a config (_target_ is refused); "
            "pick components by name instead, e.g. model.name=resnet18 or optim=adamw."
        )
    known = sorted(known_keys())
    close = close_key(key)
    if close:
        hint = f" Did you mean '{close}'?"
    else:
        section = key.split(".")[0]
        inside = [k for k in known if k.startswith(section + ".")]
        shown = f"{', '.join(inside[:15])}{', ...' if len(inside) > 15 else ''}"
        hint = (
            f" Keys under {section}: {shown}."
            if inside
            else f" Top-level sections: {', '.join(sorted({k.split('.')[0] for k in known}))}."
        )
    return (
        f"Unknown config key '{key}'.{hint} Set existing keys without a + (e.g. optim.lr=0.01); + only adds a "
        "search-space entry, e.g. +search_space.optim.lr={type:loguniform,lower:0.001,upper:0.1}. See docs/config-reference.md."
    )


def known_keys() -> set[str]:
    """Every dotted key the schema declares (search_space entries are keys of their own: config.search_space)."""
    return set(schema_fields())


def schema_fields() -> dict[str, dataclasses.Field[Any]]:
    """Dotted key -> its dataclass field, for every leaf of the schema (sections are walked, not listed)."""
    return dict(_walk(Config, ""))


def field_type(dotted: str) -> Any:
    """The declared type of a dotted key (e.g. int, float, ModelName, str | None), or None if the schema lacks it."""
    section: Any = Config
    *parents, leaf = dotted.split(".")
    for part in parents:
        hint = typing.get_type_hints(section).get(part)
        found = [t for t in (hint, *typing.get_args(hint)) if isinstance(t, type) and dataclasses.is_dataclass(t)]
        if not found:
            return None
        section = found[0]  # a section, or an Optional one (registry.select)
    return typing.get_type_hints(section).get(leaf)


def _walk(cls: type, prefix: str) -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _walk(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f
