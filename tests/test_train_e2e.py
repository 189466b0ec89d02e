"""One real 2-worker DDP training job (gloo) on the local Ray cluster, read back from MLflow."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import overrides

from raymlops import tracking
from raymlops.core.names import EPOCH_METRICS, TAG_EXPERIMENT_KIND, TAG_ROLE
from raymlops.train import main as train_main

pytestmark = pytest.mark.ray


def test_ddp_train_job_logs_one_run_from_rank_zero(ray_session: Any, store: dict[str, str]) -> None:
    args = ["scaling.num_workers=2", "train.epochs=3", "mlflow.system_metrics=true", "mlflow.system_metrics_interval_s=1"]
    metrics = train_main(overrides(store, "+experiment=smoke", *args))
    uri = store["mlflow.tracking_uri"]
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("raymlops-smoke")
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1, "exactly one run: only rank 0 talks to MLflow"
    run = runs[0]
    assert run.info.run_id == metrics["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2"
    assert run.data.params["optim.lr"] == "0.1" and run.data.params["scaling.num_workers"] == "2"
    assert run.data.tags[TAG_ROLE] == "train"
    for tag in ("raymlops.git_sha", "raymlops.versions", "raymlops.command", "raymlops.seed"):
        assert run.data.tags.get(tag), tag
    for key in EPOCH_METRICS:
        steps = [m.step for m in c.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2, 3], f"{key}: one point per epoch, step = epoch"
    assert run.data.metrics["val_acc"] > 0.1 + 0.05, "above chance (10 classes)"
    assert exp.tags[TAG_EXPERIMENT_KIND] == "custom_model_development", "the MLflow UI opens on the training runs"
    assert "system/cpu_utilization_percentage" in run.data.metrics and "system/system_memory_usage_megabytes" in run.data.metrics
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    profile = json.loads(dataset.profile)
    assert dataset.name == "synthetic" and len(dataset.digest) == 16 and (profile["train"], profile["val"]) == (1800, 200)
    assert c.get_metric_history(run.info.run_id, "train_loss_step"), "per-step loss is logged too"
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
    logged = c.search_logged_models([exp.experiment_id]) if hasattr(c, "search_logged_models") else []
    assert "model" in artifacts or logged, "the final model is logged as an MLflow PyTorch model"


def test_infeasible_workers_fail_fast(ray_session: Any, store: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        train_main(overrides(store, "+experiment=smoke", "scaling.num_workers=8"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "can never be scheduled" in err and "scaling.num_workers" in err
    assert time.monotonic() - start < 60


def test_workers_state_api_reaches_their_own_cluster(ray_session: Any) -> None:
    """What Ray Train's PlacementGroupCleaner does from inside the cluster (ray.util.state.get_actor on the
    controller) finds this cluster's live actor, also while other Ray instances run on the machine (the suite's
    other xdist worker): start_local_cluster pinned RAY_API_SERVER_ADDRESS to this cluster's dashboard."""
    import os

    ray = ray_session
    dashboard = ray._private.worker.get_dashboard_url()

    @ray.remote(num_cpus=0)
    class Alive:
        def ping(self) -> bool:
            return True

    @ray.remote(num_cpus=0)
    def ask(actor_id: str) -> tuple[str, str]:
        from ray.util.state import get_actor

        state = get_actor(actor_id, timeout=30)
        return os.environ.get("RAY_API_SERVER_ADDRESS", ""), state.state if state else "NOT FOUND"

    actor = Alive.remote()  # type: ignore[attr-defined]
    assert ray.get(actor.ping.remote())
    address, state = ray.get(ask.remote(actor._actor_id.hex()))  # type: ignore[attr-defined]
    assert address == f"http://{dashboard}" and state == "ALIVE", (address, dashboard, state)
