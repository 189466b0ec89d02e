"""Search builders: the YAML search space as ray.tune samplers, the scheduler and the search algorithm."""

from __future__ import annotations

from typing import Any

from raymlops import schema
from raymlops.errors import UserError

_REQUIRED = {
    "uniform": ("lower", "upper"),
    "loguniform": ("lower", "upper"),
    "quniform": ("lower", "upper", "q"),
    "randint": ("lower", "upper"),
    "choice": ("values",),
}


def validate_space(config: dict[str, Any]) -> None:
    """Every entry has a known type, its arguments, a sane range, and names an existing config key."""
    from raymlops.config import flatten

    space = config.get("search_space") or {}
    if not isinstance(space, dict):
        raise UserError(f"search_space must be a mapping of dotted keys to samplers, got {space!r}.")
    known = flatten({k: v for k, v in config.items() if k not in ("search_space", "overrides")})
    for key, spec in space.items():
        where = f"search_space['{key}']"
        if key not in known:
            raise UserError(
                f"{where}: '{key}' is not a config key a trial can override (e.g. optim.lr, train.batch_size, model.name)."
            )
        if not isinstance(spec, dict) or "type" not in spec:
            raise UserError(f"{where} must look like {{type: loguniform, lower: 1e-4, upper: 1e-1}}, got {spec!r}.")
        kind = spec["type"]
        if kind not in schema.SAMPLER_TYPES:
            raise UserError(f"{where}: type={kind!r} is unknown; use one of {', '.join(schema.SAMPLER_TYPES)}.")
        missing = [a for a in _REQUIRED[kind] if a not in spec]
        extra = sorted(set(spec) - {"type", *_REQUIRED[kind]})
        if missing or extra:
            raise UserError(
                f"{where}: type {kind} takes {', '.join(_REQUIRED[kind])}; missing {missing or 'none'}, unexpected {extra or 'none'}."
            )
        if kind == "choice":
            if not isinstance(spec["values"], list) or not spec["values"]:
                raise UserError(f"{where}: values must be a non-empty list, e.g. values: [64, 128, 256].")
            _check_choice_values(key, spec["values"], where, config["scaling"]["num_workers"])
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
        "model.name": schema.MODELS,
        "optim.name": schema.OPTIMIZERS,
        "data.name": schema.DATASETS,
        "train.lr_schedule": schema.LR_SCHEDULES,
    }
    if key in allowed:
        bad = [v for v in values if v not in allowed[key]]
        if bad:
            raise UserError(f"{where}: {bad} not valid for {key}; choose from {', '.join(allowed[key])}.")


def param_space(config: dict[str, Any]) -> dict[str, Any]:
    """{'optim.lr': tune.loguniform(...), ...}: flat dotted keys, applied onto the config per trial."""
    from ray import tune

    samplers = {
        "uniform": lambda s: tune.uniform(s["lower"], s["upper"]),
        "loguniform": lambda s: tune.loguniform(s["lower"], s["upper"]),
        "quniform": lambda s: tune.quniform(s["lower"], s["upper"], s["q"]),
        "randint": lambda s: tune.randint(s["lower"], s["upper"]),
        "choice": lambda s: tune.choice(s["values"]),
    }
    return {key: samplers[spec["type"]](spec) for key, spec in (config.get("search_space") or {}).items()}


def build_scheduler(config: dict[str, Any]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

    sched = config["scheduler"]
    max_t = config["train"]["epochs"]
    common: dict[str, Any] = {"time_attr": "training_iteration"}  # metric and mode come from TuneConfig, set once
    if sched["name"] == "asha":
        from raymlops.schedulers import PromotionASHA

        asha = PromotionASHA if asha_mode(config) == "promote" else ASHAScheduler
        grace = min(int(sched["grace_period"]), max_t)
        return asha(max_t=max_t, grace_period=grace, reduction_factor=sched["reduction_factor"], **common)
    if sched["name"] == "hyperband":
        return HyperBandScheduler(max_t=max_t, reduction_factor=sched["reduction_factor"], **common)
    return FIFOScheduler()


def asha_mode(config: dict[str, Any]) -> str:
    """scheduler.mode for ASHA: `promote` pauses a trial below its rung's top 1/rf and resumes it if it
    rises (raymlops.schedulers.PromotionASHA); `stop` is Ray Tune's ASHAScheduler; `auto` promotes
    trials that train inside their Tune actor (a pause costs a checkpoint) and stops DDP trials (a
    resume would cost a new worker group)."""
    from raymlops.driver import in_process

    mode = str(config["scheduler"].get("mode", "auto"))
    if mode == "auto":
        return "promote" if in_process(config) else "stop"
    return mode


def build_search_alg(config: dict[str, Any], max_concurrent: int) -> Any:
    alg = config["search_alg"]
    if alg["name"] == "random":  # seeded, so the same train.seed samples the same configurations
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=config["train"]["seed"], max_concurrent=max_concurrent)
    from optuna.samplers import TPESampler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if not config.get("search_space"):
        raise UserError("search_alg=optuna needs a non-empty search_space in the experiment.")
    sampler = TPESampler(seed=config["train"]["seed"], n_startup_trials=alg.get("n_startup_trials", 5))
    searcher = OptunaSearch(sampler=sampler)  # metric and mode come from TuneConfig
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
