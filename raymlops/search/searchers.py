"""Search algorithms: Ray Tune's seeded random search, or Optuna's TPE through Ray Tune's OptunaSearch."""

from __future__ import annotations

from typing import Any

from optuna.samplers import TPESampler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from raymlops.core.errors import UserError


def build_search_alg(config: dict[str, Any], max_concurrent: int) -> Any:
    alg = config["search_alg"]
    if alg["name"] == "random":  # seeded, so the same train.seed samples the same configurations
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=config["train"]["seed"], max_concurrent=max_concurrent)

    if not config.get("search_space"):
        raise UserError("search_alg=optuna needs a non-empty search_space in the experiment.")
    sampler = TPESampler(seed=config["train"]["seed"], n_startup_trials=alg.get("n_startup_trials", 5))
    searcher = OptunaSearch(sampler=sampler)  # metric and mode come from TuneConfig
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
