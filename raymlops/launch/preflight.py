"""Checks that need no Ray, run before it starts: the tracker reachable and writable by this user, storage
writable, the data readable."""

from __future__ import annotations

import tempfile
from pathlib import Path

from raymlops.config.schema import Config
from raymlops.core.errors import UserError
from raymlops.data import load_splits
from raymlops.launch import ray_auth
from raymlops.tracking import check_can_write, check_reachable


def preflight(config: Config) -> None:
    """Fail in seconds, with what to change, on what would otherwise fail inside Ray."""
    check_cluster(config)
    check_device(config)
    check_reachable(config.mlflow.tracking_uri)
    check_can_write(config.mlflow.tracking_uri, config.mlflow.experiment_name)
    check_storage(config.storage_path)
    load_splits(config.data, seed=config.train.seed)  # validates the data; the decoded splits stay cached


def check_cluster(config: Config) -> None:
    """A cluster to join answers, and takes the token found here (or needs none)."""
    joined = ray_auth.cluster_address(config.ray)
    if joined:
        ray_auth.prepare_join(*joined)


def check_device(config: Config) -> None:
    """train.device=cuda or mps on a machine without it, when this machine is the one that trains (no cluster
    to join: a cluster's GPU nodes may have CUDA that the submitting laptop lacks)."""
    want = str(config.train.device)
    if want in ("auto", "cpu") or ray_auth.cluster_address(config.ray):
        return
    from raymlops.models.device import available

    if not available(want):
        other = "cpu" if want == "mps" else "auto (CPU here)"
        raise UserError(
            f"train.device={want}, but this machine's PyTorch has no {want.upper()} device. Use train.device={other}, "
            f"or run where {want.upper()} is available."
        )


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
