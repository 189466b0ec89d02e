"""Trials on warm DDP lanes: long-lived Ray Train worker groups (lane_broker) that run one Tune trial after
another. Each trial's Tune actor is a thin driver that hands its config to the search's broker and relays
every epoch's metrics and checkpoint to Tune (`relay_from_lane`); `tune.report` returning is the lane's
go-ahead for the next epoch, so an ASHA stop or a pause ends the trial on the lane at that epoch boundary.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray import tune
from ray.tune import Callback

from raymlops import ray_internals
from raymlops.config.contract import RunContract
from raymlops.config.schema import Config
from raymlops.launch import cluster
from raymlops.launch.executors.base import TrialExecutor, search_storage
from raymlops.launch.executors.lane_broker import start_broker, stop_lanes
from raymlops.launch.executors.own_trainer import driver_resources
from raymlops.training.session import tune_session


class WarmLaneExecutor(TrialExecutor):
    """The search's lane broker starts with the search (`concurrency` lanes of its shape at once) and ends
    with it; a trial's driver submits to it and relays what its lane reports."""

    reuses_actors = True

    def __init__(self, config: Config, search: RunContract):
        super().__init__(config, search)
        self.storage = os.path.join(search_storage(config.storage_path, search), "lanes")
        self.broker: Any = None

    def resources(self) -> Any:
        return driver_resources()

    def start(self, concurrency: int) -> None:
        spec = lane_spec(self.config, self.search, self.storage)
        self.broker = start_broker(spec, concurrency, self.config.scaling.lane_idle_s)

    def stop(self) -> None:
        if self.broker is not None:
            stop_lanes(self.broker)

    def callbacks(self) -> list[Any]:
        return [LaneRelease(self.broker, self.search.run_key)]

    def queued_trials(self) -> int:
        """Trials whose thin driver runs while no lane has taken them (their lane's workers are not up yet)."""
        return int(ray.get(self.broker.queued.remote(), timeout=5)) if self.broker is not None else 0

    def run(self, config: Config, run: RunContract, trial_id: str) -> None:
        relay_from_lane(config, run, self.broker, self.storage)


def relay_from_lane(config: Config, run: RunContract, broker: Any, storage: str) -> None:
    """The thin driver of a DDP trial on a warm lane: submit, then relay each epoch (metrics + checkpoint)
    to Tune; `tune.report` returning is the lane's go-ahead. A stop or pause by Tune ends this thread
    inside `tune.report`; the finally tells the broker, and the lane drops the trial at that boundary."""
    ray_internals.quiet(ray_internals.TRAIN_STORAGE_LOGGER)  # a line per relayed checkpoint
    session = tune_session(run.launch.use_gpu, trains_here=False)  # Tune's side: checkpoints, restore candidates, known epochs
    request = {
        "config": config,
        "run": run,
        "restore_dirs": session.restore_dirs,
        "known_epoch": session.known_epoch,
        "stop_epoch": session.stop_epoch,
    }
    key = run.run_key
    ray.get(broker.submit.remote(key, request, lane_spec(config, run, storage)))
    try:
        while True:
            message = ray.get(broker.take.remote(key, 30.0))
            if message is None:
                continue
            if message["kind"] == "done":
                return
            if message["kind"] == "error":
                raise RuntimeError(f"trial {key} failed on its DDP lane:\n{message['error']}")
            session.report(message["metrics"], message["checkpoint"])
            checkpoint = tune.get_checkpoint()
            ray.get(broker.ack.remote(key, checkpoint.path if checkpoint and message["checkpoint"] else None))
    finally:
        broker.release.remote(key)


def lane_spec(config: Config, run: RunContract, storage: str) -> dict[str, Any]:
    """The shape of the worker group a trial needs (its lane's key) and how to start one."""
    return {
        "num_workers": config.scaling.num_workers,
        "per_worker": cluster.worker_resources(config.scaling, run.launch.use_gpu),
        "use_gpu": run.launch.use_gpu,
        "storage": os.path.abspath(storage) if "://" not in storage else storage,
        "max_failures": config.train.max_failures,
    }


class LaneRelease(Callback):
    """Tells the broker when Tune has ended or paused a trial (a safety net beside the thin driver's own
    `finally`, for a driver actor that died without running it)."""

    def __init__(self, broker: Any, search_key: str):
        self.broker, self.search_key = broker, search_key
        self.live: set[str] = set()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.live.add(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        for trial in trials:
            if trial.trial_id in self.live and trial.status in ("PAUSED", "TERMINATED", "ERROR"):
                self.live.discard(trial.trial_id)
                self.broker.release.remote(f"{self.search_key}/{trial.trial_id}")

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl; a resumed search brings its own broker."""
        return {**self.__dict__, "broker": None, "live": set()}
