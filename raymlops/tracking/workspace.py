"""What makes MLflow's UI a model-training workspace: the experiment kind, data set inputs, system metrics.

MLflow 3.17's UI guesses an experiment's kind when it carries no `mlflow.experimentKind` tag and
may open a training experiment on its GenAI overview; a run's Dataset column and lineage come
from dataset inputs (`log_inputs`), not params; CPU, memory and GPU figures come from MLflow's own
system-metrics monitor (psutil, and pynvml where there is an NVIDIA GPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from raymlops.core.redact import redact_text
from raymlops.tracking.client import client

log = logging.getLogger(__name__)
DATA_CONTEXT_TAG = "mlflow.data.context"


def tensor_digest(tensors: Iterable[Any]) -> str:
    """A short digest of decoded tensors (the bytes a trial trains on, whatever files they came from)."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        array = t.contiguous().cpu().numpy()
        h.update(str((array.dtype, array.shape)).encode())
        h.update(array.tobytes())
    return h.hexdigest()


def log_dataset(tracking_uri: str, run_id: str, spec: dict[str, Any], context: str = "train") -> None:
    """Log a data set input on a run: spec has name, digest, source, and a profile (split sizes, classes)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(
        name=spec["name"],
        digest=spec["digest"],
        source_type=spec.get("source_type", "local"),
        source=json.dumps({"uri": spec["source"]}),
        profile=json.dumps(spec.get("profile", {})),
    )
    inputs = [DatasetInput(dataset, tags=[InputTag(DATA_CONTEXT_TAG, context)])]
    try:
        client(tracking_uri).log_inputs(run_id, inputs)
    except Exception as err:
        if not lost_dataset_insert_race(err):
            raise
        client(tracking_uri).log_inputs(run_id, inputs)  # the data set's row exists now: only this run's input is added


def lost_dataset_insert_race(err: Exception) -> bool:
    """Another run logged the same data set into the experiment at the same instant (trials starting together):
    MLflow's store looks for the data set's row, then inserts it, so one of two concurrent inserts fails on the
    unique key (SQLite's "UNIQUE constraint failed: datasets...", PostgreSQL's "duplicate key value violates
    unique constraint"). Its transaction was rolled back; the same call again finds the row and succeeds."""
    text = str(err).lower()
    return "dataset" in text and ("unique constraint failed" in text or "violates unique constraint" in text)


def copy_datasets(tracking_uri: str, from_run: str, to_run: str) -> None:
    """Give a run (a search's parent) the data set inputs of another (its best trial)."""
    c = client(tracking_uri)
    inputs = c.get_run(from_run).inputs
    if inputs and inputs.dataset_inputs:
        c.log_inputs(to_run, list(inputs.dataset_inputs))


def start_system_metrics(tracking_uri: str, run_id: str, interval_s: float) -> Any:
    """MLflow's system-metrics monitor on this process's node for run_id (None when psutil is missing)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError as err:  # psutil is a raymlops dependency; a trimmed environment may lack it
        log.warning("no system metrics for run %s: %s", run_id, err)
        return None
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


UI_PORT = 5000  # `mlflow ui`'s default port


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The run's page in MLflow's UI, in its model-training view (3.17 opens the GenAI view unless told)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see a run in MLflow's UI: its URL on a server, or the `mlflow ui` command and the run's page."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"MLflow run: {run_url(redact_text(tracking_uri), experiment_id, run_id)}"
    return (
        f"MLflow UI: mlflow ui --backend-store-uri {redact_text(tracking_uri)} --host 127.0.0.1, then open "
        f"{run_url(f'http://127.0.0.1:{UI_PORT}', experiment_id, run_id)}"
    )
