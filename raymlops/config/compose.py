"""Compose the Hydra config into the plain dict that enters Ray, with errors that say what to type instead."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from raymlops.config.dotted import get_dotted, set_dotted
from raymlops.config.keys import close_key, conf_dir, experiments, unknown_key_message
from raymlops.config.search_space import normalise_space
from raymlops.config.validate import validate
from raymlops.core.errors import UserError

# Keys holding filesystem paths, resolved against the launch directory before Ray sees them.
PATH_KEYS = (
    "storage_path",
    "data.root",
    "data.cache_dir",
    "mlflow.artifact_location",
    "mlflow.spool_dir",
    "checkpoint.dir",
    "predict.output",
)


VERBOSE_FLAGS = ("-v", "--verbose")  # the one option: everything Ray prints, unfiltered
VERBOSE_OVERRIDE = "console.verbose=true"


def compose(overrides: list[str]) -> dict[str, Any]:
    """Hydra-compose conf/config.yaml with command-line overrides into a validated plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = [VERBOSE_OVERRIDE if item in VERBOSE_FLAGS else item for item in overrides]
    _check_override_syntax(overrides)
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(_explain_hydra_error(err, overrides)) from None
    assert isinstance(plain, dict)
    config: dict[str, Any] = {str(k): v for k, v in plain.items()}
    config["overrides"] = list(overrides)
    config["search_space"] = normalise_space(config.get("search_space"))
    validate(config)
    resolve_paths(config, Path.cwd())
    return config


def _check_override_syntax(overrides: list[str]) -> None:
    for item in overrides:
        if item.startswith("-") and not item.startswith("~"):
            # no "key=value" in the text: the redactor reads it as a credential pair and masks it
            name = item.lstrip("-").split("=", 1)[0]
            close = close_key(name)
            hint = f" Did you mean {close}={item.split('=', 1)[1]}?" if close and "=" in item else ""
            raise UserError(
                f"Unknown option '{item}': overrides take no dashes.{hint} Write them like "
                f"+experiment=quickstart optim.lr=0.01; experiments: {', '.join(experiments())}."
            )


def _explain_hydra_error(err: Exception, overrides: list[str]) -> str:
    text = " ".join(str(err).split()).split(" Config search path:")[0]  # Hydra's search path is noise here
    missing = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        choices = experiments() if group == "experiment" else sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        plus, usage = ("+", " (use +experiment=NAME)") if group == "experiment" else ("", "")
        hint = f" Did you mean {plus}{group}={close[0]}?" if close else ""
        return f"{plus}{group}={name} does not exist (no conf/{group}/{name}.yaml).{hint} Valid {group} choices: {', '.join(choices)}{usage}."
    key = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if key:
        return unknown_key_message(key.group(1))
    mandatory = re.search(r"Missing mandatory value: \S+ full_key: (\S+)", text)
    if mandatory:
        dotted = mandatory.group(1)
        example = "/path/to/images" if dotted == "data.root" else "VALUE"
        return f"{dotted} must be set for this config (it has no default); add {dotted}={example} to the command line."
    return f"Could not compose the config from {overrides}: {text}"


def resolve_paths(config: dict[str, Any], base: Path) -> None:
    """Make local path keys absolute against the launch directory (URIs are left alone)."""
    for dotted in PATH_KEYS:
        try:
            value = get_dotted(config, dotted)
        except KeyError:
            continue
        if isinstance(value, str) and value and "://" not in value:
            set_dotted(config, dotted, str((base / os.path.expanduser(value)).resolve()))
    uri = config["mlflow"]["tracking_uri"]
    if isinstance(uri, str) and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        db = (base / uri[len("sqlite:///") :]).resolve()
        config["mlflow"]["tracking_uri"] = f"sqlite:///{db}"
