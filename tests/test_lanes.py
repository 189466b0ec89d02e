"""Warm DDP lanes (launch.executors.warm_lane, lane_broker): 2-worker DDP trials of real searches on long-lived
Ray Train worker groups, read back from MLflow and from Ray's placement-group table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import overrides

from raymlops import tracking
from raymlops.core.names import TAG_PARENT, TAG_RESTARTS, TAG_STOPPED_EARLY
from raymlops.tune import main as tune_main

pytestmark = pytest.mark.ray
DDP = ["+experiment=smoke", "scaling.num_workers=2", "scaling.cpus_per_worker=0.5", "evaluate.enabled=false"]


def _children(uri: str, parent_run_id: str) -> list[Any]:
    c = tracking.client(uri)
    parent = c.get_run(parent_run_id)
    return c.search_runs([parent.info.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}'")


def _curves(uri: str, runs: list[Any]) -> dict[str, list[tuple[int, float]]]:
    c = tracking.client(uri)
    return {r.info.run_id: [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, "val_acc")] for r in runs}


def _lanes_started(store: dict[str, str], name: str) -> list[str]:
    """Each lane is one Ray Train run, named after the lane, under the search's lanes/ folder."""
    search_dir = max(Path(store["storage_path"]).glob(f"{name}-*"))
    return sorted(p.name for p in (search_dir / "lanes").iterdir() if p.is_dir() and p.name.startswith("lane"))


def _search_placement_groups_left(ray: Any) -> list[str]:
    return [pg_id for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"]


def _check_trials(uri: str, summary: dict[str, Any], n: int, max_epochs: int) -> list[Any]:
    children = _children(uri, summary["parent_run_id"])
    assert len(children) == n, "one MLflow child run per trial"
    for child in children:
        assert child.info.status == "FINISHED" and child.data.params["world_size"] == "2"
        steps = [step for step, _ in next(iter(_curves(uri, [child]).values()))]
        assert steps == list(range(1, len(steps) + 1)), f"no duplicated or missing epoch step: {steps}"
        assert (child.data.tags[TAG_STOPPED_EARLY] == "true") == (len(steps) < max_epochs)
    return children


def test_asha_stops_on_warm_lanes(ray_session: Any, store: dict[str, str]) -> None:
    """ASHA stops DDP trials at an epoch boundary and the lane takes the next trial: one lane serves four
    seeded trials one after another (so the rung order, hence the stop, is the same every run), and the
    search leaves no placement group behind."""
    uri = store["mlflow.tracking_uri"]
    asha = ["scheduler.grace_period=1", "scheduler.reduction_factor=2", "train.epochs=2", "tune.num_samples=4"]
    summary = tune_main(overrides(store, *DDP, *asha, "scheduler.mode=stop", "tune.max_concurrent_trials=1"))
    children = _check_trials(uri, summary, n=4, max_epochs=2)
    assert any(ch.data.tags[TAG_STOPPED_EARLY] == "true" for ch in children), "ASHA stopped a trial early"
    assert len(_lanes_started(store, "smoke")) == 1, "4 trials on one lane"
    assert not _search_placement_groups_left(ray_session), "every lane's placement group is removed with the search"


def test_promotion_resumes_on_a_lane_and_warm_equals_cold(ray_session: Any, store: dict[str, str]) -> None:
    """Two identical trials one at a time on one lane under PromotionASHA (rf=2): the first is paused at
    epoch 1, the second (on the warm worker group) ties and is stopped, the first is promoted and resumed
    from its checkpoint in the same child run. Its curve equals the same trial's through a TorchTrainer of
    its own (scaling.warm_workers=false): same seed, same val_acc curve, warm and cold."""
    uri = store["mlflow.tracking_uri"]
    same = [*DDP, "~search_space", "optim.lr=0.13", "tune.max_concurrent_trials=1", "train.epochs=2"]
    promote = ["scheduler.mode=promote", "scheduler.grace_period=1", "scheduler.reduction_factor=2", "tune.num_samples=2"]
    warm = tune_main(overrides(store, *same, *promote))
    cold = tune_main(overrides(store, *same, "scheduler=fifo", "tune.num_samples=1", "scaling.warm_workers=false", "name=cold"))
    assert len(_lanes_started(store, "smoke")) == 1, "both warm trials ran on one lane"
    first, second = sorted(_check_trials(uri, warm, n=2, max_epochs=2), key=lambda r: r.info.start_time)
    assert first.data.tags.get(TAG_RESTARTS) == "1", "the paused trial was promoted and resumed from its checkpoint"
    curve, tie = _curves(uri, [first])[first.info.run_id], _curves(uri, [second])[second.info.run_id]
    assert [s for s, _ in curve] == [1, 2] and [s for s, _ in tie] == [1]
    (cold_run,) = _children(uri, cold["parent_run_id"])
    cold_curve = _curves(uri, [cold_run])[cold_run.info.run_id]
    assert [s for s, _ in cold_curve] == [1, 2]
    assert [v for _, v in curve] == pytest.approx([v for _, v in cold_curve], abs=1e-6), "warm (paused, resumed) = cold"
    assert tie[0][1] == pytest.approx(cold_curve[0][1], abs=1e-6), "a trial on a warm worker group = cold"
    assert not _search_placement_groups_left(ray_session)


def test_a_local_clusters_env_reaches_workers_by_inheritance(ray_session: Any) -> None:
    """cluster.start_local_cluster hands its env_vars to Ray's processes by inheritance, not as the job's
    runtime_env: with one, the workers the raylet prestarts serve no task or actor of the job (each waits for a
    new process instead), and the driver's own environment is left as it was."""
    ray = ray_session

    @ray.remote(num_cpus=0)
    def worker_env() -> str | None:
        return os.environ.get("PYTHONWARNINGS")

    assert ray.get(worker_env.remote(), timeout=60) == "ignore::DeprecationWarning"
    assert not ray.get_runtime_context().runtime_env.get("env_vars")
