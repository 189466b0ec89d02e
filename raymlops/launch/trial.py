"""One Tune trial: the search's config with this trial's sampled params, trained in its Tune actor (1 worker),
on a warm DDP lane whose reports it relays to Tune (launch.lanes), or by its own TorchTrainer of DDP workers
(scaling.warm_workers=false: Ray's documented Tune -> TorchTrainer pattern)."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raymlops.config.contract import RunContract
from raymlops.config.dotted import apply_overrides
from raymlops.launch import cluster
from raymlops.launch.job import torch_trainer
from raymlops.launch.lanes import lane_spec
from raymlops.training.loop import run_training
from raymlops.training.session import tune_session


def run_trial(params: dict[str, Any], base: dict[str, Any], search: RunContract, parent_run_id: str, lanes: Any = None) -> None:
    """Tune function trainable: one trial = the base config with this trial's sampled params."""

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config = apply_overrides(base, params)
    run = search.trial(trial_id, ctx.get_trial_name(), parent_run_id)
    if in_process(config):
        run_training(config, run, tune_session(search.launch.use_gpu))
        return
    if lanes is not None:
        run_on_lane(config, run, lanes, os.path.join(search_storage(base, search), "lanes"))
        return

    storage = os.path.join(search_storage(base, search), "train_runs")
    result = torch_trainer(config, run, search.launch, trial_id, storage, callbacks=[TuneReportCallback()]).fit()
    if result.error:
        raise result.error


def run_on_lane(config: dict[str, Any], run: RunContract, broker: Any, storage: str) -> None:
    """The thin driver of a DDP trial on a warm lane: submit, then relay each epoch (metrics + checkpoint)
    to Tune; `tune.report` returning is the lane's go-ahead. A stop or pause by Tune ends this thread
    inside `tune.report`; the finally tells the broker, and the lane drops the trial at that boundary."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # a line per relayed checkpoint
    session = tune_session(run.launch.use_gpu)  # Tune's side: checkpoints, restore candidates, known epochs
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


def warm_lanes(config: dict[str, Any]) -> bool:
    """DDP trials run on warm lanes unless scaling.warm_workers=false."""
    return not in_process(config) and bool(config["scaling"].get("warm_workers", True))


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
