"""Compose the Hydra config onto the typed schema (the Config that enters Ray), with errors that say what to type instead."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import typing
from pathlib import Path
from typing import Any

from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from raymlops.config.dotted import flatten
from raymlops.config.keys import close_key, conf_dir, experiments, field_type, known_keys, schema_fields, unknown_key_message
from raymlops.config.schema import Config, register_schema
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


def compose(overrides: list[str]) -> Config:
    """Hydra-compose conf/config.yaml onto the schema with command-line overrides into a validated Config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = [VERBOSE_OVERRIDE if item in VERBOSE_FLAGS else item for item in overrides]
    _check_override_syntax(overrides)
    register_schema()
    hydra_overrides = [_as_hydra(item) for item in overrides]
    mappings = [item for item in hydra_overrides if _is_mapping_override(item)]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=[o for o in hydra_overrides if o not in mappings])
        _assign_mappings(cfg, mappings)
        _check_composed(cfg)
        config = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(explain_hydra_error(err, overrides)) from None
    assert isinstance(config, Config)
    config.overrides = list(overrides)
    config.search_space = normalise_space(config.search_space)
    validate(config)
    resolve_paths(config, Path.cwd())
    return config


def _is_mapping_override(item: str) -> bool:
    """`tune.objectives={...}`, `registry.select={...}`, `search_space={}`: a schema key given a whole mapping."""
    key, eq, value = item.partition("=")
    return bool(eq) and value.lstrip().startswith("{") and not key.startswith(("+", "~")) and key in _mapping_keys()


def _mapping_keys() -> set[str]:
    sections = {k.rsplit(".", 1)[0] for k in known_keys() if "." in k}
    return sections | {k for k in schema_fields() if _section_type(k) or "dict" in str(field_type(k))}


def _section_type(key: str) -> type | None:
    """The dataclass a key holds (registry.select: SelectConfig, also when Optional), else None."""
    hint = field_type(key)
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _assign_mappings(cfg: Any, mappings: list[str]) -> None:
    """Set mapping overrides as they are written, replacing what the config had: Hydra would merge them into the
    experiment's mapping (or refuse new keys of a typed dict). A section is rebuilt on its schema, so it stays typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    for item in mappings:
        override = parser.parse_override(item)
        key, value = override.key_or_group, override.value()
        section = _section_type(key)
        try:
            typed = OmegaConf.merge(OmegaConf.structured(section), value) if section is not None and value is not None else value
        except (ConfigKeyError, ConfigAttributeError) as err:  # the error names the key inside the mapping only
            raise UserError(unknown_key_message(f"{key}.{err.full_key}")) from None
        except ValidationError as err:
            raise UserError(wrong_type_message(f"{key}.{err.full_key}", getattr(err, "value", None))) from None
        OmegaConf.update(cfg, key, typed, merge=False)


def _check_composed(cfg: Any) -> None:
    """What Hydra lets through a structured config: keys added with + that the schema lacks, and ??? left unset."""
    from omegaconf import OmegaConf

    for key in sorted(OmegaConf.missing_keys(cfg)):
        example = "/path/to/images" if key == "data.root" else "VALUE"
        raise UserError(f"{key} must be set for this config (it has no default); add {key}={example} to the command line.")
    tree = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(tree, dict)
    known = known_keys()
    for key in flatten({str(k): v for k, v in tree.items() if k not in ("search_space", "overrides")}):
        if key not in known and not any(key.startswith(k + ".") for k in known):
            raise UserError(unknown_key_message(key))


def _as_hydra(item: str) -> str:
    """`~search_space` (drop the experiment's space): a schema field cannot be deleted, so it is emptied."""
    return "search_space={}" if item in ("~search_space", "~search_space=") else item


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


def explain_hydra_error(err: Exception, overrides: list[str]) -> str:
    """One paragraph for a failed compose: a missing group choice, an unknown key, a value of the wrong type."""
    text = " ".join(str(err).split()).split(" Config search path:")[0]  # Hydra's search path is noise here
    missing = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if missing:
        return _missing_choice(*missing.groups())
    cause = _omegaconf_cause(err)
    key = getattr(cause, "full_key", None) or ""
    if isinstance(cause, ValidationError) and key and field_type(key) is not None:
        return wrong_type_message(key, getattr(cause, "value", None))
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
        return unknown_key_message(key)
    unknown = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' (?:is )?not in", text)
    if unknown:
        return unknown_key_message(unknown.group(1))
    return f"Could not compose the config from {overrides}: {text}"


def _missing_choice(group: str, name: str) -> str:
    choices = experiments() if group == "experiment" else sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    plus, usage = ("+", " (use +experiment=NAME)") if group == "experiment" else ("", "")
    hint = f" Did you mean {plus}{group}={close[0]}?" if close else ""
    return f"{plus}{group}={name} does not exist (no conf/{group}/{name}.yaml).{hint} Valid {group} choices: {', '.join(choices)}{usage}."


def _omegaconf_cause(err: BaseException) -> BaseException | None:
    """The OmegaConf error under Hydra's (it names the full key), following __cause__ / __context__."""
    from omegaconf.errors import OmegaConfBaseException

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OmegaConfBaseException) and getattr(seen, "full_key", None):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def wrong_type_message(key: str, value: Any) -> str:
    """A value the schema's type refuses: what the key takes, with an example."""
    hint = field_type(key)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return choice_message(key, value, tuple(str(m) for m in hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    wanted = [names[t] for t in (int, float, bool, str) if t is hint or t in typing.get_args(hint)]
    default = schema_fields()[key].default
    example = (
        f" e.g. {key}={str(default).lower() if isinstance(default, bool) else default}"
        if default not in (None, dataclasses.MISSING)
        else ""
    )
    nullable = " (or null)" if type(None) in typing.get_args(hint) else ""
    return f"{key}={value!r} must be {' or '.join(wanted) or str(hint)}{nullable};{example or ' see docs/config-reference.md'}."


def choice_message(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if len(allowed) == 2:
        return f"{key}={value!r} must be {allowed[0]} or {allowed[1]}."
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{key}={value!r} is not supported.{hint} Choose one of: {', '.join(allowed)}."


def resolve_paths(config: Config, base: Path) -> None:
    """Make local path keys absolute against the launch directory (URIs are left alone)."""
    for dotted in PATH_KEYS:
        section_name, _, key = dotted.rpartition(".")
        section = getattr(config, section_name) if section_name else config
        value = getattr(section, key)
        if isinstance(value, str) and value and "://" not in value:
            setattr(section, key, str((base / os.path.expanduser(value)).resolve()))
    uri = config.mlflow.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        db = (base / uri[len("sqlite:///") :]).resolve()
        config.mlflow.tracking_uri = f"sqlite:///{db}"
