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
        "serial: runs after every tier's parallel pass, with the machine to itself (tests/run_tiers.py)",
    ):
        config.addinivalue_line("markers", mark)


# Test files by their share of the suite's time, longest first (`make test` prints --durations): pytest-xdist
# hands whole files to its workers in this order, so no long file starts last and leaves one worker idle.
HEAVY_FIRST = [  # both tiers, by each file's seconds in a `make test` of 2026-12-05 (its non-serial tests)
    "test_faults",
    "test_node_loss",
    "test_search_e2e",
    "test_concurrency",
    "test_multinode",
    "test_server_team",
    "test_pipelines",
    "test_api",
    "test_lanes",
    "test_autoscaling",
    "test_monitoring",
    "test_browser",
    "test_tracking_server",
    "test_serving",
    "test_notebook",
    "test_search_beyond_asha",
    "test_train_e2e",
    "test_security",
    "test_bad_inputs",
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
            env_vars={"PYTHONWARNINGS": "ignore::DeprecationWarning"},
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


SMOKE_MODEL = "raymlops-smoke"  # registry.model_name of +experiment=smoke


def smoke_data() -> Any:
    from raymlops.config.schema import DataConfig, DatasetName

    return DataConfig(name=DatasetName.synthetic, num_train=2000, num_test=400, num_classes=10, image_size=32, val_fraction=0.1)


def register_smoke_models(tmp: Path) -> dict[str, Any]:
    """A fast_cnn trained in-process for one epoch on the smoke data (~5 s), logged by training.model_io and
    registered through post.model_registry with its drift baseline: v1 @champion (the champion decision a search
    makes), v2 (same model) @challenger. A search would spend ~50 s of Ray Tune here; tests/test_search_e2e.py
    covers that path to the registry. Returns the store overrides (a fresh SQLite store under tmp) and figures."""
    import torch

    from raymlops import tracking
    from raymlops.config.schema import ModelConfig, ModelName
    from raymlops.core import names
    from raymlops.data import load_splits, normalise
    from raymlops.models.small_images import build_model
    from raymlops.post import model_registry
    from raymlops.serving.drift import Reference, shares
    from raymlops.training.model_io import log_model

    store = {
        "mlflow.tracking_uri": f"sqlite:///{tmp}/mlflow.db",
        "mlflow.artifact_location": str(tmp / "artifacts"),
        "mlflow.spool_dir": str(tmp / "spool"),
        "storage_path": str(tmp / "ray_results"),
    }
    uri = store["mlflow.tracking_uri"]
    splits = load_splits(smoke_data(), seed=0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=ModelName.fast_cnn, width=16), splits.channels, splits.num_classes)
    # lr 0.1 with momentum 0.9 at batch 64 collapsed the model onto one class (9.7 % test accuracy, every test image
    # "class_6"): no class mix to drift from. This setting reaches ~42 % with most classes predicted.
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    mean, std = torch.tensor(splits.mean).view(1, -1, 1, 1), torch.tensor(splits.std).view(1, -1, 1, 1)
    for start in range(0, len(splits.train_y), 32):
        x, y = normalise(splits.train_x[start : start + 32], mean, std), splits.train_y[start : start + 32]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        probs = model(normalise(splits.test_x, mean, std)).softmax(1)
    test_acc = float((probs.argmax(1) == splits.test_y).float().mean())
    predicted = [splits.classes[int(i)] for i in probs.argmax(1)]
    reference = Reference(shares(predicted), float(probs.max(1).values.mean()), len(predicted))
    exp_id = tracking.ensure_experiment(uri, "raymlops-smoke", store["mlflow.artifact_location"])
    c = tracking.client(uri)
    run_id = c.create_run(exp_id, run_name="serving fixture").info.run_id
    model_uri = log_model(uri, run_id, model, splits)
    v1 = model_registry.register(uri, model_uri, SMOKE_MODEL, run_id, {"test_acc": test_acc})
    model_registry.decide_champion(uri, SMOKE_MODEL, v1, "if_better")
    v2 = model_registry.register(uri, model_uri, SMOKE_MODEL, run_id, {"test_acc": test_acc})
    model_registry.set_alias(uri, SMOKE_MODEL, "challenger", v2)
    for version in (v1, v2):
        c.set_model_version_tag(SMOKE_MODEL, version, names.TAG_SERVING_REFERENCE, reference.to_json())
    return {"store": store, "uri": uri, "tmp": tmp, "test_acc": test_acc, "reference": reference}


def smoke_images(n: int = 6, only_class: int | None = None) -> tuple[list[bytes], list[bytes], list[str]]:
    """n test images of the smoke data as PNG and JPEG bytes, and their true labels; with only_class, only
    images of that class (a shifted input stream for the drift tests)."""
    from raymlops.data import load_splits
    from raymlops.models.image_codec import encode_image

    splits = load_splits(smoke_data(), 0)
    rows = [i for i in range(len(splits.test_y)) if only_class is None or int(splits.test_y[i]) == only_class][:n]
    pngs = [encode_image(splits.test_x[i].numpy()) for i in rows]
    jpgs = [encode_image(splits.test_x[i].numpy(), "JPEG") for i in rows]
    return pngs, jpgs, [splits.classes[int(splits.test_y[i])] for i in rows]
