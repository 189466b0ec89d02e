"""Launchers: the checks before Ray, one training job (TorchTrainer), and the per-trial driver.

A Tune trial with one worker runs the loop inside its own Tune actor (no controller, worker
group or placement group per trial: that launch overhead is what dominates an ASHA search); a
trial with several workers builds a TorchTrainer (DDP) and forwards its reports to Tune.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from raymlops import cluster, tracking
from raymlops.config import apply_overrides
from raymlops.errors import UserError
from raymlops.worker import DONE_MARKER, MANIFEST_FILE, Session, checkpoint_candidates, run_training, train_loop_per_worker

log = logging.getLogger(__name__)


def preflight(config: dict[str, Any]) -> None:
    """Checks that need no Ray: tracker reachable, storage writable, dataset readable."""
    tracking.check_reachable(config["mlflow"]["tracking_uri"])
    check_storage(config["storage_path"])
    from raymlops.data import load_splits

    load_splits(config["data"], seed=config["train"]["seed"])  # validates the data and warms the decode cache


def check_storage(storage_path: str) -> None:
    if "://" in storage_path:
        return
    path = Path(storage_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(
            f"storage_path={storage_path} is not writable ({err.strerror or err}). Point storage_path at a writable "
            "folder (local, NFS) or an s3:// bucket, e.g. storage_path=/tmp/raymlops_results."
        ) from None


def start(config: dict[str, Any], argv: list[str], role: str) -> tuple[dict[str, Any], int]:
    """Preflight, join Ray, resolve GPUs, refuse infeasible groups, open the MLflow experiment.

    Returns the config with a `runtime` section (everything a worker needs, as plain values)
    and how many worker groups fit in the cluster at once.
    """
    preflight(config)
    cluster.connect(config)
    gpu = cluster.use_gpu(config)
    per_worker = cluster.worker_resources(config, gpu)
    groups = cluster.check_feasible(config, per_worker)
    mcfg = config["mlflow"]
    experiment_id = tracking.ensure_experiment(mcfg["tracking_uri"], mcfg["experiment_name"], mcfg.get("artifact_location"))
    config = {
        **config,
        "runtime": {
            "tracking_uri": mcfg["tracking_uri"],
            "experiment_id": experiment_id,
            "use_gpu": gpu,
            "per_worker": per_worker,
            "lineage": tracking.lineage(config, argv),
            "role": role,
        },
    }
    return config, groups


def run_config_for_train(config: dict[str, Any], name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:
    import ray.train

    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        callbacks=callbacks,
        failure_config=ray.train.FailureConfig(max_failures=config["train"]["max_failures"]),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config["checkpoint"]["num_to_keep"]),
        logging_config=_quiet_logging(),  # type: ignore[call-arg]  # Train V2's RunConfig (the default since 2.51)
    )


def _quiet_logging() -> Any:
    try:
        from ray.train.v2.api.config import LoggingConfig

        return LoggingConfig(log_level="WARNING")
    except ImportError:  # pragma: no cover
        return None


def torch_trainer(config: dict[str, Any], name: str, storage_path: str, callbacks: list[Any] | None = None) -> Any:
    import ray.train
    from ray.train.torch import TorchTrainer

    rt, scaling = config["runtime"], config["scaling"]
    resources = dict(rt["per_worker"])
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling["num_workers"], use_gpu=rt["use_gpu"], resources_per_worker=resources
        ),
        run_config=run_config_for_train(config, name, storage_path, callbacks),
    )


def run_train_job(config: dict[str, Any]) -> dict[str, Any]:
    """One training job: TorchTrainer with scaling.num_workers DDP workers, rank 0 logging to MLflow."""
    name = f"{config['name']}-train-{time.strftime('%Y%m%d-%H%M%S')}"
    config["runtime"].update(run_key=name, run_name=name, role="train", log_model=True)
    result = torch_trainer(config, name, config["storage_path"]).fit()
    if result.error:
        raise result.error
    return dict(result.metrics or {})


# ------------------------------------------------------------------ Tune trials


def run_trial(params: dict[str, Any], base: dict[str, Any]) -> None:
    """Tune function trainable: one trial = the base config with this trial's sampled params."""
    from ray import tune

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config = apply_overrides(base, params)
    config["runtime"] = {
        **config["runtime"],
        "run_key": f"{base['runtime']['search_key']}/{trial_id}",
        "run_name": ctx.get_trial_name(),
        "role": "trial",
        "log_model": False,
    }
    if in_process(config):
        run_training(config, _tune_session(config))
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    storage = os.path.join(base["runtime"]["search_storage"], "train_runs")
    result = torch_trainer(config, trial_id, storage, callbacks=[TuneReportCallback()]).fit()
    if result.error:
        raise result.error


