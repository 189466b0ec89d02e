"""Trials that each build their own TorchTrainer of DDP workers (scaling.warm_workers=false): Ray's documented
Tune -> TorchTrainer pattern, a new controller, worker group and placement group per trial."""

from __future__ import annotations

import os
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config
from raymlops.launch import cluster
from raymlops.launch.executors.base import TrialExecutor, search_storage


def driver_resources() -> Any:
    """A DDP trial's Tune actor is a thin driver: its workers are reserved by Ray Train (or the lane)."""
    return tune.PlacementGroupFactory([dict(cluster.DRIVER_RESOURCES)])


class OwnTrainerExecutor(TrialExecutor):
    """Each trial's driver fits a TorchTrainer whose rank-0 reports TuneReportCallback forwards to Tune."""

    def resources(self) -> Any:
        return driver_resources()

    def run(self, config: Config, run: RunContract, trial_id: str) -> None:
        from raymlops.launch.job import torch_trainer  # torch: only in the actors that drive a TorchTrainer

        storage = os.path.join(search_storage(self.config.storage_path, self.search), "train_runs")
        result = torch_trainer(config, run, self.search.launch, trial_id, storage, callbacks=[TuneReportCallback()]).fit()
        if result.error:
            raise result.error
