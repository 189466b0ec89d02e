"""Trials that train inside their own Tune actor (1 worker): no controller, worker group or placement group."""

from __future__ import annotations

from typing import Any

from ray import tune

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config
from raymlops.launch.executors.base import TrialExecutor


class InActorExecutor(TrialExecutor):
    """The trial's Tune actor is its one worker: Tune reserves the worker's resources for it."""

    cheap_pause = True
    reuses_actors = True

    def resources(self) -> Any:
        return tune.PlacementGroupFactory([dict(self.search.launch.per_worker)])

    def run(self, config: Config, run: RunContract, trial_id: str) -> None:
        from raymlops.training.loop import run_training  # torch: only in the actors that train
        from raymlops.training.session import tune_session

        run_training(config, run, tune_session(run.launch.use_gpu, device=config.train.device))  # reports to Tune
