"""Shared fixtures: one local Ray cluster per test session, a fresh MLflow store per test.

Marks: `ray` needs the shared Ray cluster; `slow` is a long test; `cluster` starts extra
processes (Ray nodes, PostgreSQL, an MLflow server); `gpu` skips without CUDA.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_configure(config: Any) -> None:
    for mark in (
        "ray: needs the shared local Ray cluster",
        "slow: long-running",
        "cluster: starts extra servers or Ray nodes",
        "gpu: needs CUDA",
    ):
        config.addinivalue_line("markers", mark)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import torch

    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """A 2-CPU local Ray cluster shared by one module's tests (~8 s to start). Module scope, so it
    is gone while other modules start clusters of their own: with two Ray instances on a machine,
    Ray Train's PlacementGroupCleaner cannot pick the state API to talk to."""
    import ray

    if not ray.is_initialized():
        # The dashboard hosts the state API that Ray Train's PlacementGroupCleaner needs to free the
        # worker-group placement group of a DDP trial stopped by ASHA; without it they leak.
        ray.init(
            address="local",  # a new cluster, never one a `ray start` left on this machine
            num_cpus=2,
            include_dashboard=True,
            dashboard_port=0,
            object_store_memory=400 * 1024**2,
            logging_level="WARNING",
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
        )
    yield ray
    ray.shutdown()


def free_local_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_state_dir(name: str) -> Path:
    """A server state folder PostgreSQL can enter: it runs as the unprivileged postgres user, which cannot
    enter pytest's 0700 temp dirs."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"raymlops-{name}-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    """Overrides that send MLflow, Ray results and spools into this test's temp dir."""
    return {
        "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "mlflow.artifact_location": str(tmp_path / "artifacts"),
        "mlflow.spool_dir": str(tmp_path / "spool"),
        "storage_path": str(tmp_path / "ray_results"),
    }


def overrides(store: dict[str, str], *extra: str) -> list[str]:
    return [f"{k}={v}" for k, v in store.items()] + list(extra)


@pytest.fixture
def python() -> str:
    return sys.executable
