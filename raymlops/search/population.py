"""Population-based training: Ray Tune's PopulationBasedTraining and PB2 over the search_space, with explore kept
inside the space's bounds (PBT's x0.8 / x1.2 would otherwise walk a value out of its range)."""

from __future__ import annotations

from functools import partial
from typing import Any

from ray.tune.schedulers import PopulationBasedTraining

from raymlops.config.schema import SchedulerConfig
from raymlops.search.param_space import param_space


def build_population(sched: SchedulerConfig, space: dict[str, Any]) -> Any:
    """PBT (random perturbations) or PB2 (a GP bandit picks the new values) per scheduler.name; metric and
    mode come from TuneConfig. Each report is one epoch, so intervals count epochs."""
    common: dict[str, Any] = {
        "time_attr": "training_iteration",
        "perturbation_interval": int(sched.perturbation_interval),
        "quantile_fraction": float(sched.quantile_fraction),
        "synch": bool(sched.synch),
        "custom_explore_fn": partial(clip_to_space, space=space),  # picklable: Tune saves the scheduler
    }
    if sched.name == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        bounds: dict[str, Any] = {str(k): [spec["lower"], spec["upper"]] for k, spec in space.items()}
        return PB2(hyperparam_bounds=bounds, log_config=False, **common)
    domains = param_space(space)
    mutations = {k: spec["values"] if spec["type"] == "choice" else domains[k] for k, spec in space.items()}
    return PopulationBasedTraining(
        hyperparam_mutations=mutations, resample_probability=float(sched.resample_probability), log_config=False, **common
    )


def clip_to_space(new: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Numeric explored values clipped to [lower, upper] (randint: upper exclusive), quniform kept on its grid."""
    for key, spec in space.items():
        if key not in new or spec["type"] == "choice":
            continue
        upper = spec["upper"] - 1 if spec["type"] == "randint" else spec["upper"]
        value = min(max(new[key], spec["lower"]), upper)
        if spec["type"] == "quniform":
            value = round(value / spec["q"]) * spec["q"]
        new[key] = round(value) if spec["type"] == "randint" else float(value)
    return new
