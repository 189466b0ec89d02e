"""The tracking layer: MLflow experiments, runs, lineage, and a rank-aware logger that never loses a point.

Only rank 0 talks to MLflow: `logger_for` is the one place that decides it. Every MLflow call is
retried by one policy (`retry`); what the tracker cannot take waits in the spool (`spool`).
"""

from raymlops.tracking.client import (
    check_can_write,
    check_reachable,
    client,
    ensure_experiment,
    fail_pipeline_runs,
    find_or_create_run,
    find_run,
    logged_steps,
    logged_values,
    open_run,
)
from raymlops.tracking.lineage import config_params, lineage, origin_tags
from raymlops.tracking.logger import NullLogger, RunLogger, logger_for, now_ms
from raymlops.tracking.model_store import warm_model_logging
from raymlops.tracking.retry import retry_or_none, retry_or_outage, retrying, transient
from raymlops.tracking.spool import replay_dir, replay_file, spool_name
from raymlops.tracking.workspace import copy_datasets, log_dataset, run_link, run_url, tensor_digest

__all__ = [
    "NullLogger",
    "RunLogger",
    "check_can_write",
    "check_reachable",
    "client",
    "config_params",
    "copy_datasets",
    "ensure_experiment",
    "fail_pipeline_runs",
    "find_or_create_run",
    "find_run",
    "lineage",
    "log_dataset",
    "logged_steps",
    "logged_values",
    "logger_for",
    "now_ms",
    "open_run",
    "origin_tags",
    "replay_dir",
    "replay_file",
    "retry_or_none",
    "retry_or_outage",
    "retrying",
    "run_link",
    "run_url",
    "spool_name",
    "tensor_digest",
    "transient",
    "warm_model_logging",
]
