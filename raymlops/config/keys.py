"""Where the config lives (conf/), which keys it has, and the one-paragraph message for a key it lacks."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from raymlops.config.dotted import flatten

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
        "search-space entry, e.g. +search_space.optim.lr={type:loguniform,lower:0.001,upper:0.1}. See the README's config reference."
    )


def known_keys() -> set[str]:
    from omegaconf import OmegaConf

    keys: set[str] = set()
    root = OmegaConf.load(conf_dir() / "config.yaml")
    tree = OmegaConf.to_container(root)
    assert isinstance(tree, dict)
    keys.update(flatten({str(k): v for k, v in tree.items() if k != "defaults"}).keys())
    for group in ("data", "model", "optim", "scheduler", "search_alg", "mlflow"):
        for path in (conf_dir() / group).glob("*.yaml"):
            node = OmegaConf.to_container(OmegaConf.load(path))
            assert isinstance(node, dict)
            keys.update(f"{group}.{k!s}" for k in node)
    return keys
