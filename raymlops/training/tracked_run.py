"""The loop's MLflow run: opened (or found again after a restart) by rank 0, params on first start, and the
epochs and steps a checkpoint holds but MLflow lacks written back, so a restart neither loses nor
duplicates a point."""

from __future__ import annotations

import logging
from typing import Any

from raymlops.config.contract import RunContract
from raymlops.config.schema import Config, DataConfig, MlflowConfig
from raymlops.core import names
from raymlops.data import Splits
from raymlops.tracking import (
    NullLogger,
    config_params,
    log_dataset,
    logged_steps,
    logged_values,
    logger_for,
    retry_or_none,
    tensor_digest,
)
from raymlops.training.exploits import is_other_trials_run, record_exploit, schedule_values
from raymlops.training.session import Session
from raymlops.training.training_state import Progress

log = logging.getLogger(__name__)
RESUMES = "restarts"  # the metric a restart logs: its number, at the epoch it resumed from


def open_tracker(mcfg: MlflowConfig, scheduler: str, run: RunContract | None, session: Session, run_id: str | None) -> NullLogger:
    """The loop's logger (tracking.logger_for decides who logs): run_id is the run a restored checkpoint
    logged to; without it, the contract's run is opened, or found again after a restart. No contract
    (a benchmark, a test): nothing is logged. A PBT trial restored from another trial's checkpoint keeps its own run."""
    if session.is_rank_zero and is_other_trials_run(scheduler, mcfg.retry_seconds, run, run_id):
        run_id = None  # found again by this trial's run key
    return logger_for(
        session.is_rank_zero,
        run.launch.tracking_uri if run else "",
        run_id,
        create=_run_spec(run) if run else None,
        spool_dir=mcfg.spool_dir,
        retry_seconds=mcfg.retry_seconds,
    )


def _run_spec(run: RunContract) -> dict[str, Any]:
    tags = {names.TAG_ROLE: run.role, **run.launch.lineage}
    if run.parent_run_id:
        tags[names.TAG_PARENT] = run.parent_run_id
    return {"experiment_id": run.launch.experiment_id, "run_key": run.run_key, "run_name": run.run_name, "tags": tags}


def start_tracking(
    tracker: NullLogger,
    config: Config,
    session: Session,
    progress: Progress,
    splits: Splits | None = None,
) -> dict[str, set[int]]:
    """Params and the data set input on first start, system metrics from rank 0's node; after a restart,
    backfill epochs and steps the checkpoint has but MLflow lacks.

    Returns the steps already logged, so a re-run epoch is never logged twice.
    """
    if type(tracker) is NullLogger:
        return {}
    # a run created just now has no points: no need to ask MLflow (two queries per trial otherwise)
    found = {"val_acc": set(), names.STEP_METRIC: set()} if tracker.fresh else _logged_steps(tracker, config.mlflow.retry_seconds)
    already = found or {"val_acc": set(), names.STEP_METRIC: set()}
    mcfg = config.mlflow
    if mcfg.system_metrics:
        tracker.start_system_metrics(float(mcfg.system_metrics_interval_s))
    if progress.run_id and tracker.run_id != progress.run_id:  # PBT exploit: the donor's points are not this run's
        record_exploit(tracker, config, progress.epoch, progress.run_id)
        return already
    if progress.restarts == 0 and already["val_acc"]:  # epochs in MLflow, yet no checkpoint came back (killed
        # before its first checkpoint reached the disk): it starts again from scratch, and that is a restart too
        progress.restarts = max(already.get(RESUMES, set()), default=0) + 1
    if progress.restarts == 0:
        tracker.log_params(
            {**config_params(config), "world_size": session.world_size, "device": str(getattr(session.device, "type", "none"))}
        )
        tracker.set_tags({"world_size": session.world_size, names.TAG_WORKER_NODES: session.nodes})
        if schedule := schedule_values(config):  # PBT: the values this trial starts with, step 0
            tracker.log_metrics(schedule, step=0)
        if splits is not None and tracker.run_id:
            run_id, uri, spec = tracker.run_id, tracker.tracking_uri, dataset_spec(config.data, splits)
            retry_or_none(lambda: log_dataset(uri, run_id, spec), mcfg.retry_seconds, f"no data set input on run {run_id}")
    if found is not None:  # unknown what MLflow has (tracker down): the spool holds the rest
        _backfill(tracker, progress, already)
    if progress.restarts:
        tracker.set_tags({names.TAG_RESTARTS: progress.restarts, names.TAG_WORKER_NODES: session.nodes})
        tracker.log_metrics({RESUMES: progress.restarts}, step=len(progress.history))
        log.warning(  # a restart after a failure, or a trial the scheduler paused and now resumes
            "resumed from epoch %d (resume %d); MLflow run %s continues", len(progress.history), progress.restarts, tracker.run_id
        )
    return already


_DIGESTS: dict[int, str] = {}  # per process, by the splits' identity (load_splits keeps them cached)


def dataset_spec(data: DataConfig, splits: Splits) -> dict[str, Any]:
    """What MLflow shows of the data set: its name, a digest of the decoded tensors, where it came from, sizes."""
    key = id(splits.train_x)
    if key not in _DIGESTS:
        _DIGESTS[key] = tensor_digest([splits.train_x, splits.train_y, splits.val_x, splits.val_y, splits.test_x, splits.test_y])
    name = data.name
    source = f"synthetic://seeded?num_train={data.num_train}&num_test={data.num_test}" if name == "synthetic" else data.root
    profile = {
        "train": len(splits.train_y),
        "val": len(splits.val_y),
        "test": len(splits.test_y),
        "classes": splits.num_classes,
        "image": list(splits.train_x.shape[1:]),
    }
    return {"name": name, "digest": _DIGESTS[key], "source": str(source), "profile": profile}


def _backfill(tracker: NullLogger, progress: Progress, already: dict[str, set[int]]) -> None:
    for point in progress.history:
        if point["epoch"] not in already["val_acc"]:
            tracker.log_metrics(
                {k: point[k] for k in names.EPOCH_METRICS}, step=point["epoch"], timestamp_ms=point.get(names.LOGGED_AT)
            )
            already["val_acc"].add(point["epoch"])
    for step, value, logged_at in progress.step_points:
        if int(step) not in already[names.STEP_METRIC]:
            tracker.log_metrics({names.STEP_METRIC: value}, step=int(step), timestamp_ms=int(logged_at))
            already[names.STEP_METRIC].add(int(step))


def _logged_steps(tracker: NullLogger, retry_seconds: float) -> dict[str, set[int]] | None:
    """The epochs and steps the run already has in MLflow; None when that cannot be known (tracker down)."""
    run_id = tracker.run_id
    if not run_id:
        return None
    uri = tracker.tracking_uri

    def fetch() -> dict[str, set[int]]:
        found = {key: logged_steps(uri, run_id, key) for key in ("val_acc", names.STEP_METRIC)}
        return {**found, RESUMES: {int(v) for v in logged_values(uri, run_id, RESUMES)}}  # the resume numbers so far

    return retry_or_none(
        fetch,
        retry_seconds,
        f"epochs the checkpoint holds are not compared with run {run_id}",
    )
