"""Names, choices and defaults shared by every layer; imports nothing from the package.

The metric names defined here are the single source for the reporter (worker), the
scheduler and searcher (search), the tracker (tracking) and the registry (registry).
"""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "imagefolder", "synthetic")
MODELS = ("fast_cnn", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("none", "cosine", "onecycle")
SCHEDULERS = ("fifo", "asha", "hyperband")
ASHA_MODES = ("auto", "promote", "stop")  # scheduler.mode: see conf/scheduler/asha.yaml
SEARCH_ALGS = ("random", "optuna")
SAMPLER_TYPES = ("uniform", "loguniform", "quniform", "randint", "choice")

# Metrics reported once per epoch by every trainer, with `step` = epoch number (1-based).
EPOCH_METRICS = ("train_loss", "val_loss", "val_acc", "lr", "epoch_time_s", "samples_per_s")
DEFAULT_METRIC = "val_acc"
DEFAULT_MODE = "max"
LOGGED_AT = "logged_at_ms"  # reported with each epoch: when its point was logged (idempotent write-backs)
STEP_METRIC = "train_loss_step"  # logged every `train.log_every_n_steps` optimizer steps

# MLflow tags.
TAG_ROLE = "raymlops.role"  # train | search | trial | evaluate
TAG_RUN_KEY = "raymlops.run_key"  # stable identity of a run across restarts (trial id, job name)
TAG_STOPPED_EARLY = "raymlops.stopped_early"
TAG_RESTARTS = "raymlops.restarts"
TAG_PARENT = "mlflow.parentRunId"
TAG_DECISION = "raymlops.champion_decision"

ALIAS_CANDIDATE = "candidate"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous_champion"

# Keys whose values never leave the process in clear text (params, tags, printed configs, logs).
SECRET_WORDS = ("password", "passwd", "token", "secret", "key", "credential", "auth")
REDACTED = "***"
