"""Trials that each build their own TorchTrainer of DDP workers (scaling.warm_workers=false): Ray's documented
Tune -> TorchTrainer pattern, a new controller, worker group and placement group per trial."""

from __future__ import annotations

import os
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config
from raymlops.launch import cluster
from raymlops.launch.executors.base import TrialExecutor, search_storage

NODE_ID_LABEL = "ray.io/node-id"  # Ray's default label of every node: its id


def driver_resources() -> Any:
    """A DDP trial's Tune actor is a thin driver: its workers are reserved by Ray Train (or the lane). It runs on
    the search driver's node (the label every Ray node carries), which lives as long as the search: a worker
    node's loss or preemption takes only workers, which Ray Train restarts, never a trial's driver (nor, for a
    TorchTrainer per trial, its controller, which Train V2 puts where fit() runs). Called on the search driver."""
    here = ray.get_runtime_context().get_node_id()
    return tune.PlacementGroupFactory([dict(cluster.DRIVER_RESOURCES)], bundle_label_selector=[{NODE_ID_LABEL: here}])


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
