"""Compose the Hydra config, validate it, and turn it into the plain dict that enters Ray."""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

from raymlops import schema
from raymlops.errors import UserError

CONF_DIR_ENV = "RAYMLOPS_CONF_DIR"
# Keys holding filesystem paths, resolved against the launch directory before Ray sees them.
PATH_KEYS = ("storage_path", "data.root", "data.cache_dir", "mlflow.artifact_location", "mlflow.spool_dir", "checkpoint.dir")


def conf_dir() -> Path:
    """The conf/ folder: $RAYMLOPS_CONF_DIR, ./conf, or the one beside the package."""
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV]).resolve()
    here = Path.cwd() / "conf"
    if (here / "config.yaml").is_file():
        return here.resolve()
    return (Path(__file__).resolve().parent.parent / "conf").resolve()


def experiments() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def compose(overrides: list[str]) -> dict[str, Any]:
    """Hydra-compose conf/config.yaml with command-line overrides into a validated plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

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
            close = _close_key(name)
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


def _close_key(bad: str) -> str | None:
    """The known dotted key nearest to `bad` (whole key first, then its last part), if any is close."""
    known = sorted(_known_keys())
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
    known = sorted(_known_keys())
    close = _close_key(key)
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


def _known_keys() -> set[str]:
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


def normalise_space(space: Any, prefix: str = "") -> Any:
    """Search-space keys as dotted strings: YAML writes `optim.lr: {...}`, while a command-line
    override `+search_space.optim.lr={...}` nests {'optim': {'lr': {...}}}; both mean optim.lr."""
    if not isinstance(space, dict):
        return space
    flat: dict[str, Any] = {}
    for key, value in space.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and "type" not in value and value:
            flat.update(normalise_space(value, dotted))
        else:
            flat[dotted] = value
    return flat


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


def get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def apply_overrides(config: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of config with dotted keys (a trial's sampled params) set."""
    import copy

    out = copy.deepcopy(config)
    for key, value in flat.items():
        set_dotted(out, key, value)
    return out


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


# ---------------------------------------------------------------- validation


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{key}={value!r} is not supported.{hint} Choose one of: {', '.join(allowed)}.")


def _positive(value: Any, key: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not value > 0
        or (isinstance(value, float) and math.isnan(value))
    ):
        example = "10" if integer else "0.01"
        raise UserError(f"{key}={value!r} must be a positive {'integer' if integer else 'number'}, e.g. {key}={example}.")


def _fraction(value: Any, key: str, upper_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1 if upper_open else 0 <= value <= 1):
        raise UserError(f"{key}={value!r} must be a number in [0, 1), e.g. {key}=0.1.")


def validate(config: dict[str, Any]) -> None:
    """Check everything that can be checked before Ray starts; raise UserError on the first problem."""
    _check_unknown_keys(config)
    data, model, optim, train, scaling = (config[k] for k in ("data", "model", "optim", "train", "scaling"))
    _choice(data["name"], schema.DATASETS, "data.name")
    _choice(model["name"], schema.MODELS, "model.name")
    _choice(optim["name"], schema.OPTIMIZERS, "optim.name")
    _choice(train["lr_schedule"], schema.LR_SCHEDULES, "train.lr_schedule")
    _choice(config["scheduler"]["name"], schema.SCHEDULERS, "scheduler.name")
    _choice(config["scheduler"].get("mode", "auto"), schema.ASHA_MODES, "scheduler.mode")
    _choice(config["search_alg"]["name"], schema.SEARCH_ALGS, "search_alg.name")
    _positive(optim["lr"], "optim.lr")
    _positive(train["epochs"], "train.epochs", integer=True)
    _positive(train["batch_size"], "train.batch_size", integer=True)
    _positive(scaling["num_workers"], "scaling.num_workers", integer=True)
    _positive(scaling["cpus_per_worker"], "scaling.cpus_per_worker")
    _fraction(data["val_fraction"], "data.val_fraction")
    _fraction(train["label_smoothing"], "train.label_smoothing")
    if optim["weight_decay"] < 0:
        raise UserError(f"optim.weight_decay={optim['weight_decay']} must be >= 0, e.g. optim.weight_decay=0.0005.")
    if train["batch_size"] % scaling["num_workers"]:
        raise UserError(
            f"train.batch_size={train['batch_size']} is the global batch and must divide evenly across "
            f"scaling.num_workers={scaling['num_workers']}; use e.g. "
            f"train.batch_size={train['batch_size'] // scaling['num_workers'] * scaling['num_workers'] or scaling['num_workers']}."
        )
    if scaling["use_gpu"] not in ("auto", True, False):
        raise UserError(f"scaling.use_gpu={scaling['use_gpu']!r} must be auto, true or false.")
    if data["name"] == "imagefolder" and not data.get("root"):
        raise UserError("data.name=imagefolder needs data.root=PATH, a folder holding train/<class>/ and test/<class>/.")
    tune = config["tune"]
    _positive(tune["num_samples"], "tune.num_samples", integer=True)
    if tune["max_concurrent_trials"] is not None:
        _positive(tune["max_concurrent_trials"], "tune.max_concurrent_trials", integer=True)
    if tune["mode"] not in ("max", "min"):
        raise UserError(f"tune.mode={tune['mode']!r} must be max or min.")
    _check_metric(tune["metric"])
    if config["registry"]["promote"] not in ("if_better", "always", "never"):
        raise UserError(f"registry.promote={config['registry']['promote']!r} must be if_better, always or never.")
    from raymlops.search import validate_space

    validate_space(config)


def _check_metric(metric: str) -> None:
    if metric not in schema.EPOCH_METRICS:
        raise UserError(
            f"tune.metric={metric!r} is never reported by the trainer, so no trial could be ranked. "
            f"Reported per epoch: {', '.join(schema.EPOCH_METRICS)} (default tune.metric=val_acc tune.mode=max)."
        )


def _check_unknown_keys(config: dict[str, Any]) -> None:
    known = _known_keys() | {"overrides"}
    known_sections = {k.split(".")[0] for k in known}
    for key in flatten({k: v for k, v in config.items() if k not in ("search_space", "overrides")}):
        if key in known or any(key.startswith(k + ".") for k in known):
            continue
        if key.split(".")[0] not in known_sections or key not in known:
            raise UserError(unknown_key_message(key))
