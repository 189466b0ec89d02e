"""The trial-executor interface: how a search's Tune trials train, asked once per search by search.tuner.

An executor is chosen once per search (`choose_executor`); the search layer asks it what Tune reserves per
trial (`resources`), starts and stops what lives as long as the search (`start`, `stop`), adds its Tune
callbacks (`callbacks`), and each trial's Tune trainable (executors.trainable.run_trial) calls `run`.
Nothing outside this package knows which kind runs.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config, ScalingConfig


class TrialExecutor(ABC):
    """How each trial of one search trains. Pickled into every trial (tune.with_parameters): keep it small."""

    cheap_pause: ClassVar[bool] = False  # pausing and resuming a trial costs only a checkpoint (no worker group)
    reuses_actors: ClassVar[bool] = False  # Tune may hand a trial's actor to the next trial (tune.reuse_actors)

    def __init__(self, config: Config, search: RunContract):
        self.config, self.search = config, search

    @abstractmethod
    def resources(self) -> Any:
        """What Tune reserves per trial (a tune.PlacementGroupFactory)."""

    def start(self, concurrency: int) -> None:
        """Start what lives as long as the search, for `concurrency` trials at a time (on the search driver)."""
        return None  # nothing, for an executor with nothing search-wide

    def stop(self) -> None:
        """End what `start` started (on the search driver, after Tuner.fit, also when it raised)."""
        return None

    def callbacks(self) -> list[Any]:
        """Tune callbacks this way of running trials needs (in ray.tune.RunConfig)."""
        return []

    def queued_trials(self) -> int:
        """Trials Tune runs that wait for a worker group of this executor's own (Tune's PENDING trials aside)."""
        return 0

    @abstractmethod
    def run(self, config: Config, run: RunContract, trial_id: str) -> None:
        """Train one trial (inside its Tune trainable): `config` is the search's with the trial's sampled params."""


def search_storage(storage_path: str, search: RunContract) -> str:
    """The search's folder under storage_path (Tune's experiment folder)."""
    return os.path.join(storage_path, search.run_key)


def in_process(scaling: ScalingConfig) -> bool:
    """1-worker trials train inside their Tune actor unless scaling.in_process_single_worker=false."""
    return scaling.num_workers == 1 and scaling.in_process_single_worker


def warm_lanes(scaling: ScalingConfig) -> bool:
    """DDP trials run on warm lanes unless scaling.warm_workers=false."""
    return not in_process(scaling) and scaling.warm_workers
