"""weekly_tuning: a `raymlops.tune` search (its best trial evaluated, registered as @candidate, @champion moved
only if better), then its champion decision, read back and checked.

    airflow dags test weekly_tuning -c '{"experiment": "cifar10_optuna", "overrides": ["tune.num_samples=20"]}'
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
    **dag_settings("@weekly"),
    params={
        "experiment": Param("cifar10_optuna", type="string", description="conf/experiment/NAME.yaml with a search_space"),
        "data_root": Param(
            DEFAULT_DATA_ROOT,
            type="string",
            description="image-folder tree, or dated subfolders of them; '' = the experiment's data",
        ),
        "overrides": Param([], type="array", description="extra Hydra overrides, e.g. tune.num_samples=20"),
    },
    doc_md=__doc__,
)
def weekly_tuning() -> None:
    @task
    def find_newest_data() -> str:
        return newest_data(get_current_context()["params"]["data_root"])

    @task(execution_timeout=timedelta(hours=12), retries=0)  # a rerun resumes nothing: tune.resume is per search name
    def tune(data_root: str) -> dict[str, Any]:
        ctx = get_current_context()
        p = ctx["params"]
        out = run_raymlops("tune", [f"+experiment={p['experiment']}", *data_overrides(data_root), *p["overrides"]], ctx)
        keys = ("parent_run_id", "best_trial_id", "registered_version", "champion_decision", "model_uri")
        return {k: out.get(k) for k in keys}

    @task
    def champion_decision(search: dict[str, Any]) -> str:
        if not search["registered_version"]:
            raise RuntimeError(f"search {search['parent_run_id']} registered no model (see its MLflow parent run)")
        print(f"search {search['parent_run_id']}: registered v{search['registered_version']}; {search['champion_decision']}")
        return str(search["champion_decision"])

    champion_decision(tune(find_newest_data()))


weekly_tuning()
