"""Tune callbacks on the search driver: each trial's MLflow child run closed right (the progress display is
search.progress). Neither raises into Tune."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from raymlops.config.schema import MlflowConfig
from raymlops.core import names
from raymlops.core.redact import redact_text
from raymlops.tracking import NullLogger, RunLogger, logged_steps, transient
from raymlops.training.checkpoints import DONE_MARKER

log = logging.getLogger(__name__)


class TrialRuns(Callback):
    """Each trial's MLflow child run closed correctly (FINISHED with raymlops.stopped_early, or FAILED),
    with any epoch point the trial reported to Tune but MLflow lacks written back."""

    def __init__(self, tracking_uri: str, max_epochs: int, mlflow_cfg: MlflowConfig):
        self.uri, self.max_epochs, self.mlflow_cfg = tracking_uri, max_epochs, mlflow_cfg
        self.points: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
        self.loggers: list[NullLogger] = []
        # MLflow work for an ended trial runs in this thread, off Tune's event loop, which would otherwise wait on it
        self._closer: ThreadPoolExecutor | None = None
        self._closing: list[Future[None]] = []

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl: leave out the thread, its futures and the loggers."""
        return {**self.__dict__, "_closer": None, "_closing": [], "loggers": []}

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        if "epoch" in result:
            self.points[trial.trial_id][int(result["epoch"])] = {
                k: result[k] for k in (*names.EPOCH_METRICS, names.LOGGED_AT) if k in result
            }

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        _mark_done(trial, epochs)
        self._close(
            trial, "FINISHED", {names.TAG_STOPPED_EARLY: str(epochs < self.max_epochs).lower(), "raymlops.epochs_run": epochs}
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED", {"raymlops.error": str(getattr(trial, "error_file", "") or "see Ray logs")})

    def _close(self, trial: Any, status: str, tags: dict[str, Any]) -> None:
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id:
            points = dict(self.points.get(trial.trial_id, {}))
            self._closer = self._closer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="raymlops-close")
            self._closing.append(self._closer.submit(self._write_back, run_id, points, status, tags))

    def _write_back(self, run_id: str, points: dict[int, dict[str, float]], status: str, tags: dict[str, Any]) -> None:
        try:
            logged: set[int] | None = logged_steps(self.uri, run_id, "val_acc")
        except Exception as err:
            if not transient(err):
                raise
            logged = None  # tracker down: what MLflow lacks is unknown, and the trial's own spool holds its points
        logger = RunLogger(self.uri, run_id, spool_dir=self.mlflow_cfg.spool_dir, retry_seconds=self.mlflow_cfg.retry_seconds)
        for epoch, point in sorted(points.items()):
            if logged is not None and epoch not in logged:  # reported to Tune, not (yet) in MLflow: write it back
                at = point.get(names.LOGGED_AT)  # the trial's own timestamp: a point still on its way is stored once
                values = {k: v for k, v in point.items() if k != names.LOGGED_AT}
                logger.log_metrics(values, step=epoch, timestamp_ms=int(at) if at else None)
        logger.set_tags(tags)
        logger.end(status)
        self.loggers.append(logger)

    def flush(self) -> None:
        for closing in self._closing:
            try:
                closing.result()
            except Exception as err:  # never raises into the search: the trial's spool still holds its points
                log.warning("closing a trial's MLflow run failed: %s", redact_text(str(err))[:200])
        for logger in self.loggers:
            logger.flush(timeout_s=self.mlflow_cfg.retry_seconds + 30)


def _mark_done(trial: Any, epoch: int) -> None:
    """Leave a marker in the trial's folder: after a driver crash Tune's last snapshot (taken every ~10 s)
    may still list this trial as running; the marker keeps a resumed search from training it further."""
    folder = Path(str(getattr(trial, "path", "") or ""))
    if "://" in str(folder) or not folder.is_dir():
        return
    marker = folder / DONE_MARKER
    try:
        if marker.is_file():  # ended again after a resume (e.g. stopped while re-reporting): keep the furthest epoch
            epoch = max(epoch, int(json.loads(marker.read_text()).get("epoch", 0)))
        marker.write_text(json.dumps({"epoch": epoch, "trial_id": trial.trial_id}))
    except (OSError, ValueError) as err:
        log.warning("could not write %s for trial %s: %s", DONE_MARKER, trial.trial_id, err)
