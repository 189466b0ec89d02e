"""daily_training: train on the newest data, evaluate on its test split, register as @candidate, promote to
@champion only if better (raymlops' registry rule: `registry.promote`, `registry.min_improvement`).

    airflow dags test daily_training                  # once, now (make airflow-standalone for the scheduler)
    airflow dags trigger daily_training -c '{"overrides": ["train.epochs=3"]}'

Tasks hand on only run ids, model URIs and the test accuracy (XCom); the work runs on $RAY_ADDRESS (Ray jobs)
or locally. Retries are Airflow's own settings ([core] default_task_retries, e.g.
AIRFLOW__CORE__DEFAULT_TASK_RETRIES=2); timeouts are per task (execution_timeout below).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # raymlops_steps.py beside this file (Airflow 3 does not add the folder)
from raymlops_steps import dag_settings, data_overrides, newest_data, run_raymlops, shared_cifar10

DEFAULT_DATA_ROOT = shared_cifar10("RAYMLOPS_DATA_ROOT")


@dag(
    **dag_settings("@daily"),
    params={
        "experiment": Param("cifar10_fast", type="string", description="conf/experiment/NAME.yaml"),
        "data_root": Param(
            DEFAULT_DATA_ROOT,
            type="string",
            description="image-folder tree, or dated subfolders of them; '' = the experiment's data",
        ),
        "overrides": Param([], type="array", description="extra Hydra overrides for training and evaluation"),
    },
    doc_md=__doc__,
)
def daily_training() -> None:
    @task
    def find_newest_data() -> str:
        return newest_data(get_current_context()["params"]["data_root"])

    @task(execution_timeout=timedelta(hours=2))
    def train(data_root: str) -> dict[str, Any]:
        ctx = get_current_context()
        p = ctx["params"]
        out = run_raymlops("train", [f"+experiment={p['experiment']}", *data_overrides(data_root), *p["overrides"]], ctx)
        keys = ("mlflow_run_id", "model_uri", "model_name", "promote", "min_improvement")
        return {k: out[k] for k in keys}

    @task(execution_timeout=timedelta(minutes=30))
    def evaluate(trained: dict[str, Any], data_root: str) -> dict[str, Any]:
        ctx = get_current_context()
        p = ctx["params"]
        args = [
            f"model_uri={trained['model_uri']}",
            f"+experiment={p['experiment']}",
            *data_overrides(data_root),
            *p["overrides"],
        ]
        out = run_raymlops("evaluate", args, ctx)
        return {"mlflow_run_id": out["mlflow_run_id"], "test_acc": out["test_acc"], "test_loss": out["test_loss"]}

    @task
    def register(trained: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
        args = [trained["model_name"], trained["model_uri"], "--run-id", trained["mlflow_run_id"]]
        args += ["--test-acc", str(evaluation["test_acc"]), "--test-loss", str(evaluation["test_loss"])]
        args += ["--evaluation-run-id", evaluation["mlflow_run_id"]]
        return run_raymlops("registry", ["register", *args], get_current_context(), on_cluster=False)

    @task
    def promote_if_better(trained: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
        args = ["decide", registered["model_name"], registered["version"], "--policy", trained["promote"]]
        args += ["--min-improvement", str(trained["min_improvement"])]
        return run_raymlops("registry", args, get_current_context(), on_cluster=False)

    data_root = find_newest_data()
    trained = train(data_root)
    registered = register(trained, evaluate(trained, data_root))
    promote_if_better(trained, registered)


daily_training()
