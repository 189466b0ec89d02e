"""Validation before Ray starts: every choice known, every number in range, the first problem as one clear error."""

from __future__ import annotations

import difflib
import math
from typing import Any

from raymlops.config import choices
from raymlops.config.dotted import flatten
from raymlops.config.keys import known_keys, unknown_key_message
from raymlops.config.objectives import validate_objectives
from raymlops.config.search_space import validate_space
from raymlops.core import names
from raymlops.core.errors import UserError


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
        raise UserError(f"{key}={value!r} must be a number in [0, 1{')' if upper_open else ']'}, e.g. {key}=0.1.")


def validate(config: dict[str, Any]) -> None:
    """Check everything that can be checked before Ray starts; raise UserError on the first problem."""
    _check_unknown_keys(config)
    data, model, optim, train, scaling = (config[k] for k in ("data", "model", "optim", "train", "scaling"))
    _choice(data["name"], choices.DATASETS, "data.name")
    _choice(model["name"], choices.MODELS, "model.name")
    _choice(optim["name"], choices.OPTIMIZERS, "optim.name")
    _choice(train["lr_schedule"], choices.LR_SCHEDULES, "train.lr_schedule")
    _choice(config["scheduler"]["name"], choices.SCHEDULERS, "scheduler.name")
    _choice(config["scheduler"].get("mode", "auto"), choices.ASHA_MODES, "scheduler.mode")
    _choice(config["search_alg"]["name"], choices.SEARCH_ALGS, "search_alg.name")
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
    if config["mlflow"].get("system_metrics"):
        _positive(config["mlflow"]["system_metrics_interval_s"], "mlflow.system_metrics_interval_s")
    _choice(config["console"]["progress"], ("auto", "live", "plain"), "console.progress")
    validate_space(config)
    validate_objectives(config)
    validate_serving(config)


def validate_serving(config: dict[str, Any]) -> None:
    """The serve: and predict: sections (conf/config.yaml), checked before Ray like the rest."""
    serve, predict = config["serve"], config["predict"]
    port = serve["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"serve.port={port!r} must be a TCP port 1..65535, e.g. serve.port=8000.")
    _fraction(serve["challenger_traffic"], "serve.challenger_traffic", upper_open=False)
    for key in ("min_replicas", "max_replicas", "target_ongoing_requests"):
        _positive(serve[key], f"serve.{key}", integer=True)
    if serve["min_replicas"] > serve["max_replicas"]:
        raise UserError(
            f"serve.min_replicas={serve['min_replicas']} exceeds serve.max_replicas={serve['max_replicas']}; "
            f"e.g. serve.max_replicas={serve['min_replicas']}."
        )
    for key in ("replica_cpus", "poll_interval_s", "log_interval_s"):
        _positive(serve[key], f"serve.{key}")
    if serve["duration_s"] is not None:
        _positive(serve["duration_s"], "serve.duration_s")
    if serve["challenger_traffic"] > 0 and serve["challenger_alias"] == serve["champion_alias"]:
        raise UserError(f"serve.challenger_alias={serve['challenger_alias']!r} is the champion alias; name another alias.")
    output = str(predict["output"] or "")
    if not output.endswith((".csv", ".parquet")):
        raise UserError(f"predict.output={output!r} must end in .csv or .parquet, e.g. output=predictions.csv.")
    _choice(predict["split"], ("train", "test"), "predict.split")
    _positive(predict["batch_size"], "predict.batch_size", integer=True)
    _positive(predict["cpus_per_actor"], "predict.cpus_per_actor")
    if predict["num_actors"] is not None:
        _positive(predict["num_actors"], "predict.num_actors", integer=True)
    if predict["use_gpu"] not in ("auto", True, False):
        raise UserError(f"predict.use_gpu={predict['use_gpu']!r} must be auto, true or false.")


def _check_metric(metric: str) -> None:
    if metric not in names.EPOCH_METRICS:
        raise UserError(
            f"tune.metric={metric!r} is never reported by the trainer, so no trial could be ranked. "
            f"Reported per epoch: {', '.join(names.EPOCH_METRICS)} (default tune.metric=val_acc tune.mode=max)."
        )


def _check_unknown_keys(config: dict[str, Any]) -> None:
    known = known_keys() | {"overrides"}
    known_sections = {k.split(".")[0] for k in known}
    for key in flatten({k: v for k, v in config.items() if k not in ("search_space", "overrides")}):
        if key in known or any(key.startswith(k + ".") for k in known):
            continue
        if key.split(".")[0] not in known_sections or key not in known:
            raise UserError(unknown_key_message(key))
