"""Search algorithms: Ray Tune's seeded random search, or Optuna (TPE or NSGA-II, one or several objectives)
through Ray Tune's OptunaSearch, optionally seeded with earlier searches' trials (search.warm_start)."""

from __future__ import annotations

from typing import Any

from optuna.samplers import NSGAIISampler, TPESampler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from raymlops.config import choices
from raymlops.config.objectives import is_multi_objective, objectives
from raymlops.config.schema import Config
from raymlops.core.errors import UserError
from raymlops.search.warm_start import WarmStart


def build_search_alg(config: Config, max_concurrent: int, warm: WarmStart | None = None) -> Any:
    alg = config.search_alg
    if alg.name == "random":  # seeded, so the same train.seed samples the same configurations
        from ray.tune.search import BasicVariantGenerator

        # PBT/PB2 need the whole population from the start (a paused member holds no CPU; the cluster limits
        # how many run): capped here, the members beyond max_concurrent would only be created once the first
        # ones ended, and never be compared with them
        population = config.scheduler.name in choices.POPULATION_SCHEDULERS
        return BasicVariantGenerator(random_state=config.train.seed, max_concurrent=0 if population else max_concurrent)

    if not config.search_space:
        raise UserError("search_alg=optuna needs a non-empty search_space in the experiment.")
    seed = config.train.seed
    if alg.sampler == "nsga2":
        sampler: Any = NSGAIISampler(seed=seed)
    else:
        sampler = TPESampler(seed=seed, n_startup_trials=alg.n_startup_trials)
    goals: dict[str, Any] = {}
    tune = config.tune
    if is_multi_objective(tune):  # metric and mode lists; TuneConfig has none then (it would overwrite them)
        goals = {"metric": list(objectives(tune)), "mode": list(objectives(tune).values())}
    if warm and warm.points:  # told to the study as finished trials (not run again): TPE starts informed
        goals.update(points_to_evaluate=warm.points, evaluated_rewards=warm.rewards)
    searcher = _OptunaSearch(sampler=sampler, **goals)  # single objective: metric and mode come from TuneConfig
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


class _OptunaSearch(OptunaSearch):
    """OptunaSearch whose evaluated points may carry one value per objective (Ray's passes a list as `value`,
    which Optuna's create_trial refuses)."""

    def add_evaluated_point(self, parameters: dict[str, Any], value: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(value, (list, tuple)):
            super().add_evaluated_point(parameters, value, *args, **kwargs)
            return
        import optuna

        space: Any = self._space  # a dict of Optuna distributions once the Tuner set the search space
        trial = optuna.trial.create_trial(values=[float(v) for v in value], params=parameters, distributions=space)
        study: Any = self._ot_study
        study.add_trial(trial)
