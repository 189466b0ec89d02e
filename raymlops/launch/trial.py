"""One Tune trial: the search's config with this trial's sampled params, trained in its Tune actor (1 worker)
or by a TorchTrainer of DDP workers whose reports it forwards to Tune."""

from __future__ import annotations

import os
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raymlops.config.contract import RunContract
from raymlops.config.dotted import apply_overrides
from raymlops.launch import cluster
from raymlops.launch.job import torch_trainer
from raymlops.training.loop import run_training
from raymlops.training.session import tune_session


def run_trial(params: dict[str, Any], base: dict[str, Any], search: RunContract, parent_run_id: str) -> None:
    """Tune function trainable: one trial = the base config with this trial's sampled params."""

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config = apply_overrides(base, params)
    run = search.trial(trial_id, ctx.get_trial_name(), parent_run_id)
    if in_process(config):
        run_training(config, run, tune_session(search.launch.use_gpu))
        return

    storage = os.path.join(search_storage(base, search), "train_runs")
    result = torch_trainer(config, run, search.launch, trial_id, storage, callbacks=[TuneReportCallback()]).fit()
    if result.error:
        raise result.error


def search_storage(config: dict[str, Any], search: RunContract) -> str:
    """The search's folder under storage_path (Tune's experiment folder)."""
    return os.path.join(config["storage_path"], search.run_key)


def in_process(config: dict[str, Any]) -> bool:
    """1-worker trials train inside their Tune actor unless scaling.in_process_single_worker=false."""
    return config["scaling"]["num_workers"] == 1 and bool(config["scaling"].get("in_process_single_worker", True))


def trial_resources(config: dict[str, Any], per_worker: dict[str, float]) -> Any:
    """What Tune reserves per trial: the worker itself (in-process) or a tiny driver (DDP)."""

    if in_process(config):
        return tune.PlacementGroupFactory([per_worker])
    return tune.PlacementGroupFactory([dict(cluster.DRIVER_RESOURCES)])
