"""The search space in YAML: dotted keys mapped to ray.tune sampler specs, normalised and checked before Ray."""

from __future__ import annotations

from typing import Any

from raymlops.config import choices
from raymlops.config.keys import known_keys
from raymlops.config.schema import Config
from raymlops.core.errors import UserError

_REQUIRED = {
    "uniform": ("lower", "upper"),
    "loguniform": ("lower", "upper"),
    "quniform": ("lower", "upper", "q"),
    "randint": ("lower", "upper"),
    "choice": ("values",),
}


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


def validate_space(config: Config) -> None:
    """Every entry has a known type, its arguments, a sane range, and names an existing config key."""
    space = config.search_space
    known = known_keys() - {"search_space", "overrides"}
    for key, spec in space.items():
        where = f"search_space['{key}']"
        if key not in known:
            raise UserError(
                f"{where}: '{key}' is not a config key a trial can override (e.g. optim.lr, train.batch_size, model.name)."
            )
        if not isinstance(spec, dict) or "type" not in spec:
            raise UserError(f"{where} must look like {{type: loguniform, lower: 1e-4, upper: 1e-1}}, got {spec!r}.")
        kind = spec["type"]
        if kind not in choices.SAMPLER_TYPES:
            raise UserError(f"{where}: type={kind!r} is unknown; use one of {', '.join(choices.SAMPLER_TYPES)}.")
        missing = [a for a in _REQUIRED[kind] if a not in spec]
        extra = sorted(set(spec) - {"type", *_REQUIRED[kind]})
        if missing or extra:
            raise UserError(
                f"{where}: type {kind} takes {', '.join(_REQUIRED[kind])}; missing {missing or 'none'}, unexpected {extra or 'none'}."
            )
        if kind == "choice":
            if not isinstance(spec["values"], list) or not spec["values"]:
                raise UserError(f"{where}: values must be a non-empty list, e.g. values: [64, 128, 256].")
            _check_choice_values(key, spec["values"], where, config.scaling.num_workers)
            continue
        lower, upper = spec["lower"], spec["upper"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lower, upper)):
            raise UserError(f"{where}: lower and upper must be numbers, got lower={lower!r}, upper={upper!r}.")
        if lower >= upper:
            raise UserError(
                f"{where}: lower={lower} must be < upper={upper}, e.g. lower: {min(lower, upper)}, upper: {max(lower, upper)}."
            )
        if kind == "loguniform" and lower <= 0:
            raise UserError(f"{where}: loguniform needs lower > 0 (got {lower}); e.g. lower: 1e-5, or use type: uniform.")
        if kind == "randint" and not (isinstance(lower, int) and isinstance(upper, int)):
            raise UserError(f"{where}: randint needs integer bounds, got lower={lower}, upper={upper}.")
        if kind == "quniform" and not spec["q"] > 0:
            raise UserError(f"{where}: q={spec['q']} must be > 0.")


def _check_choice_values(key: str, values: list[Any], where: str, num_workers: int) -> None:
    if key == "train.batch_size" and any(not isinstance(v, int) or v <= 0 or v % num_workers for v in values):
        raise UserError(
            f"{where}: every batch size must be a positive multiple of scaling.num_workers={num_workers}, got {values}."
        )
    allowed = {
        "model.name": choices.MODELS,
        "optim.name": choices.OPTIMIZERS,
        "data.name": choices.DATASETS,
        "train.lr_schedule": choices.LR_SCHEDULES,
    }
    if key in allowed:
        bad = [v for v in values if v not in allowed[key]]
        if bad:
            raise UserError(f"{where}: {bad} not valid for {key}; choose from {', '.join(allowed[key])}.")
