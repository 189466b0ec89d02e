"""raymlops from Python (raymlops.api, `import raymlops as rm`): a search twice in one process, its trials table
and plot, the champion loaded and predicting, train / evaluate / predict, errors raised (never an exit); and
the MLproject entry point run by `mlflow run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import overrides

import raymlops as rm
from raymlops import tracking
from raymlops.core.names import TAG_PARENT, TAG_PROJECT_RUN, TAG_ROLE

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]
QUICK = ["tune.num_samples=2", "train.epochs=1", "data.num_train=600", "data.image_size=16"]


@pytest.fixture(scope="module")
def module_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("api")
    return {
        "mlflow.tracking_uri": f"sqlite:///{tmp}/mlflow.db",
        "mlflow.artifact_location": str(tmp / "artifacts"),
        "mlflow.spool_dir": str(tmp / "spool"),
        "storage_path": str(tmp / "ray_results"),
    }


@pytest.fixture(scope="module")
def searched(ray_session: Any, module_store: dict[str, str]) -> rm.SearchResult:
    return rm.search("smoke", overrides=overrides(module_store, *QUICK))


def test_search_returns_the_best_trial_its_table_and_plot(searched: rm.SearchResult, module_store: dict[str, str]) -> None:
    best, uri = searched.best, module_store["mlflow.tracking_uri"]
    assert best["trial_id"] == searched.summary["best_trial_id"] and 0.0 <= best["val_acc"] <= 1.0
    assert "optim.lr" in best and 0.0 <= best["test_acc"] <= 1.0
    assert searched.champion_decision and searched.champion_decision.startswith("promoted v1")
    table = searched.trials
    assert table["trial_id"].iloc[0] == best["trial_id"] and len(table) == 2
    assert {"val_acc", "epochs", "optim.lr", "mlflow_run_id", "status"} <= set(table.columns)
    c = tracking.client(uri)
    parent = c.get_run(searched.parent_run_id or "")
    children = c.search_runs([parent.info.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'")
    assert set(table["mlflow_run_id"]) == {ch.info.run_id for ch in children}
    # from Python the source is the calling program (pytest here), not a raymlops command line
    assert parent.data.tags["mlflow.source.name"] != "raymlops.tune" and parent.data.tags["mlflow.user"]
    fig = searched.plot()
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and fig.axes[0].get_ylabel() == "val_acc"


def test_a_second_search_in_the_same_process_and_the_champion(searched: rm.SearchResult, module_store: dict[str, str]) -> None:
    import ray

    uri = module_store["mlflow.tracking_uri"]
    again = rm.search("smoke", overrides=overrides(module_store, *QUICK, "tune.num_samples=1", "search_space={}"))
    assert ray.is_initialized() and again.parent_run_id != searched.parent_run_id
    assert again.registered_version == "2" and again.champion_decision  # promoted or kept: tiny data decides
    model = rm.champion(experiment="smoke", tracking_uri=uri)
    champion = tracking.client(uri).get_model_version_by_alias("raymlops-smoke", "champion").version
    assert model.version == str(champion) and len(model.classes) == 10
    hwc = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    out = model.predict([hwc, hwc.transpose(2, 0, 1), hwc[..., 0]])  # H,W,C; C,H,W; grey H,W
    assert len(out) == 3 and set(out["label"]) <= set(model.classes)
    assert out["label"][0] == out["label"][1]


def test_train_evaluate_and_predict(ray_session: Any, module_store: dict[str, str], tmp_path: Path) -> None:
    job = rm.train("smoke", overrides=overrides(module_store, "train.epochs=1", "data.num_train=600", "data.image_size=16"))
    assert job.run_id and job.model_uri == f"runs:/{job.run_id}/model" and 0.0 <= job.metrics["val_acc"] <= 1.0
    uri = module_store["mlflow.tracking_uri"]
    assert tracking.client(uri).get_run(job.run_id).data.params["device"] == "cpu"
    evaluated = rm.evaluate(job.model_uri, "smoke", overrides=overrides(module_store, "data.image_size=16"))
    assert 0.0 <= evaluated["test_acc"] <= 1.0
    assert tracking.client(uri).get_run(evaluated["mlflow_run_id"]).data.tags[TAG_ROLE] == "evaluate"
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(png)
    out = rm.predict(job.model_uri, [png, png.read_bytes(), Image.open(png)], "smoke", tracking_uri=uri)
    assert len(out) == 3 and len(set(out["label"])) == 1


def test_errors_raise_user_error_with_the_command_lines_message(module_store: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(rm.UserError, match=r"\+experiment=nope does not exist"):
        rm.search("nope")
    with pytest.raises(rm.UserError, match=r"tune\.num_sample"):
        rm.search("smoke", overrides=["tune.num_sample=2"])  # a typo: refused before Ray starts
    with pytest.raises(rm.UserError, match="must be a list of strings"):
        rm.search("smoke", overrides="tune.num_samples=2")  # type: ignore[arg-type]
    uri = module_store["mlflow.tracking_uri"]
    with pytest.raises(rm.UserError, match="No raymlops-nobody@champion"):
        rm.champion("raymlops-nobody", tracking_uri=uri)
    with pytest.raises(rm.UserError, match="cannot read"):
        rm.predict("models:/raymlops-smoke@champion", [tmp_path / "missing.png"], "smoke", tracking_uri=uri)
    with pytest.raises(rm.UserError, match="float64 array"):
        rm.predict("models:/raymlops-smoke@champion", [np.zeros((16, 16))], "smoke", tracking_uri=uri)


def test_mlflow_run_of_the_mlproject_runs_a_tracked_search(tmp_path: Path) -> None:
    """`mlflow run . -e tune` with the MLproject file: raymlops' search goes to the tracking URI `mlflow run`
    hands its command, tagged with the project run, which ends FINISHED."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = {"storage_path": tmp_path / "rr", "mlflow.artifact_location": tmp_path / "art", "mlflow.spool_dir": tmp_path / "sp"}
    extra = " ".join([*QUICK[1:], "tune.num_samples=1", *(f"{k}={v}" for k, v in store.items())])
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    mlflow_cli = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", "tune", "--env-manager", "local"]
    proc = subprocess.run(
        [*mlflow_cli, "-P", "experiment=smoke", "-P", f"overrides={extra}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "raymlops-result:" in proc.stdout
    c = tracking.client(uri)
    searches = c.search_runs([e.experiment_id for e in c.search_experiments()], filter_string=f"tags.`{TAG_ROLE}` = 'search'")
    assert len(searches) == 1 and searches[0].info.status == "FINISHED"
    project = c.get_run(searches[0].data.tags[TAG_PROJECT_RUN])
    assert project.info.status == "FINISHED" and project.data.params["experiment"] == "smoke"
