"""`python -m raymlops.train +experiment=NAME [overrides]`: one DDP training job through Ray Train."""

from __future__ import annotations

from typing import Any

from raymlops.config import compose
from raymlops.config.schema import Config
from raymlops.core.console import print_result, set_verbose, setup_logging
from raymlops.core.errors import cli
from raymlops.core.redact import redact


@cli
def main(argv: list[str]) -> dict[str, Any]:
    config, metrics = run(argv)
    shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    run_id, rcfg = metrics.get("mlflow_run_id"), config.registry
    print_result(
        {
            **shown,
            "mlflow_run_id": run_id,
            "model_uri": model_uri(metrics),
            "model_name": rcfg.model_name,
            "promote": rcfg.promote,
            "min_improvement": rcfg.min_improvement,
        }
    )
    return metrics


def model_uri(metrics: dict[str, Any]) -> str | None:
    run_id = metrics.get("mlflow_run_id")
    return f"runs:/{run_id}/model" if run_id else None


def run(argv: list[str]) -> tuple[Config, dict[str, Any]]:
    """The training job of `argv` (Hydra overrides): its config and last metrics (mlflow_run_id among them);
    raises UserError before Ray starts where it can. raymlops.api.train calls this too."""
    setup_logging()
    config = compose(argv)  # Hydra compose + validation, before Ray starts
    set_verbose(config.console.verbose)
    # imported only now, each after the check before it passed: a config error costs ~1 s, a preflight
    # error a few (torch, MLflow's client), and only a job that will run pays Ray's import (~3 s)
    from raymlops.launch.preflight import preflight

    preflight(config)  # tracker, storage, data
    from raymlops.launch.job import run_train_job, start

    launch = start(config, argv)
    mcfg = config.mlflow
    print(
        f"Training {config.model.name} on {config.data.name} with {config.scaling.num_workers} "
        f"worker(s), gpu={launch.use_gpu}; MLflow: {redact(mcfg.tracking_uri)} "
        f"experiment {mcfg.experiment_name!r}",
        flush=True,
    )
    metrics = run_train_job(config, launch)
    shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    run_id = metrics.get("mlflow_run_id")
    print(f"Finished epoch {metrics.get('epoch')}: {shown}; MLflow run {run_id}", flush=True)
    return config, metrics


if __name__ == "__main__":
    main()
