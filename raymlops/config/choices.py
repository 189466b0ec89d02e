"""The choices a config may name (data sets, models, optimizers, schedulers, searchers, samplers)."""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "imagefolder", "synthetic")
MODELS = ("fast_cnn", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("none", "cosine", "onecycle")
SCHEDULERS = ("fifo", "asha", "hyperband", "pbt", "pb2")
POPULATION_SCHEDULERS = ("pbt", "pb2")  # exploit/explore a population of trials; run without a searcher
ASHA_MODES = ("auto", "promote", "stop")  # scheduler.mode: see conf/scheduler/asha.yaml
SEARCH_ALGS = ("random", "optuna")
OPTUNA_SAMPLERS = ("tpe", "nsga2")  # search_alg.sampler: TPE (single and multi-objective) or NSGA-II
SAMPLER_TYPES = ("uniform", "loguniform", "quniform", "randint", "choice")
