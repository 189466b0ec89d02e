"""One training job: decide the Launch (cluster, device, tracker) once, then run a TorchTrainer of DDP workers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray.train

from raymlops import ray_internals
from raymlops.config.contract import Launch, RunContract
from raymlops.config.schema import Config
from raymlops.launch import cluster
from raymlops.launch.job_progress import EpochProgress
from raymlops.tracking import client, ensure_experiment, lineage, retrying
from raymlops.training.loop import train_loop_per_worker


def start(config: Config, argv: list[str], torch_trainer_runs: bool = True) -> Launch:
    """Join Ray, resolve GPUs, refuse infeasible groups, open the MLflow experiment (after launch.preflight).
    torch_trainer_runs: the command will fit a TorchTrainer (a training job, a search of DDP trials)."""
    opening = threading.Thread(target=_open_store, args=(config.mlflow.tracking_uri,), name="raymlops-open-store", daemon=True)
    opening.start()  # MLflow's store opens while Ray starts: the driver mostly waits on Ray's processes meanwhile
    cluster.connect(config)
    if torch_trainer_runs:
        ray_internals.start_train_autoscaling_coordinator()  # its process starts beside the first controller's
    opening.join()
    gpu = cluster.use_gpu(config)
    per_worker = cluster.worker_resources(config.scaling, gpu)
    groups = cluster.check_feasible(config, per_worker)
    mcfg = config.mlflow
    experiment_id = retrying(
        lambda: ensure_experiment(mcfg.tracking_uri, mcfg.experiment_name, mcfg.artifact_location),
        mcfg.retry_seconds,
    )
    return Launch(mcfg.tracking_uri, experiment_id, gpu, per_worker, lineage(config, argv), groups)


def _open_store(tracking_uri: str) -> None:
    """Build the process's MLflow client (a new SQLite store migrates its schema: ~1.5 s on 2 cores). A failure
    here is left to the first real call, which retries what is transient and says what to fix."""
    try:
        client(tracking_uri)
    except Exception as err:  # reported by ensure_experiment's own call, with its retries
        logging.getLogger(__name__).debug("opening the MLflow store while Ray starts: %s", err)


def run_config_for_train(config: Config, name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:

    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        callbacks=callbacks,
        failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
        logging_config=quiet_logging(),  # type: ignore[call-arg]  # Train V2's RunConfig (the default since 2.51)
    )


def quiet_logging() -> Any:
    try:
        from ray.train.v2.api.config import LoggingConfig

        return LoggingConfig(log_level="WARNING")
    except ImportError:  # pragma: no cover
        return None


def torch_trainer(
    config: Config,
    run: RunContract | None,
    launch: Launch,
    name: str,
    storage_path: str,
    callbacks: list[Any] | None = None,
) -> Any:
    """A TorchTrainer of scaling.num_workers workers running the loop; run None logs nothing (benchmarks)."""

    return ray_internals.torch_trainer_class()(
        train_loop_per_worker,
        train_loop_config={"config": config, "run": run},
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.scaling.num_workers, use_gpu=launch.use_gpu, resources_per_worker=dict(launch.per_worker)
        ),
        run_config=run_config_for_train(config, name, storage_path, callbacks),
    )


def run_train_job(config: Config, launch: Launch) -> dict[str, Any]:
    """One training job: TorchTrainer with scaling.num_workers DDP workers, rank 0 logging to MLflow."""
    name = f"{config.name}-train-{time.strftime('%Y%m%d-%H%M%S')}"
    run = launch.run("train", name, name, log_model=True)
    progress = EpochProgress(config.train.epochs, config.tune.metric)
    result = torch_trainer(config, run, launch, name, config.storage_path, [progress]).fit()
    if result.error:
        raise result.error
    return dict(result.metrics or {})