def in_process(config: dict[str, Any]) -> bool:
    """1-worker trials train inside their Tune actor unless scaling.in_process_single_worker=false."""
    return config["scaling"]["num_workers"] == 1 and bool(config["scaling"].get("in_process_single_worker", True))


def _tune_session(config: dict[str, Any]) -> Session:
    import torch
    from ray import tune

    ckpt = tune.get_checkpoint()
    trial_dir = _trial_folder()
    first_checkpoint = [True]

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        started = time.time()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)
        if ckpt_dir and first_checkpoint[0]:
            first_checkpoint[0] = False
            if trial_dir and known >= 0:
                _drop_unregistered(trial_dir, known, started)

    gpu = config["runtime"]["use_gpu"] and torch.cuda.is_available()
    # A resumed search: Tune's record of this trial may lag the disk (see checkpoint_candidates), and a
    # trial the search already ended has a done marker (TrialBookkeeper) that keeps it from training on.
    known = _epoch_of(ckpt.path) if ckpt else 0  # -1 (unreadable manifest): report nothing again
    done = _epoch_of(trial_dir, DONE_MARKER) if trial_dir else None
    return Session(
        rank=0,
        world_size=1,
        device=torch.device("cuda" if gpu else "cpu"),
        report=report,
        restore_dirs=checkpoint_candidates(ckpt.path if ckpt else None, trial_dir),
        known_epoch=known,
        stop_epoch=done if done and done > 0 else None,
    )


def _drop_unregistered(trial_dir: str, known: int, before: float) -> None:
    """After a trial's first checkpoint since it (re)started is registered, delete the checkpoints that a
    killed driver never registered: newer than the one Tune restored (epoch `known`) and written before
    this run. Tune's num_to_keep pruning only deletes checkpoints it knows, so they would stay for good."""
    for path in Path(trial_dir).glob("checkpoint_*"):
        try:
            orphan = _epoch_of(str(path)) > known and (path / MANIFEST_FILE).stat().st_mtime < before
        except OSError:
            continue
        if orphan:
            log.warning("removing %s: written just before the search driver died, never registered by Tune", path)
            shutil.rmtree(path, ignore_errors=True)


def _trial_folder() -> str | None:
    """This trial's folder under storage_path when it is on local disk (None for s3:// and the like)."""
    try:
        from ray.train._internal.session import get_storage  # DeveloperAPI: Tune's storage context for the trial

        path = str(get_storage().trial_fs_path)
    except Exception:
        return None
    return path if os.path.isdir(path) else None


def _epoch_of(folder: str, name: str = MANIFEST_FILE) -> int:
    """The "epoch" in a checkpoint's manifest or a done marker; -1 when absent or unreadable."""
    if "://" in folder:
        return -1
    try:
        return int(json.loads(Path(folder, name).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def trial_resources(config: dict[str, Any]) -> Any:
    """What Tune reserves per trial: the worker itself (in-process) or a tiny driver (DDP)."""
    from ray import tune

    per_worker = config["runtime"]["per_worker"]
    if in_process(config):
        return tune.PlacementGroupFactory([per_worker])
    return tune.PlacementGroupFactory([dict(cluster.DRIVER_RESOURCES)])
