"""The choices a config may name (data sets, models, optimizers, schedulers, searchers, samplers), as tuples of names.

Each list is read off its enum in config.schema, where the choice is declared once.
"""

from __future__ import annotations

from raymlops.config import schema

DATASETS = tuple(schema.DatasetName)
MODELS = tuple(schema.ModelName)
OPTIMIZERS = tuple(schema.OptimizerName)
LR_SCHEDULES = tuple(schema.LrSchedule)
SCHEDULERS = tuple(schema.SchedulerName)
POPULATION_SCHEDULERS = ("pbt", "pb2")  # exploit/explore a population of trials; run without a searcher
ASHA_MODES = tuple(schema.AshaMode)  # scheduler.mode: see schema.SchedulerConfig.mode
SEARCH_ALGS = tuple(schema.SearchAlgName)
OPTUNA_SAMPLERS = tuple(schema.OptunaSampler)  # search_alg.sampler: TPE (single and multi-objective) or NSGA-II
SAMPLER_TYPES = ("uniform", "loguniform", "quniform", "randint", "choice")
