"""champion_evaluation: evaluate NAME@champion on a held-out image folder; fail, and tag the model version
`raymlops.regression`, when its accuracy is more than max_drop below the test_acc recorded at registration.
With prometheus_url (the serving side's Prometheus, `make monitoring`), also fail while the drift alert
RaymlopsServeDrift fires there (monitoring/alerts.yml).

    airflow dags test champion_evaluation -c '{"holdout_root": "/data/holdout-2026-12", "max_drop": 0.02}'
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # raymlops_steps.py beside this file (Airflow 3 does not add the folder)
from raymlops_steps import dag_settings, data_overrides, newest_data, run_raymlops, shared_cifar10

DEFAULT_HOLDOUT = shared_cifar10("RAYMLOPS_HOLDOUT_ROOT")


@dag(
    **dag_settings("0 6 * * *"),  # daily, after daily_training's midnight run
    params={
        "experiment": Param("cifar10_fast", type="string", description="conf/experiment/NAME.yaml (data and eval settings)"),
        "model_name": Param("raymlops-cifar10", type="string", description="registered model whose @champion is checked"),
        "holdout_root": Param(DEFAULT_HOLDOUT, type="string", description="held-out image-folder tree (its test/ split is used)"),
        "max_drop": Param(0.02, type="number", minimum=0, description="allowed fall below the registered test_acc (0..1)"),
        "overrides": Param([], type="array", description="extra Hydra overrides for the evaluation"),
        "prometheus_url": Param("", type="string", description="serving's Prometheus; set: fail while RaymlopsServeDrift fires"),
    },
    doc_md=__doc__,
)
def champion_evaluation() -> None:
    @task
    def find_holdout() -> str:
        return newest_data(get_current_context()["params"]["holdout_root"])

    @task
    def evaluate_champion(holdout: str) -> dict[str, Any]:
        ctx = get_current_context()
        p = ctx["params"]
        uri = f"models:/{p['model_name']}@champion"
        out = run_raymlops(
            "evaluate", [f"model_uri={uri}", f"+experiment={p['experiment']}", *data_overrides(holdout), *p["overrides"]], ctx
        )
        return {"mlflow_run_id": out["mlflow_run_id"], "model_uri": uri, "test_acc": out["test_acc"]}

    @task(retries=0)  # a regression is an answer, not a transient error
    def check_against_registration(evaluation: dict[str, Any]) -> dict[str, Any]:
        ctx = get_current_context()
        p = ctx["params"]
        args = ["check", p["model_name"], "--test-acc", str(evaluation["test_acc"]), "--max-drop", str(p["max_drop"])]
        return run_raymlops("registry", args, ctx, on_cluster=False)

    @task(retries=0)  # a drifting input stream is an answer too
    def check_drift_alert(checked: dict[str, Any]) -> dict[str, Any]:
        ctx = get_current_context()
        url = ctx["params"]["prometheus_url"]
        if not url:
            return {**checked, "drift_check": "skipped: no prometheus_url"}
        return run_raymlops("monitoring", ["alerts", "--url", url, "--fail-on", "RaymlopsServeDrift"], ctx, on_cluster=False)

    check_drift_alert(check_against_registration(evaluate_champion(find_holdout())))


champion_evaluation()
