"""Real searches through Ray Tune on CPU for every scheduler x search algorithm, read back from MLflow."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import overrides

from raymlops import tracking
from raymlops.core.names import ALIAS_CANDIDATE, ALIAS_CHAMPION, TAG_PARENT, TAG_ROLE, TAG_STOPPED_EARLY
from raymlops.evaluate import main as evaluate_main
from raymlops.post import model_registry
from raymlops.registry import main as registry_main
from raymlops.tune import main as tune_main

pytestmark = pytest.mark.ray
# The scheduler x searcher matrix checks what a search records, not how well it learns: small, quick trials.
# Not under HyperBand: trials this quick report past its milestones before it pauses them, and Ray Tune's
# HyperBandScheduler then left two trials PAUSED with nothing running, the driver spinning (seen once with Optuna).
TINY_DATA = ["data.num_train=600"]


def _check_search(uri: str, summary: dict[str, Any], n_trials: int, max_epochs: int) -> list[Any]:
    c = tracking.client(uri)
    parent = c.get_run(summary["parent_run_id"])
    assert parent.data.tags[TAG_ROLE] == "search" and parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_acc"] == pytest.approx(summary["best_val_acc"])
    assert parent.data.tags["best_trial_id"] == summary["best_trial_id"]
    assert "search.scheduler" in parent.data.params and "raymlops.git_sha" in parent.data.tags
    # the MLflow UI's "Source" and "Created by" columns (MlflowClient.create_run sets neither by itself)
    assert parent.data.tags["mlflow.source.name"] == "raymlops.tune" and parent.data.tags["mlflow.user"]
    children = c.search_runs([parent.info.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'")
    assert len(children) == n_trials
    for child in children:
        assert child.data.tags[TAG_ROLE] == "trial" and child.info.status == "FINISHED"
        assert child.data.tags["mlflow.user"] == parent.data.tags["mlflow.user"] and child.data.tags["mlflow.source.name"]
        assert child.data.params["device"] == "cpu" and child.data.params["train.device"] == "auto"
        steps = [m.step for m in c.get_metric_history(child.info.run_id, "val_acc")]
        assert steps and sorted(steps) == list(range(1, len(steps) + 1)), "no duplicated or missing epoch steps"
        stopped = child.data.tags[TAG_STOPPED_EARLY] == "true"
        assert stopped == (len(steps) < max_epochs)
    paths = {a.path for a in c.list_artifacts(parent.info.run_id, "search")} | {
        a.path for a in c.list_artifacts(parent.info.run_id, "evaluation")
    }
    for name in (
        "search/top_trials.csv",
        "search/top_trials.json",
        "search/learning_curves.png",
        "search/params_vs_metric.png",
        "search/parallel_coordinates.png",
        "evaluation/confusion_matrix.png",
        "evaluation/per_class_accuracy.json",
    ):
        assert name in paths, name
    assert 0.0 <= parent.data.metrics["test_acc"] <= 1.0
    return children


# Each scheduler once, each searcher at least once (Optuna under ASHA, which stops trials it is told of); the
# scheduler and the searcher are built independently (search/schedulers.py, search/searchers.py), so the
# other three pairs of the 3 x 2 matrix added ~3.5 min of CI and no code path. ASHA + random is the smoke
# experiment's default, which most other end-to-end tests run.
@pytest.mark.parametrize(
    ("scheduler", "search_alg"),
    [
        ("asha", "optuna"),
        ("hyperband", "random"),
        ("fifo", "random"),
    ],
)
def test_scheduler_by_search_alg(ray_session: Any, store: dict[str, str], scheduler: str, search_alg: str) -> None:
    extra = (
        [f"scheduler={scheduler}", f"search_alg={search_alg}", "search_alg.n_startup_trials=2"]
        if search_alg == "optuna"
        else [f"scheduler={scheduler}"]
    )
    data = TINY_DATA if scheduler != "hyperband" else []
    summary = tune_main(overrides(store, "+experiment=smoke", "tune.num_samples=4", "train.epochs=3", *data, *extra))
    uri = store["mlflow.tracking_uri"]
    _check_search(uri, summary, n_trials=4, max_epochs=3)
    c = tracking.client(uri)
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CANDIDATE).version) == summary["registered_version"]
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CHAMPION).version) == "1"


def test_ddp_trials_and_champion_policy(ray_session: Any, store: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """2-worker DDP trials through TorchTrainer inside Tune; a second search only takes the
    champion alias when its test accuracy is better."""
    # FIFO: a DDP trial stopped early can leave its worker-group placement group behind until Ray Train's
    # PlacementGroupCleaner frees it, and the next search in this process would wait on those CPUs
    # (seen on a loaded machine; noted as a known issue). ASHA-stopped DDP trials run in the quickstart.
    args = overrides(
        store, "+experiment=smoke", "tune.num_samples=2", "scaling.num_workers=2", "scaling.cpus_per_worker=0.5", "scheduler=fifo"
    )
    first = tune_main(args)
    uri = store["mlflow.tracking_uri"]
    children = _check_search(uri, first, n_trials=2, max_epochs=2)
    assert {ch.data.params["world_size"] for ch in children} == {"2"}
    # a deliberately weak second search (lr far too small, one epoch): kept as candidate only
    second = tune_main(
        overrides(
            store,
            "+experiment=smoke",
            "tune.num_samples=1",
            "scheduler=fifo",
            "train.epochs=1",
            "search_space={}",
            "optim.lr=1e-6",
        )
    )
    c = tracking.client(uri)
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CANDIDATE).version) == "2"
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CHAMPION).version) == "1"
    assert second["champion_decision"].startswith("kept champion v1")
    model_registry.promote(uri, "raymlops-smoke", "2")
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CHAMPION).version) == "2"
    assert model_registry.rollback(uri, "raymlops-smoke") == "1"
    assert str(c.get_model_version_by_alias("raymlops-smoke", ALIAS_CHAMPION).version) == "1"
    # the CLIs: evaluate the champion on the test split, list the registry
    result = evaluate_main(overrides(store, "+experiment=smoke", "model_uri=models:/raymlops-smoke@champion"))
    assert result["test_acc"] == pytest.approx(c.get_run(first["parent_run_id"]).data.metrics["test_acc"], abs=1e-6)
    evals = c.search_runs([children[0].info.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'evaluate'")
    assert len(evals) == 1 and {a.path for a in c.list_artifacts(evals[0].info.run_id, "evaluation")} == {
        "evaluation/confusion_matrix.png",
        "evaluation/per_class_accuracy.json",
    }
    capsys.readouterr()
    registry_main(["--tracking-uri", uri, "list", "raymlops-smoke"])
    listing = capsys.readouterr().out
    assert "champion" in listing and "candidate" in listing and "kept champion v1" in listing
