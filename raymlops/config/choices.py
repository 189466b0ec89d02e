"""The choices a config may name (data sets, models, optimizers, schedulers, searchers, samplers)."""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "imagefolder", "synthetic")
MODELS = ("fast_cnn", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("none", "cosine", "onecycle")
SCHEDULERS = ("fifo", "asha", "hyperband")
ASHA_MODES = ("auto", "promote", "stop")  # scheduler.mode: see conf/scheduler/asha.yaml
SEARCH_ALGS = ("random", "optuna")
SAMPLER_TYPES = ("uniform", "loguniform", "quniform", "randint", "choice")
