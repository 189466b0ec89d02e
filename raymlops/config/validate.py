"""Validation before Ray starts: each value in its declared range, the rules across keys, the first problem as one
clear error. Types, choices and unknown keys are checked by Hydra against the schema (config.schema) at compose."""

from __future__ import annotations

import math
from typing import Any

from raymlops.config.keys import field_type, schema_fields
from raymlops.config.objectives import validate_objectives
from raymlops.config.schema import Config
from raymlops.config.search_space import validate_space
from raymlops.core import names
from raymlops.core.errors import UserError


def validate(config: Config) -> None:
    """Check everything that can be checked before Ray starts; raise UserError on the first problem."""
    check_ranges(config)
    train, scaling = config.train, config.scaling
    if train.batch_size % scaling.num_workers:
        raise UserError(
            f"train.batch_size={train.batch_size} is the global batch and must divide evenly across "
            f"scaling.num_workers={scaling.num_workers}; use e.g. "
            f"train.batch_size={train.batch_size // scaling.num_workers * scaling.num_workers or scaling.num_workers}."
        )
    if config.data.name == "imagefolder" and not config.data.root:
        raise UserError(
            "data.name=imagefolder needs data.root, a folder holding train/<class>/ and test/<class>/: "
            "add data.root=/path/to/images to the command line."
        )
    problem = device_problem(str(train.device), scaling.num_workers, scaling.use_gpu)
    if problem:
        raise UserError(problem)
    _check_metric(config.tune.metric)
    validate_space(config)
    validate_objectives(config)
    validate_serving(config)


def check_ranges(config: Config) -> None:
    """Every key's range rules from its schema field (positive, non_negative, fraction, port, choices)."""
    for dotted, field in schema_fields().items():
        rules = field.metadata
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        if value is None:
            continue
        if rules.get("positive"):
            _positive(value, dotted, integer=field_type(dotted) in (int, int | None))
        if rules.get("non_negative") and value < 0:
            example = {"optim.weight_decay": "0.0005"}.get(dotted, "0")
            raise UserError(f"{dotted}={value} must be >= 0, e.g. {dotted}={example}.")
        if "fraction" in rules:
            _fraction(value, dotted, upper_open=rules["fraction"].endswith(")"))
        if "choices" in rules and not any(value is c or (isinstance(c, str) and value == c) for c in rules["choices"]):
            raise UserError(f"{dotted}={value!r} must be auto, true or false.")
        if rules.get("port") and not 1 <= value <= 65535:
            raise UserError(f"{dotted}={value!r} must be a TCP port 1..65535, e.g. {dotted}=8000.")


def _shown(value: Any) -> str:
    """0.0 as 0, -3.0 as -3 (as the user typed it): a float field holds what Hydra parsed from an integer."""
    return repr(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _positive(value: Any, key: str, integer: bool = False) -> None:
    if not value > 0 or (isinstance(value, float) and math.isnan(value)):
        example = "10" if integer else "0.01"
        raise UserError(f"{key}={_shown(value)} must be a positive {'integer' if integer else 'number'}, e.g. {key}={example}.")


def _fraction(value: Any, key: str, upper_open: bool = True) -> None:
    if not (0 <= value < 1 if upper_open else 0 <= value <= 1):
        raise UserError(f"{key}={value!r} must be a number in [0, 1{')' if upper_open else ']'}, e.g. {key}=0.1.")


def device_problem(want: str, num_workers: int, use_gpu: object) -> str | None:
    """Why train.device=want cannot run with these workers (None when it can); whether this machine has the
    device is launch.preflight's check, on the machine that will use it."""
    if want == "mps" and num_workers > 1:
        return (
            f"train.device=mps with scaling.num_workers={num_workers}: PyTorch DDP has no MPS backend (NCCL is "
            "CUDA-only, gloo computes on the CPU). Use scaling.num_workers=1 to train on the Apple GPU, or "
            "train.device=cpu for DDP with gloo."
        )
    if want == "cuda" and use_gpu is False:
        return "train.device=cuda with scaling.use_gpu=false: Ray would reserve no GPU; set scaling.use_gpu=auto or true."
    if want == "mps" and use_gpu is True:
        return "train.device=mps with scaling.use_gpu=true: Ray's GPUs are CUDA devices; use scaling.use_gpu=auto or false."
    return None


def validate_serving(config: Config) -> None:
    """The serve: and predict: sections' rules across keys (ranges are in the schema), checked before Ray."""
    serve, predict = config.serve, config.predict
    if serve.min_replicas > serve.max_replicas:
        raise UserError(
            f"serve.min_replicas={serve.min_replicas} exceeds serve.max_replicas={serve.max_replicas}; "
            f"e.g. serve.max_replicas={serve.min_replicas}."
        )
    if serve.challenger_traffic > 0 and serve.challenger_alias == serve.champion_alias:
        raise UserError(f"serve.challenger_alias={serve.challenger_alias!r} is the champion alias; name another alias.")
    if not predict.output.endswith((".csv", ".parquet")):
        raise UserError(f"predict.output={predict.output!r} must end in .csv or .parquet, e.g. output=predictions.csv.")


def _check_metric(metric: str) -> None:
    if metric not in names.EPOCH_METRICS:
        raise UserError(
            f"tune.metric={metric!r} is never reported by the trainer, so no trial could be ranked. "
            f"Reported per epoch: {', '.join(names.EPOCH_METRICS)} (default tune.metric=val_acc tune.mode=max)."
        )
