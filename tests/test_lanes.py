"""Warm DDP lanes (launch.lanes): 2-worker DDP trials of real searches on long-lived Ray Train worker
groups, read back from MLflow and from Ray's placement-group table."""

from __future__ import annotations

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


def test_asha_stops_and_promotions_on_warm_lanes(ray_session: Any, store: dict[str, str]) -> None:
    """ASHA stops DDP trials at an epoch boundary and the lane takes the next trial; PromotionASHA pauses
    trials and resumes them from their checkpoint on a lane, in the same child run. Two lanes serve all
    trials, and the searches leave no placement group behind."""
    uri = store["mlflow.tracking_uri"]
    asha = ["scheduler.grace_period=1", "scheduler.reduction_factor=2", "train.epochs=3", "tune.num_samples=4"]
    stopped = tune_main(overrides(store, *DDP, *asha, "scheduler.mode=stop"))
    children = _check_trials(uri, stopped, n=4, max_epochs=3)
    assert any(ch.data.tags[TAG_STOPPED_EARLY] == "true" for ch in children), "ASHA stopped a trial early"
    assert len(_lanes_started(store, "smoke")) <= 2, "4 trials on at most 2 lanes"
    assert not _search_placement_groups_left(ray_session), "every lane's placement group is removed with the search"

    promoted = tune_main(overrides(store, *DDP, *asha, "scheduler.mode=promote", "train.epochs=2", "name=smoke_promote"))
    children = _check_trials(uri, promoted, n=4, max_epochs=2)
    resumed = [ch for ch in children if ch.data.tags.get(TAG_RESTARTS)]
    assert resumed, "a paused trial was promoted and resumed from its checkpoint"
    assert not _search_placement_groups_left(ray_session)


def test_same_seed_same_curve_warm_and_cold(ray_session: Any, store: dict[str, str]) -> None:
    """Two identical trials one after the other on one lane (the second on a warm worker group) and the same
    trial through a TorchTrainer of its own (scaling.warm_workers=false) give the same val_acc curve."""
    uri = store["mlflow.tracking_uri"]
    same = [*DDP, "search_space={}", "scheduler=fifo", "tune.max_concurrent_trials=1"]
    warm = tune_main(overrides(store, *same, "tune.num_samples=2"))
    cold = tune_main(overrides(store, *same, "tune.num_samples=1", "scaling.warm_workers=false", "name=smoke_cold"))
    assert len(_lanes_started(store, "smoke")) == 1, "both warm trials ran on one lane"
    curves = list(_curves(uri, _children(uri, warm["parent_run_id"])).values())
    curves += list(_curves(uri, _children(uri, cold["parent_run_id"])).values())
    assert len(curves) == 3 and len(curves[0]) == 2
    for curve in curves[1:]:
        assert [s for s, _ in curve] == [s for s, _ in curves[0]]
        assert [v for _, v in curve] == pytest.approx([v for _, v in curves[0]], abs=1e-6)
    assert not _search_placement_groups_left(ray_session)
