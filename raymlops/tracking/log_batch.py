"""Writes folded into MLflow log_batch requests, and sending them (params MLflow refuses are dropped, not the rest)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from raymlops.core.redact import redact_text
from raymlops.tracking.retry import transient

log = logging.getLogger(__name__)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow log_batch limits per request
MAX_PARAM_LEN = 6000


def coalesce(items: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Fold queued writes into log_batch-sized requests; a status change ends a batch."""
    batches: list[dict[str, Any]] = []
    cur: dict[str, Any] = {"metrics": [], "params": {}, "tags": {}}
    for kind, payload in items:
        if kind == "metrics":
            cur["metrics"].extend(payload)
        elif kind == "params":
            cur["params"].update(payload)
        elif kind == "tags":
            cur["tags"].update(payload)
        else:
            cur["status"] = payload
            batches.append(cur)
            cur = {"metrics": [], "params": {}, "tags": {}}
    if cur["metrics"] or cur["params"] or cur["tags"]:
        batches.append(cur)
    return batches


def _send(c: Any, run_id: str, batch: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(k, v, ts, step) for k, v, ts, step in batch.get("metrics", [])]
    params = [Param(k, v) for k, v in batch.get("params", {}).items()]
    tags = [RunTag(k, v) for k, v in batch.get("tags", {}).items()]
    for i in range(0, len(metrics), MAX_METRICS):
        c.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS])
    for i in range(0, len(params), MAX_PARAMS):
        c.log_batch(run_id, params=params[i : i + MAX_PARAMS])
    for i in range(0, len(tags), MAX_TAGS):
        c.log_batch(run_id, tags=tags[i : i + MAX_TAGS])
    if batch.get("status"):
        c.set_terminated(run_id, status=batch["status"])


def send_lenient(c: Any, run_id: str, batch: dict[str, Any]) -> None:
    """_send, but params MLflow refuses (e.g. logged before with another value: MLflow keeps the first)
    are dropped with a warning and the rest of the batch still goes."""
    from mlflow.exceptions import MlflowException

    try:
        _send(c, run_id, batch)
    except MlflowException as err:  # a bug or an outage is not a refusal: it raises as it is
        if transient(err) or not batch.get("params"):
            raise
        log.warning("MLflow refused params for run %s (%s); sending the rest", run_id, redact_text(str(err))[:300])
        _send(c, run_id, {**batch, "params": {}})
