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
os.environ.pop("RAY_API_SERVER_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_configure(config: Any) -> None:
    for mark in (
        "ray: needs the shared local Ray cluster",
        "slow: long-running",
        "cluster: starts extra servers or Ray nodes",
        "gpu: needs CUDA",
        "serial: runs after its tier's parallel part, with the machine to itself (tests/run_tiers.py)",
    ):
        config.addinivalue_line("markers", mark)


# Test files by their share of a tier's time, longest first (`make test` prints --durations): pytest-xdist
# hands whole files to its workers in this order, so no long file starts last and leaves one worker idle.
HEAVY_FIRST = [
    "test_faults",
    "test_concurrency",
    "test_search_e2e",
    "test_server_team",
    "test_browser",
    "test_pipelines",
    "test_tracking_server",
    "test_lanes",
    "test_autoscaling",
    "test_multinode",
    "test_serving",
    "test_api",
    "test_notebook",
    "test_bad_inputs",
    "test_search_beyond_asha",
    "test_security",
    "test_train_e2e",
]


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import torch

    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))  # stable: file order otherwise kept

    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """A 2-CPU local Ray cluster shared by one module's tests (~3 s to start). Module scope: another
    module's test may start clusters of its own (and, under pytest-xdist, another worker does); each
    cluster's state API is pinned to its own dashboard (cluster.start_local_cluster)."""
    import ray

    from raymlops.launch.cluster import start_local_cluster

    if not ray.is_initialized():
        # The dashboard hosts the state API that Ray Train's PlacementGroupCleaner needs to free the
        # worker-group placement group of a DDP trial stopped by ASHA; without it they leak.
        start_local_cluster(
            num_cpus=2,
            include_dashboard=True,
            object_store_memory=400 * 1024**2,
            logging_level="WARNING",
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}},
        )
    yield ray
    ray.shutdown()
    os.environ.pop("RAY_API_SERVER_ADDRESS", None)  # subprocesses of later tests start or join clusters of their own


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
