"""What a search optimises and what it registers: tune.objectives (multi-objective search), registry.select (the
rule that picks the trial to register), and the population schedulers' settings; read and checked before Ray."""

from __future__ import annotations

from typing import Any

from raymlops.config import choices
from raymlops.config.schema import Config, RegistryConfig, SelectConfig, TuneConfig
from raymlops.core import names
from raymlops.core.errors import UserError

REPORTED = (*names.EPOCH_METRICS, *names.COST_METRICS)
CONSTRAINT_OPS = {"le": "<=", "lt": "<", "ge": ">=", "gt": ">"}


def objectives(tune: TuneConfig) -> dict[str, str]:
    """metric -> mode, the primary (tune.metric) first; a single-objective search has just the primary."""
    extra = dict(tune.objectives)
    return {tune.metric: str(tune.mode), **{k: v for k, v in extra.items() if k != tune.metric}}


def is_multi_objective(tune: TuneConfig) -> bool:
    return len(objectives(tune)) > 1


def select_rule(registry: RegistryConfig, tune: TuneConfig) -> dict[str, Any]:
    """registry.select filled in: {metric, mode, constraints: {metric: {op: bound}}}; unset parts follow tune."""
    select = registry.select or SelectConfig()
    metric = select.metric or tune.metric
    mode = str(select.mode) if select.mode else objectives(tune).get(metric, str(tune.mode))
    return {"metric": metric, "mode": mode, "constraints": dict(select.constraints)}


def describe_rule(rule: dict[str, Any]) -> str:
    """'best val_acc (max) with latency_ms <= 5.0': the rule in words, for the registry and the parent run."""
    limits = [f"{k} {CONSTRAINT_OPS[op]} {bound}" for k, spec in rule["constraints"].items() for op, bound in spec.items()]
    return f"best {rule['metric']} ({rule['mode']})" + (f" with {' and '.join(limits)}" if limits else "")


def needs_costs(tune: TuneConfig, registry: RegistryConfig) -> bool:
    """Whether trials must measure latency_ms / params_m: an objective or the registry's rule names one."""
    rule = select_rule(registry, tune)
    wanted = set(objectives(tune)) | set(rule["constraints"]) | {rule["metric"]}
    return bool(wanted & set(names.COST_METRICS))


def validate_objectives(config: Config) -> None:
    """tune.objectives, registry.select and the population schedulers, before Ray starts."""
    extra = config.tune.objectives
    if extra and config.tune.metric not in extra:
        raise UserError(
            f"tune.metric={config.tune.metric} must be one of tune.objectives ({', '.join(extra)}): it is the "
            "primary objective ASHA stops trials on and the search ranks by."
        )
    for metric, mode in objectives(config.tune).items():
        _known_metric(metric, "tune.objectives")
        if mode not in ("max", "min"):
            raise UserError(f"tune.objectives.{metric}={mode!r} must be max or min.")
    _validate_select(config)
    _validate_population(config)
    if config.search_alg.name != "optuna" and config.search_alg.warm_start:
        raise UserError(
            "search_alg.warm_start needs search_alg=optuna: random search cannot use past results (TPE starts informed by them)."
        )


def _known_metric(metric: Any, key: str) -> None:
    if metric not in REPORTED:
        raise UserError(
            f"{key}: {metric!r} is never reported by a trial, so it cannot be optimised. Reported: {', '.join(REPORTED)}."
        )


def _validate_select(config: Config) -> None:
    full = select_rule(config.registry, config.tune)
    _known_metric(full["metric"], "registry.select.metric")
    if full["mode"] not in ("max", "min"):
        raise UserError(f"registry.select.mode={full['mode']!r} must be max or min.")
    for metric, spec in full["constraints"].items():
        _known_metric(metric, "registry.select.constraints")
        ok = isinstance(spec, dict) and spec and all(op in CONSTRAINT_OPS for op in spec)
        if not ok or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in spec.values()):
            raise UserError(
                f"registry.select.constraints.{metric}={spec!r} must be a bound such as {{le: 5.0}} "
                f"(one of {', '.join(CONSTRAINT_OPS)}: <=, <, >=, >)."
            )


def _validate_population(config: Config) -> None:
    sched = config.scheduler
    if sched.name not in choices.POPULATION_SCHEDULERS:
        return
    name, space = sched.name, config.search_space
    if config.search_alg.name != "random":
        raise UserError(
            f"scheduler={name} runs without a searcher (Ray Tune refuses one beside PBT; its explore step does the "
            f"searching): use search_alg=random instead of search_alg={config.search_alg.name}."
        )
    if is_multi_objective(config.tune):
        raise UserError(
            f"scheduler={name} optimises one metric; drop tune.objectives or use scheduler=asha with search_alg=optuna."
        )
    if not space:
        raise UserError(f"scheduler={name} perturbs the search_space; give it at least one entry, e.g. optim.lr.")
    if config.scaling.num_workers > 1 and not config.scaling.warm_workers:
        raise UserError(
            f"scheduler={name} with DDP trials needs scaling.warm_workers=true: a trial's own TorchTrainer restores "
            "from its Ray Train run, not from the checkpoint PBT copies into the trial, so every exploit would be "
            "silently ignored. Drop scaling.warm_workers=false (DDP trials then run on warm lanes, which restore it)."
        )
    if config.tune.num_samples < 2:
        raise UserError(f"scheduler={name} needs a population: tune.num_samples >= 2 (e.g. 4).")
    interval = sched.perturbation_interval
    if not 1 <= interval < config.train.epochs:
        raise UserError(
            f"scheduler.perturbation_interval={interval!r} must be a whole number of epochs in "
            f"[1, train.epochs={config.train.epochs}), or no trial is ever perturbed."
        )
    if name == "pb2":
        categorical = [k for k, spec in space.items() if spec["type"] == "choice"]
        if categorical:
            raise UserError(
                f"scheduler=pb2 models numeric bounds only; search_space {', '.join(categorical)} is a choice. "
                "Use scheduler=pbt, or a numeric type (uniform, loguniform, quniform, randint)."
            )
        _require_sklearn()


def _require_sklearn() -> None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise UserError(
            "scheduler=pb2 needs scikit-learn (Ray Tune's PB2 fits a Gaussian process with it): pip install "
            "'scikit-learn>=1.3', or use scheduler=pbt."
        )
